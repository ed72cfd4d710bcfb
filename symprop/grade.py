"""Answer checking: is a student's expression for dE/dw right, and if not, which typical
mistake does it match?

The answer is an expression in the network's symbols: inputs, targets, parameters and
node names, where a node means the node's value (``h*(1 - h)*x`` is as good as
``sigmoid(w*x)*(1 - sigmoid(w*x))*x``); text a student typed is read first by the safe
parser, :func:`symprop.spec.parse_expression`. It is compared with the derived gradient
at random points (relative tolerance :data:`REL_TOL`), and, where that is cheap,
symbolically: SymPy proves the difference zero by expansion or, for small expressions, by
``simplify`` of the forms in elementary functions. A wrong answer is evaluated against
every mistake of :func:`symprop.mistakes.mistakes` at the same points.

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

from dataclasses import dataclass

import numpy as np
import sympy as sp

from . import functions as fn
from . import limits
from .derive import derive
from .graph import Network, NetworkError
from .mistakes import Mistake, mistakes
from .numeric import Evaluator

__all__ = ["grade", "GradeResult", "REL_TOL"]

# Two values agree when |a - b| <= REL_TOL * max(|a|, |b|) + ABS_TOL. Answers are evaluated
# exactly to 30 digits (numeric.Evaluator.exact), so a right answer agrees to far better than
# this, and an answer off by 1e-12 of a term does not.
REL_TOL = 1e-20
ABS_TOL = 1e-24
POINTS = 6  # random points at which answers are compared
MAX_DRAWS = 60  # draws allowed to find points where the gradient is defined and nonzero
SIMPLIFY_OPS = 150  # simplify only expressions with at most this many operations


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


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b)) + ABS_TOL


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


def _proved_equal(net, answer, expected) -> bool:
    """SymPy shows ``answer - expected`` is zero: by expansion, or by simplify of the
    explicit forms when they are small. False means "not proved", not "different"."""
    difference = _substituted(net, answer) - _substituted(net, expected)
    if sp.count_ops(difference) > 4 * SIMPLIFY_OPS or _blows_up(difference):
        return False
    if sp.expand(difference) == 0:
        return True
    explicit = fn.explicit(difference)
    if sp.count_ops(explicit) > SIMPLIFY_OPS:
        return False
    return sp.simplify(explicit) == 0


def grade(network: Network, wrt, answer, *, seed: int = 0) -> GradeResult:
    """Grade ``answer`` (a SymPy expression in the network's symbols) as dE/d``wrt`` (a
    name or Symbol) of ``network``. The random points come from ``seed``, so a verdict is
    reproducible.
    """
    net = network
    w = net.symbol(wrt) if isinstance(wrt, str) else wrt
    if w not in net.params and w not in net.inputs:
        raise NetworkError(f"can only differentiate with respect to a parameter or an input, not {w}", w)
    try:
        answer = fn.as_expr(answer)
    except TypeError:
        raise NetworkError(f"the answer must be a SymPy expression (text is read by symprop.spec.parse_expression), "
                           f"not {answer!r}") from None
    unknown = sorted(s.name for s in answer.free_symbols if s not in set(net.symbols))
    if unknown:
        raise NetworkError(f"the answer uses {unknown[0]}, which is not a symbol of this network")
    expected = derive(net, w).expr
    wrong = [m for m in mistakes(net, w)]

    rng = np.random.Generator(np.random.PCG64(seed))
    points: list[tuple[float, float, list[float]]] = []
    spare: list[tuple[float, float, list[float]]] = []  # points where the gradient is 0
    for _ in range(MAX_DRAWS):
        if len(points) >= POINTS:
            break
        ev = Evaluator(net, _binding(net, rng))
        point = ev.forward(_draw(net, rng))
        right = ev.exact(expected, point)
        if right is None:
            continue
        sample = (right, ev.exact(answer, point), [ev.exact(m.expr, point) for m in wrong])
        (points if abs(right) > ABS_TOL else spare).append(sample)
    points = points or spare[:POINTS]
    if not points:
        raise NetworkError(f"d{net.loss}/d{w} is undefined at every random point tried; cannot grade")

    correct = all(a is not None and _close(a, r) for r, a, _ in points)
    how = "numeric"
    if correct and _proved_equal(net, answer, expected):
        how = "symbolic"
    matches: tuple[Mistake, ...] = ()
    if not correct:
        matches = tuple(
            m for i, m in enumerate(wrong)
            if all(a is not None and ms[i] is not None and _close(a, ms[i]) for _, a, ms in points)
        )
    return GradeResult(correct, how, w, answer, expected, matches[0] if matches else None, matches, len(points), net.loss)
