"""A graph learner over the whole network, equivariant to its permutation symmetry by construction.

The network is read as a graph built from its :class:`~lpsbook.core.symmetry.PermutationSpec`:

* **nodes**: the units of every permutation group (a block's inner channels;
  a stage's residual stream, whose identity skips make the block outputs
  of one stage the *same* nodes).  Every tensor with one permuted axis
  gives its nodes features: BatchNorm's weight, bias and running
  statistics; the stem conv's filters (their fixed RGB input channels
  flattened, so the input channels are fixed nodes folded into the
  features); ``fc.weight``'s columns (the fixed output logits likewise).
* **edges**: every tensor with two permuted axes: each conv kernel, its
  k x k values as the edge's features, and the projection shortcuts (1 x 1).
* tensors with no permuted axis (``fc.bias``) are global features.

One round of message passing sends, along every edge tensor, a message to
each output unit (the mean over input units of an MLP of the edge and the
input unit's state) and one back to each input unit.  Means over units and
per-tensor weights make every round equivariant to every permutation of the
spec; a mean over each group's units then gives an invariant embedding.
``tests/test_graph.py`` checks this on random permutations of every group,
and checks that a permutation that breaks the spec changes the embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import LpsbookError
from .estimator import SimilarityMethod, num_models
from ..core.runtime import minibatch_sgd, one_thread
from ..core.symmetry import resnet20_spec


def graph_layout(spec, shapes: dict) -> dict:
    """How each tensor of a state dict enters the graph.

    Parameters
    ----------
    spec : PermutationSpec
    shapes : dict {key: shape of one model's tensor}
        Floating-point tensors only.

    Returns
    -------
    dict with
        ``"nodes"``: {group: [(key, axis, features per unit)]},
        ``"edges"``: [(key, out group, out axis, in group, in axis, features per edge)],
        ``"globals"``: [(key, size)], ``"sizes"``: {group: units}.
    """
    if spec.axis_blocks:
        raise LpsbookError("the graph learner reads one node per unit and cannot read a concatenation of "
                           f"channel groups (as on {next(iter(spec.axis_blocks))})")
    nodes, edges, globals_, sizes = {}, [], [], {}
    for key, shape in shapes.items():
        axes = dict(spec.axes_to_perm.get(key, {}))
        numel = int(torch.tensor(shape).prod()) if shape else 1
        for axis, group in axes.items():
            if sizes.setdefault(group, shape[axis]) != shape[axis]:
                raise LpsbookError(f"the graph learner reads one node per unit, but axis {axis} of {key} has "
                                   f"{shape[axis]} entries for the {sizes[group]} units of group {group} (a "
                                   "flattened feature map?); it cannot read this architecture")
        if not axes:
            globals_.append((key, numel))
        elif len(axes) == 1:
            (axis, group), = axes.items()
            nodes.setdefault(group, []).append((key, axis, numel // shape[axis]))
        elif len(axes) == 2:
            (a0, g0), (a1, g1) = sorted(axes.items())
            edges.append((key, g0, a0, g1, a1, numel // (shape[a0] * shape[a1])))
        else:
            raise LpsbookError(f"{key}: tensors with more than two permuted axes are not supported")
    for group in sizes:
        nodes.setdefault(group, [])
    return {"nodes": nodes, "edges": edges, "globals": globals_, "sizes": sizes}


def _unit_features(t: torch.Tensor, axis: int) -> torch.Tensor:
    """[M, ...] -> [M, units, features]: the permuted axis (of one model's tensor) first, the rest flattened."""
    t = t.movedim(axis + 1, 1)
    return t.reshape(t.shape[0], t.shape[1], -1)


def _edge_features(t: torch.Tensor, a_out: int, a_in: int) -> torch.Tensor:
    """[M, ...] -> [M, out units, in units, features]."""
    t = t.movedim((a_out + 1, a_in + 1), (1, 2))
    return t.reshape(*t.shape[:3], -1)


class SpecGraphNet(nn.Module):
    """The message-passing network over one layout (see the module docstring)."""

    def __init__(self, layout: dict, hidden: int = 32, rounds: int = 2, embed_dim: int = 32, num_classes: int = 2,
                 pool: str = "sort"):
        super().__init__()
        if pool not in ("sort", "mean"):
            raise LpsbookError(f"pool must be 'sort' or 'mean', got {pool!r}")
        self.layout, self.rounds, self.pool = layout, rounds, pool
        self.groups = sorted(layout["sizes"])
        self.node_in = nn.ModuleList([
            nn.Linear(max(1, sum(f for _, _, f in layout["nodes"][g])), hidden) for g in self.groups])
        self.edge_names = [f"e{i}" for i in range(len(layout["edges"]))]
        self.to_out = nn.ModuleList()
        self.to_in = nn.ModuleList()
        for _ in range(rounds):
            self.to_out.append(nn.ModuleDict({n: _EdgeMessage(e[5], hidden) for n, e in zip(self.edge_names, layout["edges"])}))
            self.to_in.append(nn.ModuleDict({n: _EdgeMessage(e[5], hidden) for n, e in zip(self.edge_names, layout["edges"])}))
        self.norm = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(rounds)])
        n_global = sum(size for _, size in layout["globals"])
        width = sum(layout["sizes"].values()) if pool == "sort" else len(self.groups)
        self.readout = nn.Sequential(nn.Linear(hidden * width + n_global, 2 * embed_dim), nn.ReLU(),
                                     nn.Linear(2 * embed_dim, embed_dim))
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, inputs: dict) -> torch.Tensor:
        """Model embeddings ``[M, embed_dim]`` from :meth:`GraphLearner.graph_inputs`' tensors."""
        h = {g: F.relu(lin(inputs["nodes"][g])) for g, lin in zip(self.groups, self.node_in)}
        for r in range(self.rounds):
            incoming = {g: torch.zeros_like(h[g]) for g in self.groups}
            count = dict.fromkeys(self.groups, 0)
            for name, (key, g_out, _, g_in, _, _) in zip(self.edge_names, self.layout["edges"]):
                e = inputs["edges"][key]
                incoming[g_out] = incoming[g_out] + self.to_out[r][name](e, h[g_in], reduce_dim=2)
                incoming[g_in] = incoming[g_in] + self.to_in[r][name](e, h[g_out], reduce_dim=1)
                count[g_out] += 1
                count[g_in] += 1
            h = {g: self.norm[r](h[g] + incoming[g] / max(1, count[g])) for g in self.groups}
        if self.pool == "sort":  # invariant: every feature sorted over each group's units (Eq. 8's idea, per group)
            pooled = [h[g].sort(dim=1, descending=True).values.flatten(1) for g in self.groups]
        else:  # invariant: a mean over each group's units
            pooled = [h[g].mean(1) for g in self.groups]
        return self.readout(torch.cat(pooled + [inputs["globals"]], dim=1))

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.head(F.relu(self.embed(inputs)))


class _EdgeMessage(nn.Module):
    """``mean over the other side's units of relu(W_e e_ab + W_h h_b)``: a message along one edge tensor."""

    def __init__(self, edge_features: int, hidden: int):
        super().__init__()
        self.edge = nn.Linear(edge_features, hidden)
        self.node = nn.Linear(hidden, hidden, bias=False)

    def forward(self, e: torch.Tensor, h_other: torch.Tensor, reduce_dim: int) -> torch.Tensor:
        # e: [M, out, in, f]; h_other: [M, in, H] (reduce over in, dim 2) or [M, out, H] (reduce over out, dim 1)
        msg = self.edge(e) + self.node(h_other).unsqueeze(1 if reduce_dim == 2 else 2)
        return F.relu(msg).mean(dim=reduce_dim)


class GraphLearner(SimilarityMethod):
    """A graph learner over every weight of the network (:class:`SpecGraphNet`), trained to classify tasks.

    Parameters
    ----------
    keys : sequence of str, optional
        Prefixes of the state-dict keys it reads (default: every
        floating-point tensor); e.g. ``("layer3.",)`` for the last stage only.
    hidden, rounds, embed_dim : network size.
    epochs, lr, batch_size, weight_decay : AdamW training settings.
    seed : int
    device : str or torch.device
    spec : PermutationSpec, optional
        Default :func:`lpsbook.core.symmetry.resnet20_spec`.

    Attributes
    ----------
    net_ : SpecGraphNet
    scale_ : dict {key: (mean, sd)}
        Every tensor is standardised by one mean and sd over the training
        models and all its entries (numbers no permutation changes).
    """

    def __init__(self, keys=None, hidden: int = 32, rounds: int = 2, embed_dim: int = 32, epochs: int = 40,
                 lr: float = 3e-3, batch_size: int = 32, weight_decay: float = 1e-4, seed: int = 0, device="cpu",
                 spec=None, pool: str = "sort"):
        self.keys, self.hidden, self.rounds, self.embed_dim, self.pool = keys, hidden, rounds, embed_dim, pool
        self.epochs, self.lr, self.batch_size, self.weight_decay = epochs, lr, batch_size, weight_decay
        self.seed, self.device, self.spec = seed, device, spec

    def _used_keys(self, models: dict) -> list:
        keys = [k for k, v in models.items() if v.is_floating_point()]
        if self.keys is not None:
            keys = [k for k in keys if k.startswith(tuple(self.keys))]
        if not keys:
            raise LpsbookError(f"keys={self.keys!r} selects no floating-point tensor of the models")
        return keys

    def graph_inputs(self, models: dict) -> dict:
        """The tensors the network reads: node, edge and global features, standardised."""
        lay, dev = self.layout_, torch.device(self.device)
        missing = [k for k in self.keys_ if k not in models]
        if missing:
            raise LpsbookError(f"models lack {len(missing)} tensors the learner was fitted on, e.g. {missing[:3]}")
        m = num_models(models)

        def std(key):
            mean, sd = self.scale_[key]
            return ((models[key].double() - mean) / sd).float().to(dev)

        nodes = {}
        for g in sorted(lay["sizes"]):
            parts = [_unit_features(std(k), a) for k, a, _ in lay["nodes"][g]]
            nodes[g] = torch.cat(parts, dim=2) if parts else torch.zeros(m, lay["sizes"][g], 1, device=dev)
        edges = {k: _edge_features(std(k), a_out, a_in) for k, _, a_out, _, a_in, _ in lay["edges"]}
        glob = [std(k).reshape(m, -1) for k, _ in lay["globals"]]
        return {"nodes": nodes, "edges": edges,
                "globals": torch.cat(glob, 1) if glob else torch.zeros(m, 0, device=dev)}

    def _fit(self, models, y, n_classes):
        self.keys_ = self._used_keys(models)
        self.scale_ = {k: (models[k].double().mean().item(), max(models[k].double().std().item(), 1e-8))
                       for k in self.keys_}
        self.layout_ = graph_layout(self.spec or resnet20_spec(), {k: tuple(models[k].shape[1:]) for k in self.keys_})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = SpecGraphNet(self.layout_, self.hidden, self.rounds, self.embed_dim, n_classes,
                                     self.pool).to(self.device)
        x = self.graph_inputs(models)
        y = y.to(self.device)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, self.epochs))

        def loss(idx):
            return F.cross_entropy(self.net_(_rows(x, idx)), y[idx])

        self.net_.train()
        with one_thread(self.device):
            minibatch_sgd(loss, len(y), self.epochs, self.batch_size, self.seed, opt, sched,
                          torch.device(self.device), "graph learner")
        self.net_.eval()

    @torch.no_grad()
    def _scores(self, models):
        return self.net_(self.graph_inputs(models)).cpu()

    @torch.no_grad()
    def _embed(self, models):
        return F.normalize(self.net_.embed(self.graph_inputs(models)).cpu(), dim=1)


def _rows(x: dict, idx) -> dict:
    """The models ``idx`` of :meth:`GraphLearner.graph_inputs`' tensors."""
    return {"nodes": {g: v[idx] for g, v in x["nodes"].items()},
            "edges": {k: v[idx] for k, v in x["edges"].items()}, "globals": x["globals"][idx]}
