"""Model sets built on a Ray cluster: workers train, the driver writes.

:func:`build_with_ray` plans the build as :func:`lpsbook.training.modelset.build` does (only what is
missing or damaged), puts the training data once into Ray's object store, and submits one Ray task per
pack of models. A task declares what it needs (``cpus`` CPUs, or a fraction of a GPU so that several
packs share one), trains its pack from the object store and returns the weights, accuracies and where
it ran; workers need no shared folder. The driver alone writes each returned model with the same atomic,
sealed files as a single-process build, as soon as its pack returns.

* A worker that dies mid-task: Ray runs the task again (``max_retries``); nothing half-written appears,
  because workers write nothing.
* The driver killed: the packs already returned are saved; a rerun trains only the rest.
* The same preset built through Ray and in one process gives the same checksums where training is
  deterministic: float32, the same CPU model and the same number of threads per pack (a task runs with
  as many threads as CPUs it asked for; a different thread count can change the order of float sums in
  the convolutions, and with it the last bits of the weights).

Addresses: ``None`` starts a local Ray instance on this machine (its CPUs, and its GPUs if any);
``"auto"`` joins the cluster this machine is part of (``ray start`` was run here, or ``RAY_ADDRESS`` is
set); ``"host:port"`` or ``"ray://host:port"`` joins one by address. The address is probed first, so a
wrong one is an error within seconds, not Ray's minutes of retries. Ray's token authentication stays
on: the token comes from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..core.data import load_dataset
from ..core.errors import LpsbookError
from ..core.memo import Memo
from ..core.presets import Preset, get_preset
from ..core.progress import bar as progress_bar
from ..core.runtime import resolve_device
from .modelset import MODELS, model_stem, plan_build, provenance, read_meta, save_model
from .packed import Recipe, packing, train_with_retries
from .packed import pack_size as auto_pack_size

PROBE_SECONDS = 5.0  # how long an address may take to answer before it counts as down
TASK_RETRIES = 3  # times Ray runs a pack again after its worker died


@dataclass(frozen=True)
class RayOptions:
    """How to build on Ray: the cluster's ``address`` (None: a local instance) and what each pack asks for."""

    address: str | None = None
    cpus: int = 1
    gpus: float = 0.0


def _ray():
    try:
        import ray
    except ImportError:
        raise LpsbookError("Ray is not installed: `pip install 'lpsbook[ray]'` (or `make setup`), then run "
                           "the same command again") from None
    return ray


def _current_cluster() -> str | None:
    """The address ``ray start`` left for this machine (or ``$RAY_ADDRESS``), if any."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    marker = Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    return marker.read_text().strip() or None if marker.is_file() else None


def _probe(address: str):
    """LpsbookError within :data:`PROBE_SECONDS` unless something listens at ``host:port``."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise LpsbookError(f"--ray {address}: give host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise LpsbookError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                           "with `ray start --head`, or check the address and the firewall") from None


def resolve_address(address: str | None) -> str | None:
    """``address`` with ``auto`` resolved and probed: an LpsbookError within seconds when nothing answers."""
    if address == "auto":
        found = _current_cluster()
        if found is None:
            raise LpsbookError("--ray auto: no Ray cluster runs on this machine (no `ray start` here and no "
                               "RAY_ADDRESS); start one with `ray start --head`, or give its address")
        address = found
    if address is not None:
        _probe(address)
    return address


def connect(address: str | None, cpus: int | None = None):
    """Connect to (or start) Ray at an address :func:`resolve_address` gave; returns whether this call
    started or joined it (and so should shut it down)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, num_cpus=cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except ray.exceptions.AuthenticationError as exc:
        raise LpsbookError(f"--ray {address}: the cluster refused this driver's token ({exc.message.strip()}); "
                           "pass the cluster's token as RAY_AUTH_TOKEN or in ~/.ray/auth_token") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise LpsbookError(f"--ray {address or 'local'}: Ray could not start or connect ({exc})") from None
    return True


RECIPES = Memo(2)  # in a worker process: the padded images and statistics of a preset, kept for its next packs


def _train_pack(preset_dict: dict, dataset, jobs, device: str, threads: int, workers: int = 1):
    """A Ray task's body: train one pack, return ``[(TrainedModel, train_seed, seconds, where)]``;
    ``where`` records the threads and the packs trained side by side (``workers``) as a one-machine build does."""
    import torch

    torch.set_num_threads(threads)
    preset, dev = Preset.from_dict(preset_dict), resolve_device(device)
    where = {**provenance(preset, dev), "threads": threads, "workers": workers}
    recipe = RECIPES.get((preset.hash, str(dev)), lambda: Recipe(preset, dataset, dev))
    return [(res, seed, seconds, where)
            for res, seed, seconds in train_with_retries(preset, dataset, jobs, dev, recipe=recipe)]


def _check_resources(ray, cpus: int, gpus: float):
    total = ray.cluster_resources()
    if total.get("CPU", 0) < cpus or total.get("GPU", 0) < gpus:
        raise LpsbookError(f"the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs; "
                           f"a pack asks for {cpus} CPUs and {gpus:g} GPUs: lower --ray-cpus or add machines")


def side_by_side(resources: dict, packs: int, cpus: int, gpus: float) -> int:
    """How many of ``packs`` tasks the cluster (``ray.cluster_resources()``) runs at once when each asks
    for ``cpus`` CPUs and ``gpus`` GPUs: what a model's time is divided by to give the set's pace
    (:func:`lpsbook.experiments.sets.set_summary`)."""
    fits = [int(resources.get("CPU", 0) // cpus)] if cpus > 0 else []
    fits += [int(resources.get("GPU", 0) // gpus)] if gpus > 0 else []
    return max(1, min([packs, *fits]))


def build_with_ray(preset, out, address: str | None = None, device: str = "cpu", shard=None, data_dir=None,
                   download: bool = False, progress: bool = True, pack_size: int | None = None,
                   cpus: int = 1, gpus: float = 0.0) -> Path:
    """Build ``preset`` into ``out`` with one Ray task per pack (see the module notes); returns ``out``.

    ``cpus`` and ``gpus`` are what each pack asks for (``gpus=0.25``: four packs share a GPU);
    ``device`` is where a task trains (``"cuda"`` needs ``gpus > 0``).
    """
    preset = get_preset(preset)
    out = Path(out).expanduser()
    if device == "cuda" and gpus <= 0:
        raise LpsbookError("--device cuda with Ray needs a GPU share per pack (--ray-gpus, e.g. 0.25)")
    ray = _ray()
    address = resolve_address(address)  # a wrong address is an error before anything is written
    todo, kept = plan_build(preset, out, shard)
    if not todo:
        return out
    dataset = load_dataset(preset, data_dir, download)
    started = connect(address)
    try:
        _check_resources(ray, cpus, gpus)
        size = packing(len(todo), pack_size or auto_pack_size(preset, resolve_device("cpu"),
                                                              dataset.train_images.shape[-1]))
        data_ref = ray.put(dataset)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=TASK_RETRIES)(_train_pack)
        starts = range(0, len(todo), size)
        workers = side_by_side(ray.cluster_resources(), len(starts), cpus, gpus)
        pending = {task.remote(preset.to_dict(), data_ref, todo[i:i + size], device, cpus, workers): todo[i:i + size]
                   for i in starts}
        precision = {read_meta(out / MODELS / f"{model_stem(*job)}.json").get("precision") for job in kept}
        bar = progress_bar(total=len(todo), unit="model", desc=f"{preset.name} models (Ray)", disable=not progress)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                pending.pop(done[0])
                trained = ray.get(done[0])
                precision |= {where["precision"] for *_, where in trained}
                if len(precision - {None}) > 1:
                    raise LpsbookError(f"the Ray workers train {preset.name} in {' and '.join(sorted(precision))}; "
                                       "one model set keeps one precision: use workers of one kind (all with "
                                       "native bf16, or all GPUs), or build into another --out")
                for res, train_seed, seconds, where in trained:
                    save_model(out, preset, dataset, res, train_seed, seconds, where)
                    bar.update(1)
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()
    return out
