"""The second-order network of Learnable Parameter Similarity (Eqs. 5-9).

One *branch* per conv layer ``l`` of the trained (first-order) networks.  A
branch holds learnable second-order filters ``phi_l`` of shape
``(g', c, k, k)`` and computes, for every trained filter ``g`` and every
second-order filter ``g'``:

* Eq. 5: the Frobenius inner products ``s[g, g', c_i, c_j] = <theta[g, c_i], phi[g', c_j]>``
  of every pair of k x k channel slices (one matmul, no loop);
* Eq. 6 (channel alignment, layers >= 2): ``s[g, g'] = sum_{c_j} max_{c_i} s[g, g', c_i, c_j]``,
  which does not depend on the order of the trained filter's input channels;
* Eq. 7 (layer 1, or channel alignment off): ``s[g, g'] = sum_c <theta[g, c], phi[g', c]>``;
* Eq. 8 (filter alignment): each column ``s[:, g']`` sorted over the trained
  filters ``g``, which removes the order of the filters;

then an FC layer maps the aligned ``g x g'`` matrix to one score per task.
Eq. 9 mixes the branches' class probabilities with weights ``w_l``.  With
both alignments on, every branch is invariant to permuting its layer's
filters and input channels (tested in ``tests/test_lps.py``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import LpsbookError
from .estimator import SimilarityMethod, num_models
from ..core.nets import conv_layers
from ..core.runtime import minibatch_sgd


@dataclass(frozen=True)
class LPSConfig:
    """Training settings of the second-order network.

    The paper trains with SGD, batch 1 (one model per step), lr 1e-3 divided
    by 10 at epochs 40 and 80, 100 epochs: ``LPSConfig.paper()``.  The
    default trains on mini-batches of models with a proportionally larger
    learning rate, which is much faster on a CPU.
    """

    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-2
    milestones: tuple = (40, 80)
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0

    @classmethod
    def paper(cls, **changes) -> "LPSConfig":
        return cls(**{"epochs": 100, "batch_size": 1, "lr": 1e-3, "milestones": (40, 80), **changes})

    def to_dict(self) -> dict:
        return asdict(self)


def filter_scores(theta: torch.Tensor, phi: torch.Tensor, align_channels: bool = True,
                  matches: bool = False):
    """Eqs. 5-7: the scores ``s[m, g, g']`` of trained layers against second-order filters.

    The one implementation of the alignment, used by the branches (training)
    and by the explorer (display).

    Parameters
    ----------
    theta : Tensor [M, g, c, k, k]
        Trained conv layers of M models.
    phi : Tensor [g', c, k, k]
        Second-order filters.
    align_channels : bool
        Eq. 6 (max over the trained filter's input channels ``c_i`` for every
        channel ``c_j`` of ``phi``); False gives Eq. 7 (channels paired in
        their stored order: the first layer, or the ablation).
    matches : bool
        Also return, for every ``(m, g, g', c_j)``, the trained channel ``c_i``
        that the max chose (the identity for Eq. 7).

    Returns
    -------
    s : Tensor [M, g, g']
    match : Tensor [M, g, g', c] of int64, only with ``matches=True``
    """
    m, g, c = theta.shape[:3]
    gp = phi.shape[0]
    t = theta.reshape(m, g, c, -1)
    p = phi.reshape(gp, c, -1)
    if align_channels:  # Eq. 5 as one matmul, then Eq. 6
        pairs = torch.matmul(t.reshape(m, g * c, -1), p.reshape(gp * c, -1).t()).view(m, g, c, gp, c)
        if matches:
            best, match = pairs.max(dim=2)
            return best.sum(dim=-1), match
        return pairs.amax(dim=2).sum(dim=-1)
    s = torch.einsum("mgck,hck->mgh", t, p)  # Eq. 7
    if matches:
        return s, torch.arange(c, device=theta.device).expand(m, g, gp, c)
    return s


def sort_filters(s: torch.Tensor) -> torch.Tensor:
    """Eq. 8: every column ``s[..., :, g']`` sorted over the trained filters, largest first."""
    return torch.sort(s, dim=-2, descending=True).values


class Branch(nn.Module):
    """One conv layer's branch: second-order filters, alignment, FC.

    Parameters
    ----------
    shape : (g, c, k, k)
        Shape of the trained layer's weight.
    num_classes : int
    second_order_filters : int
        ``g'``, the number of second-order filters.
    first_layer : bool
        Layer 1 takes no max over channels (Eq. 7): its channels are the
        image's, whose order is fixed.
    align_filters, align_channels : bool
        Sort over filters (Eq. 8); max over input channels (Eq. 6).
    """

    def __init__(self, shape, num_classes, second_order_filters, first_layer,
                 align_filters=True, align_channels=True):
        super().__init__()
        g, c, kh, kw = shape
        self.shape = tuple(shape)
        self.first_layer = first_layer
        self.align_filters = align_filters
        self.align_channels = align_channels and not first_layer
        self.phi = nn.Parameter(torch.randn(second_order_filters, c, kh, kw) / math.sqrt(c * kh * kw))
        self.fc = nn.Linear(g * second_order_filters, num_classes)

    def similarity(self, theta: torch.Tensor) -> torch.Tensor:
        """Aligned ``s[g, g']`` for a batch of trained layers ``theta [M, g, c, k, k]``."""
        if tuple(theta.shape[1:]) != self.shape:
            raise LpsbookError(f"branch expects weights of shape {self.shape}, got {tuple(theta.shape[1:])}")
        s = filter_scores(theta, self.phi, self.align_channels)
        return sort_filters(s) if self.align_filters else s

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.fc(self.similarity(theta).flatten(1))


class SecondOrderNet(nn.Module):
    """The LPS second-order network over the conv layers of a model set.

    Parameters
    ----------
    layer_shapes : dict {layer name: (g, c, k, k)}, in forward order
        Usually ``{n: w.shape[1:] for n, w in modelset.conv_weights.items()}``.
    num_classes : int
        Tasks to classify.
    branch_weights : dict {layer name: w_l}, optional
        Eq. 9's weights; by default ``w_1 = 1`` and all others 0 (the paper's
        setting).  Branches with weight 0 are not built.
    second_order_filters : int, optional
        ``g'`` for every branch; by default the trained layer's filter count.
    align_filters, align_channels : bool
        Switch Eq. 8 and Eq. 6 off for the ablation and the "without
        alignment" baseline (both off).
    seed : int
        Initialisation seed.
    """

    def __init__(self, layer_shapes: dict, num_classes: int, branch_weights: dict | None = None,
                 second_order_filters: int | None = None, align_filters: bool = True,
                 align_channels: bool = True, seed: int = 0):
        super().__init__()
        names = list(layer_shapes)
        if not names:
            raise LpsbookError("layer_shapes is empty: give at least one conv layer")
        weights = branch_weights if branch_weights is not None else {names[0]: 1.0}
        unknown = set(weights) - set(names)
        if unknown:
            raise LpsbookError(f"branch_weights names unknown layers {sorted(unknown)}; known: {names}")
        self.names = [n for n in names if weights.get(n, 0) > 0]
        if not self.names:
            raise LpsbookError("branch_weights: at least one branch needs a positive weight")
        self.register_buffer("w", torch.tensor([float(weights[n]) for n in self.names]))
        self.num_classes = num_classes
        self.settings = {"branch_weights": {n: float(weights[n]) for n in self.names},
                         "second_order_filters": second_order_filters,
                         "align_filters": align_filters, "align_channels": align_channels, "seed": seed}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.branches = nn.ModuleList([
                Branch(layer_shapes[n], num_classes, second_order_filters or layer_shapes[n][0],
                       first_layer=(n == names[0]), align_filters=align_filters,
                       align_channels=align_channels) for n in self.names])

    def branch(self, layer: str) -> "Branch":
        """The branch that reads conv layer ``layer``."""
        return self.branches[self.names.index(layer)]

    @property
    def name(self) -> str:
        s = self.settings
        if s["align_filters"] and s["align_channels"]:
            return "LPS"
        if not s["align_filters"] and not s["align_channels"]:
            return "Frobenius+FC w/o alignment"
        return "LPS w/o " + ("filter" if not s["align_filters"] else "channel") + " alignment"

    def branch_logits(self, weights: dict) -> list:
        """Logits ``[M, classes]`` of every active branch."""
        missing = [n for n in self.names if n not in weights]
        if missing:
            raise LpsbookError(f"weights lack the layers {missing}")
        return [b(weights[n].to(self.w.device, torch.float32)) for n, b in zip(self.names, self.branches)]

    def log_probs(self, weights: dict) -> torch.Tensor:
        """``log (1/W) sum_l w_l q^l``: the mixture of Eq. 9, ``[M, classes]``."""
        logp = torch.stack([F.log_softmax(z, dim=-1) for z in self.branch_logits(weights)])
        return torch.logsumexp(logp + torch.log(self.w / self.w.sum())[:, None, None], dim=0)

    def loss(self, weights: dict, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 9, averaged over the models of the batch."""
        return F.nll_loss(self.log_probs(weights), labels.to(self.w.device))

    @torch.no_grad()
    def embed(self, weights: dict, batch: int = 256) -> torch.Tensor:
        """L2-normalised features of the last FC layer(s), ``[M, d]``.

        With several branches the features are the branches' outputs, each
        scaled by ``w_l / W``, concatenated.  Cosine similarity of two
        models is the dot product of their features.
        """
        self.eval()
        out = []
        m = next(iter(weights.values())).shape[0]
        for i in range(0, m, batch):
            part = {n: weights[n][i:i + batch] for n in self.names}
            z = torch.cat([w * zl for w, zl in zip(self.w / self.w.sum(), self.branch_logits(part))], dim=1)
            out.append(F.normalize(z, dim=1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def scores(self, weights: dict, batch: int = 256) -> torch.Tensor:
        """Class log-probabilities ``[M, classes]`` (for top-k task classification)."""
        self.eval()
        m = next(iter(weights.values())).shape[0]
        return torch.cat([self.log_probs({n: weights[n][i:i + batch] for n in self.names}).cpu()
                          for i in range(0, m, batch)])

    def fit(self, weights: dict, labels: torch.Tensor, num_classes: int | None = None,
            config: LPSConfig = LPSConfig(), device="cpu", progress: bool = False) -> "SecondOrderNet":
        """Train on models ``weights`` (``{layer: [M, ...]}``) with task ``labels [M]``."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        m = len(labels)
        if num_classes is not None and num_classes != self.num_classes:
            raise LpsbookError(f"num_classes={num_classes} but the network was built for {self.num_classes}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise LpsbookError(f"labels must lie in 0..{self.num_classes - 1}")
        for n in self.names:
            if n not in weights or weights[n].shape[0] != m:
                raise LpsbookError(f"weights[{n!r}] must hold {m} models, one per label")
        device = torch.device(device)
        self.to(device).train()
        data = {n: weights[n].to(device, torch.float32) for n in self.names}
        y = labels.to(device)
        opt = torch.optim.SGD(self.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(config.milestones), gamma=0.1)
        minibatch_sgd(lambda idx: self.loss({n: v[idx] for n, v in data.items()}, y[idx]), m, config.epochs,
                      config.batch_size, config.seed, opt, sched, device, f"second-order ({self.name})", progress)
        self.eval()
        return self


def layer_shapes(conv_weights: dict) -> dict:
    """``{name: (g, c, k, k)}`` from ``{name: [models, g, c, k, k]}``."""
    return {n: tuple(w.shape[1:]) for n, w in conv_weights.items()}


class LPS(SimilarityMethod):
    """Learnable Parameter Similarity as a similarity method: a :class:`SecondOrderNet` fitted on the models.

    Parameters
    ----------
    config : LPSConfig, optional
        Second-order training settings (default :class:`LPSConfig`'s).
    branch_weights, second_order_filters, align_filters, align_channels :
        As in :class:`SecondOrderNet` (default: the first conv layer only,
        both alignments on: the paper's LPS).  Both alignments off is the
        paper's "Frobenius+FC w/o alignment" baseline.
    layers : sequence of str, optional
        The conv layers that may get a branch, in forward order; default
        ResNet-20's 19 3x3 convs (:func:`lpsbook.core.nets.conv_layers`).
    seed : int
        Initialisation and shuffling seed (replaces ``config.seed``).
    device : str or torch.device

    Attributes
    ----------
    net_ : SecondOrderNet
        The fitted network.
    """

    def __init__(self, config: LPSConfig | None = None, branch_weights: dict | None = None,
                 second_order_filters: int | None = None, align_filters: bool = True,
                 align_channels: bool = True, layers=None, seed: int = 0, device="cpu"):
        self.config = config or LPSConfig()
        self.branch_weights, self.second_order_filters = branch_weights, second_order_filters
        self.align_filters, self.align_channels = align_filters, align_channels
        self.layers, self.seed, self.device = layers, seed, device

    def _fit(self, models, y, n_classes):
        from dataclasses import replace

        names = list(self.layers) if self.layers is not None else [n for n in conv_layers() if n in models]
        missing = [n for n in names if n not in models]
        if missing or not names:
            raise LpsbookError(f"models lack the conv layers {missing or conv_layers()[:1]}")
        self.net_ = SecondOrderNet({n: tuple(models[n].shape[1:]) for n in names}, n_classes,
                                   self.branch_weights, self.second_order_filters, self.align_filters,
                                   self.align_channels, seed=self.seed)
        self.net_.fit(models, y, config=replace(self.config, seed=self.seed), device=self.device)

    def _scores(self, models):
        """Class log-probabilities (Eq. 9's mixture)."""
        num_models(models)
        return self.net_.scores(models)

    def _embed(self, models):
        """L2-normalised last-layer features (see :meth:`SecondOrderNet.embed`)."""
        return self.net_.embed(models)
