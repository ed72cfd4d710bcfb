"""Numbers: forward values, deltas and gradients, gradient check, descent and flow.

A network is compiled once (per binding of its generic functions) into two small
programs of lambdified per-node expressions, never the fully substituted gradient:

- forward: each node's value from its producers' values, in topological order;
- backward: from ``dE/dE = 1`` down, ``delta_k = sum over consumers l of delta_l * ∂z_l/∂z_k``
  and ``dE/dw = sum over the nodes k that use w of delta_k * ∂z_k/∂w``, where each local
  partial is the engine's (:func:`symprop.derive.local_partial`) evaluated at the node values.

Inputs and targets may be arrays of shape ``(M,)`` (a batch); parameters are numbers.
Values and deltas are per sample (the delta of a sample's own loss); the loss and the
gradient are reduced over the batch by the network's ``reduction`` (sum or mean). The
gradient has every parameter and every input; an input's entry is the reduction of its
per-sample gradients (the derivative for a shift of that input in every sample).

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> g = gradient(net, {"x": 1.0, "t": 1.0, "w": 0.0})
>>> g.loss, g.gradient[w]
(0.125, -0.125)

Numerical conventions (documented here because they change numbers):

- Stable NumPy forms: ``sigmoid`` from ``exp(-|x|)``, ``softplus`` by ``logaddexp``, ``softmax``
  with the largest logit subtracted, ``softmax_cross_entropy`` by log-sum-exp. In a node's
  forward expression ``log(sigmoid(u))`` becomes ``-softplus(-u)``, ``log(1 - sigmoid(u))``
  becomes ``-softplus(u)`` and ``log(softmax_k(z))`` becomes ``z_k - logsumexp(z)``, also
  when the sigmoid or softmax is a node of its own; losses stay exact at pre-activations of
  +-1000.
- A sigmoid or softmax *node* read under a ``log`` by another node (a probability fed to a
  cross-entropy) has its value clipped to ``[PROB_FLOOR, PROB_CEIL]`` = ``[1e-300, 1 - 2**-53]``:
  the backward pass divides by it (``d(-t log p)/dp = -t/p``), and ``p = 0`` would give
  ``0 * inf``. The gradient below it, ``p - t``, is then off by at most ``1e-16``.
- ``softmax_cross_entropy`` needs targets that sum to 1 in every sample (its rule
  ``dL/dz = y_hat - t`` assumes it); otherwise :class:`NumericError`.
- No value of a leaf, an unbound generic function or a non-finite node value gives a
  :class:`NumericError` naming the symbol.
"""

from __future__ import annotations

import fnmatch
import math
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from . import functions as F
from . import limits
from .graph import Network, NetworkError

__all__ = [
    "NumericError", "Gradient", "Check", "CheckRow", "PathTerm", "Descent", "Flow", "Layer",
    "gradient", "check", "step", "flow", "Evaluator", "PRECISION",
    "STEP", "GOOD", "OK", "SUSPICIOUS", "SATURATION", "PROB_FLOOR", "PROB_CEIL",
    "DIFFERENCES", "VANISHING", "EXPLODING_RATIO", "VANISHING_RATIO", "thresholds", "update_rule",
]

PROB_FLOOR = 1e-300
PROB_CEIL = 1.0 - 2.0**-53  # the largest float below 1

# Gradient check (cs231n's thresholds on the relative error |a - n| / max(|a|, |n|, floor)).
STEP = 1e-5  # central-difference step, scaled by max(1, |p|): near eps**(1/3), the optimum
GOOD = 1e-7  # "good": at most this
OK = 1e-4  # "ok": at most this (acceptable where the loss has kinks: relu, max)
SUSPICIOUS = 1e-2  # "suspicious": at most this; above it "wrong". Both count as failures.
DIFFERENCES = ("central", "forward")  # check's finite differences (seed 004 teaches forward ones)
AGAINST_FLOOR = 1e-12  # floor of the relative error between two exact formulas, times max(1, |E|)

# Flow diagnostics.
SATURATION = 1e-3  # a sigmoid/tanh unit with f'(u) below this is saturated (|u| > 6.9 / 3.8)
VANISHING = 1e-3  # a node's input gradient below this times the loss end's is vanishing
EXPLODING_RATIO = 1e2  # first/last layer gradient norm ratio above this: "exploding"
VANISHING_RATIO = 1e-2  # ... below this: "vanishing"; in between: "stable"
MAX_PATHS_SHOWN = 50  # a failing parameter's path terms are listed up to this many paths


class NumericError(NetworkError):
    """A network that cannot be evaluated at the given values; names the symbol at fault."""


# -- NumPy forms ----------------------------------------------------------------------------
# Each primitive's stable NumPy form is in its record (symprop.functions); the compiled
# programs add the stable form of log softmax, which only forward programs use.

def _log_softmax(k, z):
    return np.asarray(z[int(k) - 1], dtype=float) - F.np_logsumexp(*z)


class log_softmax(sp.Function):
    """``log softmax_k(z)``, used only inside compiled forward programs (stable form)."""


# -- compiling a network --------------------------------------------------------------------

def _probability_nodes(net: Network) -> dict[sp.Symbol, sp.Expr]:
    """Sigmoid and softmax nodes that some node reads under a log (probabilities)."""
    found = {}
    for expr in net.nodes.values():
        for lg in expr.atoms(sp.log):
            for s in lg.args[0].free_symbols:
                if isinstance(net.nodes.get(s), (F.sigmoid, F.softmax)):
                    found[s] = net.nodes[s]
    return found


def _stable_logs(expr: sp.Expr, probabilities) -> sp.Expr:
    """Rewrite logs of sigmoids and softmaxes (or of such nodes) into stable forms."""

    def stable(arg):
        inner = probabilities.get(arg, arg)
        if isinstance(inner, F.sigmoid):
            return -F.softplus(-inner.args[0])
        if isinstance(inner, F.softmax):
            return log_softmax(*inner.args)
        complement = 1 - arg
        inner = probabilities.get(complement, complement)
        if isinstance(inner, F.sigmoid):
            return -F.softplus(inner.args[0])
        return None

    if not expr.has(sp.log):
        return expr
    return expr.replace(lambda e: isinstance(e, sp.log) and stable(e.args[0]) is not None,
                        lambda e: stable(e.args[0]))


def _bindings(bind) -> dict[str, Callable]:
    """Each generic function's activation: a name (a built-in) or a callable (a defined
    function's class), as the activation itself."""
    out = {}
    for name, act in dict(bind or {}).items():
        try:
            out[name] = F.activation(act)
        except ValueError as err:
            raise NumericError(f"cannot bind {name}: {err}") from None
    return out


def _generic_namespace(exprs, bind) -> dict[str, Callable]:
    """NumPy callables for every generic function (and derivative) met in ``exprs``."""
    found = {type(a) for a in F.subexpressions(exprs) if isinstance(a, F.GenericFunction)}
    namespace = {}
    u = sp.Dummy("u")
    for cls in sorted(found, key=lambda c: (c.base_name, c.order)):
        name = cls.base_name
        if name not in bind:
            raise NumericError(
                f"the generic function {name} has no numbers until it is bound to an activation: "
                f"--bind {name}=tanh on the command line, [bind] {name} = \"tanh\" in the spec, or "
                f"bind={{'{name}': 'tanh'}} in Python (known: {', '.join(sorted(F.ACTIVATIONS))})"
            )
        f = sp.diff(bind[name](u), u, cls.order)
        namespace[cls.__name__] = sp.lambdify([u], f, modules=[F.numpy_namespace([f]), "numpy"])
    return namespace


class _Program:
    """The compiled forward and backward programs of one network under one binding."""

    def __init__(self, net: Network, bind: dict[str, str]):
        from .derive import local_partial

        self.net = net
        self.bind = bind
        self.rank = {s: i for i, s in enumerate(net.symbols)}
        self.probabilities = _probability_nodes(net)
        self.slot = {s: i for i, s in enumerate(net.params + net.inputs)}
        forward = [(k, _stable_logs(net.nodes[k], self.probabilities)) for k in net.order]
        backward = []
        for l in reversed(net.order):
            if l not in net.ancestors_of_loss:
                continue
            # nodes first, then parameters and inputs: backprop takes them as two blocks
            wrt = tuple(s for s in net.producers[l] if s in net.nodes)
            wrt += tuple(s for s in net.producers[l] if s in self.slot)
            lps = [local_partial(net, l, s) for s in wrt]
            backward.append((l, wrt, lps))
        # derivatives of functions (the chain factors; the others are algebra) as one set:
        # looking at each partial's full expression would cost more than compiling it
        chains = {f for *_, lps in backward for lp in lps for chain, _ in lp.products for f in chain}
        self.namespace = {"log_softmax": _log_softmax}
        self.softmaxes: dict = {}  # logits tuple -> (compiled logits, {k: symbol}), see hoist
        self._know([e for _, e in forward] + list(chains))
        self.forward = [(k, *self.compile(e), k in self.probabilities) for k, e in forward]
        self.backward = [_Partials(self, l, wrt, lps) for l, wrt, lps in backward]
        self._extra: dict = {}
        self.target_sums = [
            (k, sce, self.compile(sp.Add(*sce.targets)))
            for k, expr in net.nodes.items()
            for sce in sorted(expr.atoms(F.softmax_cross_entropy), key=sp.default_sort_key)
        ]

    def _know(self, exprs):
        """Add the NumPy forms of the functions in ``exprs`` (bound generics included) to the
        namespace compiled code runs in, and a printer that calls them by name."""
        try:
            found = {**F.numpy_namespace(exprs), **_generic_namespace(exprs, self.bind)}
        except ValueError as err:
            raise NumericError(str(err)) from None
        if found.keys() - self.namespace.keys() or not hasattr(self, "printer"):
            self.namespace.update(found)
            self.printer = NumPyPrinter({
                "fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                "user_functions": {name: name for name in self.namespace},
                "order": "none",  # sorting the terms of a 785-term sum costs more than compiling it
            })

    def hoist(self, expr):
        """``expr`` (or a list) with each ``softmax_k`` of a tuple of logits replaced by a
        symbol, whose value :meth:`values` computes for every k at once: the n partials of an
        n-class softmax then cost n, not n squared, to compile and to run."""
        exprs = expr if isinstance(expr, list) else [expr]
        found = [f for f in F.subexpressions(exprs) if isinstance(f, F.softmax)]
        if not found:
            return expr
        mapping = {}
        for f in found:
            logits = f.args[1]
            if logits not in self.softmaxes:
                self.softmaxes[logits] = (self.compile(list(logits.args)), {})
            symbols = self.softmaxes[logits][1]
            key = f.index
            if key not in symbols:
                symbols[key] = sp.Symbol(f"_softmax{len(self.softmaxes)}_{key}")
            mapping[f] = symbols[key]
        memo: dict = {}
        hoisted = [F.replace_shared(e, mapping, memo) for e in exprs]
        return hoisted if isinstance(expr, list) else hoisted[0]

    def compile(self, expr):
        """``(args, function)``: ``expr`` (or a list) lambdified over its free symbols.

        The symbols become plain names in the generated code, so that a spec's names (a
        parameter called ``maximum`` or ``where``) never meet the names of functions there.
        """
        exprs = expr if isinstance(expr, list) else [expr]
        args = sorted(set().union(*[e.free_symbols for e in exprs]), key=self._key)
        dummies = {s: sp.Symbol(f"_a{i}") for i, s in enumerate(args)}  # lambdify takes plain names as they are
        code = [e.xreplace(dummies) for e in exprs] if isinstance(expr, list) else expr.xreplace(dummies)
        function = sp.lambdify(list(dummies.values()), code, modules=[self.namespace, "numpy"], printer=self.printer,
                               cse=True)
        return tuple(args), function

    def _key(self, s):
        return (self.rank.get(s, len(self.rank)), s.name)

    def extra(self, key, expr):
        """A cached compiled helper expression (flow's unit derivatives, user gradients)."""
        if key not in self._extra:
            self._know(expr if isinstance(expr, list) else [expr])
            self._extra[key] = self.compile(expr)
        return self._extra[key]

    # -- running

    def values(self, leaves, m):
        """Every node's value (arrays of shape (m,)), given the leaves (parameters: numbers,
        evaluated as NumPy floats so that an overflow is inf, never a Python exception)."""
        values = dict(leaves)
        with np.errstate(all="ignore"):
            for k, args, fn, clip in self.forward:
                v = _column(_call_quiet(fn, args, values, "the value of node {}", k), m)
                values[k] = np.clip(v, PROB_FLOOR, PROB_CEIL) if clip else v
        for (args, fn), symbols in self.softmaxes.values():  # every hoisted softmax, at once
            logits = _matrix(_call(fn, args, values, "the logits of a softmax"), m)
            with np.errstate(all="ignore"):
                e = np.exp(logits - logits.max(axis=0))
                probabilities = e / e.sum(axis=0)
            values.update({symbol: probabilities[k - 1] for k, symbol in symbols.items()})
        return values

    def backprop(self, values, m, keep_partials=False):
        """Deltas per sample, gradient sums over the batch, and optionally every partial."""
        net = self.net
        deltas = {k: np.zeros(m) for k in net.order}
        deltas[net.loss] = np.ones(m)
        sums = np.zeros(len(self.slot))
        partials = {} if keep_partials else None
        with np.errstate(all="ignore"):
            for node in self.backward:
                node.run(values, deltas, sums, m)
                if keep_partials:
                    partials.update({(node.node, s): p for s, p in zip(node.wrt, node.partials(values, m))})
        return deltas, dict(zip(self.slot, sums.tolist())), partials


class _Partials:
    """The local partials of one node, compiled for the backward pass.

    Most nodes are ``f(u)`` with ``u`` a sum of products: every partial is then one shared
    chain factor (``f'(u)``, from the engine's chain-order products) times one algebra
    factor, usually a single symbol (``x_i`` for ``w_i``). Those are evaluated as the chain
    factor once and a matrix-vector product, without compiling a function per partial;
    other nodes get one lambdified function that returns every partial.
    """

    def __init__(self, program: _Program, node, wrt, lps):
        net = program.net
        self.node, self.wrt = node, wrt
        self.n = sum(s in net.nodes for s in wrt)
        chains = {lp.products[0][0] for lp in lps if len(lp.products) == 1}
        self.factored = len(chains) == 1 and all(len(lp.products) == 1 for lp in lps)
        if not self.factored:
            self.general = program.compile(program.hoist([lp.expr for lp in lps]))
            self.slots = np.array([program.slot[s] for s in wrt[self.n:]], dtype=int)
            return
        self.common = program.compile(program.hoist(sp.Mul(*next(iter(chains)))))
        self.factors = [_factor(program, sp.Mul(*lp.products[0][1])) for lp in lps]
        # the leaf rows by kind of factor: arrays (inputs, targets, nodes), numbers, other
        rows = list(zip(wrt[self.n:], self.factors[self.n:]))
        params = set(net.params)
        self.array_rows = [(program.slot[s], f[1]) for s, f in rows if f[0] == "symbol" and f[1] not in params]
        self.number_rows = [(program.slot[s], f[1]) for s, f in rows if f[0] == "number" or (f[0] == "symbol" and f[1] in params)]
        self.expr_rows = [(program.slot[s], f) for s, f in rows if f[0] == "expr"]
        self.array_slots = np.array([i for i, _ in self.array_rows], dtype=int)
        self.number_slots = np.array([i for i, _ in self.number_rows], dtype=int)

    def run(self, values, deltas, sums, m):
        """Add this node's share to the deltas and gradient sums (inside the caller's
        ``np.errstate(all="ignore")``: see :func:`_call_quiet`)."""
        d = deltas[self.node]
        what = "a local partial of node {}"
        if not self.factored:
            args, fn = self.general
            parts = _matrix(_call_quiet(fn, args, values, what, self.node), m)  # one row per partial
            for s, part in zip(self.wrt[:self.n], parts[:self.n]):
                deltas[s] += d * part
            sums[self.slots] += parts[self.n:] @ d
            return
        args, fn = self.common
        dc = d * _call_quiet(fn, args, values, what, self.node)  # delta times the shared chain factor
        for s, f in zip(self.wrt[:self.n], self.factors[:self.n]):
            deltas[s] += dc * _value(f, values)
        if self.array_rows:
            sums[self.array_slots] += np.array([values[x] for _, x in self.array_rows]) @ dc
        if self.number_rows:
            numbers = [x if isinstance(x, float) else values[x] for _, x in self.number_rows]
            sums[self.number_slots] += np.array(numbers) * dc.sum()
        for slot, f in self.expr_rows:
            sums[slot] += float(np.sum(dc * _value(f, values)))

    def partials(self, values, m):
        """Every partial's value per sample, in ``wrt`` order (for path terms)."""
        what = "a local partial of node {}"
        if not self.factored:
            args, fn = self.general
            return list(_matrix(_call(fn, args, values, what, self.node), m))
        args, fn = self.common
        c = _call(fn, args, values, what, self.node)
        with np.errstate(all="ignore"):
            return [_column(c * _value(f, values), m) for f in self.factors]


def _factor(program, expr):
    if expr.is_Number:
        return ("number", float(expr))
    if expr.is_Symbol:
        return ("symbol", expr)
    return ("expr", *program.compile(expr))


def _value(factor, values):
    kind = factor[0]
    if kind == "number":
        return factor[1]
    if kind == "symbol":
        return values[factor[1]]
    return factor[2](*[values[s] for s in factor[1]])


def _call(fn, args, values, what: str, symbol=None):
    """``fn`` at the values of ``args``: NumPy's warnings off (a non-finite result is
    checked and named by the caller), a Python exception or a complex value as a
    :class:`NumericError` naming ``what`` (its ``{}`` filled with ``symbol`` only then: this
    runs for every node of every evaluation, and printing a Symbol is slow)."""
    with np.errstate(all="ignore"):
        return _call_quiet(fn, args, values, what, symbol)


def _call_quiet(fn, args, values, what: str, symbol=None):
    """:func:`_call` inside a caller's ``np.errstate(all="ignore")``: the forward and backward
    loops set it once, not once a node (that cost as much as the nodes themselves)."""
    try:
        v = fn(*[values[s] for s in args])
    except (ArithmeticError, ValueError, TypeError) as err:
        raise NumericError(f"{what.format(symbol)} cannot be evaluated at these values: {err}", symbol) from None
    parts = v if isinstance(v, (list, tuple)) else [v]
    if any(np.iscomplexobj(x) for x in parts):
        if any(np.any(np.imag(x) != 0) for x in parts):
            raise NumericError(f"{what.format(symbol)} is not a real number at these values (a negative number under a root "
                               "or a non-integer power)", symbol)
        v = [np.real(x) for x in parts] if isinstance(v, (list, tuple)) else np.real(v)
    return v


def _matrix(parts, m) -> np.ndarray:
    try:
        matrix = np.array(parts, dtype=float)
        if matrix.shape == (len(parts), m):
            return matrix
    except ValueError:  # a mix of numbers and arrays
        pass
    matrix = np.empty((len(parts), m))
    for i, part in enumerate(parts):
        matrix[i] = part
    return matrix


def _column(v, m) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v if v.shape == (m,) else np.broadcast_to(v, (m,)).copy()


# One compiled program per (network, binding), kept while the network lives.
_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _program(net: Network, bind=None) -> _Program:
    bind = _bindings(bind)
    cache = _PROGRAMS.setdefault(net, {})
    key = tuple(sorted((name, id(f)) for name, f in bind.items()))
    if key not in cache:
        cache[key] = _Program(net, bind)
    return cache[key]


# -- values ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Point:
    leaves: dict  # Symbol -> array (m,) for inputs and targets, float for parameters
    m: int
    batched: bool  # False: every value was a number (results are numbers, not lists)


def _point(net: Network, values) -> _Point:
    given = {}
    leaves, params = set(net.leaves), set(net.params)  # sets: tuple lookups cost O(n) each
    names = {s.name: s for s in net.leaves}
    for key, value in dict(values).items():
        s = names.get(key) or net.symbol(key) if isinstance(key, str) else key
        if s in net.nodes:
            raise NumericError(f"{s} is a node; values are for inputs, targets and parameters", s)
        if s not in leaves:
            raise NumericError(f"{s} is not a symbol of this network", s)
        try:
            a = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise NumericError(f"the value of {s} is not a number or a list of numbers: {value!r}", s) from None
        if a.ndim > 1 or (a.ndim == 1 and a.size == 0):
            raise NumericError(f"the value of {s} must be a number or a non-empty list of numbers", s)
        if not (math.isfinite(a) if a.ndim == 0 else np.isfinite(a).all()):
            raise NumericError(f"the value of {s} is not finite: {value!r}", s)
        if a.ndim == 1 and s in params:
            raise NumericError(f"parameter {s} has a list of values; a parameter takes one number", s)
        given[s] = a
    for s in net.leaves:
        if s not in given:
            raise NumericError(f"no value for {net.role(s)} {s} (give it in [values] or with --values FILE)", s)
    sizes = {s: a.size for s, a in given.items() if a.ndim == 1}
    m = next(iter(sizes.values()), 1)
    for s, n in sizes.items():
        if n != m:
            first = next(iter(sizes))
            raise NumericError(f"{s} has {n} samples but {first} has {m}", s)
    # parameters stay numbers: NumPy broadcasts them, and scalar products are cheaper; NumPy
    # floats, so that an overflow is inf (then named), never a Python exception
    return _Point({s: np.float64(a) if s in params else _column(a, m) for s, a in given.items()}, m, bool(sizes))


def _check_targets(program: _Program, values, m):
    """softmax_cross_entropy's targets must sum to 1 in every sample."""
    for k, sce, (args, fn) in program.target_sums:
        total = _column(_call(fn, args, values, "the targets of node {}", k), m)
        bad = np.flatnonzero(~(np.abs(total - 1) <= 1e-9))
        if bad.size:
            i = int(bad[0])
            where = f" (sample {i + 1})" if m > 1 else ""
            names = " + ".join(str(t) for t in sce.targets)
            raise NumericError(
                f"node {k}: the softmax_cross_entropy targets {names} sum to {total[i]:.6g}{where}, "
                "not 1; its rule dE/dz = y_hat - t needs one-hot labels or probabilities",
                k,
            )


def _check_finite(net, values, what="value"):
    for k in net.order:
        if np.isfinite(values[k]).all():
            continue
        bad = np.flatnonzero(~np.isfinite(values[k]))
        if bad.size:
            i = int(bad[0])
            where = f" in sample {i + 1}" if values[k].size > 1 else ""
            raise NumericError(f"the {what} of node {k} is {_not_finite(values[k][i])}{where}", k)


def _not_finite(x) -> str:
    """What a non-finite number means, in words."""
    if np.isnan(x):
        return ("not a number (nan: an undefined operation such as 0/0, inf - inf, the log or root of a negative "
                "number, or a negative number to a non-integer power)")
    return f"{'-' if x < 0 else ''}infinite (an overflow, or a division by zero)"


def _reduce(net, total, m):
    return total / m if net.reduction == "mean" else total


# -- the gradient ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Gradient:
    """Forward values, deltas and the gradient at one point (or batch).

    ``values`` and ``deltas`` map every node to an array of one entry per sample;
    ``gradient`` maps every parameter, then every input, to the reduced dE/d(name).
    """

    network: Network = field(repr=False)
    loss: float
    values: dict
    deltas: dict
    gradient: dict
    batched: bool




def gradient(net: Network, values, bind=None) -> Gradient:
    """Forward values, deltas and the gradient of ``net``'s loss at ``values``.

    ``values`` maps every input, target and parameter (Symbol or name) to a number;
    inputs and targets may be lists (a batch). ``bind`` maps generic function names to
    activation names (``{"g": "tanh"}``).

    >>> from symprop import mlp
    >>> net = mlp([1, 1], hidden="identity", output="identity", loss="half_sse")
    >>> g = gradient(net, {"x_1": [1.0, 2.0], "t_1": [0.0, 0.0], "w_1_1_1": 1.0, "b_1_1": 0.0})
    >>> g.loss, [float(d) for d in g.deltas[net.symbol("a_1_1")]], g.gradient[net.symbol("w_1_1_1")]
    (2.5, [1.0, 2.0], 5.0)
    """
    program = _program(net, bind)
    point = _point(net, values)
    return _gradient(program, point)


def _gradient(program: _Program, point: _Point, keep_partials=False):
    net, m = program.net, point.m
    values = program.values(point.leaves, m)
    _check_finite(net, values)
    _check_targets(program, values, m)
    deltas, sums, partials = program.backprop(values, m, keep_partials)
    _check_finite(net, deltas, "delta")
    grad = sums if net.reduction != "mean" else {s: v / m for s, v in sums.items()}
    for s, v in grad.items():
        if not math.isfinite(v):
            raise NumericError(f"the gradient d{net.loss}/d{s} is {_not_finite(v)}", s)
    loss = _reduce(net, float(values[net.loss].sum()), m)
    result = Gradient(net, loss, {k: values[k] for k in net.order}, deltas, grad, point.batched)
    return (result, partials) if keep_partials else result


def _loss(program: _Program, leaves, m) -> float:
    values = program.values(leaves, m)
    _check_finite(program.net, values)
    return _reduce(program.net, float(values[program.net.loss].sum()), m)


# -- gradient check -------------------------------------------------------------------------

@dataclass(frozen=True)
class PathTerm:
    """One path ``(w, z_k, ..., E)`` of a failing row: its local partials and their product.

    ``factors`` are the partials from the loss end down (per sample: arrays), ``value``
    the product reduced over the batch.
    """

    path: tuple
    factors: tuple
    value: float

    def chain(self) -> str:
        edges = [(self.path[i + 1], self.path[i]) for i in reversed(range(len(self.path) - 1))]
        return "·".join(f"∂{a}/∂{b}" for a, b in edges)


@dataclass(frozen=True)
class CheckRow:
    """One parameter: the engine's value, the other value (finite differences or yours)."""

    name: sp.Symbol
    engine: float
    other: float | None  # None: your expression has no finite value (see note)
    rel_error: float | None
    verdict: str
    expression: sp.Expr | None = None  # the user's gradient expression (against rows)
    paths: tuple = ()
    note: str | None = None

    @property
    def failed(self) -> bool:
        return self.verdict in ("suspicious", "wrong")


def thresholds(difference: str = "central", epsilon: float = STEP) -> tuple:
    """The verdict thresholds ``(good, ok, suspicious)`` on the relative error of a check by
    ``difference`` ("central" or "forward") with step ``epsilon``.

    Central differences are off by O(ε²) (the truncation ``h²/6·E‴(w)``), forward ones by
    O(ε) (``h/2·E″(w)``), so a correct gradient has a relative error of about ``τ`` times
    the curvature of E over its slope (``τ = ε²`` central, ``ε`` forward). Each threshold
    is raised to cover that: ``good <= max(1e-7, τ)``, ``ok <= max(1e-4, 10·τ)``,
    ``suspicious <= max(1e-2, 100·τ)``. At the default ε = 1e-5, central differences keep
    cs231n's thresholds (1e-7, 1e-4, 1e-2) and forward ones get (1e-5, 1e-4, 1e-2): a
    curvature up to 20 times the slope (in units of max(1, |w|)) still passes.

    >>> thresholds("central"), thresholds("forward")
    ((1e-07, 0.0001, 0.01), (1e-05, 0.0001, 0.01))
    """
    tau = epsilon if difference == "forward" else epsilon * epsilon
    return (max(GOOD, tau), max(OK, 10 * tau), max(SUSPICIOUS, 100 * tau))


def _verdict(rel: float, limits_=(GOOD, OK, SUSPICIOUS)) -> str:
    good, ok, suspicious = limits_
    if rel <= good:
        return "good"
    if rel <= ok:
        return "ok"
    return "suspicious" if rel <= suspicious else "wrong"


@dataclass(frozen=True)
class Check:
    """A gradient check: ``rows`` against finite differences, ``against`` against yours.

    ``difference`` ("central" or "forward") and ``epsilon`` say how the differences were
    taken (step ``h = epsilon * max(1, |w|)``), ``thresholds`` the verdicts' ``(good, ok,
    suspicious)``. The cost, as seed 004 counts it: ``forward_passes`` (2P central, P + 1
    forward, for the P checked parameters) took ``seconds``; backprop's one forward and one
    backward pass took ``backprop_seconds`` (the best of three runs; measured, never asserted).
    The times are None unless the check was ``timed``, so that the same input gives the same
    output.
    """

    network: Network = field(repr=False)
    loss: float
    rows: tuple
    against: tuple
    batched: bool
    difference: str = "central"
    epsilon: float = STEP
    thresholds: tuple = (GOOD, OK, SUSPICIOUS)
    forward_passes: int = 0
    seconds: float | None = None  # None unless timed: times differ from run to run
    backprop_seconds: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list:
        """Names of the parameters whose check failed (suspicious or wrong)."""
        return list(dict.fromkeys(str(r.name) for r in self.rows + self.against if r.failed))


def check(net: Network, values, bind=None, against=None, only=None, difference: str = "central",
          epsilon: float = STEP, timed: bool = False) -> Check:
    """Check the engine's gradient against finite differences (and your formulas).

    ``difference="central"`` (the default): ``(E(w + h) - E(w - h)) / 2h``, two forward
    passes a parameter, 2P in all, error O(h²). ``difference="forward"`` (seed 004's):
    ``(E(w + h) - E(w)) / h``, one forward pass a parameter and one at the unchanged point,
    P + 1 in all, error O(h). Float64, step ``h = epsilon * max(1, |w|)`` per parameter,
    ``epsilon`` = ``STEP`` = 1e-5 by default. The
    relative error is ``|a - n| / max(|a|, |n|, floor)``, where ``floor = eps * S / (h * good)``
    is the smallest gradient that the differences resolve to ``good``: below it, rounding
    alone would look like an error. ``S`` estimates the magnitudes E is computed from: the
    largest of 1, ``|E|`` at the points evaluated and the batch reduction of ``sum_k |delta_k z_k|``.
    Verdicts ``good``, ``ok``, ``suspicious``, ``wrong`` (the last two fail) by
    :func:`thresholds`: central differences at the default step 1e-7, 1e-4, 1e-2; forward
    ones 1e-5, 1e-4, 1e-2, allowing their O(ε) error. With ``timed``, the forward passes and
    one backprop (a forward and a backward pass) are timed; see :class:`Check`.

    ``against`` maps parameters or inputs (Symbol or name) to your gradient expression
    (a SymPy expression; text is read by :func:`symprop.spec.parse_expression` first) in
    the network's symbols, per sample; it is reduced over a batch like the gradient and compared
    with the engine's, floor ``AGAINST_FLOOR * max(1, |E|)``. A failing row lists the
    parameter's path terms with their values.

    ``only`` (a glob such as ``"w_1_*"``, or a list of them) checks the matching parameters
    only. Each parameter costs one or two forward passes, so the whole network's work grows as
    the square of its size: past ``limits.MAX_CHECKED_PARAMS`` parameters, choose some.

    >>> import sympy as sp
    >>> from symprop import Network
    >>> x, t, w, E = sp.symbols("x t w E")
    >>> net = Network({E: (w*x - t)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
    >>> c = check(net, {"x": 2.0, "t": 1.0, "w": 1.0}, against={"w": w*x - t})
    >>> c.rows[0].verdict, c.against[0].verdict, c.failures
    ('good', 'wrong', ['w'])
    """
    if difference not in DIFFERENCES:
        raise NumericError(f"difference must be one of {', '.join(DIFFERENCES)}, not {difference!r}")
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and math.isfinite(epsilon)
            and 0 < epsilon < 1):
        raise NumericError(f"the finite-difference step epsilon must be a number between 0 and 1, not {epsilon!r}")
    epsilon = float(epsilon)
    forward = difference == "forward"
    checked = _select(net, only)
    if len(checked) > limits.MAX_CHECKED_PARAMS:
        each = "one forward pass each (and one more)" if forward else "two forward passes each"
        raise NumericError(
            f"checking {len(checked):,} parameters by {difference} differences takes {each}, more "
            f"work than allowed ({limits.says('MAX_CHECKED_PARAMS')}); check some of them with --only GLOB "
            "(only= in Python)")
    program = _program(net, bind)
    point = _point(net, values)
    backprop_seconds = math.inf
    for _ in range(3 if timed else 1):  # backprop: one forward and one backward pass, its best time of three
        started = time.perf_counter()
        result = _gradient(program, point)
        backprop_seconds = min(backprop_seconds, time.perf_counter() - started)
    # the rounding error of E is about eps times the largest magnitude it is computed from
    spread = sum(np.abs(result.deltas[k] * result.values[k]).sum() for k in net.order)
    scale = max(1.0, _reduce(net, float(spread), point.m))
    limits_ = thresholds(difference, epsilon)
    rows, passes, seconds = [], 0, 0.0
    if forward and checked:  # E at the unchanged point: the "+ 1" of P + 1
        started = time.perf_counter()
        at = _loss(program, point.leaves, point.m)
        seconds += time.perf_counter() - started
        passes += 1
    for p in checked:
        base = float(point.leaves[p])
        h = epsilon * max(1.0, abs(base))
        up, down = base + h, base - h
        started = time.perf_counter()
        plus = _loss(program, {**point.leaves, p: up}, point.m)
        if forward:
            minus, down = at, base
        else:
            minus = _loss(program, {**point.leaves, p: down}, point.m)
        seconds += time.perf_counter() - started
        passes += 1 if forward else 2
        numeric = (plus - minus) / (up - down)
        floor = np.finfo(float).eps * max(scale, abs(plus), abs(minus)) / (h * limits_[0])
        a = result.gradient[p]
        rel = abs(a - numeric) / max(abs(a), abs(numeric), floor)
        rows.append(CheckRow(p, a, numeric, rel, _verdict(rel, limits_)))
    against_rows = []
    for name, expr in dict(against or {}).items():
        s = net.symbol(name) if isinstance(name, str) else name
        if s not in net.params and s not in net.inputs:
            raise NumericError(f"against: {s} is not a parameter or an input", s)
        expr = _user_expression(net, s, expr)
        args, fn = program.extra(("against", expr), expr)
        values_ = {**point.leaves, **result.values}
        for a_ in args:
            if a_ not in values_:
                raise NumericError(f"against {s}: {a_} is not a symbol of this network", a_)
        with np.errstate(all="ignore"):
            yours = _reduce(net, float(_column(_call(fn, args, values_, "your dE/d{}", s), point.m).sum()), point.m)
        a = result.gradient[s]
        if not math.isfinite(yours):  # wrong, whatever the engine says; no inf or nan to report
            against_rows.append(CheckRow(s, a, None, None, "wrong", expression=expr,
                                         note=f"your expression is {_not_finite(yours)} at these values"))
            continue
        rel = abs(a - yours) / max(abs(a), abs(yours), AGAINST_FLOOR * max(1.0, abs(result.loss)))
        against_rows.append(CheckRow(s, a, yours, rel, _verdict(rel), expression=expr))
    if any(r.failed for r in rows + against_rows):
        _, partials = _gradient(program, point, keep_partials=True)
        rows = [_with_paths(net, r, partials, point.m) for r in rows]
        against_rows = [_with_paths(net, r, partials, point.m) for r in against_rows]
    return Check(net, result.loss, tuple(rows), tuple(against_rows), point.batched, difference, epsilon, limits_,
                 passes, seconds if timed else None, backprop_seconds if timed else None)


def _user_expression(net, s, expr):
    try:
        return F.as_expr(expr)
    except TypeError:
        raise NumericError(f"against {s}: {expr!r} is not a SymPy expression (text is read by "
                           "symprop.spec.parse_expression)", s) from None


def _with_paths(net, row, partials, m):
    if not row.failed:
        return row
    n = net.path_count(row.name)
    if n > MAX_PATHS_SHOWN:
        return CheckRow(**{**row.__dict__, "note": f"{n} paths lead from {row.name} to {net.loss}; not listed"})
    terms = []
    for path in net.paths(row.name, max_paths=MAX_PATHS_SHOWN):
        factors = tuple(partials[(path[i + 1], path[i])] for i in reversed(range(len(path) - 1)))
        product = np.prod(np.vstack(factors), axis=0)
        terms.append(PathTerm(path, factors, _reduce(net, float(product.sum()), m)))
    return CheckRow(**{**row.__dict__, "paths": tuple(terms)})


# -- gradient descent -----------------------------------------------------------------------

@dataclass(frozen=True)
class Descent:
    """The result of N descent steps: losses over the whole data, parameters, gradient.

    ``gradient`` is the whole-data gradient at the start; ``history`` the loss of the data
    each step used, before its update; ``updated`` the parameters that moved.
    """

    network: Network = field(repr=False)
    loss_before: float
    loss_after: float
    params: dict
    gradient: dict
    updated: tuple
    history: tuple
    lr: float
    rule: str = "gradient descent"  # the update rule's name and formula: see update_rule
    formula: str = "w ← w − η ∂𝓛/∂w"
    samples: int = 1  # M, the samples of the data
    batch_size: int | None = None  # B of minibatch SGD (1: SGD); None: the whole data each step


def update_rule(reduction: str, samples: int, batch_size: int | None = None) -> tuple[str, str]:
    """The name and the formula (text) of the update :func:`step` makes (seed 004).

    ``samples`` is M, the data's samples; ``batch_size`` B (None, or at least M: the whole
    data every step). ``reduction`` "mean" divides the sum of the samples' gradients by M
    (or B), "sum" does not; 𝓛(m) is the loss of sample m.

    >>> update_rule("mean", 4)
    ('gradient descent', 'w ← w − η/M Σ_m ∂𝓛(m)/∂w')
    >>> update_rule("mean", 4, 1)
    ('stochastic gradient descent', 'w ← w − η ∂𝓛(m)/∂w')
    >>> update_rule("sum", 4, 2)
    ('minibatch SGD (B = 2)', 'w ← w − η Σ_{m ∈ batch} ∂𝓛(m)/∂w')
    """
    if batch_size is None or batch_size >= samples:
        if samples == 1:
            return "gradient descent", "w ← w − η ∂𝓛/∂w"
        scale = "η/M" if reduction == "mean" else "η"
        return "gradient descent", f"w ← w − {scale} Σ_m ∂𝓛(m)/∂w"
    if batch_size == 1:
        return "stochastic gradient descent", "w ← w − η ∂𝓛(m)/∂w"
    scale = "η/B" if reduction == "mean" else "η"
    return f"minibatch SGD (B = {batch_size})", f"w ← w − {scale} Σ_{{m ∈ batch}} ∂𝓛(m)/∂w"


def step(net: Network, values, lr: float, *, steps: int = 1, only=None, batch_size: int | None = None,
         seed: int = 0, bind=None, progress: Callable | None = None) -> Descent:
    """``steps`` updates ``w <- w - lr * dE/dw`` of the parameters matching ``only``.

    ``only`` is a glob on parameter names (``"w_*"``) or a list of them; default every
    parameter. ``batch_size`` turns full-batch descent into minibatch SGD: each step uses
    the next ``batch_size`` samples of a permutation drawn from ``seed`` (a new one every
    pass over the data; the last minibatch of a pass may be smaller), and its loss is that
    minibatch's sum or mean. ``progress(i, steps, loss)`` is called after each step. The
    result names the rule (gradient descent, stochastic gradient descent for a batch size
    of 1, minibatch SGD) with its formula: :func:`update_rule`.

    >>> import sympy as sp
    >>> from symprop import Network
    >>> x, w, b, E = sp.symbols("x w b E")
    >>> net = Network({E: (w*x + b)**2}, loss=E, params=[w, b], inputs=[x])
    >>> d = step(net, {"x": 1.0, "w": 1.0, "b": 1.0}, lr=0.25, only="w")
    >>> d.loss_before, d.loss_after, d.params[w], d.params[b]
    (4.0, 1.0, 0.0, 1.0)
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise NumericError(f"the learning rate must be a positive number, not {lr!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise NumericError(f"steps must be a positive integer, not {steps!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise NumericError(f"the batch size must be a positive integer, not {batch_size!r}")
    program = _program(net, bind)
    point = _point(net, values)
    updated = _select(net, only)
    start = _gradient(program, point)
    params = {p: point.leaves[p] for p in net.params}
    rng = np.random.default_rng(seed)
    minibatch = batch_size is not None and batch_size < point.m
    order, cursor, history = np.arange(point.m), point.m, []
    for i in range(steps):
        if minibatch:
            if cursor >= point.m:
                order, cursor = rng.permutation(point.m), 0
            index = order[cursor: cursor + batch_size]
            cursor += batch_size
            leaves = {s: a if s in params else a[index] for s, a in point.leaves.items()}
            m = len(index)
        else:
            leaves, m = point.leaves, point.m
        if i == 0 and not minibatch:
            result = start
        else:
            leaves = {**leaves, **params}
            result = _gradient(program, _Point(leaves, m, point.batched))
        for p in updated:
            params[p] -= lr * result.gradient[p]
        history.append(result.loss)
        if progress is not None:
            progress(i + 1, steps, result.loss)
    loss_after = _loss(program, {**point.leaves, **params}, point.m)
    grad = {p: start.gradient[p] for p in net.params}
    rule, formula = update_rule(net.reduction, point.m, batch_size if minibatch else None)
    params = {p: float(v) for p, v in params.items()}  # Python floats out, as given in
    return Descent(net, start.loss, loss_after, params, grad, updated, tuple(history), float(lr), rule, formula,
                   point.m, batch_size if minibatch else None)


def _select(net, only) -> tuple:
    if only is None:
        return net.params
    globs = [only] if isinstance(only, str) else list(only)
    chosen = set()
    for glob in globs:
        hits = {p for p in net.params if fnmatch.fnmatchcase(p.name, glob)}
        if not hits:
            names = ", ".join(p.name for p in net.params[:12]) + (", ..." if len(net.params) > 12 else "")
            raise NumericError(f"--only {glob!r} matches no parameter (parameters: {names})")
        chosen |= hits
    return tuple(p for p in net.params if p in chosen)


# -- gradient flow --------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """The nodes at one depth: the norm of their deltas and of their parameters' gradient."""

    depth: int
    nodes: tuple
    delta_norm: float
    params: tuple
    gradient_norm: float | None


@dataclass(frozen=True)
class Cause:
    """Why the gradient at a node's input is zero or vanishing (seed 003's three causes).

    ``kind``: "dead_next_layer" (every consumer's input gradient is zero or vanishing),
    "flat_activation" (f' = 0 at the node: a dead relu, a saturated sigmoid or tanh),
    "zero_column" (every outgoing weight is zero: a zero column of W^{l+1}; looked for only
    where some consumer is not dead, and both are named where each consumer is one or the
    other); for a
    vanishing gradient "vanishing_next_layer" (as the first, some consumers' gradients
    vanishing rather than zero); where none of these holds, "zero_partials" (every consumer's local partial is zero, not by a
    weight), "cancellation" (the consumers' terms cancel) or "small_factors" (no factor is
    zero, their products along the paths are small: seed 002 §1.9). ``nodes`` are the
    consumers (or the node) concerned, ``weights`` the zero weights.
    """

    kind: str
    text: str
    nodes: tuple = ()
    weights: tuple = ()


@dataclass(frozen=True)
class Flow:
    """Gradient-flow diagnostics (seeds 000, 002 §1.9, 003).

    ``delta`` maps each node to the root mean square over the batch of its delta (``|delta|``
    for one sample); ``depth`` to the number of nodes on the longest path from a leaf to it
    (1 for a node that reads only inputs and parameters). A layer's ``delta_norm`` is the
    root of the sum of its nodes' squared ``delta``; a parameter belongs to the layer of the
    shallowest node that uses it. ``ratio`` is the first layer's gradient norm over the last
    one's (below 1: gradients shrink on the way down, vanishing; above 1: exploding); None
    with fewer than two layers with parameters or a zero last norm. ``saturated``: sigmoid
    and tanh units with ``f'(u) < SATURATION`` in every sample; ``dead``: relu units with
    ``u <= 0`` in every sample (zero gradient over the whole batch). ``fraction`` maps each
    such unit to the share of samples in which it is saturated or off.

    ``verdict`` judges ``ratio``: "exploding" above ``EXPLODING_RATIO`` (100), "vanishing"
    below ``VANISHING_RATIO`` (1/100), else "stable"; None without a ratio.

    ``vanishing`` maps each node on a path to the loss whose *input gradient* (dE/du for a
    unit f(u), seed 003's δ^l, which every weight into the node is multiplied by; dE/dnode
    for other nodes) is "zero" in every sample, or "vanishing": its root mean square at most
    ``VANISHING`` (1e-3) times the gradient arriving from the loss (the largest root mean
    square of dE/dnode over the nodes the loss reads). ``causes`` maps each of them to the
    :class:`Cause` records that explain it (seed 003's order: dead next layer, f' = 0, zero
    column). ``input_gradient`` maps every node on a path to the loss to that root mean square.
    """

    network: Network = field(repr=False)
    loss: float
    depth: dict
    delta: dict
    layers: tuple
    ratio: float | None
    saturated: tuple
    dead: tuple
    fraction: dict
    verdict: str | None = None
    vanishing: dict = field(default_factory=dict)
    causes: dict = field(default_factory=dict)
    input_gradient: dict = field(default_factory=dict)


def _rms(values) -> float:
    """The root mean square, scaled so that squares of 1e200 do not overflow."""
    top = float(np.max(np.abs(values)))
    return 0.0 if top == 0 else top * float(np.sqrt(np.mean((np.asarray(values) / top) ** 2)))


def _unit(expr, bind):
    """A unit ``f(u)`` whose derivative can vanish: ``(kind, f applied to its input)``, kind
    "squash" for a saturating activation (sigmoid, tanh), "dying" for one that is flat on
    a side (relu); generic units by their binding. None for anything else."""
    coefficient, rest = expr.as_coeff_Mul()
    if coefficient == -1:  # SymPy writes tanh(a - b) as -tanh(b - a): the same unit, negated
        expr = rest
    if not isinstance(expr, sp.Function) or len(expr.args) != 1:
        return None
    f = expr
    if isinstance(expr, F.GenericFunction) and expr.order == 0 and expr.base_name in bind:
        f = bind[expr.base_name](expr.args[0])
    record = F.record_of(f)
    if record is None or not record.activation:
        return None
    return ("squash" if record.saturating else "dying" if record.dying else None), f


def _depths(net) -> dict:
    depth = {}
    for k in net.order:
        depth[k] = 1 + max((depth[s] for s in net.producers[k] if s in net.nodes), default=0)
    return depth


def flow(net: Network, values, bind=None) -> Flow:
    """Gradient-flow diagnostics at ``values``: see :class:`Flow`.

    >>> from symprop import mlp
    >>> net = mlp([1, 1, 1], hidden="sigmoid", output="identity", loss="half_sse")
    >>> f = flow(net, {"x_1": 1.0, "t_1": 0.0, "w_1_1_1": 50.0, "b_1_1": 0.0, "w_2_1_1": 1.0, "b_2_1": 0.0})
    >>> [str(k) for k in f.saturated], f.ratio < 1e-10
    (['a_1_1'], True)
    """
    program = _program(net, bind)
    point = _point(net, values)
    result = _gradient(program, point)
    values_ = {**point.leaves, **result.values}
    depth = _depths(net)
    delta = {k: _rms(result.deltas[k]) for k in net.order}
    layers = []
    home = {p: min(depth[k] for k in net.consumers[p]) for p in net.params if net.consumers[p]}
    for d in sorted(set(depth.values())):
        nodes = tuple(k for k in net.order if depth[k] == d)
        params = tuple(p for p in net.params if home.get(p) == d)
        gnorm = math.hypot(*[result.gradient[p] for p in params]) if params else None
        layers.append(Layer(d, nodes, math.hypot(*[delta[k] for k in nodes]), params, gnorm))
    with_params = [l for l in layers if l.params]
    ratio = None
    if len(with_params) >= 2 and with_params[-1].gradient_norm:
        ratio = with_params[0].gradient_norm / with_params[-1].gradient_norm
    saturated, dead, fraction, slopes = [], [], {}, {}
    for k in net.order:
        kind, f = _unit(net.nodes[k], program.bind) or (None, None)
        if kind is None:
            continue
        local = F.record_of(f).differentiate(f, 1)
        if kind == "squash":
            local = local.xreplace({f: k})
        args, fn = program.extra(("unit", k), local)
        slope = _column(_call(fn, args, values_, "the derivative of unit {}", k), point.m)
        off = np.abs(slope) < SATURATION if kind == "squash" else slope == 0
        fraction[k] = float(off.mean())
        if off.all():
            (saturated if kind == "squash" else dead).append(k)
        slopes[k] = slope
    verdict = None
    if ratio is not None:
        verdict = "exploding" if ratio > EXPLODING_RATIO else "vanishing" if ratio < VANISHING_RATIO else "stable"
    vanishing, causes, inputs = _zero_gradients(program, point, result, slopes, set(saturated), set(dead))
    return Flow(net, result.loss, depth, delta, tuple(layers), ratio, tuple(saturated), tuple(dead), fraction,
                verdict, vanishing, causes, inputs)


def _zero_gradients(program, point, result, slopes, saturated, dead):
    """Each node's input gradient, the nodes where it is zero or vanishing, and why (see
    :class:`Flow` and :class:`Cause`)."""
    net, m = program.net, point.m
    on_path = [k for k in net.order if k != net.loss and k in net.ancestors_of_loss]
    with np.errstate(all="ignore"):
        pre = {k: result.deltas[k] * slopes[k] if k in slopes else result.deltas[k] for k in on_path}
    pre[net.loss] = np.ones(m)
    size = {k: _rms(pre[k]) for k in on_path}
    # the reference: the gradient arriving from the loss, at the nodes the loss reads
    top = [k for k in net.producers[net.loss] if k in net.nodes]
    reference = max((_rms(result.deltas[k]) for k in top), default=0.0)

    def state(x, norm):
        if not np.any(x):
            return "zero"
        return "vanishing" if norm <= VANISHING * reference else None

    vanishing = {k: state(pre[k], size[k]) for k in on_path}
    vanishing = {k: v for k, v in vanishing.items() if v}
    causes = {}
    partials = None
    for k in vanishing:
        found = []
        consumers = [l for l in net.consumers[k] if l == net.loss or l in net.ancestors_of_loss]
        if state(result.deltas[k], _rms(result.deltas[k])):
            quiet, cut, live = [], [], []
            for l in consumers:
                if l != net.loss and state(pre[l], _rms(pre[l])):
                    quiet.append(l)
                    continue
                unit = l != net.loss and l in slopes
                if partials is None and not unit:
                    _, partials = _gradient(program, point, keep_partials=True)
                expr, value = _edge(program, point, result, None if unit else partials, l, k)
                if np.any(value):
                    live.append(l)
                else:
                    cut.append((l, expr))
            # every consumer quiet (seed 003's cause 1), every edge cut (cause 3), or each one or the other
            all_quiet, all_cut = len(quiet) == len(consumers), len(cut) == len(consumers)
            mixed = bool(not live and quiet and cut)
            if all_quiet or mixed:
                names = _names(quiet)
                flat = [l for l in quiet if l in dead or l in saturated]
                why = "" if not flat else " (all have f′ = 0)" if len(flat) == len(quiet) else \
                    f" ({_names(flat)} with f′ = 0)"
                what = "partly a dead next layer" if mixed else "dead next layer"
                if all(not np.any(pre[l]) for l in quiet):
                    found.append(Cause("dead_next_layer", f"{what}: the input gradients of its consumers "
                                       f"({names}) are zero{why}", tuple(quiet)))
                else:
                    found.append(Cause("vanishing_next_layer", f"the next layer's gradients vanish already: the input "
                                       f"gradients of its consumers ({names}) are zero or vanishing{why}", tuple(quiet)))
            if all_cut or mixed:
                zeros = [tuple(p for p in sorted(e.free_symbols, key=str) if p in net.params and point.leaves[p] == 0)
                         for _, e in cut]
                nodes = tuple(l for l, _ in cut)
                if all(zeros):
                    weights = tuple(dict.fromkeys(p for z in zeros for p in z))
                    head = "the weights to its other consumers are zero (" if mixed else \
                        "zero column: every outgoing weight is zero ("
                    found.append(Cause("zero_column", head + _names([f"{p} = 0" for p in weights]) + ")", nodes,
                                       weights))
                else:
                    found.append(Cause("zero_partials", "every local partial into its consumers is zero ("
                                       + _names([f"∂{l}/∂{k}" for l in nodes]) + ")", nodes))
            if live and vanishing[k] == "zero":
                found.append(Cause("cancellation", f"the terms of its consumers ({_names(live)}) cancel", tuple(live)))
        if k in dead or k in saturated:
            what = "a dead relu: u <= 0 in every sample" if k in dead else \
                f"a saturated unit: f′(u) < {SATURATION:g} in every sample"
            found.insert(1 if found and found[0].kind.endswith("next_layer") else 0,
                         Cause("flat_activation", f"f′ = 0 at the node ({what})", (k,)))
        if not found:
            found.append(Cause("small_factors", "no factor is zero: the products of local partials along the "
                               "paths from the loss are small (seed 002 §1.9)"))
        causes[k] = tuple(found)
    return vanishing, causes, size


def _names(items, shown=6) -> str:
    """``a, b, c`` or, past ``shown`` items, ``a, b, c, ..., z (n in all)``."""
    items = [str(x) for x in items]
    if len(items) <= shown:
        return ", ".join(items)
    return ", ".join(items[:shown - 1]) + f", ..., {items[-1]} ({len(items)} in all)"


def _edge(program, point, result, partials, l, k):
    """``(expression, per-sample value)`` of consumer ``l``'s factor for ``k``: ∂u/∂k for a
    unit ``l = f(u)`` (its weight for k; ``partials`` None), else the local partial ∂l/∂k."""
    net = program.net
    if partials is None:
        expr = sp.diff(net.nodes[l].args[0], k)
        values = {**point.leaves, **result.values}
        if expr.is_Number:
            return expr, np.full(point.m, float(expr))
        if expr.is_Symbol:
            return expr, _column(values[expr], point.m)
        args, fn = program.extra(("flow edge", l, k), expr)
        return expr, _column(_call(fn, args, values, "the partial of node {}", l), point.m)
    from .derive import local_partial

    return local_partial(net, l, k).expr, _column(partials[(l, k)], point.m)


# -- exact numbers --------------------------------------------------------------------------

# Digits of the high-precision evaluation of answers, options and grading.
PRECISION = 30


class Evaluator:
    """Evaluates a network's expressions at a point to :data:`PRECISION` digits.

    ``bind`` maps a generic function's name to a callable ``(order, arg) -> Expr`` giving
    ``g``, ``g'``, ... (the grader binds random polynomials). Expressions are rewritten in
    elementary functions once and cached.

    >>> import sympy as sp
    >>> from symprop import Network, sigmoid
    >>> x, w, h, E = sp.symbols("x w h E")
    >>> net = Network({h: sigmoid(w*x), E: h**2}, loss=E, params=[w], inputs=[x])
    >>> ev = Evaluator(net)
    >>> point = ev.forward({x: 1, w: 0})
    >>> float(point[h]), ev.value(h * (1 - h), point)
    (0.5, 0.25)
    """

    def __init__(self, net: Network, bind: Mapping[str, Callable] | None = None):
        self.net = net
        self.bind = dict(bind or {})
        self._explicit: dict = {}

    def _prepared(self, expr):
        if expr not in self._explicit:
            e = F.as_expr(expr)
            if self.bind:
                e = e.replace(
                    lambda s: isinstance(s, F.GenericFunction) and s.base_name in self.bind,
                    lambda s: self.bind[s.base_name](s.order, s.args[0]),
                )
            self._explicit[expr] = F.explicit(e)
        return self._explicit[expr]

    def number(self, expr, point) -> sp.Expr:
        """``expr`` at ``point`` (Symbol -> number) as a SymPy number: a Float, or nan where
        it is undefined, not real, or larger than ``limits.MAX_MAGNITUDE`` on the way (so that
        exp(exp(exp(exp(exp(1))))) ends at once instead of after hours of digits)."""
        value = self.exact(expr, point)
        return sp.nan if value is None else sp.Float(value, PRECISION)

    def exact(self, expr, point):
        """``expr`` at ``point`` as an mpmath number good to :data:`PRECISION` digits, or None
        where it is undefined. Digits are added where intermediate values cancel: a right
        answer written as (a + b)^500 (a - b)^500 - (a^2 - b^2)^500 + ... keeps its digits."""
        prepared = self._prepared(expr)
        digits = PRECISION + 10
        while True:
            try:
                value, peak = _mp_value(prepared, point, digits)
            except _Undefined:
                return None
            lost = 0 if peak == 0 else int(mpmath.log10(peak / max(abs(value), mpmath.mpf(10) ** -(PRECISION + 10))))
            if lost + PRECISION + 10 <= digits or digits >= limits.MAX_EXACT_DIGITS:
                return value
            digits = min(limits.MAX_EXACT_DIGITS, lost + PRECISION + 20)

    def value(self, expr, point) -> float:
        """``expr`` at ``point`` as a float; NaN when it is not a finite real number."""
        result = self.number(expr, point)
        if not (result.is_Number and result.is_finite and result.is_real):
            return math.nan
        return float(result)

    def forward(self, leaves: Mapping) -> dict:
        """Leaves (Symbol -> number) and every node's value, as :data:`PRECISION`-digit Floats."""
        point = {s: sp.Float(sp.Rational(v) if isinstance(v, Fraction) else v, PRECISION) for s, v in leaves.items()}
        for k in self.net.order:
            value = self.number(self.net.nodes[k], point)
            point[k] = value if value.is_Number else sp.nan
        return point


class _Undefined(ArithmeticError):
    """An exact evaluation met an undefined, non-real or too large value."""


_MP = {
    sp.exp: mpmath.exp, sp.log: mpmath.log, sp.tanh: mpmath.tanh, sp.sinh: mpmath.sinh, sp.cosh: mpmath.cosh,
    sp.sech: mpmath.sech, sp.Abs: abs, sp.sign: lambda x: mpmath.mpf(mpmath.sign(x)),
}


def _mp_value(expr, point, digits):
    """``expr`` (elementary functions only: the explicit forms) at ``point`` with mpmath at
    ``digits`` digits, each distinct subexpression once (a DAG, not a tree); returns the
    value and the largest magnitude met on the way (what cancellation may have eaten)."""
    memo: dict = {}
    with mpmath.workdps(digits):
        stack = [(expr, False)]
        while stack:
            e, ready = stack.pop()
            if e in memo:
                continue
            if e in point:
                memo[e] = _mp_number(point[e])
            elif e.is_Number or e.is_NumberSymbol:
                memo[e] = _mp_number(e)
            elif not e.args:
                raise _Undefined(f"no value for {e}")
            elif not ready:
                stack.append((e, True))
                stack.extend((a, False) for a in e.args if a not in memo)
            else:
                memo[e] = _mp_node(e, [memo[a] for a in e.args])
        peak = max((abs(v) for v in memo.values()), default=mpmath.mpf(0))
        return +memo[expr], peak


def _mp_number(x):
    if x is sp.nan or x is sp.zoo or (hasattr(x, "is_finite") and x.is_finite is False):
        raise _Undefined("not finite")
    if isinstance(x, sp.Rational):
        value = mpmath.mpf(x.p) / x.q
    elif isinstance(x, sp.Basic):
        if not x.is_extended_real:
            raise _Undefined("not real")
        value = mpmath.mpf(x.evalf(PRECISION + 10)._mpf_) if not x.is_Float else mpmath.mpf(x._mpf_)
    else:
        value = mpmath.mpf(x)
    return _checked(value)


def _checked(value):
    if isinstance(value, mpmath.mpc):
        if value.imag != 0:
            raise _Undefined("not real")
        value = value.real
    # past MAX_MAGNITUDE a value is "undefined": no network's gradient at ordinary numbers
    # comes near it, and larger ones cost ever more digits
    if not mpmath.isfinite(value) or abs(value) > limits.MAX_MAGNITUDE:
        raise _Undefined("too large")
    return value


def _mp_node(e, args):
    if e.is_Add:
        return _checked(mpmath.fsum(args))
    if e.is_Mul:
        return _checked(mpmath.fprod(args))
    if e.is_Pow:
        base, exponent = args
        if base == 0 and exponent < 0:
            raise _Undefined("division by zero")
        if base < 0 and not e.args[1].is_integer:
            raise _Undefined("not real")
        if base != 0 and exponent * mpmath.log(abs(base)) > 700:
            raise _Undefined("too large")
        return _checked(mpmath.power(base, exponent))
    if isinstance(e, sp.Heaviside):
        return mpmath.mpf(1) if args[0] > 0 else mpmath.mpf(0) if args[0] < 0 else args[1]
    f = _MP.get(e.func)
    if f is None:
        raise _Undefined(f"no exact evaluation of {e.func}")
    if e.func is sp.exp and args[0] > 700:
        raise _Undefined("too large")
    if e.func is sp.log and args[0] <= 0:
        raise _Undefined("log of a non-positive number")
    try:
        return _checked(f(*args))
    except (ValueError, ZeroDivisionError, OverflowError) as err:
        raise _Undefined(str(err)) from None
