r"""Worked solutions and exam questions of a network: the data their templates receive.

Code holds the math, templates hold the prose: this module derives, prints every equation
with :class:`~symprop.printing.LatexPrinter` and hands the templates plain data (strings,
lists and dicts). Text a user typed (a title) goes through the ``latex_escape`` filter;
display names are checked by :func:`~symprop.printing.latex_name`.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> tex = render_solution(net, w, method="bottom-up", values={"x": 1.0, "t": 1.0, "w": 0.0})
>>> tex.startswith("\\documentclass") and r"\frac{d E}{d w} &= \frac{d E}{d h}" in tex
True
>>> r"\boxed{-0.125}" in tex  # dE/dw at the values, from the numeric layer
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import sympy as sp

from .. import functions as fn
from .. import limits
from ..derive import Partial, Total, derive
from ..graph import Network, NetworkError
from ..numeric import gradient
from ..printing import LatexPrinter, latex_number, latex_softmax
from .environment import environment
from .figures import network_figure
from .lines import LINE_WIDTH, break_lines, fit, visible_width
from .prose import defined_functions, method_intro, rule_sentence, step_sentence, step_title

__all__ = ["solution_context", "exam_context", "render_solution", "render_exam"]

# Path lists longer than this are summarised by their count.
MAX_LISTED_PATHS = 12


def render_solution(
    net: Network,
    wrt=None,
    *,
    method: str = "top-down",
    values: Mapping | None = None,
    bind: Mapping[str, str] | None = None,
    title: str | None = None,
    standalone: bool = True,
) -> str:
    """A worked solution of dE/dw for ``wrt`` (a name, a symbol, a list, or None for every
    parameter) as LaTeX: a standalone article, or with ``standalone=False`` a fragment to
    ``\\input`` (it lists the packages it needs). ``values`` (Symbol -> number) and
    ``bind`` (generic name -> activation name) add numbers when the numeric layer can
    evaluate the network.
    """
    context = solution_context(net, wrt, method=method, values=values, bind=bind, title=title, standalone=standalone)
    return environment().get_template("solution.tex.j2").render(context)


def render_exam(
    net: Network,
    wrt=None,
    *,
    method: str = "bottom-up",
    values: Mapping | None = None,
    bind: Mapping[str, str] | None = None,
    title: str | None = None,
    answers: bool = False,
) -> str:
    """An exam question on the ``exam`` class: the network figure, the given values and
    "compute dE/dw", with the worked solution in ``solution`` environments, printed only
    with ``\\printanswers`` (``answers=True`` writes that line; otherwise it is a comment).
    """
    context = exam_context(net, wrt, method=method, values=values, bind=bind, title=title, answers=answers)
    return environment().get_template("exam.tex.j2").render(context)


def solution_context(net, wrt=None, *, method="top-down", values=None, bind=None, title=None, standalone=True) -> dict:
    """The data the solution template receives: plain strings, lists and dicts."""
    doc = _Document(net, values, bind)
    derivations = _derive(net, wrt, method)
    return {
        "title": title,
        "standalone": standalone,
        "network": doc.network(),
        "figure": doc.figure([d.wrt for d in derivations]),
        "derivations": [doc.derivation(d) for d in derivations],
        "table": doc.table(),
        "notes": doc.notes,
    }


def exam_context(net, wrt=None, *, method="bottom-up", values=None, bind=None, title=None, answers=False) -> dict:
    """The data the exam template receives: the question's figure has no numbers (its deltas
    would give the answer away); the one with forward values and deltas goes in the solution."""
    context = solution_context(net, wrt, method=method, values=values, bind=bind, title=title)
    context["answers"] = answers
    figure = context["figure"]
    context["question_figure"] = None if figure is None else {
        **figure,
        "nodes": [{**n, "number": None, "delta": None} for n in figure["nodes"]],
        "numbers": False,
    }
    return context


def _derive(net, wrt, method):
    derived = derive(net, wrt, method=method)
    return [derived] if not isinstance(derived, dict) else list(derived.values())


class _Document:
    """Prints one network's equations, numbers and figure for the templates."""

    def __init__(self, net: Network, values, bind):
        self.net = net
        self.notes: list[str] = []
        self.softmax_names, self.softmax_defs = _softmax_names(net)
        self.printer = LatexPrinter({"names": net.display, "softmax_names": self.softmax_names})
        self.given = {net.symbol(s) if isinstance(s, str) else s: v for s, v in (values or {}).items()}
        sizes = {len(v) for v in self.given.values() if isinstance(v, (tuple, list))}
        self.batch = max(sizes, default=None)
        if sizes:  # a batch: a worked solution follows one sample, the first
            self.given = {s: v[0] if isinstance(v, (tuple, list)) else v for s, v in self.given.items()}
        self.bind = dict(bind or {})
        self.numbers = self._numbers()

    def name(self, symbol) -> str:
        return self.printer.doprint(symbol)

    def math(self, expr) -> str:
        return self.printer.doprint(expr)

    def lines(self, expr, values=None, product=False) -> list[str]:
        printer = self.printer if values is None else self._value_printer(values)
        return break_lines(printer, expr, product)

    def step_lines(self, step, values=None) -> list[str]:
        """A step's right-hand side; a local partial with one chain is one product."""
        product = step.partial is not None and step.partial.is_product
        return self.lines(step.rhs, values, product)

    def _value_printer(self, values):
        return LatexPrinter({"names": self.net.display, "softmax_names": self.softmax_names, "values": values})

    # -- the network

    def network(self) -> dict:
        net = self.net
        given = []
        for s in net.leaves:
            if s in self.given:
                given.append({"name": self.name(s), "number": latex_number(self.given[s]), "role": net.role(s)})
        generics = sorted({f.base_name for k in net.order for f in _generic_calls(net.nodes[k])})
        return {
            "loss": self.name(net.loss),
            "definitions": [{"lhs": self.name(k), "lines": fit([self.math(net.nodes[k])])} for k in net.order],
            "softmax": self.softmax_defs,
            "defined": defined_functions(net.nodes.values(), self.printer),
            "generics": [
                {"name": self.math(fn.generic(g)(sp.Symbol("u"))).split("\\left")[0], "bound": _bound_name(self.bind.get(g))}
                for g in generics
            ],
            "given": given,
            "batch": self.batch,  # the given values are the first of this many samples
            "inputs": [self.name(s) for s in net.inputs],
            "targets": [self.name(s) for s in net.targets],
            "params": [self.name(s) for s in net.params],
            "reduction": net.reduction,
        }

    # -- one derivation

    def derivation(self, d) -> dict:
        record = {
            "wrt": self.name(d.wrt),
            "goal": self.math(Total(d.target, d.wrt)),
            "method": d.method,
            "intro": method_intro(d.method, self.name(d.wrt), self.name(d.target)),
            "method_name": {"top-down": "top-down", "bottom-up": "bottom-up"}.get(d.method, "as a sum over paths"),
            "users": [self.name(k) for k in d.users],
            "path_count": d.path_count,
            "groups": None,
            "left_out": None,  # why the steps are left out, when they are
            "paths": None,
            "numbers": None,
            "notes": list(d.notes),
        }
        steps = d.steps
        if len(steps) > limits.MAX_DOCUMENT_STEPS:
            record["left_out"] = (f"its {len(steps):,} steps are too many to print ({limits.says('MAX_DOCUMENT_STEPS')}); "
                                  "ask for fewer weights or a smaller network")
        else:
            record["groups"] = self._groups(d, steps)
        record["paths"] = self._paths(d)
        record["notes"] = list(dict.fromkeys(record["notes"] + d.notes))
        if self.numbers is not None and record["groups"] is not None:
            record["numbers"] = self._derivation_numbers(d, steps)
        return record

    def _groups(self, d, steps) -> list[dict]:
        """Each main step (a delta, the bottom factor) with the local partials it uses."""
        groups: list[dict] = []
        for step in steps:
            if step.rule == "substitute":
                continue
            row = {"lhs": self.math(step.lhs), "lines": self.step_lines(step)}
            if step.rule == "local partial" and groups:
                groups[-1]["locals"].append(row)
                for rule in step.because:
                    sentence = rule_sentence(rule, self.printer)
                    if sentence not in groups[-1]["because"]:
                        groups[-1]["because"].append(sentence)
                continue
            partials = [x for t in sp.Add.make_args(step.rhs) for x in sp.Mul.make_args(t) if isinstance(x, Partial)]
            node = None if step.node is None else self.name(step.node)
            # the nodes this step sums over: consumers of the node, or users of w
            over = [self.name(p.of) for p in partials]
            groups.append({
                **row,
                "rule": step.rule,
                "title": step_title(step.rule, d.method, node),
                "sentence": step_sentence(step.rule, d.method, node, over, self.name(d.wrt), self.name(d.target),
                                          d.path_count),
                "locals": [],
                "because": [],  # why each local partial is what it is: one sentence per rule
            })
        return groups

    def _paths(self, d) -> dict:
        paths = d.paths
        record = {"count": d.path_count, "listed": [], "abstract": None, "local": None}
        if paths is None:
            return record
        if len(paths) <= MAX_LISTED_PATHS:
            record["listed"] = [r" \to ".join(self.name(s) for s in p) for p in paths]
        record["abstract"] = self.lines(d.as_paths)
        record["local"] = self.lines(d.in_local_partials)
        return record

    # -- numbers

    def _numbers(self):
        """Forward values, deltas and gradients from the numeric layer, or None (with a note)."""
        net = self.net
        missing = [s for s in net.leaves if s not in self.given]
        if not self.given:
            return None
        if missing:
            return self._no_numbers(f"no value for {', '.join(map(str, missing))}")
        try:
            result = gradient(net, dict(self.given), bind=self.bind or None)
        except (ValueError, TypeError, NetworkError) as err:  # NumericError names the symbol
            return self._no_numbers(str(err))
        point = {s: float(v) for s, v in self.given.items()}
        point.update({k: _one(v) for k, v in result.values.items()})
        return {
            "loss": float(result.loss),
            "point": point,
            "deltas": {k: _one(v) for k, v in result.deltas.items()},
            "gradient": {s: float(v) for s, v in result.gradient.items()},
        }

    def _no_numbers(self, why):
        message = f"numbers left out: {why}"
        self.notes.append(message)
        warnings.warn(message, stacklevel=4)
        return None

    def _evaluate(self, expr) -> float:
        """``expr`` (node symbols, leaves, bound generics) at the forward values."""
        expr = fn.bind_generics(expr, self.bind)
        point = {s: sp.Float(v, 17) for s, v in self.numbers["point"].items()}
        return float(sp.N(fn.explicit(expr).xreplace(point), 17))

    def _softmax_values(self) -> dict:
        out = {}
        for logits in self.softmax_names:
            for k in range(1, len(logits) + 1):
                y = fn.softmax(k, *logits)
                out[y] = self._evaluate(y)
        return out

    def _derivation_numbers(self, d, steps) -> list[dict]:
        """Formula, numbers substituted and value of every step, in the order a hand
        computation takes: from the loss downward, each delta after its local partials."""
        num = self.numbers
        local_value = {
            s.lhs: self._evaluate(s.partial.expr)
            for s in steps if s.rule == "local partial"
        }
        values = {**num["point"], **self._softmax_values(), **local_value}
        values.update({Total(d.target, k): v for k, v in num["deltas"].items()})
        if d.method == "bottom-up":  # numbers are computed from the loss down even so
            steps = derive(self.net, d.wrt, method="top-down").steps
        groups: list[list] = []
        for step in steps:
            if step.rule == "substitute":
                continue
            if step.rule == "local partial" and groups:
                groups[-1].insert(-1, step)
            else:
                groups.append([step])
        rows = []
        for step in (s for group in groups for s in group):
            if step.rule == "local partial":
                value = local_value[step.lhs]
            elif step.lhs == Total(d.target, d.wrt):
                value = num["gradient"][d.wrt]
            else:
                value = num["deltas"][step.lhs.wrt]
            formula = self.step_lines(step)
            substituted = self.step_lines(step, {s: v for s, v in values.items() if s != step.lhs})
            number = latex_number(value)
            if substituted in ([number], [rf"\left({number}\right)"]):
                substituted = None  # "= 0.52 = 0.52" says nothing
            parts = formula + (substituted or []) + [number]
            rows.append({
                "lhs": self.math(step.lhs),
                "formula": formula,
                "substituted": substituted,
                "value": number,
                # short enough to read as one line: formula = numbers = value
                "one_line": len(parts) == 2 + (substituted is not None) and sum(map(visible_width, parts)) <= LINE_WIDTH,
            })
        return rows

    # -- table and figure

    def table(self):
        num = self.numbers
        if num is None:
            return None
        net = self.net
        nodes = [
            {"name": self.name(k), "number": latex_number(num["point"][k]),
             "delta": latex_number(num["deltas"][k]) if k in num["deltas"] else ""}
            for k in net.order
        ]
        outputs = [
            {"name": self.math(y), "number": latex_number(v)} for y, v in self._softmax_values().items()
        ]
        leaves = [
            {"name": self.name(s), "number": latex_number(num["point"][s]),
             "gradient": latex_number(num["gradient"][s]) if s in num["gradient"] else "", "role": net.role(s)}
            for s in net.inputs + net.params
        ]
        return {"loss": latex_number(num["loss"]), "nodes": nodes, "outputs": outputs, "leaves": leaves}

    def figure(self, highlight=()):
        """The network's figure (:func:`~symprop.documents.figures.network_figure`), or None with a note."""
        figure, note = network_figure(self.net, self.name, self.numbers, highlight)
        if note is not None:
            self.notes.append(note)
        return figure


def _bound_name(activation) -> str | None:
    """The name of the activation a generic function is bound to (a name or a record)."""
    return getattr(activation, "name", activation)


def _one(value) -> float:
    """The number of a single sample (the numeric layer keeps one array entry per sample)."""
    return float(getattr(value, "ravel", lambda: [value])()[0])


def _softmax_names(net):
    """``\\hat{y}`` for the network's softmax when that name is unambiguous, else nothing.

    Unambiguous: one softmax (one tuple of logits) in the whole network, and no display
    name already using ``\\hat{y}``.
    """
    logits = set()
    for expr in net.nodes.values():
        for f in expr.atoms(fn.softmax, fn.softmax_cross_entropy):
            logits.add(tuple(f.logits))
    if len(logits) != 1 or any(r"\hat{y}" in name for name in net.display.values()):
        return {}, None
    (only,) = logits
    names = {only: r"\hat{y}"}
    return names, {"lhs": r"\hat{y}_{k}", "rhs": latex_softmax(only, net.display)}


def _generic_calls(expr):
    return [f for f in expr.atoms(sp.Function) if isinstance(f, fn.GenericFunction)]
