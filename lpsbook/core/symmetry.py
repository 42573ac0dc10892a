"""Permutation symmetries of networks, written once as data.

Hidden units of a network can be reordered without changing the function it
computes, provided every tensor that reads or writes those units is reordered
the same way.  Following Git Re-Basin (Ainsworth et al., 2023), a network's
symmetry is described once by a :class:`PermutationSpec`: a mapping from a
permutation's name to the ``(state-dict key, axis)`` pairs it acts on.  Every
function here -- :func:`permute_state`, :func:`random_permutations`,
:func:`weight_matching`, :func:`count_symmetries` -- reads only that spec, so
a new architecture needs a new spec and nothing else.

Conventions
-----------
A permutation is a 1-D ``LongTensor`` ``perm`` of length ``n``; applying it to
an axis means ``w.index_select(axis, perm)``, i.e. new channel ``i`` is old
channel ``perm[i]``.  An axis of length ``k * n`` (``k > 1``) is read as ``n``
consecutive groups of ``k`` entries, which is the layout ``torch.flatten``
gives a ``[C, H, W]`` feature map feeding a linear layer; the whole group of
channel ``perm[i]`` moves to position ``i``.

A pair may also be ``(key, axis, start, stop)``: the permutation acts on the
entries ``start:stop`` of that axis only.  Several permutations can then share
one axis, as where a concatenation of feature maps is read (DenseNet: the
channels of each input of the concatenation are permuted by that input's
permutation, one block each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .nets import BLOCKS_PER_STAGE, STAGES

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation symmetry of a network, as data.

    Parameters
    ----------
    perm_to_axes : mapping of str to sequence of (str, int) or (str, int, int, int)
        For every permutation, the ``(state-dict key, axis)`` pairs it acts
        on, or ``(key, axis, start, stop)`` for a block of an axis.  A pair
        may belong to at most one permutation and blocks of one axis may not
        overlap; keys and axes not listed (e.g. BatchNorm's
        ``num_batches_tracked``, the network's input and output axes) are
        never permuted.

    Attributes
    ----------
    perm_to_axes : mapping of str to tuple of (str, int)
        The normalised, read-only form of the argument.
    axes_to_perm : mapping of str to mapping of int to str
        The inverse view of the whole-axis pairs: for every key, which
        permutation acts on which axis.
    axis_blocks : mapping of str to mapping of int to tuple of (int, int, str)
        The inverse view of the block pairs: for every key and axis, its
        ``(start, stop, permutation)`` blocks in order.
    """

    perm_to_axes: Mapping[str, tuple]
    axes_to_perm: Mapping[str, Mapping[int, str]] = field(init=False, repr=False, compare=False)
    axis_blocks: Mapping[str, Mapping[int, tuple]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        p2a, a2p, blocks = {}, {}, {}
        for name, pairs in self.perm_to_axes.items():
            p2a[name] = tuple(_pair(p) for p in pairs)
            for key, axis, *block in p2a[name]:
                if block:
                    blocks.setdefault(key, {}).setdefault(axis, []).append((*block, name))
                    continue
                owner = a2p.setdefault(key, {}).setdefault(axis, name)
                if owner != name:
                    raise ValueError(f"axis {axis} of {key!r} is claimed by both {owner!r} and {name!r}")
        for key, axes in blocks.items():
            for axis, bl in axes.items():
                bl.sort()
                if axis in a2p.get(key, {}):
                    raise ValueError(f"axis {axis} of {key!r} is claimed whole by {a2p[key][axis]!r} and in blocks")
                for (_, stop, a), (start, _, b) in zip(bl, bl[1:]):
                    if start < stop:
                        raise ValueError(f"blocks of {a!r} and {b!r} overlap on axis {axis} of {key!r}")
        object.__setattr__(self, "perm_to_axes", MappingProxyType(p2a))
        object.__setattr__(self, "axes_to_perm", MappingProxyType(
            {k: MappingProxyType(v) for k, v in a2p.items()}))
        object.__setattr__(self, "axis_blocks", MappingProxyType(
            {k: MappingProxyType({a: tuple(b) for a, b in v.items()}) for k, v in blocks.items()}))

    def __reduce__(self):  # pickled as its argument, the read-only views rebuilt (a fit sent back from a worker)
        return PermutationSpec, (dict(self.perm_to_axes),)

    @property
    def names(self) -> list:
        """Permutation names, in definition order."""
        return list(self.perm_to_axes)

    @property
    def keys(self) -> set:
        """Every state-dict key some permutation acts on."""
        return set(self.axes_to_perm) | set(self.axis_blocks)


def _pair(p) -> tuple:
    """A spec pair in its normal form: ``(key, axis)`` or ``(key, axis, start, stop)``."""
    if len(p) == 2:
        return str(p[0]), int(p[1])
    if len(p) == 4 and 0 <= int(p[2]) < int(p[3]):
        return str(p[0]), int(p[1]), int(p[2]), int(p[3])
    raise ValueError(f"a spec pair is (key, axis) or (key, axis, start, stop) with start < stop, not {p!r}")


def _extent(state, pair) -> int:
    """How many entries of its axis a pair covers."""
    key, axis, *block = pair
    return block[1] - block[0] if block else state[key].shape[axis]


def resnet20_spec() -> PermutationSpec:
    """The 12 permutation groups of :class:`lpsbook.core.nets.ResNet20`.

    The residual stream of each stage is one permutation (``"stage1"`` ..
    ``"stage3"``): it acts on every output written into the stream (stem conv
    and BN, each block's ``conv2``/``bn2``, the projection shortcut
    ``shortcut.0``/``shortcut.1``) and on every input read from it (each
    block's ``conv1`` and shortcut input axes, and ``fc.weight``'s axis 1 for
    the last stage).  The inner channels of each block (``conv1`` out,
    ``bn1``, ``conv2`` in) form their own permutation ``"layerS.B.inner"``.

    Returns
    -------
    PermutationSpec
        3 residual + 9 inner permutations.
    """

    def conv_bn(conv, bn):
        return [(f"{conv}.weight", 0)] + [(f"{bn}.{k}", 0) for k in _BN_KEYS]

    groups = {f"stage{s}": [] for s in range(1, STAGES + 1)}
    groups["stage1"] += conv_bn("conv1", "bn1")
    for s in range(1, STAGES + 1):
        for b in range(BLOCKS_PER_STAGE):
            blk = f"layer{s}.{b}"
            # the block reads its input from the previous stream
            src = f"stage{s - 1 if (b == 0 and s > 1) else s}"
            groups[src].append((f"{blk}.conv1.weight", 1))
            groups[f"{blk}.inner"] = conv_bn(f"{blk}.conv1", f"{blk}.bn1") + [(f"{blk}.conv2.weight", 1)]
            groups[f"stage{s}"] += conv_bn(f"{blk}.conv2", f"{blk}.bn2")
            if b == 0 and s > 1:  # projection shortcut: previous stream -> this stream
                groups[src].append((f"{blk}.shortcut.0.weight", 1))
                groups[f"stage{s}"] += conv_bn(f"{blk}.shortcut.0", f"{blk}.shortcut.1")
    groups[f"stage{STAGES}"].append(("fc.weight", 1))
    return PermutationSpec(groups)


def chain_spec(conv_names, fc_name=None, bias=True) -> PermutationSpec:
    """The "order chain rule" of a plain sequential CNN.

    Between consecutive layers ``l`` and ``l+1`` there is one permutation
    ``"P{l}"`` acting on layer ``l``'s output axis 0 (and its bias) and on
    layer ``l+1``'s input axis 1.  The first layer's input and the network's
    output stay fixed.

    Parameters
    ----------
    conv_names : sequence of str
        Weight keys of the conv layers in forward order (e.g. ``"0.weight"``).
    fc_name : str, optional
        Weight key of a final linear layer.  If given, the last conv's output
        channels are permuted too, together with ``fc_name``'s axis 1 (which
        may be a flattened ``[C, H, W]`` map, see the module notes).
    bias : bool
        Whether every conv has a bias ``<name without .weight>.bias``.

    Returns
    -------
    PermutationSpec
    """
    layers = list(conv_names) + ([fc_name] if fc_name is not None else [])
    groups = {}
    for l, (this, nxt) in enumerate(zip(layers[:-1], layers[1:])):
        pairs = [(this, 0)]
        if bias:
            pairs.append((this.removesuffix(".weight") + ".bias", 0))
        groups[f"P{l}"] = pairs + [(nxt, 1)]
    return PermutationSpec(groups)


def _expand(perm, size):
    """The index that applies ``perm`` to ``size`` entries (groups of ``size / len(perm)``)."""
    n = perm.numel()
    if size == n:
        return perm
    if size % n:
        raise ValueError(f"axis of length {size} cannot take a permutation of {n}")
    k = size // n
    return (perm[:, None] * k + torch.arange(k, device=perm.device)).reshape(-1)


def _take(w, axis, perm):
    """``w`` with ``perm`` applied on ``axis`` (grouped if the axis is a multiple)."""
    return w.index_select(axis, _expand(perm, w.shape[axis]).to(w.device))


def _permute_tensor(w, key, perms, spec, skip_axis=None):
    for axis, name in spec.axes_to_perm.get(key, {}).items():
        if axis != skip_axis and name in perms:
            w = _take(w, axis, perms[name])
    for axis, blocks in spec.axis_blocks.get(key, {}).items():
        if axis == skip_axis or not any(name in perms for *_, name in blocks):
            continue
        index = torch.arange(w.shape[axis])
        for start, stop, name in blocks:
            if name in perms:
                index[start:stop] = start + _expand(perms[name], stop - start)
        w = w.index_select(axis, index.to(w.device))
    return w


def permute_state(state, perms, spec) -> dict:
    """Apply permutations to a state dict.

    Parameters
    ----------
    state : dict of str to Tensor
        The network's state dict; it is not modified.
    perms : dict of str to LongTensor
        Permutations by name; names of ``spec`` missing here are identity.
    spec : PermutationSpec

    Returns
    -------
    dict of str to Tensor
        A new state dict (every tensor a fresh copy).
    """
    unknown = set(perms) - set(spec.perm_to_axes)
    if unknown:
        raise KeyError(f"permutations not in the spec: {sorted(unknown)}")
    missing = spec.keys - set(state)
    if missing:
        raise KeyError(f"spec keys not in the state dict: {sorted(missing)}")
    return {k: _permute_tensor(v, k, perms, spec).clone() for k, v in state.items()}


def perm_sizes(spec, state) -> dict:
    """The length of every permutation, read from the state dict.

    The length is the shortest axis a permutation acts on; every other axis
    it acts on must be a multiple of it.
    """
    sizes = {}
    for name, pairs in spec.perm_to_axes.items():
        lens = [_extent(state, p) for p in pairs]
        sizes[name] = n = min(lens)
        if any(m % n for m in lens):
            raise ValueError(f"permutation {name!r} acts on axes of lengths {lens}")
    return sizes


def random_permutations(spec, state, generator=None) -> dict:
    """A uniformly random permutation for every name in ``spec``.

    Parameters
    ----------
    spec : PermutationSpec
    state : dict of str to Tensor
        Gives the sizes.
    generator : torch.Generator, optional

    Returns
    -------
    dict of str to LongTensor
    """
    return {name: torch.randperm(n, generator=generator) for name, n in perm_sizes(spec, state).items()}


def invert(perms) -> dict:
    """The inverse permutations: ``permute_state(permute_state(s, p), invert(p)) == s``."""
    return {name: torch.argsort(p) for name, p in perms.items()}


def weight_matching(reference_state, state, spec, max_iter=100, seed=0) -> dict:
    """Git Re-Basin weight matching: permute ``state`` to look like ``reference_state``.

    Coordinate descent on ``sum_key <W_ref[key], P(W[key])>``: each sweep
    visits the permutations in a random order; for one permutation it sums,
    over every ``(key, axis)`` pair the permutation touches, the inner
    products between slices of the reference and of ``state`` (with the other
    permutations currently applied on the other axes), and solves the linear
    assignment problem.  A permutation is replaced only if that strictly
    increases the objective; the descent stops after a sweep with no change.

    Parameters
    ----------
    reference_state, state : dict of str to Tensor
        Two state dicts of the same architecture.
    spec : PermutationSpec
    max_iter : int
        Maximum number of sweeps.
    seed : int
        Seed of the visiting order.

    Returns
    -------
    dict of str to LongTensor
        ``permute_state(state, perms, spec)`` is aligned to the reference.
    """
    rng = np.random.default_rng(seed)
    ref = {k: reference_state[k].detach().cpu().double() for k in spec.keys}
    cur = {k: state[k].detach().cpu().double() for k in spec.keys}
    sizes = perm_sizes(spec, cur)
    perms = {name: torch.arange(n) for name, n in sizes.items()}
    names = spec.names
    for _ in range(max_iter):
        changed = False
        for i in rng.permutation(len(names)):
            name, n = names[i], sizes[names[i]]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis, *block in spec.perm_to_axes[name]:
                rows = slice(*block) if block else slice(None)
                a = ref[key].movedim(axis, 0)[rows].reshape(n, -1)
                b = _permute_tensor(cur[key], key, perms, spec, skip_axis=axis).movedim(axis, 0)[rows].reshape(n, -1)
                cost += a @ b.T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            idx = torch.arange(n)
            gain = cost[idx, new].sum() - cost[idx, perms[name]].sum()
            if gain > 1e-12 * max(1.0, cost.abs().max().item()):
                perms[name], changed = new, True
        if not changed:
            break
    return perms


def count_symmetries(spec, state) -> float:
    """``log10`` of the number of weight-space permutation symmetries, ``prod_P n_P!``."""
    return sum(math.lgamma(n + 1) for n in perm_sizes(spec, state).values()) / math.log(10)


def filter_similarity(state_a, state_b, key) -> float:
    """Mean cosine similarity between corresponding filters of one layer.

    Parameters
    ----------
    state_a, state_b : dict of str to Tensor
    key : str
        A weight key; filter ``i`` is row ``i`` of the weight flattened to
        ``[out, -1]``.

    Returns
    -------
    float
    """
    a = state_a[key].detach().double().flatten(1)
    b = state_b[key].detach().double().flatten(1).to(a.device)
    return torch.nn.functional.cosine_similarity(a, b, dim=1).mean().item()


# --- Helpers for the book's chapters on symmetry (chapters 1 and 2) ---------------------------


def permute_group(state, spec, name, perm, keys=None) -> dict:
    """Apply one permutation of ``spec`` to all of its axes, or only to some tensors.

    With ``keys=None`` this is ``permute_state(state, {name: perm}, spec)``,
    an exact symmetry.  Restricting the permutation to some of the tensors it
    acts on (e.g. only a conv layer's filters, not the BatchNorm and the next
    layer that read them) gives a *mismatched* shuffle, which in general
    changes the network's function.

    Parameters
    ----------
    state : dict of str to Tensor
    spec : PermutationSpec
    name : str
        A permutation of ``spec``.
    perm : LongTensor
    keys : sequence of str, optional
        Only the ``(key, axis)`` pairs of ``name`` whose key is listed here
        are permuted.

    Returns
    -------
    dict of str to Tensor
        A new state dict.
    """
    if name not in spec.perm_to_axes:
        raise KeyError(f"permutation {name!r} is not in the spec; known: {spec.names}")
    pairs = spec.perm_to_axes[name]
    if keys is not None:
        unknown = set(keys) - {p[0] for p in pairs}
        if unknown:
            raise KeyError(f"permutation {name!r} does not act on {sorted(unknown)}")
        pairs = [p for p in pairs if p[0] in set(keys)]
    out = {k: v.clone() for k, v in state.items()}
    one = PermutationSpec({name: pairs})
    for key in one.keys:
        out[key] = _permute_tensor(out[key], key, {name: perm}, one).clone()
    return out
