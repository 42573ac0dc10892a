"""Ray's overhead on one machine: the same models built in one process and through a local Ray instance,
in one run, nothing else running.

    python benchmarks/ray_overhead.py --preset cifar100-small --shard 0/10

builds part ``K/N`` of the preset (all of it without ``--shard``) three times into a temporary folder:
plainly (one process, the preset's packs one after another with torch's threads), through Ray with each
pack asking for all the CPUs (one pack at a time, as plainly: what Ray itself costs), and through Ray
with one CPU per pack (packs side by side). The Ray times include starting and stopping the instance.
The local instance listens on the loopback address only.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from lpsbook.core.runtime import cpu_model  # noqa: E402
from lpsbook.training import modelset  # noqa: E402
from lpsbook.training.distributed import build_with_ray  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cifar100-small")
    ap.add_argument("--shard", default=None, metavar="K/N")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    print(f"{platform.node()}: {cpu_model()}, {cpus} CPUs, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads); preset {args.preset}, shard {args.shard or 'all'}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("one process", lambda out: modelset.build(args.preset, out, device="cpu", shard=args.shard,
                                                           data_dir=args.data_dir, progress=False)),
                (f"Ray, {cpus} CPUs per pack", lambda out: build_with_ray(
                    args.preset, out, None, "cpu", args.shard, args.data_dir, progress=False, cpus=cpus)),
                ("Ray, 1 CPU per pack", lambda out: build_with_ray(
                    args.preset, out, None, "cpu", args.shard, args.data_dir, progress=False, cpus=1))]
        for i, (name, run) in enumerate(runs):
            out = Path(tmp) / f"set{i}"
            start = time.perf_counter()
            run(out)
            seconds = time.perf_counter() - start
            models = len(list((out / "models").glob("*.json")))
            rows.append((name, models, seconds))
    base = rows[0][2]
    print(f"{'path':<24} {'models':>6} {'seconds':>8} {'s/model':>8} {'vs one process':>15}")
    for name, models, seconds in rows:
        print(f"{name:<24} {models:>6} {seconds:8.1f} {seconds / models:8.2f} {100 * (seconds / base - 1):+14.1f} %")


if __name__ == "__main__":
    main()
