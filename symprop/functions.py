"""Activations and losses as SymPy functions that own their derivatives.

Each class states its derivative the way the course texts state it, so a derivation
prints ``sigma(u)*(1 - sigma(u))`` rather than an opaque ``exp`` expression:

>>> import sympy as sp
>>> from symprop.functions import sigmoid, relu, generic
>>> u = sp.Symbol("u")
>>> sp.diff(sigmoid(u), u)
(1 - sigmoid(u))*sigmoid(u)
>>> sp.diff(relu(u), u)
step(u)
>>> g = generic("g")
>>> sp.diff(g(2*u), u)
2*g_prime(2*u)

Every class also has an ``explicit()`` form in elementary SymPy functions (``exp``,
``log``, ``Piecewise``), which the tests differentiate with ``sympy.diff`` as an
independent check of the rules written here.

Conventions (documented because the texts leave them open):

- ``relu'(0) = step(0) = 0``.
- ``max(a, b)`` routes the gradient to ``a`` when ``a >= b``: on a tie the first argument
  takes it all, so the two partials always sum to 1. ``min`` likewise routes to ``a``
  when ``a <= b``.
- ``softmax_cross_entropy`` and ``cross_entropy`` expect target vectors that sum to 1
  (one-hot labels or probabilities); that is what makes ``dL/dz_j = y_hat_j - t_j``
  (seed 000) exact. The numeric layer checks it.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import sympy as sp
from sympy.core.function import ArgumentIndexError

__all__ = [
    "sigmoid", "relu", "leaky_relu", "softplus", "step", "identity", "maximum", "minimum",
    "softmax", "softmax_cross_entropy", "generic", "GenericFunction",
    "half_sse", "mse", "cross_entropy", "binary_cross_entropy", "explicit", "as_expr",
    "ACTIVATIONS", "LOSSES",
]


def as_expr(value) -> sp.Basic:
    """``value`` as a SymPy object: SymPy objects as they are, Python numbers converted.

    Text is refused, never parsed: spec strings go through :func:`symprop.spec.parse_expression`.

    >>> as_expr(0.5), as_expr(Fraction(1, 3))
    (0.500000000000000, 1/3)
    """
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return sp.Integer(value)
    if isinstance(value, float):
        return sp.Float(value)
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    raise TypeError(f"expected a SymPy expression or a number, not {type(value).__name__} {value!r}")


class _Explicit:
    """Mixin: ``explicit()`` rewrites the function in elementary SymPy terms."""

    def explicit(self):  # pragma: no cover - every subclass overrides
        raise TypeError(f"{type(self).__name__} has no explicit form")


def _heaviside(x):
    """The unit step as elementary SymPy, 0 at 0 (relu'(0) = 0). The explicit forms of the
    switches use it rather than Piecewise: nested Piecewise conditions make SymPy fold and
    simplify logic, which took seconds on a fully substituted loss."""
    return sp.Heaviside(x, 0)


class step(sp.Function, _Explicit):
    """Unit step, ``step(x) = 1`` for ``x > 0`` and ``0`` otherwise; relu's derivative.

    Its own derivative is 0 almost everywhere; symprop never needs the Dirac delta.
    """

    @classmethod
    def eval(cls, x):
        if x.is_Number:  # numbers only: asking the assumptions of a big sum is slow
            return sp.S.One if x > 0 else sp.S.Zero

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def explicit(self):
        return _heaviside(explicit(self.args[0]))


class sigmoid(sp.Function, _Explicit):
    """The logistic sigmoid; ``sigma'(u) = sigma(u) (1 - sigma(u))`` (seed 004, rule 5)."""

    @classmethod
    def eval(cls, x):
        if x.is_Number and x == 0:
            return sp.S.Half

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return self * (1 - self)

    def explicit(self):
        return 1 / (1 + sp.exp(-explicit(self.args[0])))


class relu(sp.Function, _Explicit):
    """``relu(u) = max(0, u)``; ``relu'(u) = step(u)`` with ``relu'(0) = 0``."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return x if x > 0 else sp.S.Zero

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return step(self.args[0])

    def explicit(self):
        x = explicit(self.args[0])
        return x * _heaviside(x)


class leaky_relu(sp.Function, _Explicit):
    """``leaky_relu(u, a) = u`` for ``u > 0`` and ``a u`` otherwise (``a`` defaults to 1/100).

    ``d/du = a + (1 - a) step(u)``, so the derivative at 0 is ``a``, like relu's 0.
    """

    nargs = (1, 2)

    @classmethod
    def eval(cls, x, a=None):
        if a is None:
            return cls(x, sp.Rational(1, 100))
        if x.is_Number:
            return x if x > 0 else a * x

    def fdiff(self, argindex=1):
        x, a = self.args
        if argindex == 1:
            return a + (1 - a) * step(x)
        if argindex == 2:
            return x * (1 - step(x))
        raise ArgumentIndexError(self, argindex)

    def explicit(self):
        x, a = (explicit(arg) for arg in self.args)
        return x * (a + (1 - a) * _heaviside(x))


class softplus(sp.Function, _Explicit):
    """``softplus(u) = log(1 + exp(u))``; ``softplus'(u) = sigma(u)``."""

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return sigmoid(self.args[0])

    def explicit(self):
        return sp.log(1 + sp.exp(explicit(self.args[0])))


def identity(x):
    """The identity activation: returns its argument, so it adds no factor to any chain."""
    return as_expr(x)


class maximum(sp.Function, _Explicit):
    """The max gate of seed 004 (rule 4): a switch that routes the gradient to the larger input.

    ``d max(a, b)/da = 1 - step(b - a)`` and ``d max(a, b)/db = step(b - a)``: on a tie the
    first argument takes the whole gradient.
    """

    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_number and b.is_number and a.is_comparable and b.is_comparable:
            return a if a >= b else b

    def fdiff(self, argindex=1):
        a, b = self.args
        if argindex == 1:
            return 1 - step(b - a)
        if argindex == 2:
            return step(b - a)
        raise ArgumentIndexError(self, argindex)

    def explicit(self):
        a, b = (explicit(arg) for arg in self.args)
        return a + (b - a) * _heaviside(b - a)  # a on a tie


class minimum(sp.Function, _Explicit):
    """``min(a, b)``, the mirror of the max gate: the gradient goes to ``a`` when ``a <= b``."""

    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_number and b.is_number and a.is_comparable and b.is_comparable:
            return a if a <= b else b

    def fdiff(self, argindex=1):
        a, b = self.args
        if argindex == 1:
            return 1 - step(a - b)
        if argindex == 2:
            return step(a - b)
        raise ArgumentIndexError(self, argindex)

    def explicit(self):
        a, b = (explicit(arg) for arg in self.args)
        return a + (b - a) * _heaviside(a - b)  # a on a tie


class softmax(sp.Function, _Explicit):
    """``softmax(k, z_1, ..., z_n) = exp(z_k) / sum_j exp(z_j)``, with ``k`` counted from 1.

    ``d softmax_k / d z_j = softmax_k (delta_kj - softmax_j)``.

    >>> import sympy as sp
    >>> a, b = sp.symbols("a b")
    >>> sp.diff(softmax(1, a, b), b)
    -softmax(1, a, b)*softmax(2, a, b)
    """

    @classmethod
    def eval(cls, k, *logits):
        if not (k.is_Integer and 1 <= k <= len(logits)):
            raise ValueError(f"softmax index {k} is not between 1 and {len(logits)}")

    @property
    def index(self):
        return int(self.args[0])

    @property
    def logits(self):
        return self.args[1:]

    def fdiff(self, argindex=1):
        j = argindex - 1
        if j < 1:
            raise ArgumentIndexError(self, argindex)
        same = 1 if j == self.index else 0
        return self * (same - softmax(j, *self.logits))

    def explicit(self):
        logits = [explicit(z) for z in self.logits]
        return sp.exp(logits[self.index - 1]) / sp.Add(*[sp.exp(z) for z in logits])


class softmax_cross_entropy(sp.Function, _Explicit):
    """``softmax_cross_entropy(n, z_1..z_n, t_1..t_n) = -sum_k t_k log softmax_k(z)``.

    Its derivative is the named rule of seed 000: ``dL/dz_j = y_hat_j - t_j`` with
    ``y_hat = softmax(z)``, exact when the targets sum to 1. Build it with
    :func:`softmax_cross_entropy_of`.
    """

    @property
    def size(self):
        return int(self.args[0])

    @property
    def logits(self):
        return self.args[1 : 1 + self.size]

    @property
    def targets(self):
        return self.args[1 + self.size :]

    @classmethod
    def eval(cls, n, *rest):
        if not (n.is_Integer and len(rest) == 2 * n):
            raise ValueError("softmax_cross_entropy needs as many targets as logits")

    def fdiff(self, argindex=1):
        j = argindex - 2
        n = self.size
        if 0 <= j < n:
            return softmax(j + 1, *self.logits) - self.targets[j]
        if n <= j < 2 * n:
            # d/dt_k of -sum t log softmax: -log softmax_k (targets are rarely differentiated)
            return -sp.log(softmax(j - n + 1, *self.logits))
        raise ArgumentIndexError(self, argindex)

    def explicit(self):
        logits = [explicit(z) for z in self.logits]
        lse = sp.log(sp.Add(*[sp.exp(z) for z in logits]))
        return -sp.Add(*[explicit(t) * (z - lse) for z, t in zip(logits, self.targets)])


def softmax_cross_entropy_of(logits, targets):
    """Cross-entropy of ``softmax(logits)`` against ``targets`` as one node expression."""
    logits, targets = list(logits), list(targets)
    if len(logits) != len(targets):
        raise ValueError(
            f"softmax_cross_entropy: {len(logits)} logits but {len(targets)} targets"
        )
    return softmax_cross_entropy(len(logits), *logits, *targets)


def half_sse(outputs, targets):
    """Half the sum of squared errors, ``1/2 sum_k (t_k - o_k)^2`` (seed 002)."""
    return sp.Rational(1, 2) * sp.Add(*[(t - o) ** 2 for o, t in _pairs("half_sse", outputs, targets)])


def mse(outputs, targets):
    """Mean squared error, ``1/n sum_k (t_k - o_k)^2``."""
    pairs = _pairs("mse", outputs, targets)
    return sp.Rational(1, len(pairs)) * sp.Add(*[(t - o) ** 2 for o, t in pairs])


def cross_entropy(probs, targets):
    """Cross-entropy ``-sum_k t_k log p_k`` of probabilities (seed 002 §1.1, seed 004)."""
    return -sp.Add(*[t * sp.log(p) for p, t in _pairs("cross_entropy", probs, targets)])


def binary_cross_entropy(p, t):
    """``-(t log p + (1 - t) log(1 - p))`` for one probability ``p`` and target ``t``."""
    return -(t * sp.log(p) + (1 - t) * sp.log(1 - p))


def _pairs(name, outputs, targets):
    outputs, targets = list(outputs), list(targets)
    if len(outputs) != len(targets) or not outputs:
        raise ValueError(f"{name}: {len(outputs)} outputs but {len(targets)} targets")
    return list(zip(outputs, targets))


class GenericFunction(sp.Function):
    """Base of the unspecified activations (``g``) made by :func:`generic`.

    ``order`` counts derivatives: ``g`` has 0, ``g_prime`` 1. Printers show ``g'(u)``;
    spec strings and JSON use ``g_prime(u)``, which the spec parser reads back.
    """

    base_name: str = "g"
    order: int = 0
    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return generic(self.base_name, self.order + 1)(self.args[0])


def generic(name: str, order: int = 0) -> type[GenericFunction]:
    """The generic activation called ``name`` (or its ``order``-th derivative).

    The same name always gives the same class, so ``generic("g")(u) == generic("g", 0)(u)``.
    """
    if not name.isidentifier():
        raise ValueError(f"generic function name {name!r} is not an identifier")
    return _generic_class(name, int(order))


@functools.cache
def _generic_class(name: str, order: int) -> type[GenericFunction]:
    spelled = name + "_prime" * order
    return type(spelled, (GenericFunction,), {"base_name": name, "order": order})


def explicit(expr):
    """Rewrite symprop's functions inside ``expr`` in elementary SymPy functions.

    >>> import sympy as sp
    >>> explicit(sigmoid(sp.Symbol("x")))
    1/(1 + exp(-x))
    """
    return _explicit(as_expr(expr))


@functools.lru_cache(maxsize=1 << 14)
def _explicit(expr):
    # cached: a fully substituted expression repeats each node's subtree many times over,
    # and rewriting it as a tree took time exponential in the depth
    if isinstance(expr, _Explicit):
        return expr.explicit()
    if not expr.args:
        return expr
    return expr.func(*[_explicit(arg) for arg in expr.args])


# The names by which specs, mlp() and the CLI refer to activations and losses.
ACTIVATIONS = {
    "sigmoid": sigmoid,
    "tanh": sp.tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "softplus": softplus,
    "identity": identity,
    "linear": identity,
}

LOSSES = {
    "half_sse": half_sse,
    "mse": mse,
    "cross_entropy": cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy_of,
    "binary_cross_entropy": binary_cross_entropy,
}
