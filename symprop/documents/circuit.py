r"""Gate circuits worked out: the data the circuit templates receive.

Each gate arrives with its words filled in from its kind (:class:`~symprop.functions.GateOp`):
its ``label`` in the figure, its ``title`` in the table, its rule as a ``sentence``.

>>> import sympy as sp
>>> from symprop.gates import stage
>>> x, y, z = sp.symbols("x y z")
>>> tex = render_circuit(stage((x + y) * z).evaluate({x: -2, y: 5, z: -4}))
>>> tex.startswith("\\documentclass") and "tikzpicture" in tex
True
"""

from __future__ import annotations

import sympy as sp

from ..derive import local_partial
from ..gates import CircuitFlow, Gate
from ..graph import Network, NetworkError
from ..printing import LatexPrinter, latex_escape, latex_number
from .environment import environment
from .figures import circuit_figure

__all__ = ["circuit_context", "render_circuit", "gate_words"]


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


def circuit_context(flow: CircuitFlow, *, digits: int = 4, page: bool = True) -> dict:
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

    def words(g):
        return gate_words(g, printer)

    E = name(c.output)
    figure, note = circuit_figure(flow, name, page, words)
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
            **words(g),
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
