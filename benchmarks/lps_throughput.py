"""Throughput of the second-order network: models per second embedded and trained.

    python benchmarks/lps_throughput.py                   # digits-sized layers, CPU
    python benchmarks/lps_throughput.py --width 16 --device cuda

Uses random weights of the shapes of a ResNet-20 of the given width (speed
does not depend on the values).  For each branch tested: models/s through
``embed`` (forward only) and through training (forward, backward, SGD step,
per epoch over the models), with the all-branch network as well.
"""
from __future__ import annotations

import argparse
import time

import torch

from lpsbook.methods.lps import LPSConfig, SecondOrderNet
from lpsbook.core.nets import ResNet20, conv_layers
from lpsbook.core.runtime import resolve_device


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--models", type=int, default=360)
    ap.add_argument("--classes", type=int, default=45)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    layers = conv_layers()
    shapes = {k: tuple(v.shape) for k, v in ResNet20(args.width, args.in_channels).state_dict().items() if k in layers}
    weights = {k: 0.1 * torch.randn(args.models, *s) for k, s in shapes.items()}
    labels = torch.randint(0, args.classes, (args.models,))
    print(f"device {device}, width {args.width}, {args.models} models, batch {args.batch_size}")
    cases = [("branch 1", {layers[0]: 1.0}), ("branch 2", {layers[1]: 1.0}), ("branch 8", {layers[7]: 1.0}),
             ("branch 19", {layers[18]: 1.0}), ("all 19 branches", {n: 1.0 for n in layers})]
    warm = SecondOrderNet(shapes, args.classes).to(device)
    warm.fit({k: v[:16] for k, v in weights.items()}, labels[:16], config=LPSConfig(epochs=1, milestones=()),
             device=device)  # one-off start-up costs out of the timings
    for label, bw in cases:
        net = SecondOrderNet(shapes, args.classes, bw).to(device)
        net.embed(weights)  # warm-up
        t = time.perf_counter()
        net.embed(weights)
        if device.type == "cuda":
            torch.cuda.synchronize()
        embed = args.models / (time.perf_counter() - t)
        cfg = LPSConfig(epochs=1, batch_size=args.batch_size, lr=1e-3, milestones=())
        t = time.perf_counter()
        net.fit(weights, labels, config=cfg, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train = args.models / (time.perf_counter() - t)
        print(f"{label:16s} embed {embed:10.1f} models/s   train {train:9.1f} models/s (one epoch)")


if __name__ == "__main__":
    main()
