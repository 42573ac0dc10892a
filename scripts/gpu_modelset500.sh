#!/usr/bin/env bash
# ModelSet500 at the paper's recipe on one GPU machine, in one command: join the CIFAR-100 parts that
# travelled with the tree, build the 500 models on the GPU (bf16, packs sized to its memory), measure
# every step of `lpsbook experiment modelset500`, and leave the results file, the first conv layers and
# the log in $OUT. The models stay on that machine (the results file keeps each one's provenance).
#
#   PARTS=data/gpu-parts OUT=/tmp/out bash scripts/gpu_modelset500.sh        # on the GPU machine
#   PRESET=tiny-cifar100 DEVICE=cpu PARTS=... OUT=... bash scripts/gpu_modelset500.sh   # rehearsal on a CPU
#
# Needs python3 with torch, numpy, scipy, scikit-learn, pandas, safetensors and tqdm (no install: the
# package runs from the tree). Rerun on the same machine to resume: the set and the finished steps are
# kept under $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-data/gpu-parts}
OUT=${OUT:?set OUT to the folder that comes back}
WORK=${WORK:-/tmp/lpsbook-ms500}
PRESET=${PRESET:-cifar100}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}  # the python that has torch
STEPS=${STEPS:-}  # e.g. classification,retrieval (default: every step)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
[ -f "$WORK/data/cifar100.npz" ] || "$PYTHON" scripts/cifar_parts.py join "$PARTS" "$WORK/data"
"$PYTHON" - "$PRESET" "$WORK" "$DEVICE" "$OUT" "$STEPS" <<'PY' 2>&1 | tee -a "$OUT/modelset500.log"
import sys, time
from lpsbook.experiments import modelset500
preset, work, device, out, steps = sys.argv[1:]
t0 = time.time()
modelset500.run(out, modelset=f"{work}/set-{preset}", preset=preset, device=device, data_dir=f"{work}/data",
                steps=tuple(steps.split(",")) if steps else tuple(modelset500.STEPS),
                command=f"PRESET={preset} DEVICE={device} bash scripts/gpu_modelset500.sh")
print(f"done in {time.time() - t0:.0f} s", flush=True)
PY
