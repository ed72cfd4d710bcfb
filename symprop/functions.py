r"""Primitives: every function symprop knows, each in one record beside its SymPy class.

A :class:`Primitive` holds all that the rest of symprop needs to know about one function:
its SymPy class and derivative rule (written the way the course texts write it, so a
derivation prints ``sigma(u)*(1 - sigma(u))`` rather than an opaque ``exp`` expression),
its explicit form in elementary functions, its name and argument shapes in spec files,
its stable NumPy form, its LaTeX head, its rule in words (plain and LaTeX), its gate in a
circuit and its flags. Adding an activation is one record; :func:`define_function` makes
one from a formula:

>>> import sympy as sp
>>> from symprop.functions import sigmoid, relu, generic, define_function, record_of
>>> u = sp.Symbol("u")
>>> sp.diff(sigmoid(u), u)
(1 - sigmoid(u))*sigmoid(u)
>>> sp.diff(relu(u), u)
step(u)
>>> g = generic("g")
>>> sp.diff(g(2*u), u)
2*g_prime(2*u)
>>> swish = define_function("swish", u * sigmoid(u), u)
>>> sp.diff(swish(2*u), u)
2*swish_prime(2*u)
>>> record_of(swish).definition, record_of(swish).derivative_definition
(u*sigmoid(u), u*(1 - sigmoid(u))*sigmoid(u) + sigmoid(u))
>>> float(record_of(swish).numpy(1.0))
0.7310585786300049

Every class also has an ``explicit()`` form in elementary SymPy functions (``exp``,
``log``, ``Heaviside``), which the tests differentiate with ``sympy.diff`` as an
independent check of the rules written here.

Conventions (documented because the texts leave them open):

- ``relu'(0) = step(0) = 0``; ``sign'`` and ``step'`` are 0 (almost everywhere).
- ``max(a, b)`` routes the gradient to ``a`` when ``a >= b``: on a tie the first argument
  takes it all, so the two partials always sum to 1. ``min`` likewise routes to ``a``
  when ``a <= b``.
- ``softmax_cross_entropy`` and ``cross_entropy`` expect target vectors that sum to 1
  (one-hot labels or probabilities); that is what makes ``dL/dz_j = y_hat_j - t_j``
  (seed 000) exact. The numeric layer checks it.
"""

from __future__ import annotations

import functools
import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy.core.function import ArgumentIndexError

__all__ = [
    "Rule", "Primitive", "GateOp", "LossRule", "BUILTINS", "record_of", "register", "define_function",
    "sigmoid", "relu", "leaky_relu", "softplus", "step", "sign", "identity", "maximum", "minimum",
    "softmax", "softmax_cross_entropy", "softmax_cross_entropy_of", "generic", "GenericFunction",
    "DefinedFunction", "half_sse", "mse", "cross_entropy", "binary_cross_entropy", "explicit", "as_expr",
    "ACTIVATIONS", "LOSSES", "activation", "bind_generics", "numpy_namespace", "subexpressions", "replace_shared", "U",
]

# The variable of definitions: a defined function's formula, a loss's per-entry formula.
U = sp.Symbol("u", real=True)
V = sp.Symbol("v", real=True)


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


# -- records --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Rule:
    """A derivative rule as a local partial states it: its ``name``, the rule in plain text
    (``rule``) and as a sentence whose math is in ``$...$`` (``sentence``), for documents."""

    name: str
    rule: str | None = None
    sentence: str | None = None


@dataclass(frozen=True)
class GateOp:
    """A kind of gate in a circuit: ``op``, the prefix of its generated names, and how
    documents show it. ``label`` (in the figure), ``title`` (in the gate table), ``rule``
    (plain text) and ``sentence`` (``$math$``) are templates (see :meth:`fill`) over the
    gate's printed constants: ``{k}``, ``{k_paren}``, ``{c_signed}``, ``{n}``, ``{a_clause}``, ``{args}``,
    ``{function}`` (LaTeX of the function) and ``{name}`` (its plain name)."""

    op: str
    prefix: str
    label: str
    title: str
    rule: str
    sentence: str

    @staticmethod
    def fill(template: str, **fields) -> str:
        """``template`` with each ``{field}`` replaced (other braces are LaTeX's, kept)."""
        for key, value in fields.items():
            template = template.replace("{" + key + "}", "" if value is None else str(value))
        return template


@dataclass(frozen=True)
class LossRule:
    """A loss ``E = scale * sum_k entry(a_k, y_k)`` over the outputs ``a`` and targets ``y``.

    ``entry`` is a formula in :data:`U` (an output) and :data:`V` (its target), ``gradient``
    its derivative in ``U`` as the texts write it; ``scale(n)`` the factor for ``n``
    outputs; ``title`` its name in prose. A loss that pairs with an output activation into
    one simple rule names it: ``fused`` is ``(activation, rule name, delta in text)``."""

    entry: sp.Expr
    gradient: sp.Expr
    scale: Callable[[sp.Expr], sp.Expr]
    title: str
    numpy: Callable
    fused: tuple[str, str] | None = None
    logits: bool = False  # it takes logits and applies the fused activation itself


@dataclass(frozen=True, eq=False)
class Primitive(Rule):
    """Everything symprop knows about one function (see the module docstring).

    ``build`` makes a spec call's expression from its arguments (shapes: one letter per
    argument, ``s`` scalar, ``L`` list, ``k`` integer; a trailing ``+`` repeats the last);
    ``cls`` is the SymPy class the expression carries (None when ``build`` composes other
    primitives); ``numpy`` the stable NumPy form called in its place; ``head`` its LaTeX
    head and ``text_head`` its terminal head (None: SymPy prints it, or the name);
    ``derivative(expr, argindex)`` overrides ``expr.fdiff``; ``gate`` its gate in circuits.
    Flags: ``activation`` (elementwise, one argument: an activation of a unit), ``kinked``
    (its derivative jumps), ``saturating`` (its derivative fades to 0 at large inputs),
    ``dying`` (its derivative is 0 on a whole side: a unit can die). ``definition`` is the
    formula in :data:`U` of a defined function (and of each of its derivatives).
    """

    build: Callable | None = None
    numpy: Callable | None = None
    cls: type | None = None
    shapes: tuple[str, ...] = ("s",)
    takes: str = "1 argument"
    head: str | None = None
    text_head: str | None = None
    derivative: Callable | None = None
    gate: GateOp | None = None
    activation: bool = False
    kinked: bool = False
    saturating: bool = False
    dying: bool = False
    loss: LossRule | None = None
    definition: sp.Expr | None = None
    kind: str = "builtin"  # or "generic", "defined"
    aliases: tuple[str, ...] = field(default=())

    def differentiate(self, expr, argindex: int) -> sp.Expr:
        """The partial derivative of ``expr`` (a call of this primitive) in argument ``argindex``."""
        return self.derivative(expr, argindex) if self.derivative else expr.fdiff(argindex)

    @property
    def derivative_definition(self) -> sp.Expr | None:
        """A defined function's derivative as a formula in :data:`U`."""
        return None if self.definition is None else _defined_derivative(self.definition)


_BY_CLASS: dict[type, Primitive] = {}
BUILTINS: dict[str, Primitive] = {}  # spec name -> record, the built-in primitives
_ALIASES: dict[str, Primitive] = {}  # other names of built-ins ("linear" for identity)


def register(p: Primitive, builtin: bool = False) -> Primitive:
    """Add ``p`` to the registry; a record without a NumPy form is refused (a generic
    function gets one only when bound), as is a built-in name taken twice."""
    if p.numpy is None and p.kind != "generic":
        raise ValueError(f"primitive {p.name}: no NumPy form; every primitive needs one to be evaluated")
    if builtin:
        for name in (p.name,) + p.aliases:
            if name in BUILTINS or name in _ALIASES:
                raise ValueError(f"primitive {name} is registered twice")
        BUILTINS[p.name] = p
        _ALIASES.update(dict.fromkeys(p.aliases, p))
    if p.cls is not None:
        _BY_CLASS[p.cls] = p
    return p


def record_of(f) -> Primitive | None:
    """The record of a function call, a SymPy function class or a spec name (built-ins).

    >>> record_of("max").name, record_of(sigmoid).head, record_of(sp.tanh(sp.Symbol("x"))).name
    ('max', '\\\\sigma', 'tanh')
    """
    if isinstance(f, str):
        return BUILTINS.get(f) or _ALIASES.get(f)
    cls = f if isinstance(f, type) else type(f)
    return _BY_CLASS.get(cls)


# -- NumPy forms ----------------------------------------------------------------------------

def _np_sigmoid(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))  # never overflows; 1/(1+e) and e/(1+e) are both exact-ish
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_step(x):
    return np.where(np.asarray(x) > 0, 1.0, 0.0)


def _np_relu(x):
    return np.where(np.asarray(x) > 0, x, 0.0)


def _np_leaky_relu(x, a=0.01):
    return np.where(np.asarray(x) > 0, x, np.multiply(a, x))


def _np_maximum(a, b):
    return np.where(np.asarray(a) >= b, a, b)  # tie: the first argument


def _np_minimum(a, b):
    return np.where(np.asarray(a) <= b, a, b)


def _np_logits(z):
    arrays = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in z])
    return arrays, np.maximum.reduce(arrays)


def np_logsumexp(*z):
    """``log sum_j exp(z_j)`` without overflow (the largest logit subtracted first)."""
    arrays, top = _np_logits(z)
    return top + np.log(sum(np.exp(v - top) for v in arrays))


def _np_softmax(k, z):
    arrays, top = _np_logits(z)
    e = [np.exp(v - top) for v in arrays]
    return e[int(k) - 1] / sum(e)


def _np_softmax_cross_entropy(n, *args):
    n = int(n)
    lse = np_logsumexp(*args[:n])
    return -sum(np.multiply(t, np.subtract(z, lse)) for z, t in zip(args[:n], args[n:]))


def _np_xlogy(v, u):
    """``v log u`` with ``0 log 0 = 0`` (a one-hot target's zero entries)."""
    v, u = np.asarray(v, dtype=float), np.asarray(u, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v == 0, 0.0, v * np.log(u))


# -- the SymPy classes ----------------------------------------------------------------------

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


class sign(sp.Function, _Explicit):
    """The sign, -1, 0 or 1; its derivative is 0 almost everywhere (as ``step``'s)."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.sign(x)

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def explicit(self):
        return sp.sign(explicit(self.args[0]))


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


class Logits(sp.Tuple):
    """The logits of a softmax: a tuple whose hash is computed once (SymPy's Tuple hashes
    all its entries every time, and an n-class softmax is looked up n times)."""

    def __hash__(self):
        if self._mhash is None:
            self._mhash = hash(self.args)
        return self._mhash

    def _eval_evalf(self, prec):
        return Logits(*[a._eval_evalf(prec) or a for a in self.args])

    def evalf(self, *args, **options):
        return Logits(*[a.evalf(*args, **options) for a in self.args])


class softmax(sp.Function, _Explicit):
    """``softmax(k, z_1, ..., z_n) = exp(z_k) / sum_j exp(z_j)``, with ``k`` counted from 1.

    ``d softmax_k / d z_j = softmax_k (delta_kj - softmax_j)``. The logits are kept as one
    shared tuple (``softmax(k, (z_1, ..., z_n))``), so the n outputs of an n-class softmax
    and their derivatives hold one tuple, not n copies: a 2,000-class classifier stays
    linear in its size. :attr:`logits` gives them back one by one.

    >>> import sympy as sp
    >>> a, b = sp.symbols("a b")
    >>> sp.diff(softmax(1, a, b), b)
    -softmax(1, (a, b))*softmax(2, (a, b))
    """

    is_commutative = True  # SymPy cannot tell from a tuple argument; it is a number

    def __new__(cls, k, *logits, **options):
        if len(logits) == 1 and isinstance(logits[0], Logits):
            shared = logits[0]  # the same tuple object: hashed and compared once, not per k
        elif len(logits) == 1 and isinstance(logits[0], (sp.Tuple, tuple, list)):
            shared = Logits(*logits[0])
        else:
            shared = Logits(*logits)
        return super().__new__(cls, k, shared, **options)

    @classmethod
    def eval(cls, k, logits):
        if not (k.is_Integer and 1 <= k <= len(logits)):
            raise ValueError(f"softmax index {k} is not between 1 and {len(logits)}")

    @property
    def index(self):
        return int(self.args[0])

    @property
    def logits(self):
        return self.args[1].args

    def fdiff(self, argindex=1):
        """``argindex`` is ``(2, j)`` for the j-th logit (the logits are one argument)."""
        if not (isinstance(argindex, tuple) and argindex[0] == 2):
            raise ArgumentIndexError(self, argindex)
        j = argindex[1]
        same = 1 if j == self.index else 0
        return self * (same - softmax(j, self.args[1]))

    def _eval_derivative(self, s):
        return sp.Add(*[self.fdiff((2, j)) * z.diff(s) for j, z in enumerate(self.logits, 1) if z.has(s)])

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

    @functools.cached_property
    def _logits(self) -> Logits:
        """The logits as one tuple, shared by every softmax the derivatives hold."""
        return Logits(*self.logits)

    def fdiff(self, argindex=1):
        j = argindex - 2
        n = self.size
        if 0 <= j < n:
            return softmax(j + 1, self._logits) - self.targets[j]
        if n <= j < 2 * n:
            # d/dt_k of -sum t log softmax: -log softmax_k (targets are rarely differentiated)
            return -sp.log(softmax(j - n + 1, self._logits))
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
    cls = type(spelled, (GenericFunction,), {"base_name": name, "order": order})
    register(Primitive(
        name=spelled, cls=cls, build=cls, kind="generic", activation=order == 0, gate=_function_gate("generic", spelled),
        rule=f"generic activation: {name}'(u)",  # its sentence is printed with its display name
    ))
    return cls


class DefinedFunction(sp.Function, _Explicit):
    """Base of the functions made by :func:`define_function`: ``definition`` is the formula
    in :data:`U`, ``order`` counts derivatives (``swish_prime`` is swish's first)."""

    base_name: str = "f"
    order: int = 0
    definition: sp.Expr = U  # this derivative's formula
    base_definition: sp.Expr = U  # the function's own
    base: type  # the function itself (order 0)
    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise ArgumentIndexError(self, argindex)
        return _defined_class(self.base_name, self.base_definition, self.order + 1)(self.args[0])

    def explicit(self):
        return explicit(self.definition.xreplace({U: self.args[0]}))


def define_function(name: str, expr, var: sp.Symbol) -> type[DefinedFunction]:
    """A new elementwise function ``name(var) = expr``, first-class everywhere.

    ``expr`` is a SymPy expression in the symbol ``var`` only; it may use any primitive,
    defined functions included. The derivative comes from the definition (printed as
    ``name'(u)``), the NumPy form from the definition with each primitive's stable form.
    Built-in names cannot be redefined; a formula without a derivative rule or a NumPy
    form is refused here, with the reason.

    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> softsign = define_function("softsign", x / (1 + sp.Abs(x)), x)
    >>> softsign(x).fdiff()
    softsign_prime(x)
    >>> define_function("sigmoid", x, x)
    Traceback (most recent call last):
    ...
    ValueError: sigmoid is a built-in function and cannot be redefined
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise ValueError(f"{name!r} is not a valid function name (letters, digits and _, not starting with _)")
    if name in BUILTINS or name.endswith("_prime"):
        raise ValueError(f"{name} is a built-in function and cannot be redefined" if name in BUILTINS
                         else f"{name}: names ending in _prime are kept for derivatives")
    if not isinstance(var, sp.Symbol):
        raise ValueError(f"{name}: the variable must be a SymPy Symbol, not {var!r}")
    expr = as_expr(expr)
    others = sorted((s.name for s in expr.free_symbols if s != var), key=str)
    if others:
        raise ValueError(f"{name}: the definition may use only its variable {var}, not {others[0]}")
    return _defined_class(name, expr.xreplace({var: U}), 0)


def _defined_derivative(definition):
    # SymPy writes |u|' as its own sign(u), whose derivative is a Dirac delta: use symprop's
    d = sp.diff(definition, U).replace(sp.sign, sign)
    if d.has(sp.Derivative, sp.Subs):
        raise ValueError(f"no derivative rule for {sorted(d.atoms(sp.Derivative), key=str)[0].expr}")
    return d


@functools.cache
def _defined_class(name: str, definition: sp.Expr, order: int) -> type[DefinedFunction]:
    """The class of ``name`` (its ``order``-th derivative), one per (name, definition)."""
    body = definition
    for _ in range(order):
        try:
            body = _defined_derivative(body)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    spelled = name + "_prime" * order
    cls = type(spelled, (DefinedFunction,), {
        "base_name": name, "order": order, "definition": body, "base_definition": definition,
    })
    cls.base = cls if order == 0 else _defined_class(name, definition, 0)
    numpy = _defined_numpy(spelled, body)
    flags = {f for f in (record_of(a) for a in body.atoms(sp.Function)) if f is not None}
    register(Primitive(
        name=spelled, cls=cls, build=cls, numpy=numpy, kind="defined", definition=body,
        head=r"\operatorname{" + name.replace("_", r"\_") + "}" + "'" * order,
        text_head=name + "'" * order, activation=order == 0,
        kinked=any(f.kinked for f in flags) or body.has(sp.Abs),
        gate=_function_gate("function", spelled),
    ))
    return cls


def _function_gate(op, name) -> GateOp:
    """The gate of a generic or defined function: one input, its derivative as the rule."""
    return GateOp(op, name, "${function}$", "${function}$",
                  "{name} multiplies the gradient by its derivative {name}'(x)",
                  "The gate ${function}$ multiplies the gradient by its derivative ${function}'$ at its input.")


def _defined_numpy(name, body) -> Callable:
    """The NumPy form of a definition: lambdified with each primitive's stable form."""
    from sympy.utilities.lambdify import lambdify

    namespace = numpy_namespace([body])
    x = sp.Dummy("x")
    f = lambdify([x], body.xreplace({U: x}), modules=[namespace, "numpy"])
    try:
        with np.errstate(all="ignore"):
            probe = np.asarray(f(np.array([-2.0, -0.5, 0.5, 2.0])), dtype=float)
    except Exception as err:  # NameError for a function without a NumPy form, and the like
        raise ValueError(f"{name}: no NumPy form ({type(err).__name__}: {err})") from None
    if probe.shape not in ((4,), ()):
        raise ValueError(f"{name}: the NumPy form does not work elementwise")
    return lambda u: f(np.asarray(u, dtype=float)) + np.zeros_like(np.asarray(u, dtype=float))


def bind_generics(expr, bind: Mapping):
    """``expr`` with each generic function g (and g', g'') replaced by the activation it is
    bound to: ``bind`` maps g's name to an activation name or a defined function's class.

    >>> import sympy as sp
    >>> g, x = generic("g"), sp.Symbol("x")
    >>> bind_generics(g(x) + generic("g", 1)(x), {"g": "tanh"})
    -tanh(x)**2 + tanh(x) + 1
    """
    for f in sorted({type(c) for c in expr.atoms(GenericFunction)}, key=lambda c: (c.base_name, c.order)):
        if f.base_name not in bind:
            raise ValueError(f"{f.base_name} is a generic function; bind it to an activation to get numbers")
        u = sp.Dummy("u")
        expr = expr.replace(f, sp.Lambda(u, sp.diff(activation(bind[f.base_name])(u), u, f.order)))
    return expr


def subexpressions(exprs):
    """Every distinct subexpression of ``exprs``, each once: linear in the distinct ones,
    where SymPy's own walks (atoms, xreplace) go through a shared subexpression (the logits
    tuple of a 2,000-class softmax) once for each place that holds it."""
    seen, stack = set(), list(exprs)
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        yield e
        stack.extend(e.args)


def replace_shared(expr, mapping: Mapping, memo: dict | None = None):
    """``expr.xreplace(mapping)``, each distinct subexpression rebuilt once (``memo`` may be
    kept between calls on expressions that share parts)."""
    memo = {} if memo is None else memo

    def go(e):
        if e in mapping:
            return mapping[e]
        if not e.args:
            return e
        if e not in memo:
            args = [go(a) for a in e.args]
            memo[e] = e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)
        return memo[e]

    return go(expr)


def numpy_namespace(exprs=()) -> dict[str, Callable]:
    """The NumPy form of every function class in ``exprs`` (every built-in when empty), by
    class name, for :func:`sympy.lambdify`. Two different functions of one name in the
    same expressions are refused, since lambdify knows functions by name only.

    >>> f = numpy_namespace()
    >>> float(f["sigmoid"](-1000.0)), float(f["softmax"](1, (1000.0, 0.0)))
    (0.0, 1.0)
    """
    if not exprs:
        records = [p for p in BUILTINS.values() if p.cls is not None]
    else:
        classes = {type(f) for f in subexpressions(exprs) if isinstance(f, sp.Function)}
        records = [p for p in (record_of(c) for c in classes) if p is not None and p.numpy is not None]
    namespace: dict[str, Callable] = {}
    for p in sorted(records, key=lambda p: p.cls.__name__):
        name = p.cls.__name__
        if name in namespace and namespace[name] is not p.numpy:
            raise ValueError(f"two different functions are called {name}")
        namespace[name] = p.numpy
    return namespace


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


# -- the built-in records -------------------------------------------------------------------

def _fold(f):
    return lambda *args: functools.reduce(f, args)


def _gate(op, label, title, rule, sentence, prefix=None):
    return GateOp(op, prefix or op, label, title, rule, sentence)


_CROSS_ENTROPY = LossRule(-V * sp.log(U), -V / U, lambda n: sp.S.One, "cross-entropy",
                          lambda u, v: -_np_xlogy(v, u), fused=("softmax", "softmax + cross-entropy"))


def _builtin(**fields) -> Primitive:
    return register(Primitive(**fields), builtin=True)


_builtin(
    name="sigmoid", cls=sigmoid, build=sigmoid, numpy=_np_sigmoid, head=r"\sigma", text_head="σ",
    rule="σ'(u) = σ(u)(1 - σ(u))",
    sentence=r"the sigmoid rule $\sigma'(u) = \sigma(u)\,(1 - \sigma(u))$, written with the node's output as $z\,(1 - z)$",
    gate=_gate("sigmoid", r"$\sigma$", r"$\sigma$", "sigmoid multiplies the gradient by z(1 - z), z its output",
               "The sigmoid gate multiplies the gradient by $z(1 - z)$, where $z$ is its output.", prefix="sig"),
    activation=True, saturating=True,
)
_builtin(
    name="tanh", cls=sp.tanh, build=sp.tanh, numpy=np.tanh, head=r"\tanh",
    rule="tanh'(u) = 1 - tanh²(u)", sentence=r"$\tanh'(u) = 1 - \tanh^2(u)$",
    gate=_gate("tanh", r"$\tanh$", "tanh", "tanh multiplies the gradient by 1 - z^2, z its output",
               "The tanh gate multiplies the gradient by $1 - z^{2}$, where $z$ is its output."),
    activation=True, saturating=True,
)
_builtin(
    name="relu", cls=relu, build=relu, numpy=_np_relu, head=r"\operatorname{relu}",
    rule="relu'(u) = step(u), relu'(0) = 0",
    sentence=r"$\operatorname{relu}'(u) = \operatorname{step}(u)$, taking $\operatorname{relu}'(0) = 0$",
    gate=_gate("relu", r"{\scriptsize relu}", "relu",
               "relu passes the gradient where its input is positive and blocks it (0) elsewhere",
               r"The relu gate passes the gradient where its input is positive and blocks it (gradient $0$) "
               r"elsewhere, taking $\operatorname{relu}'(0) = 0$."),
    activation=True, kinked=True, dying=True,
)
_builtin(
    name="leaky_relu", cls=leaky_relu, build=leaky_relu, numpy=_np_leaky_relu, shapes=("s", "ss"),
    takes="1 or 2 arguments", head=r"\operatorname{leaky\_relu}",
    rule="leaky_relu'(u) = a + (1 - a) step(u)",
    sentence=r"$\operatorname{leaky\_relu}'(u) = a + (1 - a)\operatorname{step}(u)$",
    gate=_gate("leaky_relu", r"{\scriptsize lrelu}", "leaky relu",
               "leaky relu passes the gradient where its input is positive and scales it by the slope a elsewhere",
               "The leaky relu gate passes the gradient where its input is positive and scales it by the slope "
               "$a${a_clause} elsewhere.", prefix="lrelu"),
    activation=True, kinked=True,
)
_builtin(
    name="softplus", cls=softplus, build=softplus, numpy=lambda x: np.logaddexp(0.0, x),
    head=r"\operatorname{softplus}", rule="softplus'(u) = σ(u)", sentence=r"$\operatorname{softplus}'(u) = \sigma(u)$",
    gate=_gate("softplus", r"{\scriptsize softplus}", "softplus", "softplus multiplies the gradient by sigmoid(x)",
               r"The softplus gate multiplies the gradient by $\sigma(x)$, the sigmoid of its input."),
    activation=True,
)
_builtin(
    name="identity", build=identity, numpy=lambda x: np.asarray(x, dtype=float), head=r"\operatorname{identity}",
    rule="identity'(u) = 1", sentence="the identity passes its input through: its derivative is $1$",
    activation=True, aliases=("linear",),
)
_builtin(
    name="exp", cls=sp.exp, build=sp.exp, numpy=np.exp, head=r"\exp", rule="exp' = exp", sentence=r"$\exp' = \exp$",
    gate=_gate("exp", r"$\exp$", "exp", "exp multiplies the gradient by its output",
               r"The exp gate multiplies the gradient by its own output, since $(e^{x})' = e^{x}$."),
)
_builtin(
    name="log", cls=sp.log, build=sp.log, numpy=np.log, head=r"\log", rule="log'(u) = 1/u", sentence=r"$\log'(u) = 1/u$",
    gate=_gate("log", r"$\log$", "log", "log multiplies the gradient by 1/x",
               "The log gate multiplies the gradient by $1/x$, the reciprocal of its input."),
)
_builtin(
    name="sinh", cls=sp.sinh, build=sp.sinh, numpy=np.sinh, head=r"\sinh", rule="sinh'(u) = cosh(u)",
    sentence=r"$\sinh'(u) = \cosh(u)$",
)
_builtin(
    name="cosh", cls=sp.cosh, build=sp.cosh, numpy=np.cosh, head=r"\cosh", rule="cosh'(u) = sinh(u)",
    sentence=r"$\cosh'(u) = \sinh(u)$",
)
_builtin(
    name="sech", cls=sp.sech, build=sp.sech, numpy=lambda x: 1 / np.cosh(x), head=r"\operatorname{sech}",
    rule="sech'(u) = -sech(u) tanh(u)", sentence=r"$\operatorname{sech}'(u) = -\operatorname{sech}(u)\tanh(u)$",
)
_builtin(
    name="sqrt", build=sp.sqrt, numpy=np.sqrt, head=r"\sqrt", rule="sqrt'(u) = 1/(2 sqrt(u))",
    sentence=r"$\sqrt{u}\,' = \frac{1}{2\sqrt{u}}$",
)
_builtin(
    name="abs", cls=sp.Abs, build=sp.Abs, numpy=np.abs, head=r"\operatorname{abs}", text_head="abs",
    derivative=lambda expr, i: sign(expr.args[0]), rule="abs'(u) = sign(u)",
    sentence=r"$|u|' = \operatorname{sign}(u)$ (taking $0$ at $0$)",
    kinked=True,
)
_builtin(
    name="sign", cls=sign, build=sign, numpy=np.sign, head=r"\operatorname{sign}",
    rule="sign'(u) = 0 almost everywhere", sentence="the sign function is flat: its derivative is $0$ almost everywhere",
    kinked=True,
)
_builtin(
    name="step", cls=step, build=step, numpy=_np_step, head=r"\operatorname{step}",
    rule="step'(u) = 0 almost everywhere", sentence="the step function is flat: its derivative is $0$ almost everywhere",
    kinked=True,
)
_builtin(
    name="max", cls=maximum, build=_fold(maximum), numpy=_np_maximum, shapes=("ss+",), takes="2 or more arguments",
    head=r"\max", text_head="max", rule="max: routes the gradient to the larger input",
    sentence=r"$\max$ routes the gradient to its larger input",
    gate=_gate("max", r"$\max{args}$", "max",
               "max is a switch: the gradient goes to the larger input (the first on a tie), 0 to the other",
               "The max gate acts like a switch: the incoming gradient goes to the larger input (to the first one "
               "on a tie), the other input gets $0$."),
    kinked=True,
)
_builtin(
    name="min", cls=minimum, build=_fold(minimum), numpy=_np_minimum, shapes=("ss+",), takes="2 or more arguments",
    head=r"\min", text_head="min", rule="min: routes the gradient to the smaller input",
    sentence=r"$\min$ routes the gradient to its smaller input",
    gate=_gate("min", r"$\min{args}$", "min",
               "min is a switch: the gradient goes to the smaller input (the first on a tie), 0 to the other",
               "The min gate acts like a switch: the incoming gradient goes to the smaller input (to the first one "
               "on a tie), the other input gets $0$."),
    kinked=True,
)
_builtin(
    name="softmax", cls=softmax, build=lambda z, k: softmax(k, *z), numpy=_np_softmax, shapes=("Lk",),
    takes="a list and an index counted from 1", head=r"\operatorname{softmax}",
    rule="softmax: ∂y_k/∂z_j = y_k(δ_kj - y_j)",
    sentence=r"$\frac{\partial \operatorname{softmax}_k}{\partial z_j} = \operatorname{softmax}_k\,(\delta_{kj} - "
             r"\operatorname{softmax}_j)$",
)
_builtin(
    name="softmax_cross_entropy", cls=softmax_cross_entropy, build=softmax_cross_entropy_of,
    numpy=_np_softmax_cross_entropy, shapes=("LL",), takes="2 lists", head=r"\operatorname{CE}",
    rule="softmax + cross-entropy: ∂L/∂z_j = ŷ_j - y_j",
    sentence=r"softmax with cross-entropy: the derivative with respect to a logit is the predicted probability "
             r"minus the target, $\hat{y}_j - y_j$",
    gate=_gate("softmax_cross_entropy", r"{\scriptsize CE}", "softmax + CE",
               "softmax + cross-entropy sends y_hat - y to the logits (and -log y_hat to the targets)",
               r"Softmax with cross-entropy, taken as one gate, sends $\hat{y}_j - y_j$ (times the incoming gradient) "
               r"to each logit $z_j$.", prefix="ce"),
    loss=replace(_CROSS_ENTROPY, logits=True),
)
_builtin(
    name="half_sse", build=half_sse, numpy=lambda u, v: 0.5 * np.square(np.subtract(u, v)), shapes=("LL",),
    takes="2 lists", head=r"\operatorname{half\_sse}", rule="½ Σ (t - o)²: ∂E/∂o = o - t",
    sentence=r"half the squared error $\frac{1}{2}(t - o)^2$ has the derivative $o - t$",
    loss=LossRule((U - V) ** 2 / 2, U - V, lambda n: sp.S.One, "half squared error",
                  lambda u, v: 0.5 * np.square(np.subtract(u, v))),
)
_builtin(
    name="mse", build=mse, numpy=lambda u, v: np.square(np.subtract(u, v)), shapes=("LL",), takes="2 lists",
    head=r"\operatorname{mse}", rule="1/n Σ (t - o)²: ∂E/∂o = 2/n (o - t)",
    sentence=r"the mean squared error $\frac{1}{n}\sum (t - o)^2$ has the derivative $\frac{2}{n}(o - t)$",
    loss=LossRule((U - V) ** 2, 2 * (U - V), lambda n: 1 / n, "mean squared error",
                  lambda u, v: np.square(np.subtract(u, v))),
)
_builtin(
    name="cross_entropy", build=cross_entropy, numpy=lambda u, v: -_np_xlogy(v, u), shapes=("LL",), takes="2 lists",
    head=r"\operatorname{CE}", rule="-Σ t log p: ∂E/∂p = -t/p",
    sentence=r"the cross-entropy $-\sum t \log p$ has the derivative $-t/p$",
    loss=_CROSS_ENTROPY,
)
_builtin(
    name="binary_cross_entropy", build=binary_cross_entropy,
    numpy=lambda u, v: -(_np_xlogy(v, u) + _np_xlogy(np.subtract(1, v), np.subtract(1, u))), shapes=("ss",),
    takes="2 arguments", head=r"\operatorname{BCE}", rule="-(t log p + (1 - t) log(1 - p)): ∂E/∂p = (p - t)/(p(1 - p))",
    sentence=r"the binary cross-entropy has the derivative $\frac{p - t}{p(1 - p)}$",
    loss=LossRule(-(V * sp.log(U) + (1 - V) * sp.log(1 - U)), (U - V) / (U * (1 - U)), lambda n: sp.S.One,
                  "binary cross-entropy",
                  lambda u, v: -(_np_xlogy(v, u) + _np_xlogy(np.subtract(1, v), np.subtract(1, u))),
                  fused=("sigmoid", "sigmoid + binary cross-entropy")),
)


# The names by which specs, mlp() and the CLI refer to the built-in activations and losses.
ACTIVATIONS: dict[str, Callable] = {
    name: p.build for name, p in [*BUILTINS.items(), *_ALIASES.items()] if p.activation
}
LOSSES: dict[str, Callable] = {name: p.build for name, p in BUILTINS.items() if p.loss is not None}


def activation(name_or_function, table: Mapping[str, Primitive] | None = None) -> Callable:
    """The activation called ``name`` (a built-in, or one of ``table``'s, a spec's defined
    functions), or of a record; a callable (a defined function's class) is returned as it is."""
    if isinstance(name_or_function, Primitive):
        if not name_or_function.activation:
            raise ValueError(f"{name_or_function.name} is not an activation")
        return name_or_function.build
    if callable(name_or_function):
        return name_or_function
    p = (table or {}).get(name_or_function) or record_of(str(name_or_function))
    if p is None or not p.activation:
        known = sorted(ACTIVATIONS) + sorted(n for n, q in (table or {}).items() if q.activation and n not in ACTIVATIONS)
        raise ValueError(f"unknown activation {name_or_function!r}; known: {', '.join(known)}")
    return p.build
