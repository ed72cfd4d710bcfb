r"""Typical mistakes: a wrong gradient for each way a student typically gets one wrong.

Each mistake is a *real alternative derivation*: the derivation is changed the way a
student typically gets it wrong, then evaluated like the right one. Exams draw their wrong
options from them; :func:`symprop.grade.grade` names the one an answer matches.

For a network's dE/dw (:func:`mistakes`):

=====================  ================================================================
``sign``               a sign error in the loss derivative (``t - y`` for ``y - t``)
``loss-factor``        the loss's constant factor lost: ``2 (y - t)`` for ``(y - t)`` (the
                       ``1/2`` of a half squared error forgotten), or ``(y - t)`` for
                       ``2 (y - t)`` (the power rule's 2 of a squared error left out)
``missing-derivative`` the activation derivative ``f'`` of one node left out
``pre-activation``     ``f'`` in output form (``z (1 - z)``) evaluated at the input ``u``
``output-for-input``   ``f'(u)`` evaluated at the output ``z`` instead of ``u``
``transpose``          ``w_{j,i}`` used for ``w_{i,j}`` going down (a missing transpose)
``missing-weight``     the weights left out going down: a delta passed to the layer below
                       without the weight of its edge
``missing-input``      the weight's input left out: dE/dw taken as the delta of the node it
                       enters, as for a bias
``dropped-path``       one path left out of the sum over paths
``batch-sum``          the per-sample gradients summed although the loss is their mean
=====================  ================================================================

For a gate circuit (:func:`circuit_mistakes`):

=====================  ================================================================
``fan-out``            a value used by several gates given the gradient of one use only
``add-scale``          an add gate scaling the gradient (by its other inputs) instead of
                       passing it through unchanged
``mul-own``            a multiply gate not swapping: each input times its own value
``max-route``          a max gate routing the gradient to the smaller input (min: larger)
``sign``               the minus sign of a gate's local gradient (1/x, scale by -k) dropped,
                       and the whole gradient negated (always listed)
=====================  ================================================================

A *compound* mistake (:func:`with_sign_error`, :func:`circuit_with_sign_error`) is a typical
mistake made together with the sign error of the loss derivative (of the whole gradient, for a
circuit): its value is the mistake's, negated. Exams use them as decoys, so that the right
answer and its negation are never the only pair of options of opposite sign.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> [(m.kind, str(m.expr)) for m in mistakes(net, w)][:3]
[('sign', 'h*x*(1 - h)*(-h + t)'), ('loss-factor', 'h*x*(1 - h)*(2*h - 2*t)'), ('missing-derivative', 'x*(h - t)')]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import sympy as sp

from . import functions as fn
from .derive import backward, derive, local_partial
from .gates import backward as circuit_backward
from .graph import Network, NetworkError

__all__ = [
    "Mistake", "mistakes", "MISTAKE_KINDS", "CircuitMistake", "circuit_mistakes", "circuit_mistake_gradient",
    "CIRCUIT_MISTAKE_KINDS", "with_sign_error", "circuit_with_sign_error",
]

# The kinds of typical mistakes, in the order they are tried and reported.
MISTAKE_KINDS = (
    "sign", "loss-factor", "missing-derivative", "pre-activation", "output-for-input", "transpose", "missing-weight",
    "missing-input", "dropped-path", "batch-sum",
)
CIRCUIT_MISTAKE_KINDS = ("fan-out", "add-scale", "mul-own", "max-route", "sign")
# Paths past this count get no dropped-path options (one option per path would be noise).
MAX_DROPPED_PATHS = 64


# -- a network's typical mistakes -----------------------------------------------------------

@dataclass(frozen=True)
class Mistake:
    """A wrong dE/dw from a typical mistake, as an expression to evaluate.

    ``expr`` is in node symbols and leaves, like :attr:`Derivation.expr`, for one sample;
    ``batch-sum`` keeps the right expression and changes how samples are combined.
    ``node`` is the node the mistake is made at, ``path`` the dropped path, ``swapped`` the
    (right, used) weight pairs of a ``transpose``, ``function`` the activation's name,
    ``used`` the wrongly evaluated derivative factor and ``factor`` the scale of a
    ``loss-factor``. ``negated``: made together with the sign error of the loss derivative
    (:func:`with_sign_error`). ``coincides``: set by an exam on a mistake that gives the
    right answer whatever the numbers near the drawn ones (``"unit-slope"``: the
    activation's derivative is 1 there, as relu's on an active unit; ``"structural"``).
    """

    kind: str
    label: str
    expr: sp.Expr
    node: sp.Symbol | None = None
    path: tuple[sp.Symbol, ...] | None = None
    swapped: tuple[tuple[sp.Symbol, sp.Symbol], ...] = ()
    function: str | None = None
    used: sp.Expr | None = None
    factor: sp.Expr | None = None
    negated: bool = False
    coincides: str | None = None


def with_sign_error(m: Mistake) -> Mistake:
    """``m`` made together with the sign error of the loss derivative: every path passes
    through the loss, so the gradient is ``m``'s negated."""
    return replace(m, label=f"{m.label}, and a sign error in the derivative of the loss", expr=-m.expr, negated=True)


def _loss_factor(net: Network):
    """``(scale, label)`` of the ``loss-factor`` mistake when the loss is a sum of squares
    with one coefficient: 1/2 (the 1/2 forgotten: x2) or 1 (the power rule's 2 left out: x1/2)."""
    terms = sp.Add.make_args(net.nodes[net.loss])
    coefficients = set()
    for term in terms:
        c, rest = term.as_coeff_Mul()
        if not (rest.is_Pow and rest.exp == 2):
            return None
        coefficients.add(c)
    if coefficients == {sp.Rational(1, 2)}:
        return sp.Integer(2), "the 1/2 of the loss forgotten: its derivative taken as 2 (y - t)"
    if coefficients == {sp.S.One}:
        return sp.Rational(1, 2), "the power rule's 2 left out: the loss's derivative taken as (y - t)"
    return None


def _local(net, of, wrt):
    return local_partial(net, of, wrt).expr


def _gradient(net: Network, wrt: sp.Symbol, local: Callable) -> sp.Expr:
    """dE/dw by the delta recursion (seed 002), with ``local(of, wrt)`` for every local
    partial: the right one, or one a mistake has changed."""
    below = [k for k in reversed(net.on_paths(wrt)) if k != net.loss] + [wrt]
    return backward(net.loss, below, net.consumers.__getitem__, local)[0][wrt]


def _with_chain_head(net, node, head: Callable):
    """Local partials where every product of ``node``'s own partials has its first chain
    factor (the activation derivative ``f'(u)``) replaced by ``head(factor)``."""

    def local(of, wrt):
        if of != node:
            return _local(net, of, wrt)
        terms = []
        for chain, algebra in local_partial(net, of, wrt).products:
            terms.append(sp.Mul(head(chain[0]), *chain[1:], *algebra))
        return sp.Add(*terms)

    return local


def _function_name(f) -> str:
    return fn.record_of(f).name


def _activation_node(expr) -> bool:
    """A node ``z = f(u)`` with an activation ``f`` (not the identity, which adds nothing)."""
    record = fn.record_of(expr)
    return record is not None and record.activation and record.cls is not None


def _partner(net: Network, p: sp.Symbol):
    """``w_j_i`` for ``w_i_j`` (the last two indices swapped), if that is another parameter."""
    parts = p.name.split("_")
    if len(parts) < 3:
        return None
    other = "_".join(parts[:-2] + [parts[-1], parts[-2]])
    found = next((q for q in net.params if q.name == other), None)
    return None if found is None or found == p else found


def mistakes(net: Network, wrt, *, batch_mean: bool = False) -> list[Mistake]:
    """Every typical mistake that applies to dE/dw, as a :class:`Mistake`, in the order of
    :data:`MISTAKE_KINDS` (nodes from the loss down). ``batch_mean``: the loss is the mean
    over a batch, so forgetting the mean (``batch-sum``) applies.

    Mistakes are not filtered here: one may equal the right gradient (a relu's derivative
    written in its output is still right); :func:`variant` drops those by value.
    """
    if isinstance(wrt, str):
        wrt = net.symbol(wrt)
    found: list[Mistake] = []
    E = net.loss

    def local(of, x):
        return _local(net, of, x)

    # sign: dE/dy computed as (t - y) instead of (y - t): the loss's local partials negated
    found.append(Mistake("sign", "sign error in the derivative of the loss",
                         _gradient(net, wrt, lambda of, x: -local(of, x) if of == E else local(of, x))))

    lost = _loss_factor(net)
    if lost is not None:
        scale, text = lost
        found.append(Mistake("loss-factor", text,
                             _gradient(net, wrt, lambda of, x: scale * local(of, x) if of == E else local(of, x)),
                             factor=scale))

    on = [k for k in reversed(net.on_paths(wrt)) if k != E]
    activation_nodes = [k for k in on if _activation_node(net.nodes[k])]
    for k in activation_nodes:
        f = net.nodes[k]
        name = _function_name(f)
        found.append(Mistake(
            "missing-derivative", f"missing activation derivative at {k}: {name}' left out",
            _gradient(net, wrt, _with_chain_head(net, k, lambda head: sp.S.One)), node=k, function=name,
        ))
    for k in activation_nodes:
        f, u = net.nodes[k], net.nodes[k].args[0]
        name = _function_name(f)
        # the derivative in output form, z (1 - z), evaluated with z := u
        head = local_partial(net, k, net.producers[k][0]).products[0][0][0]
        used = head.xreplace({k: u})
        found.append(Mistake(
            "pre-activation", f"pre-activation used instead of the output at {k}: {name}' = "
            f"{head} evaluated with {k} := {u}",
            _gradient(net, wrt, _with_chain_head(net, k, lambda h: h.xreplace({k: u}))),
            node=k, function=name, used=used,
        ))
    for k in activation_nodes:
        f = net.nodes[k]
        name = _function_name(f)
        used = fn.record_of(f).differentiate(f.func(k, *f.args[1:]), 1)  # f'(z): the rule applied to the output
        found.append(Mistake(
            "output-for-input", f"output used instead of the pre-activation at {k}: {name}'({k}) for {name}'(u)",
            _gradient(net, wrt, _with_chain_head(net, k, lambda h, used=used: used)),
            node=k, function=name, used=used,
        ))

    # transpose: going down through a layer, w_j_i used where w_i_j belongs
    swap = {p: q for p in net.params if (q := _partner(net, p)) is not None}
    used_pairs: dict[sp.Symbol, sp.Symbol] = {}

    def transposed(of, x):
        if x not in net.nodes:
            return local(of, x)
        terms = []
        for chain, algebra in local_partial(net, of, x).products:
            for a in algebra:
                for p in sorted(a.free_symbols & swap.keys(), key=lambda s: s.name):
                    used_pairs[p] = swap[p]
            terms.append(sp.Mul(*chain, *[a.xreplace(swap) for a in algebra]))
        return sp.Add(*terms)

    wrong = _gradient(net, wrt, transposed)
    if used_pairs:
        pairs = tuple(used_pairs.items())
        text = ", ".join(f"{q} for {p}" for p, q in pairs)
        found.append(Mistake("transpose", f"wrong weight index (a missing transpose): {text}", wrong, swapped=pairs))

    # missing-weight: going down, the weight factor of each edge (a parameter) left out
    dropped_weights: list = []

    def unweighted(of, x):
        if x not in net.nodes:
            return local(of, x)
        terms = []
        for chain, algebra in local_partial(net, of, x).products:
            kept = [a for a in algebra if a not in net.params]
            dropped_weights.extend(a for a in algebra if a in net.params)
            terms.append(sp.Mul(*chain, *kept))
        return sp.Add(*terms)

    wrong = _gradient(net, wrt, unweighted)
    if dropped_weights:
        names = ", ".join(sorted({str(a) for a in dropped_weights}))
        found.append(Mistake("missing-weight", f"weights left out going down: {names}", wrong))

    # missing-input: dE/dw taken as the delta of the node w enters (its input factor left out)
    inputs: list = []

    def no_input(of, x):
        if x != wrt:
            return local(of, x)
        terms = []
        for chain, algebra in local_partial(net, of, x).products:
            inputs.extend(a for a in algebra if not a.is_Number)
            terms.append(sp.Mul(*chain, *[a for a in algebra if a.is_Number]))
        return sp.Add(*terms)

    wrong = _gradient(net, wrt, no_input)
    if inputs:
        names = ", ".join(sorted({str(a) for a in inputs}))
        found.append(Mistake("missing-input", f"the input of {wrt} left out ({names}): dE/d{wrt} taken as a delta",
                             wrong))

    count = net.path_count(wrt)
    if 1 < count <= MAX_DROPPED_PATHS:
        paths = net.paths(wrt)
        terms = [sp.Mul(*[local(b, a) for a, b in zip(p, p[1:])]) for p in paths]
        for i, p in enumerate(paths):
            found.append(Mistake(
                "dropped-path", "dropped path " + " -> ".join(map(str, p)),
                sp.Add(*(terms[:i] + terms[i + 1:])), path=p,
            ))

    if batch_mean:
        right = derive(net, wrt).expr
        found.append(Mistake("batch-sum", "forgot the batch mean: per-sample gradients summed, not averaged", right))
    return found


# -- a circuit's typical mistakes ----------------------------------------------------------

@dataclass(frozen=True)
class CircuitMistake:
    """A wrong gradient of a circuit's output from a typical mistake at one gate or wire.

    ``gate`` is the gate whose local rule is misapplied (None for ``fan-out`` and for a
    ``sign`` error of the whole gradient); for ``fan-out``, ``wire`` is the value used by
    several gates and ``kept`` the one use whose gradient is taken. ``negated`` and
    ``coincides`` as for :class:`Mistake` (the sign error is the whole gradient's).
    """

    kind: str
    label: str
    gate: sp.Symbol | None = None
    wire: sp.Symbol | None = None
    kept: sp.Symbol | None = None
    negated: bool = False
    coincides: str | None = None


def circuit_with_sign_error(m: CircuitMistake) -> CircuitMistake:
    """``m`` made together with a sign error of the whole gradient: its value negated."""
    return replace(m, label=f"{m.label}, and the sign of the whole gradient wrong", negated=True)


def _signed(g) -> bool:
    """Whether the gate's local gradient carries a minus sign in its rule: -1/x^2, k < 0, n x^(n-1) with n < 0."""
    return g.op == "recip" or (g.op == "scale" and g.constants["k"] < 0) or (g.op == "pow" and g.constants["n"] < 0)


def circuit_mistakes(circuit, wrt) -> list[CircuitMistake]:
    """Every typical circuit mistake that applies to d(output)/d``wrt`` (a variable), in the
    order of :data:`CIRCUIT_MISTAKE_KINDS`, gates from the output down. Not filtered by
    value: one may give the right number at a point; :func:`variant` drops those.

    >>> import sympy as sp
    >>> from symprop.gates import stage
    >>> x, y = sp.symbols("x y")
    >>> for m in circuit_mistakes(stage(x * (x + y)), x):
    ...     print(m.kind, "|", m.label)
    fan-out | fan-out not summed at x: only the gradient via add1 taken, not the sum over its 2 uses
    fan-out | fan-out not summed at x: only the gradient via f taken, not the sum over its 2 uses
    add-scale | add gate add1 scales the gradient by its other inputs instead of passing it through unchanged
    mul-own | multiply gate f does not swap: each input gets the gradient times its own value
    sign | sign error: the gradient with the wrong sign
    """
    net = circuit.network
    if isinstance(wrt, str):
        wrt = net.symbol(wrt)
    if wrt not in circuit.variables:
        raise NetworkError(f"{wrt} is not a variable of the circuit", wrt)
    gates = [circuit.gate_of[k] for k in reversed(net.on_paths(wrt))]  # from the output down
    found = []
    for s in [wrt] + [g.symbol for g in gates]:
        uses = circuit.uses(s)
        for k in uses if len(uses) > 1 else ():
            found.append(CircuitMistake(
                "fan-out", f"fan-out not summed at {s}: only the gradient via {k} taken, not the sum over its {len(uses)} uses",
                wire=s, kept=k))
    for g in gates:
        if g.op == "add":
            found.append(CircuitMistake(
                "add-scale", f"add gate {g.name} scales the gradient by its other inputs instead of passing it through unchanged",
                gate=g.symbol))
    for g in gates:
        if g.op == "mul":
            found.append(CircuitMistake(
                "mul-own", f"multiply gate {g.name} does not swap: each input gets the gradient times its own value",
                gate=g.symbol))
    for g in gates:
        if g.op in ("max", "min"):
            wrong = "smaller" if g.op == "max" else "larger"
            found.append(CircuitMistake(
                "max-route", f"{g.op} gate {g.name} routes the gradient to the {wrong} input", gate=g.symbol))
    signed = [g for g in gates if _signed(g)]
    for g in signed:
        found.append(CircuitMistake(
            "sign", f"sign error at {g.name}: the minus sign of its local gradient dropped", gate=g.symbol))
    found.append(CircuitMistake("sign", "sign error: the gradient with the wrong sign"))
    return found


def circuit_mistake_gradient(flow, mistake: CircuitMistake, wrt) -> float:
    """d(output)/d``wrt`` at ``flow``'s point with ``mistake`` made: the backward pass run
    again with the mistaken local gradient, or with one use of a fanned-out wire.

    >>> import sympy as sp
    >>> from symprop.gates import stage
    >>> x, y, z = sp.symbols("x y z")
    >>> flow = stage((x + y) * z).evaluate({x: -2, y: 5, z: -4})
    >>> [(m.kind, circuit_mistake_gradient(flow, m, x)) for m in circuit_mistakes(flow.circuit, x)]
    [('add-scale', -20.0), ('mul-own', 3.0), ('sign', 4.0)]
    >>> m = circuit_with_sign_error(circuit_mistakes(flow.circuit, x)[1])
    >>> m.label, circuit_mistake_gradient(flow, m, x)
    ('multiply gate f does not swap: each input gets the gradient times its own value, and the sign of the whole gradient wrong', -3.0)
    """
    c = flow.circuit
    if isinstance(wrt, str):
        wrt = c.network.symbol(wrt)
    if mistake.negated:
        return -circuit_mistake_gradient(flow, replace(mistake, negated=False), wrt)
    if mistake.kind == "sign" and mistake.gate is None:
        return -flow.deltas[wrt]

    def local(k, s):
        right = flow.local[k, s]
        if k != mistake.gate:
            return right
        g = c.gate_of[k]
        if mistake.kind == "add-scale":  # the other inputs' sum, as if the add were a multiply
            return math.fsum([flow.values[u] for u in g.inputs if u != s] + [float(g.constants.get("c", 0))])
        if mistake.kind == "mul-own":
            return flow.values[s]
        if mistake.kind == "max-route":  # the switch the other way: 1 <-> 0
            return 1.0 - right
        return -right  # sign

    def uses(s):  # a fan-out mistake counts one use of the wire only
        return (mistake.kept,) if mistake.kind == "fan-out" and s == mistake.wire else c.uses(s)

    return circuit_backward(c, local, uses=uses)[0][wrt]
