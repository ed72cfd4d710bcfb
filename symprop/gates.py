r"""Gate circuits: any expression staged into elementary gates, a value and a gradient on every wire.

Seed 004 teaches backpropagation as gradient flow through gates: an add gate passes the
incoming gradient unchanged to every input, a multiply gate swaps its inputs and
multiplies, a max gate routes the gradient to the larger input, a sigmoid multiplies it
by z(1 - z). :func:`stage` splits an expression (or every node of a network) into such
gates. The result is an ordinary :class:`~symprop.graph.Network` whose nodes are the
gates, so the chain-rule engine (:mod:`symprop.derive`) supplies every local gradient;
this module only evaluates and lays them out.

>>> import sympy as sp
>>> x, y, z = sp.symbols("x y z")
>>> circuit = stage((x + y) * z)
>>> [(g.name, g.op, [s.name for s in g.inputs]) for g in circuit.gates]
[('add1', 'add', ['x', 'y']), ('f', 'mul', ['add1', 'z'])]
>>> flow = circuit.evaluate({x: -2, y: 5, z: -4})
>>> flow.loss, [flow.gradient[s] for s in (x, y, z)]
(-12.0, [-4.0, -4.0, 3.0])

Staging rules (documented because SymPy's canonical form decides what the user sees):

- ``add`` is n-ary (SymPy's sums are n-ary, and seed 004's rule broadcasts to every
  input alike); a constant term stays inside the gate (``add`` with ``c = 1`` is cs231n's
  "+1" gate). A sum whose terms all carry the same coefficient ``k`` (SymPy distributes
  ``-(a + b)`` into ``-a - b``) is staged as the plain sum followed by a ``scale`` by
  ``k``, as the texts draw it; ``x - y`` is ``add(x, scale(y, -1))``.
- ``mul`` has exactly two variable inputs; longer products become a chain of them,
  composite factors first (sums likewise). A numeric coefficient becomes a final ``scale`` gate.
- ``x**-1`` is a ``recip`` (1/x) gate, so ``x/y`` is ``mul(x, recip(y))``; any other
  constant exponent is a ``pow`` gate. A variable exponent is refused (write
  ``exp(y*log(x))``).
- Functions (exp, log, sigmoid, tanh, relu, leaky_relu, softplus, max, min, a generic g,
  softmax_cross_entropy as one gate, ...) are one gate each; constant arguments
  (``max(x, 0)``, leaky_relu's slope) stay inside the gate.
- Equal subexpressions share one gate, so a value used twice is one wire that fans out.
- Gates are named by op and a counter (``add1``, ``mul2``, ``sig1``), skipping names already
  taken; the output gate is called ``f`` (when free) and a network's node keeps its name.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy as sp

from . import functions as fn
from . import limits
from .derive import backward as backpropagate
from .derive import local_partial
from .functions import GateOp
from .graph import Network, NetworkError
from .printing import text

__all__ = ["Gate", "Circuit", "CircuitFlow", "stage", "backward", "ALGEBRA_GATES", "FUNCTION_GATE"]

# Significant digits of the SymPy Floats the circuit is evaluated in.
DIGITS = 30

# The gates of sums, products and powers; a function's gate is in its primitive's record.
# Each says what it does to the gradient in seed 004's words (plain text and a sentence
# with $math$) and how the documents show it; see symprop.functions.GateOp for the fields.
ALGEBRA_GATES = {g.op: g for g in (
    GateOp("add", "add", "${c_signed}$", "add{c_clause}", "add passes the incoming gradient unchanged to every input",
           "An add gate passes the incoming gradient unchanged to every input: addition broadcasts the gradient "
           "to all its input branches."),
    GateOp("mul", "mul", r"$\times$", "multiply",
           "multiply swaps the inputs and multiplies: each input gets the gradient times the other input",
           "A multiply gate swaps the inputs and multiplies: each input receives the incoming gradient times the "
           "value of the other input."),
    GateOp("scale", "scale", r"$\times{k_paren}$", "scale by ${k}$", "multiply by a constant scales the gradient by {k}",
           "Multiplication by the constant ${k}$ scales the gradient flowing back by ${k}$."),
    GateOp("recip", "recip", "$1/x$", "$1/x$", "1/x multiplies the gradient by -1/x^2",
           "The $1/x$ gate multiplies the gradient by $-1/x^{2}$."),
    GateOp("pow", "pow", "$x^{{n}}$", "$x^{{n}}$", "x^n multiplies the gradient by n x^(n-1) with n = {n}",
           r"The power gate multiplies the gradient by $n\,x^{n-1}$ with $n = {n}$."),
    GateOp("copy", "copy", "$=$", "copy", "a copy passes the gradient unchanged", "A copy passes the gradient unchanged."),
)}
# A function whose record has no gate of its own (abs, step, softmax, a SymPy function).
FUNCTION_GATE = GateOp("function", "", "${function}$", "${function}$",
                       "{name} multiplies the gradient by its partial derivatives",
                       "The gate ${function}$ multiplies the gradient by its partial derivative with respect to each input.")


@dataclass(frozen=True)
class Gate:
    """One elementary gate: ``symbol = expr``, an ``op`` of its ``inputs`` (wires).

    ``constants`` holds the numbers inside the gate: ``k`` (scale), ``n`` (pow), ``c``
    (an add's constant term), ``a`` (leaky_relu's slope) or ``args`` (the constant
    arguments of max, min and other functions); ``function`` names a generic or other
    function; ``node`` is the network node this gate computes, if any.
    """

    symbol: sp.Symbol
    kind: GateOp
    inputs: tuple[sp.Symbol, ...]
    expr: sp.Expr
    constants: dict = field(default_factory=dict, compare=False)
    function: str | None = None
    node: sp.Symbol | None = None

    @property
    def name(self) -> str:
        return self.symbol.name

    @property
    def op(self) -> str:
        return self.kind.op

    def rule(self) -> str:
        """What this gate does to the gradient, in seed 004's words (plain text)."""
        fill = {"k": _plain(self.constants.get("k")), "n": _plain(self.constants.get("n")), "name": self.function}
        return self.kind.fill(self.kind.rule, **fill)


def _plain(number) -> str | None:
    return None if number is None else text(number)


class Circuit:
    """Gates as the nodes of a :class:`~symprop.graph.Network`, in topological order.

    ``network`` is that network (its leaves are the circuit's variables, its loss the
    output gate); ``source`` is what was staged (an expression or a network).
    """

    def __init__(self, network: Network, gates: list[Gate], source):
        self.network = network
        rank = {k: i for i, k in enumerate(network.order)}
        self.gates = tuple(sorted(gates, key=lambda g: rank[g.symbol]))
        self.source = source
        self.gate_of = {g.symbol: g for g in self.gates}
        self.output = network.loss

    @property
    def variables(self) -> tuple[sp.Symbol, ...]:
        """The leaves the output depends on (inputs, targets, parameters), in network order."""
        return tuple(s for s in self.network.leaves if s in self.network.ancestors_of_loss)

    def uses(self, wire: sp.Symbol) -> tuple[sp.Symbol, ...]:
        """The gates that read ``wire`` (on a path to the output): more than one is fan-out."""
        return tuple(k for k in self.network.consumers[wire] if k in self.network.ancestors_of_loss)

    def evaluate(self, values: Mapping, bind: Mapping[str, str] | None = None) -> CircuitFlow:
        """Forward values, local gradients and gradients of every wire at ``values``.

        ``values`` maps each variable (Symbol or name) to a number; ``bind`` maps a generic
        function's name to an activation name (``{"g": "tanh"}``) so it has numbers.
        """
        return _evaluate(self, values, dict(bind or {}))

    def __repr__(self):
        return f"Circuit({len(self.gates)} gates, output={self.output})"


@dataclass
class CircuitFlow:
    """A circuit evaluated at one point.

    ``values``: every wire (variables and gates) -> forward value; ``local``: (gate, input)
    -> local gradient; ``deltas``: every wire -> d(output)/d(wire); ``uses``: every wire ->
    ((consumer gate, gradient along that use), ...), whose sum is the wire's delta (the
    fan-out accumulation); ``gradient``: every variable -> d(output)/d(variable) (0 where unused).
    """

    circuit: Circuit
    point: dict
    values: dict
    local: dict
    deltas: dict
    uses: dict
    bind: dict

    @property
    def loss(self) -> float:
        return self.values[self.circuit.output]

    @property
    def gradient(self) -> dict:
        return {s: self.deltas[s] for s in self.circuit.network.leaves}

    @property
    def fan_out(self) -> list[sp.Symbol]:
        """The wires used by more than one gate, in circuit order (variables first)."""
        net = self.circuit.network
        return [s for s in net.leaves + net.order if len(self.uses.get(s, ())) > 1]


# -- staging ------------------------------------------------------------------------------

def stage(source, variables=None, *, output: str = "f") -> Circuit:
    """Stage an expression, or every node of a :class:`~symprop.graph.Network`, into gates.

    For an expression, ``variables`` (Symbols, default: its free symbols sorted by name)
    become the parameters of the circuit's network, and the output gate is named
    ``output`` unless a variable already has that name. A network keeps its leaves and
    their roles, and every node keeps its name (the node's last gate).

    >>> import sympy as sp
    >>> from symprop import sigmoid
    >>> w, x, b = sp.symbols("w x b")
    >>> [f"{g.name} = {g.expr}" for g in stage(sigmoid(w*x - b)).gates]
    ['scale1 = -b', 'mul1 = w*x', 'add1 = mul1 + scale1', 'f = sigmoid(add1)']
    """
    if isinstance(source, Network):
        return _stage_network(source)
    expr = fn.as_expr(source)
    if variables is None:
        variables = sorted(expr.free_symbols, key=lambda s: s.name)
    variables = tuple(variables)
    unknown = sorted(expr.free_symbols - set(variables), key=lambda s: s.name)
    if unknown:
        raise NetworkError(f"the expression uses {unknown[0]}, which is not among the variables", unknown[0])
    taken = {s.name for s in variables}
    stager = _Stager(taken)
    name = output if output not in taken else None
    top = stager.build(expr, sp.Symbol(name) if name else None)
    network = Network(stager.nodes(), loss=top, params=variables, display=stager.display)
    return Circuit(network, stager.gates, expr)


def _stage_network(net: Network) -> Circuit:
    stager = _Stager({s.name for s in net.symbols})
    for k in net.order:
        stager.build(net.nodes[k], k, node=k)
    display = {**stager.display, **net.display}
    with warnings.catch_warnings():  # the source network has already warned about its roles
        warnings.simplefilter("ignore")
        network = Network(
            stager.nodes(), loss=net.loss, params=net.params, inputs=net.inputs, targets=net.targets,
            reduction=net.reduction, display=display,
        )
    return Circuit(network, stager.gates, net)


class _Stager:
    """Builds gates bottom-up; ``memo`` maps each staged subexpression to its wire."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)
        self.gates: list[Gate] = []
        self.memo: dict[sp.Expr, sp.Symbol] = {}
        self.counts: dict[str, int] = {}
        self.display: dict[sp.Symbol, str] = {}

    def nodes(self) -> dict:
        return {g.symbol: g.expr for g in self.gates}

    def wire(self, expr) -> sp.Symbol:
        """The wire that carries ``expr``: a symbol itself, or a (new or shared) gate."""
        if expr.is_Symbol:
            return expr
        if expr not in self.memo:
            self.memo[expr] = self.build(expr, None)
        return self.memo[expr]

    def build(self, expr, symbol, node=None) -> sp.Symbol:
        """Add the gates computing ``expr``; the last one is ``symbol`` (or a generated name)."""
        if expr.is_Symbol:
            return self.gate("copy", [expr], lambda u: u[0], symbol, node)
        if expr.is_number:
            where = f"node {node}" if node is not None else "the expression"
            raise NetworkError(f"{where} is the constant {expr}: a circuit needs a variable", node)
        if expr.is_Add:
            k, inner = _common_factor(expr)
            if k != 1:
                return self.gate("scale", [self.wire(inner)], lambda u: k * u[0], symbol, node, k=k)
            c, terms = expr.as_coeff_add()
            terms = sorted(terms, key=lambda t: t.is_Symbol)  # stable: composite terms first
            extra = {"c": c} if c != 0 else {}
            return self.gate("add", [self.wire(t) for t in terms], lambda u: sp.Add(c, *u), symbol, node, **extra)
        if expr.is_Mul:
            k, factors = expr.as_coeff_mul()
            if k != 1:
                return self.gate("scale", [self.wire(sp.Mul(*factors))], lambda u: k * u[0], symbol, node, k=k)
            factors = sorted(factors, key=lambda f: f.is_Symbol)  # stable: composite factors first
            left = self.product(factors[:-1])
            return self.gate("mul", [left, self.wire(factors[-1])], lambda u: u[0] * u[1], symbol, node)
        if expr.is_Pow:
            base, n = expr.args
            if not n.is_number:
                raise NetworkError(f"{expr}: a power with a variable exponent is not an elementary gate; write exp(y*log(x))", node)
            if n == -1:
                return self.gate("recip", [self.wire(base)], lambda u: 1 / u[0], symbol, node)
            return self.gate("pow", [self.wire(base)], lambda u: u[0] ** n, symbol, node, n=n)
        if isinstance(expr, sp.Function):
            return self.function(expr, symbol, node)
        raise NetworkError(f"{type(expr).__name__} in {expr} is not an elementary gate", node)

    def product(self, factors) -> sp.Symbol:
        """The wire of the product of ``factors`` (a chain of two-input multiply gates)."""
        if len(factors) == 1:
            return self.wire(factors[0])
        key = sp.Mul(*factors)
        if key not in self.memo:
            left = self.product(factors[:-1])
            self.memo[key] = self.gate("mul", [left, self.wire(factors[-1])], lambda u: u[0] * u[1], None, None)
        return self.memo[key]

    def function(self, expr, symbol, node) -> sp.Symbol:
        record = fn.record_of(expr)
        kind = record.gate if record is not None and record.gate is not None else FUNCTION_GATE
        op = kind.op
        name = expr.func.__name__ if op in ("generic", "function") else None
        # a tuple argument (softmax's logits) is one wire per entry
        flat = [a for arg in expr.args for a in (arg.args if isinstance(arg, sp.Tuple) else (arg,))]
        wires = [None if a.is_number else self.wire(a) for a in flat]
        inputs = list(dict.fromkeys(w for w in wires if w is not None))
        constants = [a for a, w in zip(flat, wires) if w is None]
        extra = {}
        if op == "leaky_relu" and wires[1] is None:
            extra["a"] = flat[1]
        elif op in ("max", "min", "function", "generic") and constants:
            extra["args"] = tuple(constants)

        def apply(u):
            wired = dict(zip(inputs, u))
            values = iter([a if w is None else wired[w] for a, w in zip(flat, wires)])
            return expr.func(*[sp.Tuple(*[next(values) for _ in arg.args]) if isinstance(arg, sp.Tuple)
                               else next(values) for arg in expr.args])

        return self.gate(kind, inputs, apply, symbol, node, function=name, **extra)

    def gate(self, kind, inputs, apply, symbol, node, function=None, **constants) -> sp.Symbol:
        """Add a gate of ``kind`` (a GateOp, or the op of an algebra gate)."""
        kind = ALGEBRA_GATES[kind] if isinstance(kind, str) else kind
        if len(self.gates) >= limits.MAX_GATES:
            raise NetworkError(f"too many gates: a circuit is for small expressions ({limits.says('MAX_GATES')})", node)
        if symbol is None:
            symbol = self.fresh(kind.prefix or function)
        inputs = tuple(inputs)
        self.gates.append(Gate(symbol, kind, inputs, apply(inputs), constants, function, node))
        return symbol

    def fresh(self, prefix: str) -> sp.Symbol:
        prefix = prefix.lower()
        n = self.counts.get(prefix, 0)
        while True:
            n += 1
            name = f"{prefix}{n}"
            if name not in self.taken:
                break
        self.counts[prefix] = n
        self.taken.add(name)
        symbol = sp.Symbol(name)
        roman = prefix.replace("_", r"\_")
        self.display[symbol] = rf"\mathrm{{{roman}}}_{{{n}}}"
        return symbol


def _common_factor(expr: sp.Add):
    """``(k, inner)`` with ``expr = k * inner`` when every term carries the coefficient ``k``
    (up to sign, all negative counting as ``-k``); ``(1, expr)`` otherwise."""
    coeffs = [t.as_coeff_Mul()[0] for t in expr.args]
    size = abs(coeffs[0])
    if any(abs(c) != size for c in coeffs):
        return sp.S.One, expr
    k = -size if all(c < 0 for c in coeffs) else size
    if k == 1:
        return sp.S.One, expr
    return k, sp.Add(*[t / k for t in expr.args])


# -- numbers ------------------------------------------------------------------------------

def _evaluate(circuit: Circuit, values: Mapping, bind: dict) -> CircuitFlow:
    net = circuit.network
    given = {}
    for key, v in values.items():
        s = net.symbol(key) if isinstance(key, str) else key
        if isinstance(v, (tuple, list)):
            raise NetworkError(f"{s}: a circuit is evaluated at one point, not over a batch", s)
        given[s] = float(v)
    missing = [s for s in circuit.variables if s not in given]
    if missing:
        raise NetworkError(f"no value for {', '.join(s.name for s in missing)}", missing[0])
    point = {s: sp.Float(v, DIGITS) for s, v in given.items()}
    for g in circuit.gates:  # forward: each gate's output from its inputs' values
        point[g.symbol] = _number(g.expr, point, bind, f"gate {g.name} = {text(g.expr)}")
    local = {}
    for g in circuit.gates:  # each gate's local gradients, from the engine's local partials
        for u in g.inputs:
            lp = local_partial(net, g.symbol, u).expr
            local[g.symbol, u] = _number(lp, point, bind, f"the local gradient of {g.name} with respect to {u}")
    deltas, uses = backward(circuit, lambda k, s: local[k, s], one=sp.Float(1, DIGITS))
    return CircuitFlow(
        circuit=circuit,
        point={s: float(v) for s, v in given.items()},
        values={s: float(v) for s, v in point.items()},
        local={key: float(v) for key, v in local.items()},
        deltas={s: float(v) for s, v in deltas.items()},
        uses={s: tuple((k, float(c)) for k, c in cs) for s, cs in uses.items()},
        bind=bind,
    )


def backward(circuit: Circuit, local: Callable, *, one=1.0, uses: Callable | None = None) -> tuple[dict, dict]:
    """The backward pass: every wire's gradient from ``d(output)/d(output) = one`` down.

    A wire's gradient is the sum, over the gates that use it (``uses(wire)``, default
    :meth:`Circuit.uses`), of that gate's gradient times ``local(gate, wire)``: one term per
    use, the fan-out accumulation. Returns ``(deltas, contributions)``, the latter mapping
    each wire to its ``((gate, term), ...)``. The exam generator runs it with mistaken local
    gradients or a use left out.
    """
    net = circuit.network
    wires = [s for s in reversed(net.leaves + net.order) if s != circuit.output]
    return backpropagate(circuit.output, wires, uses or circuit.uses, local, seed=one,
                         add=lambda *terms: sum(terms, one * 0))


def _number(expr, point, bind, what) -> sp.Float:
    try:
        expr = fn.bind_generics(expr, bind)
    except ValueError as err:
        raise NetworkError(str(err)) from None
    value = sp.N(fn.explicit(expr.xreplace(point)), DIGITS)
    try:
        x = float(value)
    except TypeError:  # complex or symbolic: log of a negative number, an unbound symbol
        x = math.nan
    if not math.isfinite(x):
        raise NetworkError(f"{what} is undefined or infinite at these values ({sp.N(value, 6)})")
    return value
