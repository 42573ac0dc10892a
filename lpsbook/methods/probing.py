"""Probing: read a network through its function, on a few learned input images.

A small set of input images (the *probes*) is learned jointly with a
classifier that reads every model's outputs on them, in eval mode: its
logits and, optionally, how alike its penultimate (pooled) features of the
probes are (their inner products: the features themselves come in the order
of the last stage's channels, which a permutation changes).  It needs no
task data, and it is invariant to every weight symmetry by construction,
because it only sees what the network computes: a permuted network computes
the same function, so it gives the same outputs on the same probes
(``tests/test_probing.py`` checks this, up to float rounding).

All models are run at once with :func:`torch.func.vmap` over their stacked
weights, so the gradient reaches the probes through every model of a batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import LpsbookError
from .estimator import SimilarityMethod, num_models
from ..core.nets import ResNet20
from ..core.runtime import minibatch_sgd


class _Outputs(ResNet20):
    """ResNet-20 whose forward returns its pooled features and logits, concatenated."""

    def forward(self, x):
        f = self.features(x)
        return torch.cat([f, self.fc(f)], dim=1)


def model_outputs(models: dict, images: torch.Tensor) -> torch.Tensor:
    """Every model's pooled features and logits on ``images``: ``[M, n, features + logits]``, eval mode,
    differentiable in ``images``."""
    from torch.func import functional_call, vmap

    w = models["conv1.weight"]
    net = _Outputs(w.shape[1], w.shape[2], models["fc.weight"].shape[1]).to(images.device).eval()
    params = {k: v for k, v in models.items() if not k.endswith("num_batches_tracked")}
    out = vmap(lambda p, x: functional_call(net, p, (x,), strict=False), in_dims=(0, None))(params, images)
    return out


class Probing(SimilarityMethod):
    """Learned probe images and a classifier of the models' outputs on them.

    Parameters
    ----------
    n_probes : int
        Probe images.
    image_shape : (C, H, W), optional
        Default: the models' input channels at 16 x 16 (ResNet-20 pools
        globally, so any size works; small probes are cheap).
    features : bool
        Read the inner products of the probes' penultimate features as well as the logits.
    hidden, embed_dim : classifier size.
    epochs, lr, batch_size : Adam training settings (batches of models).
    seed : int
    device : str or torch.device

    Attributes
    ----------
    probes_ : Tensor [n_probes, C, H, W]
        The learned images (in the models' normalised input space).
    head_ : nn.Module
    """

    reads = "activations"  # the outputs on the probes

    def __init__(self, n_probes: int = 8, image_shape=None, features: bool = True, hidden: int = 64,
                 embed_dim: int = 32, epochs: int = 20, lr: float = 1e-2, batch_size: int = 32, seed: int = 0,
                 device="cpu"):
        if n_probes < 1:
            raise LpsbookError(f"n_probes must be at least 1, got {n_probes}")
        self.n_probes, self.image_shape, self.features = n_probes, image_shape, features
        self.hidden, self.embed_dim = hidden, embed_dim
        self.epochs, self.lr, self.batch_size, self.seed, self.device = epochs, lr, batch_size, seed, device

    def _read(self, models: dict, probes: torch.Tensor) -> torch.Tensor:
        """What the classifier sees of each model: its logits on the probes and, with ``features``, the
        probes' feature inner products (a Gram matrix: the features' channels are permuted with the
        network's last stage, their inner products are not)."""
        dev = torch.device(self.device)
        out = model_outputs({k: v.to(dev) for k, v in models.items()}, probes)
        c = models["fc.weight"].shape[1]
        logits, feats = out[..., -c:], out[..., :-c]
        if not self.features:
            return logits.flatten(1)
        gram = feats @ feats.transpose(1, 2) / feats.shape[-1]
        i, j = torch.triu_indices(len(probes), len(probes), device=dev)
        return torch.cat([logits.flatten(1), gram[:, i, j]], dim=1)

    def _fit(self, models, y, n_classes):
        m = num_models(models)
        shape = self.image_shape or (models["conv1.weight"].shape[2], 16, 16)
        dev = torch.device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.probes_ = nn.Parameter(torch.randn(self.n_probes, *shape, device=dev))
            d = self._read({k: v[:1] for k, v in models.items()}, self.probes_).shape[1]
            self.head_ = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, self.hidden), nn.ReLU(),
                                       nn.Linear(self.hidden, self.embed_dim)).to(dev)
            self.classifier_ = nn.Linear(self.embed_dim, n_classes).to(dev)
        params = [self.probes_, *self.head_.parameters(), *self.classifier_.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, self.epochs))
        y = y.to(dev)

        def loss(idx):
            idx = idx.cpu()
            z = self.head_(self._read({k: v[idx] for k, v in models.items()}, self.probes_))
            return F.cross_entropy(self.classifier_(F.relu(z)), y[idx])

        minibatch_sgd(loss, m, self.epochs, self.batch_size, self.seed, opt, sched, dev, "probing")
        self.probes_.requires_grad_(False)

    @torch.no_grad()
    def _embed_raw(self, models) -> torch.Tensor:
        return torch.cat([self.head_(self._read({k: v[i:i + 256] for k, v in models.items()}, self.probes_))
                          for i in range(0, num_models(models), 256)]).cpu()

    def _embed(self, models):
        return F.normalize(self._embed_raw(models), dim=1)

    @torch.no_grad()
    def _scores(self, models):
        return self.classifier_(F.relu(self._embed_raw(models).to(torch.device(self.device)))).cpu()
