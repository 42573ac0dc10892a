"""Packed vs one-at-a-time training of first-order models, measured in one run.

    python benchmarks/train_throughput.py                      # digits recipe, CPU
    python benchmarks/train_throughput.py --preset cifar100 --synthetic --device cuda
    python benchmarks/train_throughput.py --preset cifar100-small --cpu-paths --old-pack 8 --new-pack 1

``--cpu-paths`` compares the CPU paths instead: float32 with the given old
pack size (the path before bf16 on the CPU) against the preset's own path
(bf16 autocast + channels_last where the CPU has native bf16) with the new
pack size, on the same models and steps.

Prints models/s for the packed trainer and for the plain loop on the same
(task, seed) models, their ratio, and the projected time for the whole
preset.  ``--synthetic`` replaces the dataset by random uint8 images of the
same shape (CIFAR-100 cannot be downloaded everywhere); speed does not
depend on pixel values.
"""
from __future__ import annotations

import argparse
import time

import torch

from lpsbook.core.data import Dataset, load_dataset
from lpsbook.core.presets import get_preset
from lpsbook.core.runtime import resolve_device
from lpsbook.training.packed import Recipe, pack_size, train_alone, train_pack


def synthetic_like(preset) -> Dataset:
    """Random images in the shape of the preset's dataset (500/100 images per class)."""
    g = torch.Generator().manual_seed(0)
    classes = 100 if preset.dataset == "cifar100" else 10
    size, ch = (32, 3) if preset.dataset == "cifar100" else (8, 1)
    make = lambda n: (torch.randint(0, 256, (n * classes, ch, size, size), generator=g, dtype=torch.uint8),
                      torch.arange(classes).repeat_interleave(n))
    (xtr, ytr), (xte, yte) = make(500), make(100)
    return Dataset("synthetic", xtr, ytr, xte, yte, [str(c) for c in range(classes)])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", type=int, default=None, help="models to train (default: one pack)")
    ap.add_argument("--loop-models", type=int, default=None, help="models for the plain loop (default: --models)")
    ap.add_argument("--steps", type=int, default=None, help="steps per model (default: the preset's schedule)")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--cpu-paths", action="store_true", help="float32 (old) vs the preset's CPU path (new)")
    ap.add_argument("--old-pack", type=int, default=8)
    ap.add_argument("--new-pack", type=int, default=1)
    args = ap.parse_args()
    if args.cpu_paths:
        return compare_cpu_paths(args)

    preset = get_preset(args.preset)
    device = resolve_device(args.device)
    data = synthetic_like(preset) if args.synthetic else load_dataset(preset)
    if device.type == "cuda":
        data = data.to(device)
        torch.backends.cudnn.benchmark = True
    recipe = Recipe(preset, data, device)
    steps = args.steps or recipe.total_steps
    m = args.models or pack_size(preset, device, data.train_images.shape[-1])
    jobs = [(i % len(preset.tasks), i // len(preset.tasks)) for i in range(m)]
    print(f"device {device}, preset {preset.name}, {steps} steps per model, pack of {m}, "
          f"threads {torch.get_num_threads()}")

    train_pack(preset, data, jobs[:2], device, steps=2, recipe=recipe)  # warm-up
    sync(device)
    t = time.perf_counter()
    train_pack(preset, data, jobs, device, steps=steps, recipe=recipe)
    sync(device)
    packed = m / (time.perf_counter() - t)

    loop_jobs = jobs[: args.loop_models or m]
    t = time.perf_counter()
    for task, seed in loop_jobs:
        train_alone(preset, data, task, seed, device, steps=steps, recipe=recipe)
    sync(device)
    alone = len(loop_jobs) / (time.perf_counter() - t)

    full = preset.num_models * recipe.total_steps / steps
    print(f"packed : {packed:8.3f} models/s  -> {preset.num_models} models of the full schedule in "
          f"{full / packed / 60:.1f} min")
    print(f"alone  : {alone:8.3f} models/s  -> {full / alone / 60:.1f} min")
    print(f"ratio packed/alone: {packed / alone:.2f}x")


def compare_cpu_paths(args):
    from lpsbook.core.runtime import mixed_precision

    new = get_preset(args.preset)
    old = new.with_(cpu_bf16=False)
    data = synthetic_like(new) if args.synthetic else load_dataset(new)
    device = torch.device("cpu")
    recipe = Recipe(new, data, device)
    steps = args.steps or recipe.total_steps
    m = args.models or max(args.old_pack, args.new_pack)
    jobs = [(i % len(new.tasks), i // len(new.tasks)) for i in range(m)]
    print(f"preset {new.name}, {steps} steps per model, {m} models, threads {torch.get_num_threads()}; "
          f"new path uses bf16 + channels_last: {mixed_precision(new, device)}")
    rates = {}
    for label, preset, pack in (("old: float32", old, args.old_pack), ("new", new, args.new_pack)):
        train_pack(preset, data, jobs[:pack], device, steps=2, recipe=recipe)  # warm-up
        t = time.perf_counter()
        for start in range(0, m, pack):
            train_pack(preset, data, jobs[start:start + pack], device, steps=steps, recipe=recipe)
        rates[label] = m / (time.perf_counter() - t)
        full = new.num_models * recipe.total_steps / steps / rates[label]
        print(f"{label:14s} pack {pack:2d}: {rates[label]:8.4f} models/s -> {new.num_models} models of the "
              f"full schedule in {full / 60:.1f} min")
    print(f"ratio new/old: {rates['new'] / rates['old: float32']:.2f}x")


if __name__ == "__main__":
    main()
