"""Model sets on disk: build (resumable, sharded), verify, describe and load.

Layout of a model set folder::

    DIR/modelset.json              the preset, its hash, versions
    DIR/models/tTTT_sSS.safetensors  one model's state dict (never pickled)
    DIR/models/tTTT_sSS.json         its metadata, with the weights' sha256

Every file is written under a temporary name and renamed, and a model's JSON
is written after its weights, so a model counts as saved exactly when its JSON
exists.  A build killed at any moment and run again trains only the models
that were not saved; ``--shard K/N`` builds a disjoint part of the set so that
several processes or machines can fill one folder.
Both JSON files are sealed (:func:`lpsbook.core.store.seal`) and a model's JSON holds
its weights' sha256: :func:`verify` names a damaged file, :func:`build` trains its model again.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .. import __version__, code_version
from ..core import parallel
from ..core.data import default_cache_dir, load_dataset, normalise
from ..core.errors import LpsbookError
from ..core.nets import ResNet20, conv_layers
from ..core.presets import Preset, get_preset
from ..core.progress import bar as progress_bar
from ..core.runtime import cpu_model, mixed_precision, resolve_device
from ..core.symmetry import resnet20_spec
from ..core.store import DamagedFileWarning, os_fix, output_problem, read_sealed, seal, write_atomic
from .packed import Recipe, pack_size as auto_pack_size, packing, train_with_retries

SET_FILE = "modelset.json"
MODELS = "models"


def model_stem(task_id: int, seed: int) -> str:
    return f"t{task_id:03d}_s{seed:02d}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SEAL = "meta_sha256"  # the field of a model set's JSON files that holds their own checksum
RETRAIN = "run the build again on the folder to retrain that model"


def sealed_meta(meta: dict) -> bytes:
    """JSON of ``meta`` with a ``meta_sha256`` field over the rest of it (:func:`lpsbook.core.store.seal`)."""
    return seal(meta, SEAL)


def read_meta(path: Path, fix: str = RETRAIN) -> dict:
    """A sealed JSON file as written (with its checksum field); :class:`lpsbook.core.store.DamagedFile`
    (an LpsbookError naming the file, ending with ``fix``) if unreadable or altered."""
    meta = read_sealed(path, fix, SEAL)
    return {**meta, SEAL: sha256_hex(json.dumps(meta, sort_keys=True).encode())}


def parse_shard(text: str | None) -> tuple:
    """``"K/N"`` (0 <= K < N) to ``(K, N)``; ``None`` means the whole set."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        raise LpsbookError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}") from None
    return k, n


def _set_header(preset: Preset) -> dict:
    return {"kind": "lpsbook-modelset", "preset": preset.to_dict(), "preset_name": preset.name,
            "preset_hash": preset.hash, "architecture": "resnet20"}


def check_modelset_dir(path, flag: str = "") -> Path:
    """``path`` as a Path; LpsbookError unless it is a folder holding a model set's ``modelset.json``.

    ``flag`` (e.g. ``"--modelset"``) names the argument in the message.
    """
    path, arg = Path(path).expanduser(), f"{flag} {path}".strip()
    build = "build one with `lpsbook modelset build --preset NAME --out DIR`"
    if not path.exists():
        raise LpsbookError(f"{arg} does not exist; give the folder of a model set, or {build}.")
    if not path.is_dir():
        raise LpsbookError(f"{arg} is a file, not a model set folder; give the folder that holds {SET_FILE}.")
    if not (path / SET_FILE).is_file():
        raise LpsbookError(f"{arg} is not a model set: {SET_FILE} is missing ({build}).")
    try:
        ours = read_meta(path / SET_FILE).get("kind") == "lpsbook-modelset"
    except LpsbookError:
        ours = False
    if not ours:
        raise LpsbookError(f"{arg} is not a model set: {path / SET_FILE} is damaged or was not written by "
                           f"lpsbook; run `lpsbook modelset build --preset NAME --out {path}` with the preset "
                           "it was built with to write it again (the models saved are kept), or give another "
                           "folder.")
    return path


def _repair_header(out: Path, preset: Preset, damage: LpsbookError):
    """Write a damaged ``modelset.json`` again if ``models/`` is empty or every model that reads back
    whole (at least one) is of ``preset``; anything else may be someone else's folder: an LpsbookError."""
    models, hashes = out / MODELS, set()
    for meta_path in models.glob("t*_s*.json"):
        try:
            hashes.add(read_meta(meta_path).get("preset_hash"))
        except LpsbookError:
            pass
    empty = not any(p for p in models.iterdir() if not p.name.endswith(".tmp")) if models.is_dir() else True
    if hashes != {preset.hash} and not empty:
        raise LpsbookError(f"{str(damage).rstrip('.')}, and it cannot be written again for preset "
                           f"{preset.name!r}, because {models} does not hold only models of that preset; "
                           "choose another --out.")
    warnings.warn(f"{str(damage).rstrip('.')}; written again for preset {preset.name!r}, whose models the "
                  "folder holds", DamagedFileWarning, stacklevel=3)
    write_atomic(out / SET_FILE, sealed_meta(_set_header(preset)))


def _open_or_create(out: Path, preset: Preset):
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MODELS).mkdir(exist_ok=True)
    except OSError as exc:
        raise LpsbookError(f"could not create the model set folder {out} ({exc.strerror or exc}): "
                           f"{os_fix(exc)}.") from None
    path = out / SET_FILE
    if path.is_file():
        try:
            header = read_meta(path, "")
        except LpsbookError as exc:
            _repair_header(out, preset, exc)
            return
        if header.get("preset_hash") != preset.hash:
            raise LpsbookError(
                f"{out} holds a model set of preset {header.get('preset_name')!r} "
                f"(hash {header.get('preset_hash')}), not {preset.name!r} (hash {preset.hash}); "
                "choose another --out.")
    else:
        write_atomic(path, sealed_meta(_set_header(preset)))


def _clean_stale_temporaries(folder: Path):
    """Remove temporary files left by processes that no longer run."""
    for tmp in folder.glob(".*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, IndexError):
            pass


def provenance(preset: Preset, device) -> dict:
    """Where and how a model is trained: device, host, CPU, GPU, precision, versions (recorded with it)."""
    return {"lpsbook_version": __version__, "torch_version": torch.__version__, "device": str(device),
            "host": platform.node(), "cpu": cpu_model(), "code_version": code_version(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "precision": "bf16" if mixed_precision(preset, device) else "float32"}


def save_model(out: Path, preset: Preset, dataset, trained, train_seed: int, seconds: float, where: dict):
    """Write one trained model into the set at ``out`` (weights, then its sealed JSON); ``where`` is the
    :func:`provenance` of the process that trained it."""
    stem = model_stem(trained.task_id, trained.seed)
    blob = st_save({k: v.contiguous() for k, v in trained.state.items()})
    write_atomic(out / MODELS / f"{stem}.safetensors", blob)
    a, b = preset.tasks[trained.task_id]
    meta = {
        "task_id": trained.task_id, "classes": [a, b],
        "class_names": [dataset.class_names[a], dataset.class_names[b]],
        "seed": trained.seed, "train_seed": train_seed,
        "train_acc": trained.train_acc, "test_acc": trained.test_acc,
        "preset_name": preset.name, "preset_hash": preset.hash, **where, "train_seconds": round(seconds, 4),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights_file": f"{stem}.safetensors", "weights_sha256": sha256_hex(blob),
    }
    write_atomic(out / MODELS / f"{stem}.json", sealed_meta(meta))


def pending_models(out, preset) -> list:
    """(task_id, seed) of every model of ``preset`` not yet saved in ``out``."""
    folder = Path(out) / MODELS
    return [(t, s) for t in range(len(preset.tasks)) for s in range(preset.seeds)
            if not (folder / f"{model_stem(t, s)}.json").exists()]


def model_problem(path, preset: Preset, task_id: int, seed: int) -> str | None:
    """Why model (task, seed) of ``preset`` in the set at ``path`` cannot be used (missing, damaged,
    foreign, or weights whose sha256 is not the one its JSON records); None when it is whole."""
    stem = model_stem(task_id, seed)
    meta_path = Path(path) / MODELS / f"{stem}.json"
    try:
        meta = read_meta(meta_path, "")
    except FileNotFoundError:
        return f"missing model {stem} (resume the build to train it)"
    except LpsbookError as exc:
        return str(exc)
    if meta.get("preset_hash") != preset.hash or (meta.get("task_id"), meta.get("seed")) != (task_id, seed):
        return f"{meta_path} is foreign: it belongs to another preset or model"
    weights = Path(path) / MODELS / str(meta.get("weights_file"))
    try:
        blob = weights.read_bytes()
    except FileNotFoundError:
        return f"missing weights file {weights}"
    except OSError as exc:
        return f"{weights} could not be read ({exc.strerror or exc})"
    if sha256_hex(blob) != meta.get("weights_sha256"):
        return f"{weights} is corrupt or truncated (sha256 does not match)"
    return None


def refuse_mixed_precision(out: Path, preset: Preset, device, saved):
    """LpsbookError if the models already in ``out`` were trained in another precision than this
    build would train in (bf16 on one machine, float32 on another): one preset hash, one precision."""
    mine = "bf16" if mixed_precision(preset, device) else "float32"
    theirs = {}
    for t, s in saved:
        meta = read_meta(out / MODELS / f"{model_stem(t, s)}.json")
        theirs.setdefault(meta.get("precision", "float32"), meta.get("cpu") or meta.get("device"))
    other = {p: where for p, where in theirs.items() if p != mine}
    if other:
        (prec, where), = list(other.items())[:1]
        raise LpsbookError(
            f"{out} holds models trained in {prec} (on {where}), but this machine would train the rest in "
            f"{mine} ({device}{'' if mine == 'bf16' else ', no native bf16'}); one model set keeps one "
            f"precision. Resume it on a machine that trains in {prec} (a GPU, or a CPU with AVX-512 BF16 or "
            f"AMX), or build the preset into another --out.")


def plan_build(preset: Preset, out: Path, shard=None) -> tuple:
    """What a build of ``preset`` (or one shard of it) into ``out`` has to train: ``(todo, kept)``, the
    (task, seed) pairs to train (missing or damaged) and those saved whole. Checks ``out``, writes the
    set's header and removes damaged models' metadata (they are trained again)."""
    k, n = shard if isinstance(shard, tuple) else parse_shard(shard)
    order = [(t, s) for t in range(len(preset.tasks)) for s in range(preset.seeds)]
    mine = {job for i, job in enumerate(order) if i % n == k}
    todo = [job for job in pending_models(out, preset) if job in mine]
    saved = sorted(mine - set(todo)) if (out / MODELS).is_dir() else []
    damaged = {job: why for job in saved for why in [model_problem(out, preset, *job)] if why}
    if todo or damaged or not (out / SET_FILE).is_file():  # something to write: check first, not after training
        problem = output_problem(out, folder=True)
        if problem:
            raise LpsbookError(f"--out {problem}; choose another --out (a folder, created if missing).")
    _open_or_create(out, preset)
    _clean_stale_temporaries(out / MODELS)
    for (t, s), why in damaged.items():  # trained again, as if never saved
        warnings.warn(f"{why.rstrip('.')}: model {model_stem(t, s)} is trained again", DamagedFileWarning,
                      stacklevel=2)
        (out / MODELS / f"{model_stem(t, s)}.json").unlink(missing_ok=True)
    return sorted(set(todo) | set(damaged)), [job for job in saved if job not in damaged]


def build(preset, out, device="auto", shard=None, data_dir=None, download=False,
          progress=True, pack_size=None) -> Path:
    """Train and save every model of ``preset`` (or of one shard) into ``out``.

    Resumes where an earlier build stopped: saved models are not trained again. Models whose loss became
    NaN/inf are retrained with the next seed (``seed + 1000 * attempt``), three attempts at most.

    Parameters
    ----------
    preset : str or Preset
    out : path of the model set folder
    device : "auto", "cpu" or "cuda"
    shard : "K/N" or (K, N), optional
        Build only the models whose index (task-major order) is K modulo N.
    data_dir, download : where the source dataset is, and whether to fetch it.
    pack_size : int, optional
        Models trained together; by default from the preset and the device.
    """
    preset = get_preset(preset)
    out = Path(out).expanduser()
    todo, kept = plan_build(preset, out, shard)
    if not todo:
        return out
    dev = resolve_device(device)
    refuse_mixed_precision(out, preset, dev, kept)
    dataset = load_dataset(preset, data_dir, download)
    recipe = Recipe(preset, dataset.to(dev) if dev.type == "cuda" else dataset, dev)
    size = packing(len(todo), pack_size or auto_pack_size(preset, dev, dataset.train_images.shape[-1]))
    packs = [todo[start:start + size] for start in range(0, len(todo), size)]
    processes = parallel.workers(len(packs)) if dev.type == "cpu" else 1  # workers: packs trained side by side
    where = {**provenance(preset, dev), "threads": 1 if processes > 1 else torch.get_num_threads(), "workers": processes}
    bar = progress_bar(total=len(todo), unit="model", desc=f"{preset.name} models", disable=not progress,
               bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")
    try:
        if processes == 1:  # one pack after another here, the bar moving with every step
            for pack in packs:
                for res, train_seed, seconds in train_with_retries(preset, dataset, pack, dev, bar, recipe):
                    save_model(out, preset, dataset, res, train_seed, seconds, where)
        else:  # packs side by side in forked processes (one thread each), each saved here as it ends
            work = lambda pack: list(train_with_retries(preset, dataset, pack, dev, recipe=recipe))  # noqa: E731
            for _, trained in parallel.imap(work, packs, processes):
                for res, train_seed, seconds in trained:
                    save_model(out, preset, dataset, res, train_seed, seconds, where)
                bar.update(len(trained))
    finally:
        bar.close()
    return out


def verify(path) -> dict:
    """Check that ``path`` holds a complete model set whose checksums all match.

    Returns a summary dict; raises LpsbookError naming every problem found
    (missing, corrupt, truncated or foreign files).
    """
    path = check_modelset_dir(path)
    imported = _imported(path)
    if imported:
        return imported[0].verify(path, imported[1])
    preset = _preset_of(path)
    jobs = [(t, s) for t in range(len(preset.tasks)) for s in range(preset.seeds)]
    problems = [why for job in jobs for why in [model_problem(path, preset, *job)] if why]
    expected = {f"{model_stem(*job)}{ext}" for job in jobs for ext in (".json", ".safetensors")}
    listing = (path / MODELS).iterdir() if (path / MODELS).is_dir() else ()
    foreign = sorted(p.name for p in listing if p.name not in expected and not p.name.endswith(".tmp"))
    problems += [f"foreign file {path / MODELS / name} does not belong to this model set" for name in foreign]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise LpsbookError(f"model set {path} failed verification ({len(problems)} problems):\n  {shown}{more}\n"
                           f"`lpsbook modelset build --preset {preset.name} --out {path}` trains the missing and "
                           "damaged models again.")
    return {"path": str(path), "preset": preset.name, "preset_hash": preset.hash, "models": preset.num_models}


def _imported(path: Path):
    """``(the population module, the header)`` when ``path`` holds an imported population, else None."""
    header = read_meta(path / SET_FILE)
    if header.get("architecture") != "imported":
        return None
    from . import population  # it builds on this module

    return population, header


def _preset_of(path: Path) -> Preset:
    """The preset a model set's ``modelset.json`` records (the folder is checked already)."""
    header = read_meta(path / SET_FILE)
    try:
        return Preset.from_dict(header["preset"])
    except (KeyError, TypeError, ValueError):
        raise LpsbookError(f"{path / SET_FILE} does not describe a preset lpsbook knows (written by another "
                           "version?); build the model set again into another folder.") from None


def _retrain(path: Path, preset: Preset) -> str:
    return f"`lpsbook modelset build --preset {preset.name} --out {path}` trains that model again"


def _read_metadata(path: Path, preset: Preset) -> pd.DataFrame:
    rows = [read_meta(path / MODELS / f"{model_stem(t, s)}.json", _retrain(path, preset))
            for t in range(len(preset.tasks)) for s in range(preset.seeds)]
    return pd.DataFrame(rows)


def info(path) -> pd.DataFrame:
    """Per-task table of a (possibly incomplete) model set."""
    path = check_modelset_dir(path)
    imported = _imported(path)
    fix = "import it again" if imported else _retrain(path, _preset_of(path))
    rows = [read_meta(p, fix) for p in sorted((path / MODELS).glob("t*_s*.json"))]
    if not rows:
        return pd.DataFrame(columns=["task_id", "classes", "models", "test_acc_mean", "test_acc_min"])
    meta = pd.DataFrame(rows)
    if imported:  # the task is the label the user gave; accuracies are theirs (maybe absent)
        meta["test_acc"] = meta["test_acc"].astype(float)
        return (meta.groupby(["task_id", "task"]).agg(models=("seed", "count"), test_acc_mean=("test_acc", "mean"),
                                                       test_acc_min=("test_acc", "min")).reset_index())
    meta["classes"] = meta["classes"].map(tuple)
    return (meta.groupby(["task_id", "classes"])
            .agg(models=("seed", "count"), train_acc_mean=("train_acc", "mean"),
                 test_acc_mean=("test_acc", "mean"), test_acc_min=("test_acc", "min"))
            .reset_index())


@dataclass
class ModelSet:
    """A loaded model set.

    Attributes
    ----------
    path : Path
    preset : Preset
    meta : pandas.DataFrame
        One row per model (task-major order): task_id, classes, seed,
        train/test accuracy, checksums, versions.
    state : dict of str -> Tensor
        Every state-dict entry stacked over models, ``[models, ...]``.
    """

    path: Path
    preset: Preset
    meta: pd.DataFrame
    state: dict

    @property
    def layers(self) -> list:
        """The 19 3x3 conv layers (the paper's branches), in order."""
        return conv_layers()

    @property
    def conv_weights(self) -> dict:
        """{layer name: tensor [models, out, in, k, k]} for the 19 3x3 convs."""
        return {name: self.state[name] for name in self.layers}

    @property
    def spec(self):
        """The permutation symmetry of its networks (:func:`lpsbook.core.symmetry.resnet20_spec`)."""
        return resnet20_spec()

    @property
    def task_ids(self) -> torch.Tensor:
        return torch.tensor(self.meta["task_id"].to_numpy(), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.meta)

    def state_dict(self, i: int) -> dict:
        return {k: v[i].clone() for k, v in self.state.items()}

    def index_of(self, task_id: int, seed: int) -> int:
        """Row of model (task, seed)."""
        rows = np.flatnonzero((self.meta["task_id"].to_numpy() == task_id) & (self.meta["seed"].to_numpy() == seed))
        if len(rows) != 1:
            raise LpsbookError(f"the model set has no model of task {task_id} with seed {seed}")
        return int(rows[0])

    def task_names(self, task_id: int) -> str:
        """``"baby vs bear"``: the names of a task's two classes (their indices when the data are absent)."""
        a, b = self.preset.tasks[task_id]
        try:
            names = load_dataset(self.preset).class_names
        except LpsbookError:
            return f"{a} vs {b}"
        return f"{names[a]} vs {names[b]}"

    def task_label(self, task_id: int) -> str:
        """``"task 3 (0 vs 4)"``, ``"task 1 (baby vs bear)"``: a task and its two classes, by name."""
        return f"task {task_id} ({self.task_names(task_id)})"

    def test_set(self, task_id: int) -> tuple:
        """The normalised test images of a task and their 0/1 labels (1 = the task's second class)."""
        ds = load_dataset(self.preset)
        task = self.preset.tasks[task_id]
        idx = ds.task_indices(task, "test")
        return normalise(ds.test_images[idx], ds.mean, ds.std), (ds.test_labels[idx] == task[1]).long()

    def model(self, i: int) -> ResNet20:
        """Model ``i`` rebuilt as an nn.Module in eval mode."""
        net = ResNet20(self.preset.width, self.preset.in_channels)
        net.load_state_dict(self.state_dict(i))
        return net.eval()

    def state_of(self, rows) -> dict:
        """The stacked weights ``{name: [len(rows), ...]}`` of the models at positions ``rows``."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return {k: v[idx] for k, v in self.state.items()}

    def subset(self, rows) -> "ModelSet":
        """The models at positions ``rows`` (a list or boolean mask)."""
        idx = torch.tensor(np.asarray(rows))
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        return ModelSet(self.path, self.preset, self.meta.iloc[idx.numpy()].reset_index(drop=True),
                        {k: v[idx] for k, v in self.state.items()})


def _recipe_hash(preset: Preset) -> str:
    """The hash of everything but which tasks a preset holds and what it is called."""
    return preset.with_(name="", tasks=(), task_numbers=(), pack_size_cpu=1).hash


def same_recipe(a, b) -> bool:
    """Whether presets ``a`` and ``b`` train the same way (they may hold other tasks): :func:`extract`
    copies models between them."""
    return _recipe_hash(get_preset(a)) == _recipe_hash(get_preset(b))


def extract(source, preset, out) -> Path:
    """Write into ``out`` the models of ``preset`` that model set ``source`` already holds.

    ``preset`` and ``source``'s preset must be the same recipe; a task counts
    as the same when its classes and its seeding (``Preset.task_number``)
    agree, so a few tasks seeded as in a larger set (``task_numbers``) share
    that set's models, in either direction: a rung taken from the 50-task
    set, or the 50-task set started from a rung built first. The weights
    files are copied after their checksum is checked, and the metadata is
    re-keyed to ``preset`` (saying where it came from). Models already in
    ``out``, or missing from ``source``, are left alone; returns ``out``.
    """
    source = check_modelset_dir(source)
    src_preset = _preset_of(source)
    preset = get_preset(preset)
    if _recipe_hash(src_preset) != _recipe_hash(preset):
        raise LpsbookError(f"preset {preset.name!r} and {source}'s preset {src_preset.name!r} are not the same "
                           "recipe; build it instead.")
    where = {(tuple(task), src_preset.task_number(t)): t for t, task in enumerate(src_preset.tasks)}
    out = Path(out).expanduser()
    _open_or_create(out, preset)
    for t, s in pending_models(out, preset):
        t_src = where.get((tuple(preset.tasks[t]), preset.task_number(t)))
        meta_path = source / MODELS / f"{model_stem(t_src, s)}.json" if t_src is not None else None
        if meta_path is None or s >= src_preset.seeds or not meta_path.exists():
            continue
        problem = model_problem(source, src_preset, t_src, s)
        if problem:  # left to the build of ``out``, which trains it
            warnings.warn(f"{problem.rstrip('.')}: not copied into {out}, its build trains it", DamagedFileWarning,
                          stacklevel=2)
            continue
        meta = read_meta(meta_path)
        blob = (source / MODELS / meta["weights_file"]).read_bytes()
        stem = model_stem(t, s)
        write_atomic(out / MODELS / f"{stem}.safetensors", blob)
        meta.update(task_id=t, weights_file=f"{stem}.safetensors", preset_name=preset.name,
                    preset_hash=preset.hash, copied_from=f"{src_preset.name}-{src_preset.hash}")
        write_atomic(out / MODELS / f"{stem}.json", sealed_meta(meta))
    return out


def load(path, check: bool = True) -> ModelSet:
    """Load a complete model set (verifying every checksum unless ``check=False``)."""
    path = check_modelset_dir(path)
    imported = _imported(path)
    if imported:
        return imported[0].load(path, imported[1], check)
    if check:
        verify(path)
    preset = _preset_of(path)
    meta = _read_metadata(path, preset)
    expected = ResNet20(preset.width, preset.in_channels).state_dict()
    stacks = {k: [] for k in expected}
    for name in meta["weights_file"]:
        try:
            tensors = st_load((path / MODELS / name).read_bytes())
        except (OSError, SafetensorError) as exc:
            raise LpsbookError(f"{path / MODELS / name} could not be read as safetensors ({exc}); "
                               f"`lpsbook modelset verify {path}` names every damaged file, and "
                               f"`lpsbook modelset build --preset {preset.name} --out {path}` trains them "
                               "again.") from None
        if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
            raise LpsbookError(f"{path / MODELS / name} does not hold a ResNet-20 of width "
                               f"{preset.width} with {preset.in_channels} input channels (wrong architecture)")
        for k in stacks:
            stacks[k].append(tensors[k])
    return ModelSet(path, preset, meta, {k: torch.stack(v) for k, v in stacks.items()})


def cache_dir(preset: Preset, root=None) -> Path:
    """Where the book keeps the model set of ``preset`` (keyed by its hash)."""
    return Path(root or default_cache_dir()) / "modelsets" / f"{preset.name}-{preset.hash}"


def build_on(preset, out, device="auto", data_dir=None, progress=True, ray=None) -> Path:
    """:func:`build` in this process, or on a Ray cluster when ``ray`` is a
    :class:`lpsbook.training.distributed.RayOptions` (see :func:`lpsbook.training.distributed.build_with_ray`)."""
    if ray is None:
        return build(preset, out, device=device, data_dir=data_dir, progress=progress)
    from .distributed import build_with_ray  # it builds on this module

    return build_with_ray(preset, out, ray.address, device="cpu" if device == "auto" else device,
                          data_dir=data_dir, progress=progress, cpus=ray.cpus, gpus=ray.gpus)


def ensure(preset, root=None, device="auto", data_dir=None, progress=True, ray=None) -> ModelSet:
    """Load the cached model set of ``preset``, building (or finishing) it first if needed (on a Ray
    cluster with ``ray``, :func:`build_on`).

    A set that fails verification (a damaged file) is built again, which
    trains the damaged models again (:func:`build`), then loaded.
    """
    preset = get_preset(preset)
    path = cache_dir(preset, root)
    if not (path / SET_FILE).exists() or pending_models(path, preset):
        build_on(preset, path, device, data_dir, progress, ray)
    try:
        return load(path)
    except LpsbookError:
        build_on(preset, path, device, data_dir, progress, ray)
        return load(path)
