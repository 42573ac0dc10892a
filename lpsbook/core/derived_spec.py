"""The permutation symmetry of a network nobody wrote a spec for, read from its graph.

:func:`derive_spec` traces a network with ``torch.fx``, follows the channel axis of every tensor from
the input to the output, and returns the :class:`~lpsbook.core.symmetry.PermutationSpec` that every
other function of :mod:`lpsbook.core.symmetry` reads.  :func:`check_spec` then tests the spec the only
way that counts: a random permutation from it must leave the network's outputs unchanged.

How the channels are followed
-----------------------------
Every tensor's channel axis (axis 1) is a list of *blocks*, each the channels of one permutation
group, possibly repeated ``k`` times per channel (a flattened ``[C, H, W]`` map has ``k = H * W``).
A convolution or linear layer reads its input's blocks on its weight's axis 1 and starts a new group
on its output (weight axis 0, bias); BatchNorm reads its input's blocks on its four vectors and passes
them on; elementwise activations, dropout and pooling pass them on; a residual addition (or an
elementwise product of two feature maps) ties its operands' groups into one, the coupled channels
of structured pruning's dependency graphs; a concatenation along the channels lays its inputs'
blocks side by side (one block per input); flattening multiplies ``k``.  A depthwise convolution
keeps its input's groups (output channel ``i`` reads input channel ``i`` only).  The network's input
and output groups are fixed (never permuted), and so is every group tied to them.

An operation the derivation cannot reason about raises an error that names it and the module it is
in; with ``unknown="fix"`` its inputs and output are held fixed instead (no permutation through it)
and a warning says so.  The result is then still a symmetry, only a smaller one.
"""
from __future__ import annotations

import copy
import math
import operator
import warnings

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .errors import LpsbookError
from .symmetry import PermutationSpec, permute_state, random_permutations

# operations that act on every channel alike and keep the channel axis where it is
_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
                 nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Identity,
                 nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                 nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_PASS_NAMES = {"relu", "relu_", "relu6", "leaky_relu", "elu", "gelu", "silu", "mish", "sigmoid", "tanh",
               "hardswish", "hardsigmoid", "hardtanh", "softplus", "dropout", "dropout1d", "dropout2d",
               "dropout3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
               "adaptive_max_pool2d", "adaptive_max_pool3d", "contiguous", "clone", "detach", "float"}
_TIE_NAMES = {"add", "iadd", "add_", "sub", "isub", "sub_", "mul", "imul", "mul_", "truediv", "div"}
_REDUCE_NAMES = {"mean", "sum", "amax", "amin"}
_BN_VECTORS = ("weight", "bias", "running_mean", "running_var")


class _Groups:
    """Union-find over permutation groups: each with its size, its name, whether it is fixed, and the
    ``(key, axis[, start, stop])`` pairs it acts on."""

    def __init__(self):
        self.parent, self.size, self.name, self.fixed, self.pairs = [], [], [], [], []

    def new(self, n: int, name: str, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(n), self.name.append(name), self.fixed.append(fixed), self.pairs.append([])
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = g = self.parent[self.parent[g]]
        return g

    def union(self, a: int, b: int, where: str):
        a, b = sorted((self.find(a), self.find(b)))  # the older group keeps its name
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise LpsbookError(f"{where} ties {self.size[a]} channels of {self.name[a]!r} to {self.size[b]} "
                               f"of {self.name[b]!r}: their permutations cannot be one")
        self.parent[b] = a
        self.fixed[a] |= self.fixed[b]
        self.pairs[a] += self.pairs[b]

    def fix(self, layout):
        for g, _ in layout or ():
            self.fixed[self.find(g)] = True


def _width(groups, layout) -> int:
    return sum(groups.size[groups.find(g)] * k for g, k in layout)


class _Deriver:
    def __init__(self, gm: fx.GraphModule, unknown: str):
        self.gm, self.unknown, self.groups = gm, unknown, _Groups()
        self.layout, self.read_at, self.module_out = {}, {}, {}

    # --- bookkeeping ---------------------------------------------------------------------------

    def where(self, node) -> str:
        if node.op == "call_module":
            return f"module {node.target!r} ({type(self.gm.get_submodule(node.target)).__name__})"
        stack = node.meta.get("nn_module_stack") or {}
        path, cls = (list(stack.values())[-1] if stack else ("", None))
        inside = f"module {path!r} ({getattr(cls, '__name__', cls)})" if path else "the top-level forward"
        return f"{node.op} {getattr(node.target, '__name__', node.target)!s} in {inside}"

    def read(self, layout, key: str, axis: int, node):
        """Record that ``layout``'s groups act on ``axis`` of ``key``."""
        if key not in self.state:
            return
        if (key, axis) in self.read_at:  # a module called twice: both inputs must move alike
            self.tie([self.read_at[key, axis], layout], node)
            return
        self.read_at[key, axis] = layout
        size, g = self.state[key].shape[axis], self.groups
        if _width(g, layout) != size:
            raise LpsbookError(f"{self.where(node)}: {size} entries on axis {axis} of {key!r} but "
                               f"{_width(g, layout)} channels come in")
        if len(layout) == 1:
            g.pairs[g.find(layout[0][0])].append((key, axis))
            return
        start = 0
        for grp, k in layout:
            stop = start + g.size[g.find(grp)] * k
            g.pairs[g.find(grp)].append((key, axis, start, stop))
            start = stop

    def tie(self, layouts, node):
        """Tie the groups of several tensors that meet elementwise (a residual addition)."""
        first = layouts[0]
        for other in layouts[1:]:
            same = (len(other) == len(first) and all(
                k1 == k2 and self.groups.size[self.groups.find(a)] == self.groups.size[self.groups.find(b)]
                for (a, k1), (b, k2) in zip(first, other)))
            if same:
                for (a, _), (b, _) in zip(first, other):
                    self.groups.union(a, b, self.where(node))
            else:  # blocks that do not line up: no permutation through either
                self.hold(node, "its operands' channel blocks do not line up", layouts)
        return first

    def hold(self, node, why: str, layouts):
        if self.unknown != "fix":
            raise LpsbookError(f"cannot derive the permutation symmetry through {self.where(node)}: {why}. "
                               f"Pass unknown='fix' to hold its channels fixed (no permutation through it).")
        warnings.warn(f"{self.where(node)}: {why}; its channels are held fixed (no permutation through it)",
                      stacklevel=4)
        for layout in layouts:
            self.groups.fix(layout)
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        return [(self.groups.new(shape[1], str(node.name), fixed=True), 1)]

    def fresh(self, node, n: int):
        """The output group of a module (the same group each time the module is called)."""
        if node.target not in self.module_out:
            self.module_out[node.target] = self.groups.new(n, str(node.target))
        return [(self.module_out[node.target], 1)]

    # --- the walk --------------------------------------------------------------------------------

    def run(self) -> PermutationSpec:
        self.state = dict(self.gm.state_dict())
        for node in self.gm.graph.nodes:
            self.layout[node] = self.visit(node)
            shape, layout = _shape(node), self.layout[node]
            if layout is not None and shape is not None and len(shape) >= 2 and _width(self.groups, layout) != shape[1]:
                raise LpsbookError(f"{self.where(node)}: its output has {shape[1]} channels but "
                                   f"{_width(self.groups, layout)} were followed into it")
        g, spec, taken = self.groups, {}, set()
        for root in sorted({g.find(i) for i in range(len(g.parent))}):
            if g.fixed[root] or not g.pairs[root]:
                continue
            name = g.name[root]
            while name in taken:
                name += "'"
            taken.add(name)
            spec[name] = g.pairs[root]
        return PermutationSpec(spec)

    def ins(self, node):
        return [self.layout.get(a) for a in node.all_input_nodes if self.layout.get(a) is not None]

    def visit(self, node):
        shape = _shape(node)
        if node.op == "placeholder":
            return None if shape is None or len(shape) < 2 else [(self.groups.new(shape[1], "input", True), 1)]
        if node.op == "output":
            for layout in self.ins(node):
                self.groups.fix(layout)
            return None
        if node.op == "get_attr":
            return None if shape is None else self.hold(node, "a parameter used outside its module", [])
        if shape is None:  # sizes, shapes and other non-tensors carry no channels
            return None
        if node.op == "call_module":
            return self.module(node, self.gm.get_submodule(node.target))
        name = getattr(node.target, "__name__", str(node.target)).removeprefix("__").removesuffix("__")
        return self.function(node, name)

    def module(self, node, m):
        (x,) = [self.layout[a] for a in node.args[:1]] or [None]
        key = f"{node.target}."
        if x is None:
            return self.hold(node, "its input is not followed", self.ins(node))
        if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
            if m.groups == 1:
                self.read(x, key + "weight", 1, node)
                out = self.fresh(node, m.out_channels)
            elif m.groups == m.in_channels:  # depthwise: output channels follow their input channel
                mult = m.out_channels // m.in_channels
                out = [(grp, k * mult) for grp, k in x]
            else:
                return self.hold(node, f"a grouped convolution ({m.groups} groups of {m.in_channels // m.groups} "
                                       "channels) permutes only within and among its groups", [x])
            self.read(out, key + "weight", 0, node)
            self.read(out, key + "bias", 0, node)
            return out
        if isinstance(m, nn.Linear):
            if len(_shape(node.args[0])) != 2:
                return self.hold(node, "a linear layer on a tensor that is not [batch, features]", [x])
            self.read(x, key + "weight", 1, node)
            out = self.fresh(node, m.out_features)
            self.read(out, key + "weight", 0, node)
            self.read(out, key + "bias", 0, node)
            return out
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for v in _BN_VECTORS:
                self.read(x, key + v, 0, node)
            return x
        if isinstance(m, _PASS_MODULES):
            return self.passes(node, x)
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, m.start_dim)
        return self.hold(node, "lpsbook does not know how this module moves channels", [x])

    def function(self, node, name):
        ins = self.ins(node)
        args = [a for a in node.args if isinstance(a, fx.Node)]
        x = self.layout.get(args[0]) if args else None
        if name in _PASS_NAMES and x is not None:
            return self.passes(node, x)
        if name in _TIE_NAMES and ins:
            out = _shape(node)
            full = [self.layout[a] for a in args if self.layout.get(a) is not None and len(_shape(a)) >= 2
                    and _shape(a)[1] == out[1]]
            return self.tie(full, node) if full else self.hold(node, "no operand has the output's channels", ins)
        if name == "cat":
            tensors = node.args[0] if node.args else node.kwargs["tensors"]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            layouts = [self.layout.get(t) for t in tensors]
            if any(layout is None for layout in layouts):
                return self.hold(node, "a concatenation of tensors that are not followed", ins)
            if dim % len(_shape(node)) == 1:
                return [block for layout in layouts for block in layout]
            return self.tie(layouts, node)
        if name == "flatten" and x is not None:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            return self.flatten(node, x, start)
        if name in ("view", "reshape") and x is not None:
            before, after = _shape(args[0]), _shape(node)
            if after[:2] == before[:2]:
                return x
            if len(after) == 2 and after[0] == before[0]:
                return self.flatten(node, x, 1)
            return self.hold(node, f"a reshape from {tuple(before)} to {tuple(after)} mixes the channel axis", ins)
        if name in _REDUCE_NAMES and x is not None:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            rank = len(_shape(args[0]))
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            if dims and all(d % rank >= 2 for d in dims):
                return x
        return self.hold(node, "lpsbook does not know how this operation moves channels", ins)

    def passes(self, node, x):
        before, after = _shape(node.args[0]), _shape(node)
        if before[:2] != after[:2]:
            return self.hold(node, f"its output {tuple(after)} does not keep the input's channels {tuple(before)}", [x])
        return x

    def flatten(self, node, x, start):
        before = _shape(node.args[0])
        start = start % len(before)
        if start >= 2:
            return x
        if start == 1:
            rest = math.prod(before[2:])
            return [(grp, k * rest) for grp, k in x]
        return self.hold(node, "a flatten that merges the batch axis", [x])


def _shape(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def derive_spec(model: nn.Module, example: torch.Tensor, unknown: str = "error") -> PermutationSpec:
    """The permutation symmetry of ``model``, derived from its ``torch.fx`` graph.

    Parameters
    ----------
    model : nn.Module
        Any network ``torch.fx.symbolic_trace`` can trace (no data-dependent control flow).
    example : Tensor
        An input batch of the right shape (sizes only matter; it is run once, in eval mode, on a copy).
    unknown : {"error", "fix"}
        An operation whose effect on channels is not known: an error that names it and its module, or
        its channels held fixed with a warning.

    Returns
    -------
    PermutationSpec
        One permutation per group of channels that must move together, named after the module that
        first writes it; the network's input and output axes are never permuted.
    """
    if unknown not in ("error", "fix"):
        raise LpsbookError(f"unknown= is 'error' or 'fix', not {unknown!r}")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises many kinds; the user needs to know it was the tracing
        raise LpsbookError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
    was_training = model.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    model.train(was_training)
    return _Deriver(gm, unknown).run()


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm random running statistics and affine parameters (in place).

    Their defaults (mean 0, variance 1, weight 1, bias 0) treat every channel alike, which hides a
    wrong permutation of them.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=generator))
                    m.running_var.copy_(torch.empty(m.num_features).uniform_(0.5, 2.0, generator=generator))
                if m.affine:
                    m.weight.copy_(torch.empty(m.num_features).uniform_(0.5, 1.5, generator=generator))
                    m.bias.copy_(0.5 * torch.randn(m.num_features, generator=generator))
    return model


def check_spec(model: nn.Module, spec: PermutationSpec, example: torch.Tensor, seed: int = 0,
               dtype: torch.dtype = torch.float32, tolerance: float | None = None) -> float:
    """Test that ``spec`` is a symmetry of ``model``: outputs unchanged by a random permutation from it.

    The check runs on a copy in eval mode, in ``dtype``, with BatchNorm randomized first
    (:func:`randomize_batchnorm`). Returns the largest output change relative to the largest output;
    raises :class:`LpsbookError` naming the first permutation that changes the outputs when it is above
    ``tolerance`` (default ``1e-4`` in float32, ``1e-9`` in float64: rounding moves outputs by far less,
    a wrong permutation by about as much as the outputs themselves). float32 is the default because
    CPUs run some layers (depthwise convolutions) fifty times slower in float64.
    """
    tolerance = tolerance if tolerance is not None else (1e-9 if dtype == torch.float64 else 1e-4)
    g = torch.Generator().manual_seed(seed)
    net = randomize_batchnorm(copy.deepcopy(model).to(dtype).eval(), g)
    x, state = example.to(dtype), {k: v.clone() for k, v in net.state_dict().items()}

    def change(perms):
        net.load_state_dict(permute_state(state, perms, spec))
        with torch.no_grad():
            y = net(x)
        net.load_state_dict(state)
        return ((y - y0).abs().max() / y0.abs().max().clamp_min(1e-300)).item()

    with torch.no_grad():
        y0 = net(x)
    perms = random_permutations(spec, state, g)
    err = change(perms)
    if err > tolerance:
        culprit = next((n for n in spec.names if change({n: perms[n]}) > tolerance), "several together")
        raise LpsbookError(f"the spec is not a symmetry of {type(model).__name__}: a random permutation moves "
                           f"its outputs by {err:.2e} (relative; tolerance {tolerance:g}); first culprit: {culprit}")
    return err
