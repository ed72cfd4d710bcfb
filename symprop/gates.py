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
from .derive import local_partial
from .graph import Network, NetworkError
from .printing import LatexPrinter, latex_escape, latex_number, spec_string, text

__all__ = [
    "Gate", "Circuit", "Flow", "stage", "GATE_RULES", "format_flow", "flow_json",
    "circuit_context", "render_circuit", "MAX_GATES",
]

# Staging refuses more gates than this: a circuit is for reading, not for a whole MLP.
MAX_GATES = 2000
# Circuits with more gates than this get no figure (it would be unreadable).
MAX_FIGURE_GATES = 40
# Significant digits of the SymPy Floats the circuit is evaluated in.
DIGITS = 30

# What each gate does to the gradient, in seed 004's words (the text outputs use this
# table; the LaTeX templates have their own phrasing with math). ``{k}``, ``{n}``,
# ``{a}``, ``{name}`` are filled from the gate's constants.
GATE_RULES = {
    "add": "add passes the incoming gradient unchanged to every input",
    "mul": "multiply swaps the inputs and multiplies: each input gets the gradient times the other input",
    "scale": "multiply by a constant scales the gradient by {k}",
    "max": "max is a switch: the gradient goes to the larger input (the first on a tie), 0 to the other",
    "min": "min is a switch: the gradient goes to the smaller input (the first on a tie), 0 to the other",
    "exp": "exp multiplies the gradient by its output",
    "log": "log multiplies the gradient by 1/x",
    "recip": "1/x multiplies the gradient by -1/x^2",
    "pow": "x^n multiplies the gradient by n x^(n-1) with n = {n}",
    "sigmoid": "sigmoid multiplies the gradient by z(1 - z), z its output",
    "tanh": "tanh multiplies the gradient by 1 - z^2, z its output",
    "relu": "relu passes the gradient where its input is positive and blocks it (0) elsewhere",
    "leaky_relu": "leaky relu passes the gradient where its input is positive and scales it by the slope a elsewhere",
    "softplus": "softplus multiplies the gradient by sigmoid(x)",
    "softmax_cross_entropy": "softmax + cross-entropy sends y_hat - y to the logits (and -log y_hat to the targets)",
    "generic": "{name} multiplies the gradient by its derivative {name}'(x)",
    "function": "{name} multiplies the gradient by its partial derivatives",
    "copy": "a copy passes the gradient unchanged",
}

_FUNCTION_OPS = {
    sp.exp: "exp", sp.log: "log", fn.sigmoid: "sigmoid", sp.tanh: "tanh", fn.relu: "relu",
    fn.leaky_relu: "leaky_relu", fn.softplus: "softplus", fn.maximum: "max", fn.minimum: "min",
    fn.softmax_cross_entropy: "softmax_cross_entropy",
}
# The prefix of generated gate names, by op (generic and other functions use their name).
_PREFIX = {"sigmoid": "sig", "leaky_relu": "lrelu", "softmax_cross_entropy": "ce"}


@dataclass(frozen=True)
class Gate:
    """One elementary gate: ``symbol = expr``, an ``op`` of its ``inputs`` (wires).

    ``constants`` holds the numbers inside the gate: ``k`` (scale), ``n`` (pow), ``c``
    (an add's constant term), ``a`` (leaky_relu's slope) or ``args`` (the constant
    arguments of max, min and other functions); ``function`` names a generic or other
    function; ``node`` is the network node this gate computes, if any.
    """

    symbol: sp.Symbol
    op: str
    inputs: tuple[sp.Symbol, ...]
    expr: sp.Expr
    constants: dict = field(default_factory=dict, compare=False)
    function: str | None = None
    node: sp.Symbol | None = None

    @property
    def name(self) -> str:
        return self.symbol.name

    def rule(self) -> str:
        """What this gate does to the gradient, in seed 004's words (plain text)."""
        fill = {"k": _plain(self.constants.get("k")), "n": _plain(self.constants.get("n")), "name": self.function}
        return GATE_RULES[self.op].format(**fill)


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

    def evaluate(self, values: Mapping, bind: Mapping[str, str] | None = None) -> Flow:
        """Forward values, local gradients and gradients of every wire at ``values``.

        ``values`` maps each variable (Symbol or name) to a number; ``bind`` maps a generic
        function's name to an activation name (``{"g": "tanh"}``) so it has numbers.
        """
        return _evaluate(self, values, dict(bind or {}))

    def __repr__(self):
        return f"Circuit({len(self.gates)} gates, output={self.output})"


@dataclass
class Flow:
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
        op = _FUNCTION_OPS.get(expr.func)
        name = None
        if isinstance(expr, fn.GenericFunction):
            op, name = "generic", expr.func.__name__
        elif op is None:
            op, name = "function", expr.func.__name__
        wires = [None if a.is_number else self.wire(a) for a in expr.args]
        inputs = list(dict.fromkeys(w for w in wires if w is not None))
        constants = [a for a, w in zip(expr.args, wires) if w is None]
        extra = {}
        if op == "leaky_relu" and wires[1] is None:
            extra["a"] = expr.args[1]
        elif op in ("max", "min", "function", "generic") and constants:
            extra["args"] = tuple(constants)

        def apply(u):
            wired = dict(zip(inputs, u))
            return expr.func(*[a if w is None else wired[w] for a, w in zip(expr.args, wires)])

        return self.gate(op, inputs, apply, symbol, node, function=name, **extra)

    def gate(self, op, inputs, apply, symbol, node, function=None, **constants) -> sp.Symbol:
        if len(self.gates) >= MAX_GATES:
            raise NetworkError(f"more than {MAX_GATES} gates: a circuit is for small expressions", node)
        if symbol is None:
            symbol = self.fresh(_PREFIX.get(op, function or op))
        inputs = tuple(inputs)
        self.gates.append(Gate(symbol, op, inputs, apply(inputs), constants, function, node))
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

def _evaluate(circuit: Circuit, values: Mapping, bind: dict) -> Flow:
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
    return Flow(
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
    uses = uses or circuit.uses
    net = circuit.network
    deltas, contributions = {circuit.output: one}, {}
    for s in reversed(net.leaves + net.order):
        if s == circuit.output:
            continue
        contributions[s] = tuple((k, deltas[k] * local(k, s)) for k in uses(s))
        deltas[s] = sum((c for _, c in contributions[s]), one * 0)
    return deltas, contributions


def _number(expr, point, bind, what) -> sp.Float:
    expr = _bind_generics(expr, bind)
    value = sp.N(fn.explicit(expr.xreplace(point)), DIGITS)
    try:
        x = float(value)
    except TypeError:  # complex or symbolic: log of a negative number, an unbound symbol
        x = math.nan
    if not math.isfinite(x):
        raise NetworkError(f"{what} is undefined or infinite at these values ({sp.N(value, 6)})")
    return value


def _bind_generics(expr, bind):
    """Replace each generic g (and g', g'') by the activation it is bound to."""
    for f in sorted({type(c) for c in expr.atoms(fn.GenericFunction)}, key=lambda c: (c.base_name, c.order)):
        if f.base_name not in bind:
            raise NetworkError(f"{f.base_name} is a generic function; bind it to an activation to get numbers")
        u = sp.Dummy("u")
        expr = expr.replace(f, sp.Lambda(u, sp.diff(fn.ACTIVATIONS[bind[f.base_name]](u), u, f.order)))
    return expr


# -- text and JSON ------------------------------------------------------------------------

def _num(x: float) -> str:
    """4 significant digits, no "-0"."""
    s = f"{x:.4g}"
    return "0" if s in ("-0", "0") else s


def format_flow(flow: Flow) -> str:
    """The circuit as a terminal table, the rule of each gate, the fan-out sums and the gradient.

    >>> import sympy as sp
    >>> x, y = sp.symbols("x y")
    >>> print(format_flow(stage(x * y).evaluate({x: 3, y: -2})))  # doctest: +NORMALIZE_WHITESPACE
    f = x*y  at x = 3, y = -2
    <BLANKLINE>
    gate  op   value  df/dgate  input  local  df/dinput
    f     mul     -6         1  x      y = -2        -2
                                y      x = 3          3
    <BLANKLINE>
    rules
      f = x*y: multiply swaps the inputs and multiplies: each input gets the gradient times the other input
    <BLANKLINE>
    gradient
      df/dx = -2
      df/dy = 3
    """
    c, net = flow.circuit, flow.circuit.network
    E = c.output.name
    at = ", ".join(f"{s} = {_num(flow.point[s])}" for s in net.leaves if s in flow.point)
    lines = [f"{_source_text(c)}  at {at}", ""]
    header = ["gate", "op", "value", f"d{E}/dgate", "input", "local", f"d{E}/dinput"]
    rows = []
    for g in c.gates:
        for i, u in enumerate(g.inputs or (None,)):
            first = [g.name, _op_text(g), _num(flow.values[g.symbol]), _num(flow.deltas[g.symbol])] if i == 0 else [""] * 4
            if u is None:
                rows.append(first + ["", "", ""])
                continue
            formula = text(local_partial(net, g.symbol, u).expr)
            value = _num(flow.local[g.symbol, u])
            local = value if formula == value else f"{formula} = {value}"
            rows.append(first + [u.name, local, _num(flow.deltas[g.symbol] * flow.local[g.symbol, u])])
    right = {2, 3, 6}
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    lines += ["", "rules"]
    lines += [f"  {g.name} = {text(g.expr)}: {g.rule()}" for g in c.gates]
    if flow.fan_out:
        lines += ["", "fan-out: a value used by several gates gets the sum of their gradients"]
        for s in flow.fan_out:
            terms = " + ".join(f"{_num(v)} (via {k})" for k, v in flow.uses[s])
            lines.append(f"  d{E}/d{s} = {terms} = {_num(flow.deltas[s])}".replace("+ -", "- "))
    lines += ["", "gradient"]
    lines += [f"  d{E}/d{s} = {_num(v)}" for s, v in flow.gradient.items()]
    return "\n".join(lines)


def _source_text(circuit: Circuit) -> str:
    if isinstance(circuit.source, Network):
        return "; ".join(f"{k} = {text(e)}" for k, e in circuit.source.nodes.items())
    return f"{circuit.output} = {text(circuit.source)}"


def _op_text(g: Gate) -> str:
    const = g.constants
    if g.op == "scale":
        return f"scale {text(const['k'])}"
    if g.op == "pow":
        return f"pow {text(const['n'])}"
    if g.op == "add" and "c" in const:
        return f"add {text(const['c'])}"
    if g.op in ("generic", "function"):
        return g.function
    return g.op


def flow_json(flow: Flow) -> dict:
    """The JSON record: the keys of ``symprop grad`` ("loss", "values", "deltas",
    "gradient") plus "gates" in topological order and "fan_out"."""
    c = flow.circuit
    return {
        "loss": flow.loss,
        "values": {g.name: flow.values[g.symbol] for g in c.gates},
        "deltas": {g.name: flow.deltas[g.symbol] for g in c.gates},
        "gradient": {s.name: v for s, v in flow.gradient.items()},
        "gates": [
            {
                "name": g.name,
                "op": g.op,
                "inputs": [u.name for u in g.inputs],
                "expr": spec_string(g.expr),
                "value": flow.values[g.symbol],
                "local": [flow.local[g.symbol, u] for u in g.inputs],
                "delta": flow.deltas[g.symbol],
            }
            for g in c.gates
        ],
        "fan_out": [
            {"name": s.name, "uses": [{"gate": k.name, "gradient": v} for k, v in flow.uses[s]], "delta": flow.deltas[s]}
            for s in flow.fan_out
        ],
    }


# -- LaTeX --------------------------------------------------------------------------------

def circuit_context(flow: Flow, *, digits: int = 4, page: bool = True) -> dict:
    """The data the circuit templates receive: printed LaTeX strings, lists and dicts.

    ``page``: the figure must fit a page (otherwise it is left out, with a note); with
    ``page=False`` it is drawn at full size, however wide.
    """
    c, net = flow.circuit, flow.circuit.network
    printer = LatexPrinter({"names": net.display})

    def name(s):
        return printer.doprint(s)

    def number(x, d=digits):
        return latex_number(x, d)

    E = name(c.output)
    figure, note = _figure(flow, name, page)
    gates = []
    for g in c.gates:
        inputs = []
        for u in g.inputs:
            lp = local_partial(net, g.symbol, u).expr
            inputs.append({
                "name": name(u),
                "local": printer.doprint(lp),
                "local_value": number(flow.local[g.symbol, u]),
                "trivial": lp.is_number,  # "1 = 1" says nothing
                "outgoing": number(flow.deltas[g.symbol] * flow.local[g.symbol, u]),
            })
        gates.append({
            "name": name(g.symbol),
            "op": g.op,
            "function": None if g.function is None else _function_latex(g.function),
            "constants": _printed_constants(g),
            "expr": printer.doprint(g.expr),
            "value": number(flow.values[g.symbol]),
            "delta": number(flow.deltas[g.symbol]),
            "inputs": inputs,
        })
    fan_out = [
        {"name": name(s), "uses": [{"gate": name(k), "value": number(v)} for k, v in flow.uses[s]],
         "total": number(flow.deltas[s])}
        for s in flow.fan_out
    ]
    if isinstance(c.source, Network):
        source = [{"lhs": name(k), "rhs": printer.doprint(e)} for k, e in c.source.nodes.items()]
    else:
        source = [{"lhs": E, "rhs": printer.doprint(c.source)}]
    return {
        "output": E,
        "source": source,
        "given": [{"name": name(s), "value": number(flow.point[s])} for s in net.leaves if s in flow.point],
        "loss": number(flow.loss),
        "gates": gates,
        "backward": list(reversed(gates)),
        "fan_out": fan_out,
        "gradient": [{"name": name(s), "value": number(v)} for s, v in flow.gradient.items()],
        "figure": figure,
        "notes": [] if note is None else [note],
    }


def _function_latex(function: str) -> str:
    """``g`` or ``g'`` for a generic, ``\\operatorname{name}`` for anything else."""
    base, primes = function, 0
    while base.endswith("_prime"):
        base, primes = base[: -len("_prime")], primes + 1
    if len(base) == 1:
        return base + "'" * primes
    return rf"\operatorname{{{latex_escape(base)}}}" + "'" * primes


# Figure spacing in cm: columns (gate depth) and rows.
_DX, _DY = 2.7, 1.5
# On a page, the figure spans at most this many cm (the output's column included), with
# columns no closer than _MIN_DX, and at most _HEIGHT cm from top to bottom.
_WIDTH, _MIN_DX, _HEIGHT = 14.5, 1.9, 20.0
# Lanes for wires routed around the circuit, this far apart (cm).
_LANE = 0.9


def _figure(flow: Flow, name, page: bool) -> tuple[dict | None, str | None]:
    """Gates placed by depth (variables left, the output right), each wire labelled with
    its forward value and the gradient flowing back along it; or None and why not."""
    c = flow.circuit
    if len(c.gates) > MAX_FIGURE_GATES:
        return None, f"No figure: {len(c.gates)} gates are too many to draw; the table lists every wire."
    # variables top to bottom in the order the output's inputs reach them
    leaves, seen = [], set()

    def visit(s):
        if s in seen:
            return
        seen.add(s)
        if s in c.gate_of:
            for u in c.gate_of[s].inputs:
                visit(u)
        else:
            leaves.append(s)

    visit(c.output)
    drawn = [g for g in c.gates if g.symbol in seen]
    column = {s: 0 for s in leaves}
    for g in drawn:  # a gate's column is its depth: one past its deepest input
        column[g.symbol] = 1 + max(column[u] for u in g.inputs)
    for s in leaves:  # a variable stands just left of the first gate that reads it
        column[s] = min(column[k] for k in c.uses(s) if k in column) - 1
    # rows: variables in the order the output's inputs reach them; a gate level with the
    # mean of its inputs; then, column by column, nodes pushed apart to one row at least
    y = {s: -i * _DY for i, s in enumerate(leaves)}
    for col in range(max(column.values()) + 1):
        members = [s for s in column if column[s] == col]
        for s in members:
            if s in c.gate_of:
                inputs = c.gate_of[s].inputs
                y[s] = sum(y[u] for u in inputs) / len(inputs)
        members.sort(key=lambda s: -y[s])
        for above, below in zip(members, members[1:]):
            y[below] = min(y[below], y[above] - _DY)
    dx = min(_DX, _WIDTH / (max(column.values()) + 0.85)) if page else _DX  # squeeze onto the page
    if page and (dx < _MIN_DX or max(y.values()) - min(y.values()) > _HEIGHT):
        return None, ("No figure: the circuit is too large to draw legibly on a page; the table lists every wire "
                      "(the figure alone, drawn at full size, comes from render_circuit(..., figure=True)).")
    ident = {s: f"v{i}" for i, s in enumerate(leaves)}
    ident.update({g.symbol: f"g{i}" for i, g in enumerate(drawn)})

    def place(s):
        return {"id": ident[s], "x": f"{dx * column[s]:.2f}", "y": f"{y[s]:.2f}"}

    def total(s):  # the summed gradient, shown at a wire that fans out
        return short(flow.deltas[s]) if len(flow.uses.get(s, ())) > 1 else None

    def short(x):
        return latex_number(x, 3)

    nodes = [{**place(s), "kind": "variable", "label": name(s), "total": total(s)} for s in leaves]
    nodes += [{**place(g.symbol), "kind": "gate", "name": name(g.symbol), "op": g.op, "total": total(g.symbol),
               "function": None if g.function is None else _function_latex(g.function),
               "constants": _printed_constants(g)} for g in drawn]
    # a wire whose straight line would cross another node runs along a lane of its own
    # above (or below) the circuit instead: down its middle go the value and the gradient
    centre = {s: (dx * column[s], y[s]) for s in column}
    top, bottom = max(y.values()), min(y.values())
    lanes = {"above": 0, "below": 0}
    wires = []
    for g in drawn:
        for u in g.inputs:
            contribution = dict(flow.uses[u])[g.symbol]
            # wires that leave one source together are labelled nearer their ends, where they part
            pos = "0.62" if len(flow.uses[u]) > 1 else "0.4"
            wire = {"source": ident[u], "target": ident[g.symbol], "via": None, "pos": pos,
                    "value": short(flow.values[u]), "gradient": short(contribution)}
            a, b = centre[u], centre[g.symbol]
            if any(_near(centre[s], a, b) for s in column if s not in (u, g.symbol)):
                side = "above" if (a[1] + b[1]) / 2 >= (top + bottom) / 2 else "below"
                lanes[side] += 1
                level = top + _LANE * lanes[side] if side == "above" else bottom - _LANE * lanes[side]
                wire["via"] = [f"{a[0] + dx / 3:.2f}, {level:.2f}", f"{b[0] - dx / 3:.2f}, {level:.2f}"]
            wires.append(wire)
    out = c.output
    end = {"id": "out", "x": f"{dx * (column[out] + 0.85):.2f}", "y": f"{y[out]:.2f}", "label": name(out)}
    wires.append({"source": ident[out], "target": "out", "via": None, "pos": "0.4", "value": short(flow.values[out]), "gradient": "1"})
    return {"nodes": nodes, "output": end, "wires": wires}, None


def _near(p, a, b, reach=0.7) -> bool:
    """Whether point ``p`` lies within ``reach`` cm of the segment from ``a`` to ``b``."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy) < reach


def _printed_constants(g: Gate) -> dict:
    """The numbers inside a gate as LaTeX (``args``: a list of them)."""
    printer = LatexPrinter()
    return {key: [printer.doprint(a) for a in v] if isinstance(v, tuple) else printer.doprint(v)
            for key, v in g.constants.items()}


def render_circuit(
    flow: Flow, *, exam: bool = False, answers: bool = False, standalone: bool = True, title: str | None = None,
    figure: bool = False,
) -> str:
    r"""The circuit as LaTeX: a worked solution (an article, or with ``standalone=False``
    a fragment to ``\input``), or with ``exam=True`` a "fill in the gradients" question on
    the exam class whose ``solution`` environment holds the worked answer (printed with
    ``answers=True``). ``figure=True`` gives the circuit figure alone on the standalone
    class (cropped: for slides and PNGs), its gradients left blank when ``exam`` is set.

    >>> import sympy as sp
    >>> x, y, z = sp.symbols("x y z")
    >>> tex = render_circuit(stage((x + y) * z).evaluate({x: -2, y: 5, z: -4}))
    >>> tex.startswith("\\documentclass") and "tikzpicture" in tex
    True
    """
    from .render import environment

    context = {"c": circuit_context(flow, page=not figure), "title": title, "answers": answers,
               "standalone": standalone, "gradients": not exam}
    if figure and context["c"]["figure"] is None:
        raise NetworkError(context["c"]["notes"][0])
    template = "circuit_figure.tex.j2" if figure else "circuit_exam.tex.j2" if exam else "circuit.tex.j2"
    return environment().get_template(template).render(context)
