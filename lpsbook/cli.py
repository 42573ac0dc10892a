"""The ``lpsbook`` command line: parse, call the library, print.

Errors a user can cause print one message and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .core import data
from .experiments import ladder, modelset500
from .training import modelset, population
from .protocols import paper
from .core.data import load_dataset
from .core.errors import LpsbookError
from .core.presets import PRESETS
from .core.runtime import resolve_device
from .core.store import DamagedFileWarning, output_problem, write_atomic

DATA_DIR_HELP = "cifar100.npz, or a folder holding it or cifar-100-python/ (default: $LPSBOOK_DATA or data/)"
EXPERIMENTS = ("classification", "retrieval", "transferability", "branches", "ablation", "similarity", "stages",
               "probe_counts", "ladder", "modelset500")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lpsbook", description="Learnable parameter similarity: model sets and experiments.")
    sub = p.add_subparsers(dest="command", required=True)

    ms = sub.add_parser("modelset", help="build, verify or describe a model set")
    ms_sub = ms.add_subparsers(dest="action", required=True)
    b = ms_sub.add_parser("build", help="train every model of a preset (resumable)")
    b.add_argument("--preset", required=True, help=", ".join(PRESETS))
    b.add_argument("--out", required=True, help="model set folder (created if missing)")
    b.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    b.add_argument("--shard", default=None, metavar="K/N", help="build only part K of N (0 <= K < N)")
    b.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    b.add_argument("--download", action="store_true", help="download the dataset if missing")
    b.add_argument("--pack-size", type=int, default=None, help="models trained together (default: automatic)")
    _ray_arguments(b)
    v = ms_sub.add_parser("verify", help="exit 0 only for a complete set whose checksums all match")
    v.add_argument("dir")
    i = ms_sub.add_parser("info", help="print the per-task table")
    i.add_argument("dir")
    im = ms_sub.add_parser("import", help="make a model set of your own checkpoints (any conv architecture)")
    im.add_argument("src", help="folder of checkpoints: safetensors, or PyTorch state dicts (loaded weights-only)")
    im.add_argument("--arch", required=True, metavar="MODULE:CALLABLE",
                    help="builds one model when called without arguments, e.g. torchvision.models:resnet18")
    im.add_argument("--labels", required=True, help="CSV with columns file,task[,seed,accuracy,group]")
    im.add_argument("--out", required=True, help="model set folder to write (must not exist, or be empty)")
    im.add_argument("--input-shape", default="3,32,32", metavar="C,H,W",
                    help="one input's shape, for tracing the network (default 3,32,32)")

    ex = sub.add_parser("experiment", help="run one of the paper's protocols on a model set; `ladder` builds "
                        "the recipe ladder and the 50-task width-16 set and measures them (hours; resumable)")
    ex.add_argument("name", choices=EXPERIMENTS)
    ex.add_argument("--modelset", default=None, help="the model set folder (every experiment but ladder; modelset500: "
                                                          "where its set is built or resumed, default the cache)")
    ex.add_argument("--out", required=True, help="JSON file for the results (ladder: the folder for ladder.json)")
    ex.add_argument("--only", default=None, metavar="SET,SET", help="ladder: build and measure only these sets")
    ex.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ex.add_argument("--seeds", type=int, default=None, help="training seeds of the second-order network")
    ex.add_argument("--epochs", type=int, default=None, help="epochs of the second-order network")
    ex.add_argument("--folds", type=int, default=None, metavar="K",
                    help="classification, retrieval: K folds that test every model once and keep every "
                         "prediction, instead of random splits; branches, ablation: the first --seeds of K folds")
    ex.add_argument("--layers", default=None, metavar="I,J,...",
                    help="branches/ablation: 1-based conv layers to train (default: all)")
    ex.add_argument("--second-order-filters", type=int, default=None, metavar="G",
                    help="branches/ablation: second-order filters per branch (default: the layer's filter count)")
    ex.add_argument("--data-dir", default=None)
    _ray_arguments(ex, "ladder, modelset500: ")

    da = sub.add_parser("data", help="download or check CIFAR-100")
    da_sub = da.add_subparsers(dest="action", required=True)
    dd = da_sub.add_parser("download", help="download CIFAR-100 with torchvision (about 170 MB) into a folder")
    dd.add_argument("--data-dir", default=None,
                    help="folder to hold cifar-100-python/ (default: $LPSBOOK_DATA or data/)")
    dc = da_sub.add_parser("check", help="load and validate CIFAR-100, print a one-line summary")
    dc.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    return p


def _ray_arguments(parser, which: str = ""):
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help=f"{which}build on Ray: alone, a local instance; `auto`, the cluster this machine "
                             "is part of; host:port or ray://host:port, a cluster by address")
    parser.add_argument("--ray-cpus", type=int, default=1, metavar="N", help="CPUs each pack asks for (default 1)")
    parser.add_argument("--ray-gpus", type=float, default=0.0, metavar="F",
                        help="GPUs each pack asks for; a fraction shares one GPU (0.25: four packs)")


def _ray_options(args):
    """The ``--ray`` settings as :class:`lpsbook.training.distributed.RayOptions`, or None without ``--ray``."""
    if args.ray is None:
        return None
    from .training.distributed import RayOptions

    if args.ray_cpus < 1 or args.ray_gpus < 0:
        raise LpsbookError("--ray-cpus must be at least 1 and --ray-gpus at least 0")
    return RayOptions(None if args.ray == "local" else args.ray, args.ray_cpus, args.ray_gpus)


def _check_data_dir(args, create: bool = False):
    """LpsbookError if ``--data-dir`` is given but cannot hold the dataset (or, with ``create``,
    cannot be created to receive it)."""
    if args.data_dir is None:
        return
    path = Path(args.data_dir).expanduser()
    if path.exists():
        usable = path.is_dir() or (path.is_file() and path.suffix == ".npz")  # a folder, or the .npz itself
        problem = None if usable else f"{path} is a file, not a folder or a .npz file"
    else:  # a missing folder is reported by the dataset loader, unless a download is to create it
        problem = output_problem(path, folder=True) if create else None
    if problem:
        raise LpsbookError(f"--data-dir {problem}; point --data-dir at cifar100.npz or at the folder that "
                           "holds (or is to hold) cifar100.npz or cifar-100-python/.")


def _modelset(args):
    if args.action == "build":
        _check_data_dir(args, create=args.download)
        ray = _ray_options(args)
        if ray is None:
            out = modelset.build(args.preset, args.out, device=args.device, shard=args.shard,
                                 data_dir=args.data_dir, download=args.download, pack_size=args.pack_size)
        else:
            from .training.distributed import build_with_ray

            out = build_with_ray(args.preset, args.out, ray.address, "cpu" if args.device == "auto" else args.device,
                                 args.shard, args.data_dir, args.download, pack_size=args.pack_size, cpus=ray.cpus,
                                 gpus=ray.gpus)
        missing = len(modelset.pending_models(out, modelset.get_preset(args.preset)))
        print(f"{out}: {'complete' if not missing else f'{missing} models left for other shards'}")
    elif args.action == "import":
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            raise LpsbookError(f"--input-shape must be integers like 3,32,32, not {args.input_shape!r}") from None
        out = population.import_population(args.src, args.arch, args.labels, args.out, input_shape=shape)
        s = modelset.verify(out)
        print(f"{out}: {s['models']} models imported, all checksums match")
    elif args.action == "verify":
        s = modelset.verify(args.dir)
        print(f"{s['path']}: complete, {s['models']} models of preset {s['preset']} ({s['preset_hash']}), all checksums match")
    else:
        import pandas as pd

        table = modelset.info(args.dir)
        with pd.option_context("display.max_rows", None, "display.width", 120):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        if len(table):
            print(f"\n{int(table['models'].sum())} models in {len(table)} tasks")


def _experiment(args):
    _check_data_dir(args)
    if args.name == "ladder":
        return _ladder(args)
    if args.name == "modelset500":
        if args.only:
            raise LpsbookError("--only is for the ladder; modelset500 builds and measures one set")
        modelset500.run(args.out, modelset=args.modelset, device=args.device, data_dir=args.data_dir,
                        ray=_ray_options(args))
        print(f"results written to {Path(args.out) / modelset500.RESULTS_FILE}")
        return None
    if args.ray is not None:
        raise LpsbookError("--ray builds model sets: it is for `experiment ladder` and `experiment modelset500`")
    if args.modelset is None or args.only:
        raise LpsbookError(f"experiment {args.name} needs --modelset DIR (and --only is for the ladder only)")
    run_experiment(args.name, args.modelset, args.out, device=args.device, seeds=args.seeds,
                   epochs=args.epochs, data_dir=args.data_dir, layers=args.layers,
                   second_order_filters=args.second_order_filters, folds=args.folds)
    print(f"results written to {args.out}")


def _layers(text) -> list | None:
    """``--layers 1,2,5`` as a list of ints (their range is checked by :func:`lpsbook.protocols.paper.arguments`)."""
    if not text:
        return None
    try:
        return [int(i) for i in str(text).split(",")]
    except ValueError:
        raise LpsbookError(f"--layers must list conv layers like 1,2,5; got {text!r}") from None


FOLDED = ("classification", "retrieval", "branches", "ablation")  # the experiments that take --folds


def run_experiment(name, modelset_dir, out, device="auto", seeds=None, epochs=None, data_dir=None,
                   layers=None, second_order_filters=None, folds=None):
    """Load a model set, run protocol ``name``, write its JSON to ``out``.

    Every path is checked before the (possibly long) run starts; a path that
    cannot be used raises LpsbookError naming the argument.
    """
    import json

    if folds is not None and (name not in FOLDED or folds < 2):
        raise LpsbookError(f"--folds applies to {', '.join(FOLDED)} and must be 2 or more; got {folds} for {name}")
    modelset.check_modelset_dir(modelset_dir, "--modelset")
    out = Path(out).expanduser()
    for path, arg in ((out, "--out"), (Path(f"{out}.partial"), f"--out {out}: its checkpoint")):
        problem = output_problem(path, folder=False)
        if problem:
            raise LpsbookError(f"{arg} {problem}; give the path of a JSON file in a folder you can write to.")
    ms = modelset.load(modelset_dir)
    dev = resolve_device(device)
    settings = {"seeds": seeds, "config": {"epochs": epochs} if epochs is not None else None,
                "layers": _layers(layers), "second_order_filters": second_order_filters, "folds": folds}
    kwargs = paper.arguments(name, ms, {k: v for k, v in settings.items() if v is not None}, dev)
    if data_dir is not None and name in ("transferability", "similarity"):
        kwargs["dataset"] = load_dataset(ms.preset, data_dir)  # measured transfer and the probe images
    kwargs["checkpoint"] = Path(str(out) + ".partial")
    try:  # before the run: the checkpoint is written beside the results
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LpsbookError(f"--out {out}: could not create {out.parent} ({exc.strerror or exc}); "
                           "choose another --out.") from None
    result = paper.PROTOCOLS[name](ms, **kwargs)
    result.extras["modelset"] = str(modelset_dir)
    result.settings["device"] = str(dev)
    write_atomic(out, json.dumps(result.to_dict(), indent=1).encode())
    return result


def _ladder(args):
    names = args.only.split(",") if args.only else list(ladder.ORDER)
    unknown = sorted(set(names) - set(ladder.ORDER))
    if unknown:
        raise LpsbookError(f"--only: unknown set(s) {', '.join(unknown)}; choose from {', '.join(ladder.ORDER)}")
    problem = output_problem(args.out, folder=True)
    if problem:
        raise LpsbookError(f"--out {problem}; give a folder for {ladder.RESULTS_FILE}.")
    ladder.run(args.out, [n for n in ladder.ORDER if n in names], device=args.device, data_dir=args.data_dir,
               ray=_ray_options(args))
    print(f"results written to {Path(args.out) / ladder.RESULTS_FILE}")


def _data(args):
    import time

    if args.action == "download":
        _check_data_dir(args, create=True)
        root = data.download_cifar100(args.data_dir or data.default_data_dir())
        start = time.perf_counter()
        ds = data.load_cifar100_torchvision(root)
    else:
        _check_data_dir(args)
        start = time.perf_counter()
        ds = data.load_cifar100(args.data_dir or data.default_data_dir())
    seconds = time.perf_counter() - start
    print(f"CIFAR-100 ok: {ds.source}; {len(ds.train_images)} train + {len(ds.test_images)} test images "
          f"of {tuple(ds.train_images.shape[1:])}, {len(ds.class_names)} classes, "
          f"{len(ds.coarse_names)} superclasses; loaded in {seconds:.1f} s")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A damaged file the run repairs is one line (``lpsbook: warning: ...``); other warnings as Python shows them."""
    if issubclass(category, DamagedFileWarning):
        print(f"lpsbook: warning: {message}", file=sys.stderr)
    else:
        SHOW_WARNING(message, category, filename, lineno, file, line)


SHOW_WARNING = warnings.showwarning


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            {"modelset": _modelset, "experiment": _experiment, "data": _data}[args.command](args)
    except LpsbookError as exc:
        print(f"lpsbook: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path problem no check caught (a race, a full disk): still no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lpsbook: error: {where}{exc.strerror or exc}; check that path (its kind, permissions "
              "and free space) and run the same command again.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lpsbook: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
