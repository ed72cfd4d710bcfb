"""Answer checking: is a student's expression for dE/dw right, and if not, which typical
mistake does it match?

The answer is an expression in the network's symbols: inputs, targets, parameters and
node names, where a node means the node's value (``h*(1 - h)*x`` is as good as
``sigmoid(w*x)*(1 - sigmoid(w*x))*x``); text a student typed is read first by the safe
parser, :func:`symprop.spec.parse_expression`.

The answer is compared with the derived gradient at :data:`POINTS` random points with
interval arithmetic (mpmath, 40 digits and more where values cancel, up to
``limits.MAX_EXACT_DIGITS``): each value comes with bounds that surely hold, so the verdict
at a point is certain. They agree when both lie within :data:`REL_TOL` of each other,
relative to their size (an added 1e-12*z is wrong); they differ when the bounds are
disjoint. A value past ``limits.MAX_MAGNITUDE`` is known only as "larger than that", which
still decides exp(exp(exp(exp(10)))) (wrong); when nothing decides, within
``limits.MAX_EXACT_DIGITS`` digits and ``limits.MAX_GRADE_SECONDS``, :func:`grade` raises
:class:`~symprop.graph.NetworkError` with one line that names the limit, never a verdict
it is not sure of. SymPy then tries to prove a right answer right (expansion, hyperbolic
functions as rational functions of exponentials, ``simplify`` of small forms) within
``limits.MAX_PROOF_SECONDS``. A wrong answer is compared with every mistake of
:func:`symprop.mistakes.mistakes` at the same points.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> grade(net, "w", (h - t)*h*(1 - h)*x).correct
True
>>> result = grade(net, "w", (h - t)*x)
>>> result.correct, result.mistake.kind
(False, 'missing-derivative')
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from . import functions as fn
from . import limits
from .derive import derive
from .graph import Network, NetworkError
from .mistakes import Mistake, mistakes

try:  # compound mistakes: a typical mistake made together with the loss's sign error
    from .mistakes import with_sign_error
except ImportError:  # pragma: no cover - a mistakes module without compounds
    with_sign_error = None
from .numeric import Evaluator

__all__ = ["grade", "GradeResult", "REL_TOL"]

# Two values agree when they lie within REL_TOL of each other, relative to the larger: the
# bounds of interval arithmetic make "agree" and "differ" certain at each point, so a right
# answer agrees to far better than this and an answer off by 1e-12 of a term does not.
REL_TOL = 1e-20
POINTS = 6  # random points at which answers are compared
MAX_DRAWS = 60  # draws allowed to find points where the gradient is defined and nonzero
SIMPLIFY_OPS = 150  # simplify only expressions with at most this many operations
DIGITS = 40  # digits of the first evaluation; doubled while values cancel


@dataclass(frozen=True)
class GradeResult:
    """The verdict on one answer.

    ``correct``; ``how`` the check that decided (``"symbolic"``: SymPy proved the
    difference zero; ``"numeric"``: the values at ``points`` random points); ``answer``
    the parsed expression; ``expected`` dE/dw in node symbols; ``mistake`` the first typical
    mistake the answer matches (None if right or unknown) and ``matches`` all of them.
    """

    correct: bool
    how: str
    wrt: sp.Symbol
    answer: sp.Expr
    expected: sp.Expr
    mistake: Mistake | None
    matches: tuple[Mistake, ...]
    points: int
    loss: sp.Symbol = sp.Symbol("E")

    def message(self) -> str:
        """One line for a person."""
        goal = f"d{self.loss}/d{self.wrt}"
        if self.correct:
            how = "symbolically" if self.how == "symbolic" else f"at {self.points} random points"
            return f"right: the answer equals {goal} (checked {how})"
        if self.mistake is not None:
            return f"wrong: the answer is not {goal}; it matches a typical mistake: {self.mistake.label}"
        return f"wrong: the answer is not {goal} and matches none of the typical mistakes"


def _generics(net: Network) -> dict:
    """The parser's names for the network's generic functions: g, g_prime, g_prime_prime."""
    table = {}
    for expr in net.nodes.values():
        for f in expr.atoms(sp.Function):
            if isinstance(f, fn.GenericFunction):
                for order in range(3):
                    g = fn.generic(f.base_name, order)
                    table[g.__name__] = g
    return table


def _draw(net: Network, rng) -> dict:
    """Random leaves: uniform on [-1, 1], targets one-hot for a softmax cross-entropy (its
    rule y_hat - t assumes targets summing to 1) and in [0, 1] otherwise."""
    values = {s: sp.Float(rng.uniform(-1, 1), 20) for s in net.inputs + net.params}
    loss = net.nodes[net.loss]
    if loss.has(fn.softmax_cross_entropy) or (len(net.targets) > 1 and loss.has(sp.log)):
        hot = int(rng.integers(len(net.targets)))
        values.update({t: sp.Float(int(i == hot)) for i, t in enumerate(net.targets)})
    else:
        values.update({t: sp.Float(rng.uniform(0, 1), 20) for t in net.targets})
    return values


def _binding(net: Network, rng) -> dict:
    """A random cubic for each generic function g (and its derivatives g', g''), so an
    answer is checked for every g, not for one activation."""
    bind = {}
    for name in sorted({f.base_name for f in _generics(net).values()}):
        c = [sp.Float(x, 20) for x in rng.uniform(-1, 1, 4)]
        u = sp.Dummy("u")
        poly = c[0] + c[1] * u + c[2] * u**2 + c[3] * u**3
        bind[name] = lambda order, arg, poly=poly, u=u: sp.diff(poly, u, order).xreplace({u: arg})
    return bind


# -- evaluation with bounds ------------------------------------------------------------------

class _OutOfTime(BaseException):
    """The time allowed ran out (a BaseException: SymPy's ``except Exception`` lets it pass)."""


class _NotReal(ArithmeticError):
    """The value is surely undefined at the point: log of a negative number, 1/0, ..."""


class _Unsure(ArithmeticError):
    """The bounds at this precision do not decide a step (a sign, a zero divisor)."""


class _Cannot(ArithmeticError):
    """A function with no evaluation here."""


class _Bounds:
    """Interval arithmetic at ``digits`` digits: every value is a pair ``(lo, hi)`` of mpmath
    numbers that surely enclose it. A bound past ``limits.MAX_MAGNITUDE`` is replaced by
    that magnitude (a lower bound) or infinity (an upper bound), so exp(exp(exp(exp(10))))
    is [MAX_MAGNITUDE, inf] at once, and ``saturated`` records that it happened."""

    def __init__(self, digits: int, deadline: float):
        self.digits = digits
        self.deadline = deadline
        self.saturated = False
        with mpmath.workdps(digits):
            self.eps = mpmath.mpf(2) ** -(mpmath.mp.prec - 8)
            self.big = mpmath.mpf(limits.MAX_MAGNITUDE)
            self.logbig = mpmath.log(self.big)
            self.huge = 2 * self.big  # stands for "larger than big" before saturation

    # rounding outwards, then saturating
    def down(self, x):
        if not mpmath.isinf(x) and x != 0:
            x = x - abs(x) * self.eps
        if x > self.big:
            self.saturated = True
            return self.big
        if x < -self.big:
            self.saturated = True
            return mpmath.ninf
        return x

    def up(self, x):
        if not mpmath.isinf(x) and x != 0:
            x = x + abs(x) * self.eps
        if x > self.big:
            self.saturated = True
            return mpmath.inf
        if x < -self.big:
            self.saturated = True
            return -self.big
        return x

    def make(self, lo, hi):
        return self.down(lo), self.up(hi)

    def number(self, x):
        if x is sp.nan or x is sp.zoo or (hasattr(x, "is_finite") and x.is_finite is False):
            raise _NotReal("not finite")
        if isinstance(x, sp.Integer):
            v = mpmath.mpf(int(x))
        elif isinstance(x, sp.Rational):
            v = mpmath.mpf(x.p) / x.q
        elif isinstance(x, sp.Float):
            v = mpmath.mpf(x._mpf_)
        elif x.is_NumberSymbol or x.is_Number:
            if not x.is_extended_real:
                raise _NotReal("not real")
            v = mpmath.mpf(x.evalf(self.digits + 10)._mpf_)
        else:
            raise _Cannot(f"no value for {x}")
        return self.make(v, v)

    # arithmetic
    def _sum(self, xs):
        """The sum and a bound on what mpmath's fsum may drop: it is exact unless the
        terms' magnitudes lie more than twice the precision apart."""
        total = mpmath.fsum(xs)
        mags = [mpmath.mag(x) for x in xs if x != 0 and not mpmath.isinf(x)]
        if mags and max(mags) - min(mags) > 2 * mpmath.mp.prec - 16:
            return total, mpmath.ldexp(len(xs), max(mags) - 2 * mpmath.mp.prec + 16)
        return total, 0

    def add(self, args):
        lo, slack_lo = self._sum([a[0] for a in args])
        hi, slack_hi = self._sum([a[1] for a in args])
        return self.make(lo - slack_lo, hi + slack_hi)

    def mul(self, a, b):
        if (a[0] == 0 and a[1] == 0) or (b[0] == 0 and b[1] == 0):
            return (mpmath.mpf(0), mpmath.mpf(0))
        products = [mpmath.mpf(0) if x == 0 or y == 0 else x * y for x in a for y in b]
        return self.make(min(products), max(products))

    def recip(self, a):
        if a[0] <= 0 <= a[1]:
            if a[0] == 0 and a[1] == 0:
                raise _NotReal("division by zero")
            raise _Unsure("a divisor near zero")
        return self.make(1 / a[1], 1 / a[0])

    def _power(self, x, n: int):
        if mpmath.isinf(x):
            return self.huge if x > 0 or n % 2 == 0 else -self.huge
        if abs(x) > 1 and n * mpmath.log(abs(x)) > self.logbig + 1:
            return self.huge if x > 0 or n % 2 == 0 else -self.huge
        return x**n

    def ipow(self, a, n: int):
        if n == 0:
            return (mpmath.mpf(1), mpmath.mpf(1))
        if n < 0:
            return self.recip(self.ipow(a, -n))
        lo, hi = a
        if n % 2 == 1 or lo >= 0:
            return self.make(self._power(lo, n), self._power(hi, n))
        if hi <= 0:
            return self.make(self._power(hi, n), self._power(lo, n))
        return self.make(mpmath.mpf(0), max(self._power(lo, n), self._power(hi, n)))

    def exp(self, a):
        def one(x, upper):
            if x > self.logbig + 1:
                return self.huge
            if x < -2 * self.logbig:
                return 1 / self.big**2 if upper else mpmath.mpf(0)
            return mpmath.exp(x)
        return self.make(one(a[0], False), one(a[1], True))

    def log(self, a):
        if a[1] <= 0:
            raise _NotReal("log of a non-positive number")
        if a[0] <= 0:
            raise _Unsure("log near zero")
        return self.make(mpmath.log(a[0]), mpmath.log(a[1]) if not mpmath.isinf(a[1]) else self.huge)

    def pow(self, base, exponent, e):
        if e.args[1].is_Integer:
            return self.ipow(base, int(e.args[1]))
        if base[0] == 0 and base[1] == 0:
            if exponent[0] > 0:
                return (mpmath.mpf(0), mpmath.mpf(0))
            if exponent[1] < 0:
                raise _NotReal("division by zero")
            raise _Unsure("0 to a power near zero")
        if base[1] < 0:
            raise _NotReal("a negative number to a non-integer power")
        if base[0] <= 0:
            raise _Unsure("a power of a number near zero")
        return self.exp(self.mul(exponent, self.log(base)))

    def tanh(self, a):
        def one(x):
            if mpmath.isinf(x) or abs(x) > mpmath.mp.prec:
                return mpmath.mpf(mpmath.sign(x))  # 1 - tanh(x) < 2 exp(-2|x|), far below eps
            return mpmath.tanh(x)
        return self.make(one(a[0]), one(a[1]))

    def sinh(self, a):
        def one(x):
            if mpmath.isinf(x) or abs(x) > self.logbig + 1:
                return self.huge if x > 0 else -self.huge
            return mpmath.sinh(x)
        return self.make(one(a[0]), one(a[1]))

    def cosh(self, a):
        def one(x):
            if mpmath.isinf(x) or abs(x) > self.logbig + 1:
                return self.huge
            return mpmath.cosh(x)
        lo, hi = a
        if lo <= 0 <= hi:
            return self.make(mpmath.mpf(1), max(one(lo), one(hi)))
        if lo > 0:
            return self.make(one(lo), one(hi))
        return self.make(one(hi), one(lo))

    def abs(self, a):
        lo, hi = a
        if lo >= 0:
            return a
        if hi <= 0:
            return (-hi, -lo)
        return (mpmath.mpf(0), max(-lo, hi))

    def sign(self, a):
        if a[0] > 0:
            return (mpmath.mpf(1), mpmath.mpf(1))
        if a[1] < 0:
            return (mpmath.mpf(-1), mpmath.mpf(-1))
        if a[0] == 0 and a[1] == 0:
            return (mpmath.mpf(0), mpmath.mpf(0))
        raise _Unsure("the sign of a number near zero")

    def node(self, e, args):
        if e.is_Add:
            return self.add(args)
        if e.is_Mul:
            value = args[0]
            for a in args[1:]:
                value = self.mul(value, a)
            return value
        if e.is_Pow:
            return self.pow(args[0], args[1], e)
        f = e.func
        if f is sp.exp:
            return self.exp(args[0])
        if f is sp.log and len(args) == 1:
            return self.log(args[0])
        if f is sp.tanh:
            return self.tanh(args[0])
        if f is sp.sinh:
            return self.sinh(args[0])
        if f is sp.cosh:
            return self.cosh(args[0])
        if f is sp.sech:
            return self.recip(self.cosh(args[0]))
        if f is sp.Abs:
            return self.abs(args[0])
        if f is sp.sign:
            return self.sign(args[0])
        if f is sp.Heaviside:
            s = self.sign(args[0])
            if s[0] == 0:
                return args[1] if len(args) > 1 else (mpmath.mpf(0.5), mpmath.mpf(0.5))
            return (mpmath.mpf(1), mpmath.mpf(1)) if s[0] > 0 else (mpmath.mpf(0), mpmath.mpf(0))
        raise _Cannot(f"no evaluation of {f}")

    def value(self, expr, known: dict):
        """``expr`` (elementary functions only) with the bounds ``known`` of its symbols;
        each distinct subexpression once."""
        memo: dict = {}
        with mpmath.workdps(self.digits):
            stack = [(expr, False)]
            while stack:
                e, ready = stack.pop()
                if e in memo:
                    continue
                if time.monotonic() > self.deadline:
                    raise _OutOfTime
                if e in known:
                    memo[e] = known[e]
                elif e.is_Number or e.is_NumberSymbol:
                    memo[e] = self.number(e)
                elif not e.args:
                    raise _Cannot(f"no value for {e}")
                elif not ready:
                    stack.append((e, True))
                    stack.extend((a, False) for a in e.args if a not in memo)
                else:
                    memo[e] = self.node(e, [memo[a] for a in e.args])
            return memo[expr]


def _ladder():
    """The precisions tried: 40, 80, 160, ... digits up to limits.MAX_EXACT_DIGITS."""
    digits, top = DIGITS, max(DIGITS, int(limits.MAX_EXACT_DIGITS))
    while True:
        yield min(digits, top)
        if digits >= top:
            return
        digits *= 2


_ELEMENTARY = {sp.exp, sp.log, sp.tanh, sp.sinh, sp.cosh, sp.sech, sp.Abs, sp.sign, sp.Heaviside}


def _plain(expr) -> bool:
    """Whether ``expr`` has only SymPy's elementary functions (nothing to rewrite)."""
    return all(f.func in _ELEMENTARY for f in expr.atoms(sp.Function))


class _Point:
    """One random point: leaves drawn, nodes bounded at each precision asked for."""

    def __init__(self, net: Network, ev: Evaluator, leaves: dict, deadline: float):
        self.net, self.ev, self.leaves, self.deadline = net, ev, leaves, deadline
        self._known: dict = {}
        self._bounds: dict = {}

    def _prepared(self, expr):
        """``expr`` in elementary functions (generic ones bound), within the time allowed."""
        if expr in self.ev._explicit:
            return self.ev._explicit[expr]
        if not self.ev.bind and _plain(expr):
            self.ev._explicit[expr] = expr
            return expr
        return _until(self.deadline, lambda: self.ev._prepared(expr))

    def _context(self, digits):
        if digits not in self._known:
            ctx = _Bounds(digits, self.deadline)
            known = {s: ctx.number(v) for s, v in self.leaves.items()}
            for k in self.net.order:
                known[k] = ctx.value(self._prepared(self.net.nodes[k]), known)
            self._known[digits] = known
        return _Bounds(digits, self.deadline), self._known[digits]

    def bounds(self, expr, digits):
        """Bounds of ``expr`` and whether a magnitude was cut at ``limits.MAX_MAGNITUDE``;
        raises what the evaluation raised (each expression is evaluated once per precision)."""
        key = (expr, digits)
        if key not in self._bounds:
            ctx, known = self._context(digits)
            try:
                self._bounds[key] = (ctx.value(self._prepared(expr), known), ctx.saturated)
            except _Unsure as err:
                err.cut = ctx.saturated
                self._bounds[key] = err
            except (_NotReal, _Cannot) as err:
                self._bounds[key] = err
        found = self._bounds[key]
        if isinstance(found, Exception):
            raise found
        return found

    def compare(self, x, y) -> str:
        """``"same"``, ``"differ"`` or the name of the limit that kept it undecided; ``y`` is
        defined here (x undefined differs from it)."""
        for digits in _ladder():
            try:
                b, cut_y = self.bounds(y, digits)
            except (_NotReal, _Unsure) as err:
                if getattr(err, "cut", False):
                    return "MAX_MAGNITUDE"
                continue
            try:
                a, cut = self.bounds(x, digits)
            except _NotReal:
                return "differ"
            except _Unsure as err:
                if err.cut:
                    return "MAX_MAGNITUDE"  # more digits do not shrink a magnitude
                continue
            if a[0] > b[1] or a[1] < b[0]:
                return "differ"
            if cut or cut_y:
                return "MAX_MAGNITUDE"
            span = max(a[1], b[1]) - min(a[0], b[0])
            scale = max(abs(a[0]), abs(a[1]), abs(b[0]), abs(b[1]))
            if span <= REL_TOL * scale:
                return "same"
        return "MAX_EXACT_DIGITS"


_REASONS = {
    "MAX_MAGNITUDE": "a value on the way is larger than allowed",
    "MAX_EXACT_DIGITS": "its value there cancels to more digits than allowed",
    "MAX_GRADE_SECONDS": "evaluating it takes longer than allowed",
    "cannot": "it uses a function that cannot be evaluated here",
}


def _undecided(limit: str, points: int, total: int) -> NetworkError:
    if limit == "cannot":
        return NetworkError(f"answer: could not decide whether it is right: {_REASONS[limit]}")
    if limit == "MAX_GRADE_SECONDS":
        return NetworkError(f"answer: could not decide whether it is right: {_REASONS[limit]} ({limits.says(limit)})")
    return NetworkError(f"answer: could not decide whether it is right at {points} of {total} random points: "
                        f"{_REASONS[limit]} ({limits.says(limit)})")


# -- symbolic proof --------------------------------------------------------------------------

def _until(deadline: float, work):
    """``work()``, raising :class:`_OutOfTime` once it runs past ``deadline``
    (``time.monotonic()``): SymPy and mpmath are pure Python, so a trace function that
    raises at the first call after the deadline stops them."""
    if time.monotonic() > deadline:
        raise _OutOfTime
    previous = sys.gettrace()

    def tracer(frame, event, arg):
        if time.monotonic() > deadline:
            raise _OutOfTime
        return None

    sys.settrace(tracer)
    try:
        return work()
    finally:
        sys.settrace(previous)


def _within(seconds: float, work):
    """``work()``, or None when it runs past ``seconds``."""
    try:
        return _until(time.monotonic() + seconds, work)
    except _OutOfTime:
        return None


def _substituted(net: Network, expr) -> sp.Expr:
    """``expr`` with every node replaced by its definition (in leaves only)."""
    full = {}
    for k in net.order:
        full[k] = net.nodes[k].xreplace({s: full[s] for s in net.producers[k] if s in full})
    return expr.xreplace({s: full[s] for s in expr.free_symbols if s in full})


def _blows_up(expr) -> bool:
    """Whether expanding ``expr`` would take long: a sum raised to a high power (the
    expansion of (a + b)^500 has 501 terms, and its products many more)."""
    return any(e.is_Pow and e.base.is_Add and e.exp.is_Integer and abs(e.exp) > limits.MAX_EXPANDED_POWER
               for e in fn.subexpressions([expr]))


def _rational(expr) -> sp.Expr:
    """``expr`` with exp, tanh, sinh, cosh and sech as rational functions of one new symbol
    X_m = exp(m) per monomial m of their arguments (exp(a - 2b) = X_a / X_b**2), so that
    sech(u)**2 = 1 - tanh(u)**2 becomes an identity of rational functions."""
    symbols: dict = {}
    memo: dict = {}

    def power_of_e(u):
        total = sp.S.One
        for term in sp.Add.make_args(u):
            c, m = term.as_coeff_Mul()
            if m is sp.S.One:
                total *= sp.exp(c)
            else:
                total *= symbols.setdefault(m, sp.Dummy("X")) ** c
        return total

    rules = {
        sp.exp: lambda x: x, sp.tanh: lambda x: (x**2 - 1) / (x**2 + 1), sp.sinh: lambda x: (x - 1 / x) / 2,
        sp.cosh: lambda x: (x + 1 / x) / 2, sp.sech: lambda x: 2 * x / (x**2 + 1),
    }

    def go(e):
        if e in memo:
            return memo[e]
        if not e.args:
            return e
        args = [go(a) for a in e.args]
        rule = rules.get(e.func)
        memo[e] = rule(power_of_e(args[0])) if rule else e.func(*args)
        return memo[e]

    return go(expr)


def _proof(net, answer, expected) -> bool:
    difference = _substituted(net, answer) - _substituted(net, expected)
    if sp.count_ops(difference) > 4 * SIMPLIFY_OPS or _blows_up(difference):
        return False
    if sp.expand(difference) == 0:
        return True
    explicit = fn.explicit(difference)
    rational = _rational(explicit)
    if not _blows_up(rational):
        numerator, _ = sp.fraction(sp.together(rational))
        if sp.expand(numerator) == 0:
            return True
    if sp.count_ops(explicit) > SIMPLIFY_OPS:
        return False
    return sp.simplify(explicit) == 0


def _proved_equal(net, answer, expected) -> bool:
    """SymPy shows ``answer - expected`` is zero within ``limits.MAX_PROOF_SECONDS``: by
    expansion, as rational functions of exponentials, or by simplify of the explicit forms
    when they are small. False means "not proved", not "different"."""
    return bool(_within(limits.MAX_PROOF_SECONDS, lambda: _proof(net, answer, expected)))


# -- grading ---------------------------------------------------------------------------------

def grade(network: Network, wrt, answer, *, seed: int = 0) -> GradeResult:
    """Grade ``answer`` (a SymPy expression in the network's symbols) as dE/d``wrt`` (a
    name or Symbol) of ``network``. The random points come from ``seed``, so a verdict is
    reproducible. Raises :class:`NetworkError` (one line naming the limit) when the answer
    cannot be decided within the limits of :mod:`symprop.limits`.
    """
    net = network
    w = net.symbol(wrt) if isinstance(wrt, str) else wrt
    if w not in net.params and w not in net.inputs and (w not in net.nodes or w == net.loss):
        raise NetworkError(f"can only differentiate with respect to a parameter, an input or a node other than the "
                           f"loss, not {w}", w)
    try:
        answer = fn.as_expr(answer)
    except TypeError:
        raise NetworkError(f"the answer must be a SymPy expression (text is read by symprop.spec.parse_expression), "
                           f"not {answer!r}") from None
    unknown = sorted(s.name for s in answer.free_symbols if s not in set(net.symbols))
    if unknown:
        raise NetworkError(f"the answer uses {unknown[0]}, which is not a symbol of this network")
    expected = derive(net, w).expr
    wrong = list(mistakes(net, w))
    if with_sign_error is not None:  # exams offer them as decoys: name them too
        wrong += [with_sign_error(m) for m in wrong if m.kind != "sign" and not m.negated]
    deadline = time.monotonic() + limits.MAX_GRADE_SECONDS

    rng = np.random.Generator(np.random.PCG64(seed))
    points: list[_Point] = []
    spare: list[_Point] = []  # points where the gradient may be 0
    try:
        for _ in range(MAX_DRAWS):
            if len(points) >= POINTS:
                break
            ev = Evaluator(net, _binding(net, rng))
            point = _Point(net, ev, _draw(net, rng), deadline)
            try:
                right, _ = point.bounds(expected, DIGITS)
            except (_NotReal, _Unsure, _Cannot):
                continue
            (points if right[0] > 0 or right[1] < 0 else spare).append(point)
    except _OutOfTime:
        pass
    points = points or spare[:POINTS]
    if not points:
        if time.monotonic() > deadline:
            raise _undecided("MAX_GRADE_SECONDS", 0, POINTS)
        raise NetworkError(f"d{net.loss}/d{w} is undefined at every random point tried; cannot grade")

    verdicts = []
    try:
        for point in points:
            try:
                verdicts.append(point.compare(answer, expected))
            except _Cannot:
                verdicts.append("cannot")
            if verdicts[-1] == "differ":
                break
    except _OutOfTime:
        verdicts.append("MAX_GRADE_SECONDS")

    if "differ" not in verdicts:
        if all(v == "same" for v in verdicts):
            how = "symbolic" if _proved_equal(net, answer, expected) else "numeric"
            return GradeResult(True, how, w, answer, expected, None, (), len(points), net.loss)
        if _proved_equal(net, answer, expected):
            return GradeResult(True, "symbolic", w, answer, expected, None, (), len(points), net.loss)
        unsure = [v for v in verdicts if v != "same"]
        raise _undecided(unsure[0], len(unsure), len(points))

    matches = []
    try:
        for m in wrong:
            if all(_matches(p, answer, m.expr) for p in points):
                matches.append(m)
    except _OutOfTime:
        pass  # the verdict is certain; the mistakes are named as far as time allowed
    return GradeResult(False, "numeric", w, answer, expected, matches[0] if matches else None, tuple(matches),
                       len(points), net.loss)


def _matches(point: _Point, answer, mistake) -> bool:
    """Whether ``answer`` equals ``mistake`` at ``point`` (both undefined counts as equal)."""
    try:
        point.bounds(mistake, DIGITS)
    except _NotReal:
        try:
            point.bounds(answer, DIGITS)
        except _NotReal:
            return True
        except (_Unsure, _Cannot):
            return False
        return False
    except (_Unsure, _Cannot):
        pass
    try:
        return point.compare(answer, mistake) == "same"
    except _Cannot:
        return False
