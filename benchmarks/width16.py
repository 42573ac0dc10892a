"""Models per second at the paper's recipe on the CPU: packing, precision and layout at width 16 (and 8).

    LPSBOOK_DATA=/path/to/cifar100 python benchmarks/width16.py [--widths 16 8] [--packs 1 2 4]

Times the real training path (``lpsbook.training.packed.train_pack``: CIFAR-100
batches of 128 with crop + flip, SGD, then the train and test evaluation)
on ModelSet500's first tasks, for each way of running it: the plain float32
path (one model at a time, contiguous layout), and bf16 autocast with
channels_last in packs of 1, 2 and 4 models. Each is run for two step counts,
which separates the cost per step from the fixed cost per model (evaluation,
set-up); models/s is then given at the ladder's training lengths (10, 40 and
160 epochs = 80, 320 and 1,280 steps).
"""
import argparse
import platform
import time

import torch

from lpsbook.core.data import load_dataset
from lpsbook.core.presets import paper_recipe
from lpsbook.core.runtime import cpu_has_native_bf16, cpu_model
from lpsbook.training.packed import Recipe, train_pack


def seconds(preset, data, pack: int, steps: int) -> float:
    """Wall time of training ``pack`` models together for ``steps`` steps, per model."""
    recipe = Recipe(preset, data, torch.device("cpu"))
    jobs = [(t, 0) for t in range(pack)]
    train_pack(preset, data, jobs, steps=2, recipe=recipe)  # warm-up (oneDNN primitives, allocator)
    start = time.perf_counter()
    train_pack(preset, data, jobs, steps=steps, recipe=recipe)
    return (time.perf_counter() - start) / pack


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 8])
    ap.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, nargs=2, default=[8, 24], help="the two step counts")
    args = ap.parse_args()
    print(f"{cpu_model()}; {platform.machine()}; native bf16: {cpu_has_native_bf16()}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = None
    short, long = args.steps
    print("| width | path | ms per model-step | fixed s per model | models/s at 80 / 320 / 1280 steps |")
    print("|---|---|---|---|---|")
    for width in args.widths:
        base = paper_recipe(f"bench-w{width}", width, 40)
        data = data or load_dataset(base)
        runs = [("float32, plain", base.with_(cpu_bf16=False), 1)]
        runs += [(f"bf16 + channels_last, pack of {m}", base, m) for m in args.packs]
        for name, preset, pack in runs:
            a, b = seconds(preset, data, pack, short), seconds(preset, data, pack, long)
            per_step = (b - a) / (long - short)
            fixed = max(0.0, a - short * per_step)
            rates = " / ".join(f"{1 / (fixed + n * per_step):.3f}" for n in (80, 320, 1280))
            print(f"| {width} | {name} | {1000 * per_step:.1f} | {fixed:.2f} | {rates} |", flush=True)


if __name__ == "__main__":
    main()
