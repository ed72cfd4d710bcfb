r"""Gate circuits worked out: the data the circuit templates receive.

Each gate arrives with its words filled in from its kind (:class:`~symprop.functions.GateOp`):
its ``label`` in the figure, its ``title`` in the table, its rule as a ``sentence``. Every
backward-pass line names what it computes (``df/dmul_1 = df/dadd_1 · ∂add_1/∂mul_1``); the
formula at the top is printed from the staged gates, so it keeps the circuit's structure
(``e^{-(w_0 x_0 + w_1 x_1 + w_2)}``) where SymPy's canonical form would distribute the sign;
a chain ``×(−1), exp, +1, 1/x`` is recognised as seed 004's sigmoid gate and cross-checked.

>>> import sympy as sp
>>> from symprop.gates import stage
>>> x, y, z = sp.symbols("x y z")
>>> tex = render_circuit(stage((x + y) * z).evaluate({x: -2, y: 5, z: -4}))
>>> tex.startswith("\\documentclass") and "tikzpicture" in tex
True
"""

from __future__ import annotations

import re

import sympy as sp

from ..derive import local_partial
from ..gates import CircuitFlow, Gate
from ..graph import Network, NetworkError, display_name
from ..printing import LatexPrinter, latex_escape, latex_number
from .environment import environment
from .figures import circuit_figure

__all__ = ["circuit_context", "render_circuit", "gate_words", "circuit_formula", "circuit_names", "sigmoid_chains"]


def render_circuit(
    flow: CircuitFlow, *, exam: bool = False, answers: bool = False, standalone: bool = True, title: str | None = None,
    figure: bool = False,
) -> str:
    r"""The circuit as LaTeX: a worked solution (an article, or with ``standalone=False``
    a fragment to ``\input``), or with ``exam=True`` a "fill in the gradients" question on
    the exam class whose ``solution`` environment holds the worked answer (printed with
    ``answers=True``). ``figure=True`` gives the circuit figure alone on the standalone
    class (cropped: for slides and PNGs), its gradients left blank when ``exam`` is set.
    """
    context = {"c": circuit_context(flow, page=not figure), "title": title, "answers": answers,
               "standalone": standalone, "gradients": not exam}
    if figure and context["c"]["figure"] is None:
        raise NetworkError(context["c"]["notes"][0])
    template = "circuit_figure.tex.j2" if figure else "circuit_exam.tex.j2" if exam else "circuit.tex.j2"
    return environment().get_template(template).render(context)


# a name such as w0 or x12 is printed w_{0}, x_{12}, as the texts write cs231n's neuron
_INDEXED = re.compile(r"^([A-Za-z])([0-9]+)$")


def circuit_names(net: Network) -> dict:
    """The display names of a circuit's wires: the network's, and for a variable named
    like ``w0`` (one letter, then digits) the subscripted ``w_{0}``."""
    names = dict(net.display)
    for s in net.leaves:
        match = _INDEXED.match(s.name)
        if s not in names and match and display_name(s.name) == s.name:
            names[s] = f"{match[1]}_{{{match[2]}}}"
    return names


def circuit_context(flow: CircuitFlow, *, digits: int = 4, page: bool = True) -> dict:
    """The data the circuit templates receive: printed LaTeX strings, lists and dicts.

    ``page``: the figure must fit a page (otherwise it is left out, with a note); with
    ``page=False`` it is drawn at full size, however wide.
    """
    c, net = flow.circuit, flow.circuit.network
    printer = LatexPrinter({"names": circuit_names(net)})
    plain = LatexPrinter({"names": net.display})

    def name(s):
        return printer.doprint(s)

    def number(x, d=digits):
        return latex_number(x, d)

    def words(g):
        return gate_words(g, printer)

    E = name(c.output)

    def total(s):
        return rf"\frac{{d {E}}}{{d {name(s)}}}"

    def inline(s):  # the same in running text, where a fraction would crowd the lines
        return rf"d{E}/d{name(s)}"

    figure, note = circuit_figure(flow, name, page, words, digits=digits)
    checks = {chain[-1].symbol: _sigmoid_check(flow, chain, name, number, inline) for chain in sigmoid_chains(c)}
    gates = []
    for g in c.gates:
        inputs = []
        for u in g.inputs:
            lp = local_partial(net, g.symbol, u).expr
            shared = len(flow.uses[u]) > 1  # a fan-out wire: this is one of its terms
            inputs.append({
                "name": name(u),
                "local": printer.doprint(lp),
                "local_value": number(flow.local[g.symbol, u]),
                "trivial": lp.is_number,  # "1 = 1" says nothing
                "outgoing": number(flow.deltas[g.symbol] * flow.local[g.symbol, u]),
                # what the line computes: d(output)/d(input), or its term through this gate
                "lhs": rf"\left.{total(u)}\right|_{{\text{{via }} {name(g.symbol)}}}" if shared else total(u),
                "chain": rf"{total(g.symbol)}\,\frac{{\partial {name(g.symbol)}}}{{\partial {name(u)}}}",
                "shared": shared,
            })
        gates.append({
            "name": name(g.symbol),
            "op": g.op,
            **words(g),
            "expr": printer.doprint(g.expr),
            "value": number(flow.values[g.symbol]),
            "delta": number(flow.deltas[g.symbol]),
            "total": total(g.symbol),
            "inline": inline(g.symbol),
            "inputs": inputs,
            "check": checks.get(g.symbol),
        })
    fan_out = [
        {"name": name(s), "total_name": total(s),
         "uses": [{"gate": name(k), "value": number(v)} for k, v in flow.uses[s]],
         "total": number(flow.deltas[s])}
        for s in flow.fan_out
    ]
    source = [{"lhs": lhs, "rhs": rhs} for lhs, rhs in circuit_formula(c, printer)]
    wires = sum(len(g.inputs) for g in c.gates)
    return {
        "output": E,
        "seed": total(c.output),
        "seed_inline": inline(c.output),
        "source": source,
        "given": [{"name": name(s), "value": number(flow.point[s])} for s in net.leaves if s in flow.point],
        "loss": number(flow.loss),
        "gates": gates,
        "backward": list(reversed(gates)),
        "fan_out": fan_out,
        "gradient": [{"name": name(s), "total": total(s), "inline": inline(s), "value": number(v)}
                     for s, v in flow.gradient.items()],
        "figure": figure,
        "notes": [] if note is None else [note],
        # points on the exam: one per gradient to fill in (every wire into a gate) ...
        "points": wires,
        # ... or, for one variable's gradient, one per wire on its paths to the output
        # (keyed by the name printed here and by the plain printer's, which variants use)
        "points_for": {key: _wires_on_paths(c, s) for s in c.variables for key in (name(s), plain.doprint(s))},
    }


def _wires_on_paths(c, variable) -> int:
    """How many wires (gate inputs) lie on a path from ``variable`` to the output."""
    reach = {variable}
    count = 0
    for g in c.gates:  # topological order: a gate depends on the variable if an input does
        hit = [u for u in g.inputs if u in reach]
        if hit:
            reach.add(g.symbol)
            count += len(hit)
    return max(count, 1)


# -- the formula as staged -----------------------------------------------------------------

# how tightly a printed piece binds: a sum (or a leading minus), a product, a power, an atom
_SUM, _PRODUCT, _POWER, _ATOM = range(4)


class _Inlined(LatexPrinter):
    """The printer with some wires replaced by their printed subformulas (used inside a
    function's parentheses or exponent, where no brackets are needed)."""

    def __init__(self, settings, inline):
        super().__init__(settings)
        self._inline = inline

    def _print_Symbol(self, expr, style="plain"):
        return self._inline[expr] if expr in self._inline else super()._print_Symbol(expr, style)


def circuit_formula(c, printer: LatexPrinter) -> list[tuple[str, str]]:
    r"""The staged expression written out from its gates: ``[(lhs, rhs)]``, one pair for an
    expression, one per node for a staged network. Sums keep the staged order of their
    terms, a ``scale`` by −1 of a sum prints as ``-\left(...\right)``, a constant term
    goes first when positive and last when negative.

    >>> import sympy as sp
    >>> from symprop.gates import stage
    >>> w0, x0, w1, x1, w2 = sp.symbols("w0 x0 w1 x1 w2")
    >>> c = stage(1 / (1 + sp.exp(-(w0*x0 + w1*x1 + w2))), [w0, x0, w1, x1, w2])
    >>> circuit_formula(c, LatexPrinter({"names": circuit_names(c.network)}))
    [('f', '\\frac{1}{1 + e^{-\\left(w_{0} x_{0} + w_{1} x_{1} + w_{2}\\right)}}')]
    """
    kept = {g.symbol for g in c.gates if g.node is not None} if isinstance(c.source, Network) else set()
    memo: dict = {}

    def piece(s, top=False):
        """``(tex, binding)`` of wire ``s``: a variable, a kept node, or its gate inlined."""
        if s not in c.gate_of or (s in kept and not top):
            return printer.doprint(s), _ATOM
        if s not in memo:
            memo[s] = _gate_piece(c.gate_of[s], piece, printer)
        return memo[s]

    if isinstance(c.source, Network):
        return [(printer.doprint(k), piece(k, top=True)[0]) for k in c.source.order if k in c.gate_of]
    return [(printer.doprint(c.output), piece(c.output, top=True)[0])]


def _bracket(tex: str) -> str:
    return rf"\left({tex}\right)"


def _gate_piece(g: Gate, piece, printer: LatexPrinter) -> tuple[str, int]:
    parts = [piece(u) for u in g.inputs]
    op = g.op
    if op == "copy":
        return parts[0]
    if op == "add":
        terms = [_bracket(t) if b == _SUM and not t.startswith("-") else t for t, b in parts]
        c = g.constants.get("c")
        if c is not None:
            terms.insert(0 if c > 0 else len(terms), printer.doprint(c))
        tex = terms[0]
        for t in terms[1:]:
            tex += " - " + t[1:].lstrip() if t.startswith("-") else " + " + t
        return tex, _SUM
    if op == "mul":
        tex = ""
        for i, (t, b) in enumerate(parts):
            if b == _SUM and not (i == 0 and t.startswith("-") and "+" not in t):
                t = _bracket(t)
            if i:
                tex += r" \cdot " if t[:1].isdigit() or t[:1] == "-" or tex[-1:].isdigit() else " "
            tex += t
        return tex, _PRODUCT
    if op == "scale":
        k = g.constants["k"]
        (t, b), = parts
        if b == _SUM:
            t = _bracket(t)
        if k == -1:
            return "-" + t, _SUM
        k_tex = printer.doprint(k)
        sep = r" \cdot " if t[:1].isdigit() or t[:1] == "-" else " "
        return k_tex + sep + t, _SUM if k < 0 else _PRODUCT
    if op == "recip":
        return rf"\frac{{1}}{{{parts[0][0]}}}", _ATOM
    if op == "pow":
        n = g.constants["n"]
        (t, b), = parts
        if n == sp.Rational(1, 2):
            return rf"\sqrt{{{t}}}", _ATOM
        base = t if b == _ATOM and "^" not in t else _bracket(t)
        if n < 0:
            power = base if n == -1 else f"{base}^{{{printer.doprint(-n)}}}"
            return rf"\frac{{1}}{{{power}}}", _ATOM
        return f"{base}^{{{printer.doprint(n)}}}", _POWER
    # a function: its arguments sit in parentheses or an exponent, no brackets needed
    inline = {u: t for u, (t, _) in zip(g.inputs, parts)}
    tex = _Inlined({"names": printer._settings["names"]}, inline).doprint(g.expr)
    return tex, _POWER if tex.startswith("e^{") else _ATOM


# -- known gates among the staged ones -----------------------------------------------------

def sigmoid_chains(c) -> list[tuple[Gate, Gate, Gate, Gate]]:
    """The chains ``×(−1), exp, +1, 1/x`` in a row (each value used only by the next gate):
    together seed 004's sigmoid gate. Each as ``(recip, add, exp, scale)``, output first."""
    found = []
    for r in c.gates:
        if r.op != "recip":
            continue
        chain = [r]
        for op in ("add", "exp", "scale"):
            (u,) = chain[-1].inputs if len(chain[-1].inputs) == 1 else (None,)
            g = c.gate_of.get(u)
            if g is None or g.op != op or len(c.uses(u)) != 1:
                break
            if op == "add" and (g.constants.get("c") != 1 or len(g.inputs) != 1):
                break
            if op == "scale" and g.constants.get("k") != -1:
                break
            chain.append(g)
        if len(chain) == 4:
            found.append(tuple(chain))
    return found


def _sigmoid_check(flow, chain, name, number, total) -> dict:
    """The numbers of the sigmoid cross-check of one chain: σ = the 1/x gate's value, its
    local gradient σ(1 − σ), and the product of the four local gradients it must equal."""
    r, a, e, s = chain
    u = s.inputs[0]
    sigma = flow.values[r.symbol]
    locals_ = [flow.local[r.symbol, a.symbol], flow.local[a.symbol, e.symbol], flow.local[e.symbol, s.symbol],
               flow.local[s.symbol, u]]
    product = locals_[0] * locals_[1] * locals_[2] * locals_[3]
    factors = [number(x) for x in locals_]
    return {
        "output": name(r.symbol),
        "input": name(u),
        "gates": [name(g.symbol) for g in reversed(chain)],
        "value": number(sigma),
        "gradient": number(sigma * (1 - sigma)),
        "factors": [rf"\left({f}\right)" if f.startswith("-") else f for f in factors],
        "product": number(product),
        "arriving": number(flow.deltas[r.symbol]),
        "arriving_name": total(r.symbol),
        "result": number(flow.deltas[r.symbol] * sigma * (1 - sigma)),
        "result_name": total(u),
    }


def gate_words(g: Gate, printer: LatexPrinter) -> dict:
    """A gate's ``label`` (figure), ``title`` (table) and rule ``sentence``, filled in from
    its kind with its printed constants and function."""
    const = {key: [printer.doprint(a) for a in v] if isinstance(v, tuple) else printer.doprint(v)
             for key, v in g.constants.items()}
    c, k = const.get("c"), const.get("k")
    signed = None if c is None else c if c.startswith("-") else "+" + c
    head = printer.head(g.expr) if isinstance(g.expr, sp.Function) else None
    fields = {
        "c_signed": signed or "+",
        "c_clause": "" if c is None else f" (${signed}$)",
        "k": k,
        "k_paren": None if k is None else rf"\left({k}\right)" if k.startswith("-") else k,
        "n": const.get("n"),
        "a_clause": "" if "a" not in const else f" $= {const['a']}$",
        "args": "" if "args" not in const else r"(\cdot, " + ", ".join(const["args"]) + ")",
        "function": head or (None if g.function is None else _function_latex(g.function)),
        "name": g.function,
    }
    fill = g.kind.fill
    return {"label": fill(g.kind.label, **fields), "title": fill(g.kind.title, **fields),
            "sentence": fill(g.kind.sentence, **fields)}


def _function_latex(function: str) -> str:
    """``\\operatorname{name}`` for a function the printer has no head for."""
    return rf"\operatorname{{{latex_escape(function)}}}"
