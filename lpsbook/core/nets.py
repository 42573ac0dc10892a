"""First-order networks: ResNet-20 for CIFAR-sized images, alone and packed.

:class:`ResNet20` is the ordinary network (3 stages of 3 basic blocks, widths
w/2w/4w, 1x1 conv + BatchNorm shortcuts where the shape changes).
:class:`PackedResNet20` holds ``M`` independent ResNet-20s as one network:
every conv is a grouped conv with ``groups=M`` on an ``[N, M*C, H, W]``
layout and every BatchNorm has ``M*C`` channels, which is exactly per-model
BatchNorm.  Its weights convert to and from ``M`` ordinary state dicts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGES = 3
BLOCKS_PER_STAGE = 3


def conv_layers() -> list:
    """Names of ResNet-20's 19 3x3 conv weights, in forward order.

    These are the paper's branches; the 1x1 shortcut convs and the FC layer
    are excluded.
    """
    names = ["conv1.weight"]
    for s in range(1, STAGES + 1):
        for b in range(BLOCKS_PER_STAGE):
            names += [f"layer{s}.{b}.conv1.weight", f"layer{s}.{b}.conv2.weight"]
    return names


def _block_specs(width):
    """(stage, block, in_channels, out_channels, stride) for every block."""
    specs, cin = [], width
    for s in range(1, STAGES + 1):
        cout = width * 2 ** (s - 1)
        for b in range(BLOCKS_PER_STAGE):
            stride = 2 if (s > 1 and b == 0) else 1
            specs.append((s, b, cin, cout, stride))
            cin = cout
    return specs


class _Block(nn.Module):
    def __init__(self, cin, cout, stride, models=1):
        super().__init__()
        m = models
        self.conv1 = nn.Conv2d(m * cin, m * cout, 3, stride, 1, bias=False, groups=m)
        self.bn1 = nn.BatchNorm2d(m * cout)
        self.conv2 = nn.Conv2d(m * cout, m * cout, 3, 1, 1, bias=False, groups=m)
        self.bn2 = nn.BatchNorm2d(m * cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(m * cin, m * cout, 1, stride, bias=False, groups=m), nn.BatchNorm2d(m * cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _ResNet20Body(nn.Module):
    def __init__(self, width, in_channels, models):
        super().__init__()
        m = models
        self.width, self.in_channels, self.models = width, in_channels, models
        self.conv1 = nn.Conv2d(m * in_channels, m * width, 3, 1, 1, bias=False, groups=m)
        self.bn1 = nn.BatchNorm2d(m * width)
        for s in range(1, STAGES + 1):
            blocks = [_Block(ci, co, st, m) for (ss, _, ci, co, st) in _block_specs(width) if ss == s]
            setattr(self, f"layer{s}", nn.Sequential(*blocks))

    def features(self, x):
        """Globally pooled features of the last stage, ``[N, M*4w]``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class ResNet20(_ResNet20Body):
    """ResNet-20 for CIFAR-sized inputs.

    Parameters
    ----------
    width : int
        Channels of the first stage (16 in the paper).
    in_channels : int
        Image channels (3 for CIFAR, 1 for digits).
    num_classes : int
        Outputs of the final linear layer (2 for a two-class task).
    """

    def __init__(self, width=16, in_channels=3, num_classes=2):
        super().__init__(width, in_channels, 1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class PackedResNet20(_ResNet20Body):
    """``models`` independent ResNet-20s trained as one network.

    Input ``[N, M*C, H, W]`` (model ``m``'s images in channels
    ``m*C:(m+1)*C``); output logits ``[N, M, num_classes]``.
    """

    def __init__(self, models, width=16, in_channels=3, num_classes=2):
        super().__init__(width, in_channels, models)
        self.num_classes = num_classes
        self.fc_weight = nn.Parameter(torch.empty(models, num_classes, 4 * width))
        self.fc_bias = nn.Parameter(torch.empty(models, num_classes))

    def forward(self, x):
        h = self.features(x).view(x.shape[0], self.models, -1)
        return torch.einsum("nmc,mkc->nmk", h, self.fc_weight) + self.fc_bias

    @classmethod
    def from_state_dicts(cls, states, width, in_channels, num_classes=2):
        """Pack ordinary ResNet-20 state dicts (all of one architecture)."""
        net = cls(len(states), width, in_channels, num_classes)
        packed = {}
        for key in states[0]:
            vals = [s[key] for s in states]
            if key == "fc.weight":
                packed["fc_weight"] = torch.stack(vals)
            elif key == "fc.bias":
                packed["fc_bias"] = torch.stack(vals)
            elif key.endswith("num_batches_tracked"):
                packed[key] = vals[0].clone()
            else:
                packed[key] = torch.cat(vals, dim=0)
        net.load_state_dict(packed)
        return net

    def state_dicts(self) -> list:
        """The ``M`` models as ordinary ResNet-20 state dicts (CPU, detached)."""
        m = self.models
        out = [dict() for _ in range(m)]
        for key, val in self.state_dict().items():
            val = val.detach().cpu()
            if key == "fc_weight":
                key, parts = "fc.weight", val.unbind(0)
            elif key == "fc_bias":
                key, parts = "fc.bias", val.unbind(0)
            elif key.endswith("num_batches_tracked"):
                parts = [val] * m
            else:
                parts = val.chunk(m, dim=0)
            for d, p in zip(out, parts):
                d[key] = p.clone().contiguous()
        return out


def init_state(width, in_channels, seed, num_classes=2) -> dict:
    """The initial state dict of the ResNet-20 with this seed (PyTorch's default init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet20(width, in_channels, num_classes).state_dict()


def short_layer(name: str) -> str:
    """``"layer2.0.conv1.weight"`` -> ``"layer2.0.conv1"``."""
    return name.removesuffix(".weight")


def layer_number(layer: str) -> int:
    """1-based position of a conv layer of ResNet-20 in forward order (conv1 is 1)."""
    if layer.startswith("conv1"):
        return 1
    stage, block, conv = layer.split(".")[:3]
    return 2 + 6 * (int(stage.removeprefix("layer")) - 1) + 2 * int(block) + int(conv.removeprefix("conv")) - 1
