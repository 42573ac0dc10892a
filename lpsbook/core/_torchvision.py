"""Import torchvision even where its compiled extension does not match torch.

The registry's torchvision wheel is built against CUDA torch; with a CPU
build of torch, ``import torchvision`` fails with ``operator torchvision::nms
does not exist``.  lpsbook needs only torchvision's datasets, so when (and
only when) that import fails we declare the two missing operator schemas and
import again.  Where torchvision imports normally this module changes nothing.
"""
from __future__ import annotations

import sys

import torch

_shim_library = None  # keeps the operator declarations alive


def import_torchvision():
    """Return the ``torchvision`` module, declaring missing ops if needed."""
    global _shim_library
    try:
        import torchvision
        return torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _shim_library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _shim_library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    return torchvision
