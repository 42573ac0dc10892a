"""Where and how torch runs: threads, device, precision, the SGD loop every learned method shares, memory.

Every method and protocol depends on this module, not on the ResNet training
module (:mod:`lpsbook.training.packed`), for these.
"""
from __future__ import annotations

import functools
import platform
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from .errors import LpsbookError
from .presets import Preset
from .progress import bar as progress_bar


@contextmanager
def one_thread(device=None):
    """Run torch on one CPU thread inside the block (then restore the setting).

    Small networks (baselines, single branches): more intra-op threads only add
    synchronisation, which on a loaded CPU made training ~100x slower.
    """
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def minibatch_sgd(loss_of, n: int, epochs: int, batch_size: int, seed: int, opt, sched, device,
                  what: str, progress: bool = False):
    """Epochs of SGD over ``n`` items in seeded random mini-batches.

    ``loss_of(indices)`` returns the loss of a batch; ``sched`` steps once
    per epoch.  A non-finite loss stops training with an LpsbookError.
    """
    gen = torch.Generator().manual_seed(seed)
    for _ in progress_bar(range(epochs), desc=f"{what} epochs", disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, batch_size):
            loss = loss_of(order[i:i + batch_size])
            if not torch.isfinite(loss):
                raise LpsbookError(f"{what} training diverged (loss {loss.item()}); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise LpsbookError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return torch.device(device)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mixed_precision(preset: Preset, device) -> bool:
    """Train in bfloat16 autocast with channels_last: always on CUDA; on a CPU when the
    preset asks for it (``cpu_bf16``) and the CPU has native bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and preset.cpu_bf16 and cpu_has_native_bf16()


def precision(preset: Preset, device):
    """``(layout, autocast)``: the memory format of inputs and the autocast context that training and
    evaluation use (:func:`mixed_precision`: channels_last and bf16, else the defaults)."""
    device = torch.device(device)
    if mixed_precision(preset, device):
        return torch.channels_last, torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.contiguous_format, nullcontext()


def _trim_heap():
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; nothing elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """The process's peak resident memory above its level at the start, sampled every few milliseconds.

    ``with PeakMemory() as peak: ...`` then ``peak.mib``.
    """

    def __init__(self, every: float = 0.005):
        self.every, self.mib = every, 0.0

    def __enter__(self):
        import gc

        import psutil

        gc.collect()  # a collection during the measured block would free old memory and hide its allocations
        _trim_heap()  # freed but still resident heap memory would serve new allocations without raising the RSS
        proc = psutil.Process()
        self._start = self._peak = proc.memory_info().rss
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._peak = max(self._peak, proc.memory_info().rss)
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        import psutil

        # one last sample: on a busy CPU the sampler may not have run since the last allocation
        self._peak = max(self._peak, psutil.Process().memory_info().rss)
        self.mib = (self._peak - self._start) / 2 ** 20
        return False
