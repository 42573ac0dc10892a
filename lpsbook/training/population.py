"""Your own models as a model set: a folder of checkpoints of any conv architecture, imported.

:func:`import_population` reads one checkpoint per model (safetensors, or a PyTorch state dict that
``torch.load(..., weights_only=True)`` accepts), a CSV that gives each file its task (and optionally its
seed, accuracy and related group), and the architecture as ``MODULE:CALLABLE``. It checks everything
before writing anything, derives the architecture's permutation symmetry from its graph
(:func:`lpsbook.core.derived_spec.derive_spec`) and checks it, then writes a model set in the same
layout as the ones lpsbook builds (``modelset.json`` plus one safetensors file and one sealed JSON per
model), so that :func:`lpsbook.training.modelset.load` and :func:`~lpsbook.training.modelset.verify`
read it and every weight-space method and protocol runs on it.

The CSV::

    file,task,seed,accuracy,group
    run-a/final.safetensors,cats-vs-dogs,0,0.91,animals
    run-b/final.pt,cats-vs-dogs,1,0.89,animals

``file`` (relative to the source folder) and ``task`` are required; ``seed`` defaults to the order of a
task's rows, ``accuracy`` and ``group`` to empty.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .. import __version__, code_version
from ..core.derived_spec import check_spec, derive_spec
from ..core.errors import LpsbookError
from ..core.progress import bar as progress_bar
from ..core.store import write_atomic
from ..core.symmetry import PermutationSpec
from .modelset import MODELS, SET_FILE, ModelSet, model_stem, read_meta, sealed_meta, sha256_hex

ARCHITECTURE = "imported"  # the ``architecture`` field of an imported set's modelset.json
CHECKPOINTS = (".safetensors", ".pt", ".pth", ".bin")
COLUMNS = ("file", "task", "seed", "accuracy", "group")


@dataclass(frozen=True)
class ImportedRecipe:
    """What an imported set has in place of a preset: its tasks, its architecture and a hash of both."""

    name: str
    hash: str
    tasks: tuple
    seeds: int
    arch: str
    dataset: str = "imported"  # no dataset: methods that run models on images say so
    follows_paper: bool = False

    @property
    def num_models(self) -> int:
        return len(self.tasks) * self.seeds


class Population(ModelSet):
    """An imported model set: a :class:`~lpsbook.training.modelset.ModelSet` of any architecture, with the
    spec derived from its graph and its conv layers read from its weights."""

    def __init__(self, path, preset, meta, state, header):
        super().__init__(path, preset, meta, state)
        self.header = header

    @property
    def layers(self) -> list:
        """Its convolutions with a spatial kernel (the paper's branches), in the order of the state dict."""
        return list(self.header["conv_layers"])

    @property
    def spec(self) -> PermutationSpec:
        return spec_from_json(self.header["spec"])

    def task_names(self, task_id: int) -> str:
        return str(self.preset.tasks[task_id])

    def model(self, i: int) -> torch.nn.Module:
        net = resolve_arch(self.preset.arch)()
        net.load_state_dict(self.state_dict(i))
        return net.eval()

    def test_set(self, task_id: int):
        raise LpsbookError(f"{self.path} is a population imported from checkpoints: lpsbook has no test "
                           "images of its tasks")

    def subset(self, rows) -> "Population":
        sub = super().subset(rows)
        return Population(sub.path, sub.preset, sub.meta, sub.state, self.header)


def resolve_arch(arch):
    """The callable that builds the architecture: ``arch`` itself, or ``"MODULE:CALLABLE"`` imported."""
    if callable(arch):
        return arch
    module, _, name = str(arch).partition(":")
    if not module or not name:
        raise LpsbookError(f"--arch must be MODULE:CALLABLE (for example torchvision.models:resnet18), not {arch!r}")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise LpsbookError(f"--arch {arch}: module {module!r} cannot be imported ({exc})") from None
    except AttributeError:
        raise LpsbookError(f"--arch {arch}: {module!r} has no {name!r}") from None
    if not callable(obj):
        raise LpsbookError(f"--arch {arch}: {name!r} is not callable")
    return obj


def spec_to_json(spec: PermutationSpec) -> dict:
    return {name: [list(p) for p in pairs] for name, pairs in spec.perm_to_axes.items()}


def spec_from_json(data: dict) -> PermutationSpec:
    return PermutationSpec({name: [tuple(p) for p in pairs] for name, pairs in data.items()})


def _read_labels(labels) -> pd.DataFrame:
    labels = Path(labels).expanduser()
    try:
        table = pd.read_csv(labels, dtype={"file": str, "task": str, "group": str})
    except FileNotFoundError:
        raise LpsbookError(f"--labels {labels} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LpsbookError(f"--labels {labels} is not a CSV file lpsbook can read ({exc})") from None
    unknown = sorted(set(table.columns) - set(COLUMNS))
    missing = [c for c in ("file", "task") if c not in table.columns]
    if unknown or missing:
        raise LpsbookError(f"--labels {labels}: columns are {', '.join(COLUMNS)} (file and task required); "
                           f"found {list(table.columns)}")
    if table.empty or table[["file", "task"]].isna().any().any():
        raise LpsbookError(f"--labels {labels}: every row needs a file and a task (empty cells or no rows)")
    dup = table["file"][table["file"].duplicated()].tolist()
    if dup:
        raise LpsbookError(f"--labels {labels} lists {dup[0]} more than once")
    if "seed" not in table:
        table["seed"] = table.groupby("task", sort=False).cumcount()
    try:
        table["seed"] = table["seed"].astype(int)
        table["accuracy"] = table["accuracy"].astype(float) if "accuracy" in table else np.nan
    except (ValueError, TypeError):
        raise LpsbookError(f"--labels {labels}: seed must be an integer and accuracy a number") from None
    clash = table[table.duplicated(["task", "seed"])]
    if len(clash):
        row = clash.iloc[0]
        raise LpsbookError(f"--labels {labels}: task {row['task']!r} has seed {row['seed']} twice")
    if "group" not in table:
        table["group"] = None
    return table


def _read_checkpoint(path: Path) -> dict:
    """A plain ``{name: tensor}`` state dict from a safetensors or weights-only PyTorch file."""
    try:
        if path.suffix == ".safetensors":
            state = st_load(path.read_bytes())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LpsbookError(f"{path} is not a plain state dict of tensors (safetensors, or a PyTorch file that "
                           f"torch.load(weights_only=True) accepts): {first}") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise LpsbookError(f"{path} holds {type(state).__name__}, not a state dict {{name: tensor}} (save "
                           "model.state_dict() itself, not a wrapper around it)")
    return state


def _fits(net: torch.nn.Module, state: dict, path: Path, arch: str):
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:4])
        raise LpsbookError(f"{path} does not fit {arch}: {detail}") from None


def conv_layer_keys(state: dict) -> list:
    """The weights of convolutions with a spatial kernel (4-D, kernel larger than 1x1), in order."""
    return [k for k, v in state.items() if k.endswith("weight") and v.dim() == 4 and v.shape[2] * v.shape[3] > 1]


def import_population(src, arch, labels, out, input_shape=(3, 32, 32), progress: bool = True) -> Path:
    """Import the checkpoints in ``src`` as a model set in ``out`` (see the module notes).

    ``arch`` is ``"MODULE:CALLABLE"`` (or the callable), called without arguments to build one model;
    ``input_shape`` is one input's shape, for tracing the graph. Everything is read and checked before
    anything is written, and ``out`` appears only complete. Returns ``out``.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise LpsbookError(f"{src} is not a folder of checkpoints")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LpsbookError(f"--out {out} exists and is not an empty folder; choose another --out")
    factory = resolve_arch(arch)
    arch_name = arch if isinstance(arch, str) else f"{factory.__module__}:{factory.__qualname__}"
    table = _read_labels(labels)
    on_disk = {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and p.suffix in CHECKPOINTS}
    missing, extra = sorted(set(table["file"]) - on_disk), sorted(on_disk - set(table["file"]))
    if missing or extra:
        raise LpsbookError(f"{labels} and {src} do not match: " + "; ".join(
            f"{len(v)} {what} (e.g. {', '.join(v[:3])})" for what, v in
            (("files listed but not in the folder", missing), ("checkpoints in the folder not listed", extra)) if v))
    net = factory()
    if not isinstance(net, torch.nn.Module):
        raise LpsbookError(f"--arch {arch_name} returned {type(net).__name__}, not a torch.nn.Module")
    tasks = tuple(sorted(table["task"].unique()))
    table["task_id"] = table["task"].map({t: i for i, t in enumerate(tasks)})
    table = table.sort_values(["task_id", "seed"]).reset_index(drop=True)
    table["seed"] = table.groupby("task_id").cumcount()  # 0..n-1 within each task, as built sets number them
    states = []
    for f in progress_bar(table["file"], desc="reading checkpoints", unit="model", disable=not progress):
        state = _read_checkpoint(src / f)
        _fits(net, state, src / f, arch_name)
        states.append((state, sha256_hex((src / f).read_bytes())))
    example = torch.zeros(2, *input_shape)
    spec = derive_spec(net, example)
    check_spec(net, spec, example)
    convs = conv_layer_keys(states[0][0])
    if not convs:
        raise LpsbookError(f"{arch_name} has no convolution with a spatial kernel: nothing for LPS to read")
    seeds = int(table.groupby("task_id").size().max())
    header = {"kind": "lpsbook-modelset", "architecture": ARCHITECTURE, "arch": arch_name,
              "input_shape": list(input_shape), "tasks": list(tasks), "seeds": seeds, "models": len(table),
              "conv_layers": convs, "spec": spec_to_json(spec), "source": str(src.resolve()),
              "lpsbook_version": __version__, "torch_version": torch.__version__, "code_version": code_version(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    # the hash that keys cached results: the architecture, the tasks and every checkpoint's content
    header["preset_hash"] = hashlib.sha256(repr((arch_name, tasks, seeds, [sha for _, sha in states])).encode()
                                           ).hexdigest()[:16]
    header["preset_name"] = f"imported-{arch_name.rsplit(':', 1)[-1]}"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / MODELS).mkdir(parents=True)
        for row, (state, source_sha) in zip(table.itertuples(), states):
            stem = model_stem(int(row.task_id), int(row.seed))
            blob = st_save({k: v.contiguous() for k, v in state.items()})
            write_atomic(tmp / MODELS / f"{stem}.safetensors", blob)
            meta = {"task_id": int(row.task_id), "task": row.task, "seed": int(row.seed),
                    "test_acc": None if pd.isna(row.accuracy) else float(row.accuracy),
                    "group": None if pd.isna(row.group) else str(row.group), "source_file": row.file,
                    "source_sha256": source_sha, "preset_name": header["preset_name"],
                    "preset_hash": header["preset_hash"], "weights_file": f"{stem}.safetensors",
                    "weights_sha256": sha256_hex(blob)}
            write_atomic(tmp / MODELS / f"{stem}.json", sealed_meta(meta))
        write_atomic(tmp / SET_FILE, sealed_meta(header))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LpsbookError(f"could not write {out} ({exc.strerror or exc})") from None
    return out


def is_imported(header: dict) -> bool:
    return header.get("architecture") == ARCHITECTURE


def _recipe(header: dict) -> ImportedRecipe:
    return ImportedRecipe(header["preset_name"], header["preset_hash"], tuple(header["tasks"]), int(header["seeds"]),
                          header["arch"])


def _metas(path: Path) -> list:
    return [read_meta(p, "import the population again") for p in sorted((path / MODELS).glob("t*_s*.json"))]


def verify(path: Path, header: dict) -> dict:
    """Every model of an imported set present and matching its checksum; LpsbookError naming each problem."""
    metas, problems = _metas(path), []
    for meta in metas:
        weights = path / MODELS / meta["weights_file"]
        if not weights.is_file():
            problems.append(f"{weights} is missing")
        elif sha256_hex(weights.read_bytes()) != meta["weights_sha256"]:
            problems.append(f"{weights} does not match its checksum")
    if len(metas) != header["models"]:
        problems.append(f"{len(metas)} models where {header['models']} were imported")
    if problems:
        raise LpsbookError(f"imported set {path} failed verification: {'; '.join(problems[:5])}; import it again")
    return {"path": str(path), "preset": header["preset_name"], "preset_hash": header["preset_hash"],
            "models": header["models"]}


def load(path: Path, header: dict, check: bool = True) -> Population:
    """An imported set as a :class:`Population` (checked first unless ``check=False``)."""
    if check:
        verify(path, header)
    meta = pd.DataFrame(_metas(path))
    stacks = {}
    for name in meta["weights_file"]:
        for k, v in st_load((path / MODELS / name).read_bytes()).items():
            stacks.setdefault(k, []).append(v)
    return Population(path, _recipe(header), meta, {k: torch.stack(v) for k, v in stacks.items()}, header)
