"""Time of one ResNet-20 training step at 32x32 on the CPU, per model.

    python benchmarks/cpu_step_32.py

Plain network vs a pack of 4 (grouped convolutions), float32 vs
channels_last vs channels_last + bf16 autocast, widths 8 and 16, batches 64
and 128, random data (speed does not depend on pixel values). The median of
4 timed steps after 2 warm-up steps. bf16 pays off only on a CPU with native
bf16 (AVX-512 BF16, AMX): see lpsbook.core.runtime.cpu_has_native_bf16.
"""
import time

import torch
import torch.nn.functional as F

from lpsbook.core.nets import PackedResNet20, ResNet20, init_state

torch.set_num_threads(2)

def bench(width, batch, m, cl, bf16, steps=6):
    """Median seconds per model and step."""
    if m == 0:
        net, channels = ResNet20(width, 3), 3
    else:
        net, channels = PackedResNet20.from_state_dicts([init_state(width, 3, i) for i in range(m)], width, 3), 3 * m
    x = torch.randn(batch, channels, 32, 32)
    if cl:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    y = torch.randint(0, 2, (batch * max(m, 1),))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = F.cross_entropy(out.float().reshape(-1, 2), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    timed = sorted(times[2:])
    return timed[len(timed) // 2] / max(m, 1)


if __name__ == "__main__":
    for width in (8, 16):
        for batch in (64, 128):
            for m in (0, 4):
                for cl, bf in ((False, False), (True, False), (True, True)):
                    name = "plain" if m == 0 else f"pack{m}"
                    print(f"width {width} batch {batch} {name} channels_last={cl} bf16={bf}: "
                          f"{1000 * bench(width, batch, m, cl, bf):.1f} ms per model and step", flush=True)
