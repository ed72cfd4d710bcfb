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

import functools
import math
import warnings
from collections.abc import Mapping

import sympy as sp

from .. import functions as fn
from .. import limits
from ..derive import COLLAPSE_RULES, SOFTMAX_CE, Partial, Total, derive, softmax_chains
from ..graph import Network, NetworkError
from ..numeric import STEP, gradient, update_rule
from ..numeric import check as gradient_check
from ..numeric import step as descent_step
from ..printing import LatexPrinter, latex_number, latex_softmax
from .environment import environment
from .figures import network_figure
from .plots import gradient_flow_remark
from .lines import break_lines, equation_row, fit, visible_width
from .prose import (
    collapse_tags, collapse_words, defined_functions, method_intro, names, rule_sentence, step_sentence, step_title,
)

__all__ = ["solution_context", "exam_context", "render_solution", "render_exam"]

# A displayed row's parts share a line up to this width (visible characters, see
# lines.visible_width): the text block holds about 80, the left-hand side takes its share.
ROW_WIDTH = 64
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
    update: float | None = None,
    check: bool = False,
    epsilon: float = STEP,
) -> str:
    """A worked solution of dE/dw for ``wrt`` (a name, a symbol, a list, or None for every
    parameter) as LaTeX: a standalone article, or with ``standalone=False`` a fragment to
    ``\\input`` (it lists the packages it needs). ``values`` (Symbol -> number) and
    ``bind`` (generic name -> activation name) add numbers when the numeric layer can
    evaluate the network. With numbers, ``update`` (a learning rate η) adds one step of
    gradient descent, w ← w − η dE/dw, for the parameters asked (what ``symprop step``
    does), and ``check`` the finite-difference estimates of seed 004 (forward and central,
    step ``epsilon``·max(1, |w|), the numbers of ``symprop check``) with their cost in passes.
    """
    context = solution_context(net, wrt, method=method, values=values, bind=bind, title=title, standalone=standalone,
                               update=update, check=check, epsilon=epsilon)
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


def solution_context(net, wrt=None, *, method="top-down", values=None, bind=None, title=None, standalone=True,
                     update=None, check=False, epsilon=STEP) -> dict:
    """The data the solution template receives: plain strings, lists and dicts."""
    doc = _Document(net, values, bind)
    derivations = _derive(net, wrt, method)
    asked = [d.wrt for d in derivations]
    # every weight top-down: one pass, each delta once (seed 002 §1.7), not one walk per weight
    single_pass = wrt is None and method == "top-down" and len(derivations) > 1 and \
        sum(len(d.steps) for d in derivations) <= limits.MAX_DOCUMENT_STEPS * 4
    return {
        "title": title,
        "standalone": standalone,
        "network": doc.network(),
        "figure": doc.figure([d.wrt for d in derivations] if len(derivations) == 1 else ()),
        "derivations": [] if single_pass else [doc.derivation(d) for d in derivations],
        "one_pass": doc.one_pass(derivations) if single_pass else None,
        "table": doc.table(),
        "update": None if update is None else doc.update(asked, update),
        "check": doc.finite_differences(asked, epsilon) if check else None,
        "notes": doc.notes,
        "activation_plots": gradient_flow_remark(net, values, bind),  # saturated or dead units, plotted
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
        self.printer = LatexPrinter(self._settings())
        self.given = {net.symbol(s) if isinstance(s, str) else s: v for s, v in (values or {}).items()}
        self.batch_values = dict(self.given)
        sizes = {len(v) for v in self.given.values() if isinstance(v, (tuple, list))}
        self.batch = max(sizes, default=None)
        self._stated: set[str] = set()  # rule sentences given once per document
        if sizes:  # a batch: the chain is worked for one sample, the first, then summed over all
            self.given = {s: v[0] if isinstance(v, (tuple, list)) else v for s, v in self.given.items()}
        self.bind = dict(bind or {})
        self.numbers = self._numbers()
        self.figure_numbers = False  # whether the figure shows the values and deltas (see figure())

    def name(self, symbol) -> str:
        return self.printer.doprint(symbol)

    def math(self, expr) -> str:
        return self.printer.doprint(expr)

    def lines(self, expr, values=None, product=False) -> list[str]:
        printer = self.printer if values is None else self._value_printer(values)
        return break_lines(printer, expr, product, width=ROW_WIDTH)

    def step_lines(self, step, values=None) -> list[str]:
        """A step's right-hand side; a local partial with one chain is one product."""
        product = step.partial is not None and step.partial.is_product
        return self.lines(step.rhs, values, product)

    def _settings(self, values=None) -> dict:
        return {"names": self.net.display, "softmax_names": self.softmax_names, "params": frozenset(self.net.params),
                "values": values or {}}

    def _value_printer(self, values):
        return LatexPrinter(self._settings(values))

    # -- the network

    def network(self) -> dict:
        net = self.net
        given = []
        for s in net.leaves:
            if s in self.given:
                v = self.batch_values[s]
                number = ("(" + r",\allowbreak\ ".join(latex_number(x) for x in v) + ")" if isinstance(v, (tuple, list))
                          else latex_number(v))
                given.append({"name": self.name(s), "number": number, "role": net.role(s)})
        generics = sorted({f.base_name for k in net.order for f in _generic_calls(net.nodes[k])})
        definitions = [{"lhs": self.name(k), "lines": fit([self.math(net.nodes[k])])} for k in net.order]
        return {
            "loss": self.name(net.loss),
            "definitions": definitions,
            # short definitions two to a line, in forward order
            "definition_pairs": _pairs(definitions) if len(definitions) >= 4 else None,
            "softmax": self.softmax_defs,
            "defined": defined_functions(net.nodes.values(), self.printer),
            "generics": [
                {"name": self.math(fn.generic(g)(sp.Symbol("u"))).split("\\left")[0], "bound": _bound_name(self.bind.get(g)),
                 "rule": self._bound_rule(g)}
                for g in generics
            ],
            "given": given,
            "batch": self.batch,  # the given values are the first of this many samples
            "inputs": [self.name(s) for s in net.inputs],
            "targets": [self.name(s) for s in net.targets],
            "params": [self.name(s) for s in net.params],
            "reduction": net.reduction,
        }

    def _bound_rule(self, g) -> str | None:
        """``g'(u) = 1 - \\tanh^{2}(u) = 1 - z^{2}``: the derivative of the activation g is bound
        to, and its form in the output z = g(u) when it has one (the form numbers go through)."""
        if g not in self.bind:
            return None
        u = sp.Symbol("u")
        tex = f"{self.math(fn.generic(g, 1)(u))} = {self.math(sp.diff(fn.activation(self.bind[g])(u), u))}"
        if g in self._output_forms:
            z, written = self._output_forms[g]
            tex += f" = {self.math(written.xreplace({z: sp.Symbol('z')}))}"
        return tex

    # -- one derivation

    def derivation(self, d) -> dict:
        record = {
            "wrt": self.name(d.wrt),
            "goal": self.math(Total(d.target, d.wrt)),
            "method": d.method,
            "quantity": "delta" if d.wrt in self.net.nodes else "gradient",  # of a node, or of a weight or input
            "intro": method_intro(d.method, self.name(d.wrt), self.name(d.target), node=d.wrt in self.net.nodes),
            "method_name": {"top-down": "top-down", "bottom-up": "bottom-up"}.get(d.method, "as a sum over paths"),
            "path_count": d.path_count,
            "blocks": None,
            "left_out": None,  # why the steps are left out, when they are
            "numbers": [],  # deltas whose numbers come after the walk (bottom-up: known only from the top down)
            "paths": None,
            "batch": None,
            "notes": list(d.notes),
        }
        steps = d.steps
        if len(steps) > limits.MAX_DOCUMENT_STEPS:
            record["left_out"] = (f"its {len(steps):,} steps are too many to print ({limits.says('MAX_DOCUMENT_STEPS')}); "
                                  "ask for fewer weights or a smaller network")
        else:
            record["blocks"], record["numbers"] = self._blocks(d, _groups(steps))
        record["paths"] = self._paths(d)
        record["notes"] = list(dict.fromkeys(record["notes"] + d.notes))
        record["batch"] = self._batch(d.wrt, d.target)
        return record

    def one_pass(self, derivations) -> dict:
        """Every weight's gradient from one top-down pass (seed 002 §1.7): each delta once,
        from the loss down, then one line per weight, dE/dw = delta times a local partial."""
        groups, seen = [], set()
        for d in derivations:
            for main, local in _groups(d.steps):
                key = (main.rule, main.lhs)
                if main.rule in ("loss directly", "sum over consumers", SOFTMAX_CE) and key not in seen:
                    seen.add(key)
                    groups.append((main, local))
        # in order of first use: each top-down walk computes a delta after those it uses
        blocks, _ = self._blocks(None, groups)
        rows, because = [], []
        for d in derivations:
            lhs = Total(d.target, d.wrt)
            because += self._new_sentences(s for s in d.steps if s.rule == "local partial" and s.partial.wrt == d.wrt)
            parts = [self.lines(next(s.rhs for s in d.steps if s.lhs == lhs and s.rule != "substitute")),
                     self.lines(d.in_deltas)]
            if self.numbers is not None:
                value = self.numbers["gradient"][d.wrt]
                parts += [self.lines(self._stage(d.in_deltas, functions=True), values=self._values),
                          [self._value_text(value, boxed=self.batch is None)]]
            rows.append(_row(self.math(lhs), parts))
        return {"blocks": blocks, "weights": rows, "because": because,
                "batch": [b for d in derivations for b in [self._batch(d.wrt, d.target)] if b]}

    def _blocks(self, d, groups) -> tuple[list[dict], list[dict]]:
        """The derivation's steps as blocks of display rows: a title, a sentence, the rows and
        the rules not stated before. A local partial's row carries its numbers to its value; a
        delta's numbers follow its local partials once every quantity it uses is known, or
        else come in the returned list, to be shown after the walk."""
        blocks, deferred, shown = [], [], set()
        numbers = self.numbers is not None
        method = "top-down" if d is None else d.method
        wrt, target = (None, self.net.loss) if d is None else (self.name(d.wrt), self.name(d.target))
        goal = d.wrt if d is not None and d.wrt in self.net.nodes else None  # a node's delta is asked for
        wrt_node = None if goal is None else wrt
        for main, local in groups:
            node = None if main.node is None else self.name(main.node)
            if main.rule == SOFTMAX_CE:  # dE/dz_j collapses to p_j - t_j
                blocks.append(self._collapse_block(main, local))
                continue
            direct = main.rule == "loss directly" and len(local) == 1 and main.rhs == local[0].lhs
            if direct:  # dE/dz_k = ∂E/∂z_k = formula = numbers = value, one row
                rows = [_row(self.math(main.lhs), [[self.math(main.rhs)], self.step_lines(local[0]),
                                                   *self._local_parts(local[0])])]
                shown.update({main.lhs, main.rhs})
                previous = blocks[-1] if blocks else None
                if previous is not None and previous["direct"]:
                    previous["nodes"].append(node)
                    previous["rows"] += rows
                    previous["title"], previous["sentence"] = _direct_words(previous["nodes"], target, method)
                    continue
                title, sentence = _direct_words([node], target, method)
                block = {"direct": True, "nodes": [node], "title": title, "sentence": sentence, "rows": rows}
            else:
                partials = [x for t in sp.Add.make_args(main.rhs) for x in sp.Mul.make_args(t) if isinstance(x, Partial)]
                over = [self.name(p.of) for p in partials]
                rows = [_row(self.math(main.lhs), [self.step_lines(main)])]
                for step in local:
                    rows.append(_row(self.math(step.lhs), [self.step_lines(step), *self._local_parts(step)]))
                    shown.add(step.lhs)
                if numbers:
                    row = self._delta_numbers(main, goal)
                    needed = {x for x in main.rhs.atoms(Partial, Total)}
                    if needed <= shown:
                        rows.append(row)
                        shown.add(main.lhs)
                    else:
                        deferred.append(row)
                block = {"direct": False, "nodes": [node], "rows": rows,
                         "title": step_title(main.rule, method, node, wrt_node=wrt_node),
                         "sentence": step_sentence(main.rule, method, node, over, wrt, target,
                                                   0 if d is None else d.path_count, wrt_is_node=goal is not None)}
            block["because"] = self._new_sentences(local)
            blocks.append(block)
        for block in blocks:
            block.pop("nodes"), block.pop("direct")
        deferred.reverse()  # walked up, computed coming down
        return blocks, deferred

    def _collapse_block(self, main, rest) -> dict:
        """The delta of a logit z_j collapsing, softmax then cross-entropy: Σ_k (-t_k/p_k)
        p_k(δ_kj - p_j) = -t_j + p_j Σ_k t_k = p_j - t_j, each step tagged with its reason;
        with numbers, p_j - t_j at the values. Where the given targets do not sum to 1, the
        last step is left out and the numbers go through -t_j + p_j Σ_k t_k (the sentence says why)."""
        chain = self._chains[main.node]
        steps = [main, *rest]
        total = self._target_sums(chain)
        if total is not None:
            steps = steps[:-1]
        tags = collapse_tags(len(steps), [self.name(t) for t in chain.targets])
        width = ROW_WIDTH - 16
        lines = []
        for step, tag in zip(steps, tags):
            part = (self._substituted_lines(step.rhs, width) if step.rule == SOFTMAX_CE
                    else break_lines(self.printer, step.rhs, width=width))
            part[-1] += rf" \qquad \text{{{tag}}}"
            lines += ["= " + part[0]] + [r"\quad " + x for x in part[1:]]
        if self.numbers is not None:
            value = self._value_text(self.numbers["deltas"][main.node])
            lines.append("= " + " ".join(self.lines(steps[-1].rhs, values=self._values)) + f" = {value}")
        lines[0] = lines[0][2:]
        row = {"lhs": self.math(main.lhs), "lines": lines, "breakable": len(lines) > 3}
        title, sentence = collapse_words(self.name(main.node), [self.name(p) for p in chain.probs],
                                         self.name(self.net.loss), None if total is None else latex_number(total))
        return {"title": title, "sentence": sentence, "rows": [row], "because": self._new_sentences(steps),
                "direct": False, "nodes": [self.name(main.node)]}

    def _substituted_lines(self, expr, width) -> list[str]:
        """Σ_k (-t_k/p_k) p_k(δ_kj - p_j) term by term as a hand writes it, the fraction
        then the softmax's partial (in parentheses when negative), broken between terms."""
        lines, current = [], ""
        for i, term in enumerate(expr.args):
            _, fraction, partial = term.args  # -1, t_k/p_k, p_k(δ_kj - p_j)
            tex = self.math(partial)
            tex = rf"\left({tex}\right)" if partial.could_extract_minus_sign() else tex
            piece = ("- " if i else "-") + rf"\frac{{{self.math(fraction.args[0])}}}{{{self.math(fraction.args[1].base)}}} {tex}"
            if current and visible_width(current) + visible_width(piece) > width:
                lines.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
        return lines + [current]

    @functools.cached_property
    def _chains(self) -> dict:
        return softmax_chains(self.net)

    def _target_sums(self, chain) -> float | None:
        """None when the given targets of ``chain`` sum to 1 in every sample (or no numbers
        are given), else the first sum that is not 1."""
        if self.numbers is None:
            return None
        columns = [self.batch_values.get(t) for t in chain.targets]
        if any(c is None for c in columns):
            return None
        samples = zip(*[c if isinstance(c, (tuple, list)) else [c] * (self.batch or 1) for c in columns])
        for sample in samples:
            total = math.fsum(float(x) for x in sample)
            if abs(total - 1) > 1e-9:
                return total
        return None

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

    def _new_sentences(self, steps) -> list[str]:
        """The rule sentences of these local partial steps not yet stated in the document."""
        new = []
        for step in steps:
            for rule in step.because:
                sentence = rule_sentence(rule, self.printer)
                if sentence not in self._stated:
                    self._stated.add(sentence)
                    new.append(sentence)
        return new

    # -- numbers

    def _local_parts(self, step) -> list[list[str]]:
        """A local partial at the values, in the stages a hand computation takes: the numbers
        substituted, each function's argument worked out, the activation's derivative through
        its rule (``1 - z^2`` at the node's output), each function's value, the result."""
        if self.numbers is None:
            return []
        expr = _replace_in_order(step.rhs, self._node_of_call)
        value = self._evaluate(step.partial.expr)
        stages = [expr, self._stage(expr, arguments=True), self._stage(expr, arguments=True, rules=True),
                  self._stage(expr, functions=True)]
        parts, last = [], None
        formula = self.step_lines(step)
        for stage in stages:
            lines = self.lines(stage, values=self._values, product=step.partial.is_product)
            if lines != last and lines != formula:
                parts.append(lines)
            last = lines
        self._values[step.lhs] = value  # for the deltas that use it
        number = self._value_text(value)
        if parts and parts[-1] in ([number], [rf"\left({number}\right)"]):
            parts.pop()
        return parts + [[number]]

    def _delta_numbers(self, step, goal=None) -> dict:
        """A delta (or the gradient) at the values: the known deltas and local partials
        substituted, then its value (boxed for the gradient asked for, or the delta of
        ``goal``, the node asked for)."""
        if step.lhs.of == self.net.loss and step.lhs.wrt in self.numbers["gradient"]:
            value = self.numbers["gradient"][step.lhs.wrt]
            text = self._value_text(value, boxed=self.batch is None)
        elif goal is not None and step.lhs == Total(self.net.loss, goal):
            text = self._value_text(self.numbers["deltas"][goal], boxed=self.batch is None)
        else:
            text = self._value_text(self.numbers["deltas"][step.lhs.wrt])
        substituted = self.step_lines(step, {s: v for s, v in self._values.items() if s != step.lhs})
        return _row(self.math(step.lhs), [substituted, [text]])

    @functools.cached_property
    def _values(self) -> dict:
        """Every quantity a document prints a number for: leaves and node values, softmax
        outputs, local partials, deltas (as Total symbols)."""
        num = self.numbers
        values = {**num["point"], **self._softmax_values()}
        values.update({Total(self.net.loss, k): v for k, v in num["deltas"].items()})
        values.update({Total(self.net.loss, s): v for s, v in num["gradient"].items()})
        return values

    def _value_text(self, value, boxed=False) -> str:
        text = latex_number(value)
        return rf"\boxed{{{text}}}" if boxed else text

    def _stage(self, expr, arguments=False, rules=False, functions=False):
        """``expr`` with function calls partly worked out, as dummies that print as numbers:
        compound arguments by their values, an activation's derivative at a node by its rule in
        the node's output, or every call by its value (a softmax prints its value already)."""
        replace = {}
        for f in sorted(expr.atoms(sp.Function), key=sp.default_sort_key):
            if isinstance(f, (fn.softmax, Partial, Total)):
                continue
            if functions:
                replace[f] = self._number(f)
                continue
            form = self._output_rule(f) if rules else None
            if form is not None:
                replace[f] = form
            elif arguments and any(not a.is_Atom for a in f.args):
                replace[f] = f.func(*[a if a.is_Atom else self._number(a) for a in f.args])
        return _replace_in_order(expr, replace) if replace else expr

    def _number(self, expr) -> sp.Dummy:
        """A symbol that prints as ``expr``'s value."""
        symbol = sp.Dummy("v")
        self._values[symbol] = self._evaluate(expr)
        return symbol

    def _output_rule(self, call):
        """``1 - z_1^2`` for ``g'(u)`` when g is bound to tanh and node ``z_1 = g(u)``: a bound
        activation's derivative written in its output, where that output is a node."""
        if not (isinstance(call, fn.GenericFunction) and call.order == 1 and call.base_name in self.bind):
            return None
        node = self._node_of_call.get(fn.generic(call.base_name)(*call.args))
        form = self._output_forms.get(call.base_name)
        return None if node is None or form is None else form[1].xreplace({form[0]: node})

    @functools.cached_property
    def _output_forms(self) -> dict:
        """For each bound generic, ``(z, f'(u) written in z = f(u))`` when f' has such a form."""
        forms = {}
        for name, bound in self.bind.items():
            u, z = sp.Dummy("u"), sp.Dummy("z")
            f = fn.activation(bound)
            derivative = fn.explicit(sp.diff(f(u), u))
            written = derivative.xreplace({fn.explicit(f(u)): z})
            if u not in written.free_symbols:
                forms[name] = (z, written)
        return forms

    @functools.cached_property
    def _node_of_call(self) -> dict:
        """Each node whose expression is one function call, by that call: ``σ(z_1)`` is
        ``a_1``, ``g(w z + b)`` is ``z_1``; numbers then print the node's value."""
        return {e: k for k, e in self.net.nodes.items() if isinstance(e, sp.Function) and not isinstance(e, fn.softmax)}

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

    def _batch(self, wrt, target) -> dict | None:
        """A batch's gradient: each sample's, then the batch formula (a sum, or the mean) with
        every sample's value, boxed: what ``symprop grad`` prints."""
        if self.batch is None or self.numbers is None:
            return None
        per_sample = []
        for m in range(self.batch):
            sample = {s: v[m] if isinstance(v, (tuple, list)) else v for s, v in self.batch_values.items()}
            result = gradient(self.net, sample, bind=self.bind or None)
            per_sample.append((float(result.loss), _gradient_of(result, wrt)))
        whole = gradient(self.net, dict(self.batch_values), bind=self.bind or None)
        M, mean = self.batch, self.net.reduction == "mean"
        goal, E = self.math(Total(target, wrt)), self.name(target)
        sample = lambda tex: tex.replace(f"d {E}", f"d {E}^{{(m)}}", 1)  # noqa: E731  dE/dw -> dE^(m)/dw
        reduce = (rf"\frac{{1}}{{{M}}} \sum_{{m=1}}^{{{M}}} " if mean else rf"\sum_{{m=1}}^{{{M}}} ")

        def listed(numbers):
            terms = [latex_number(x) for x in numbers]
            tex = terms[0] + "".join(f" - {t[1:]}" if t.startswith("-") else f" + {t}" for t in terms[1:])
            return rf"\frac{{1}}{{{M}}}\left({tex}\right)" if mean else tex

        return {
            "size": M,
            "mean": mean,
            "loss": _row(E, [[reduce + f"{E}^{{(m)}}"], [listed(x[0] for x in per_sample)],
                             [latex_number(float(whole.loss))]]),
            "gradient": _row(goal, [[reduce + sample(goal)], [listed(x[1] for x in per_sample)],
                                    [rf"\boxed{{{latex_number(_gradient_of(whole, wrt))}}}"]]),
        }

    # -- after the gradient: one update step, the finite-difference check (seed 004)

    def _asked_params(self, asked, what) -> list:
        """The parameters among ``asked`` (every parameter is asked for without --wrt); a
        note when there are none, or no numbers."""
        if self.numbers is None:
            self.notes.append(f"{what} left out: it needs numbers for every input, target and parameter")
            return []
        params = [w for w in asked if w in self.net.params]
        if not params:
            self.notes.append(f"{what} left out: it is about parameters, and none is asked for")
        return params

    def update(self, asked, lr) -> dict | None:
        """One step of gradient descent, w ← w − η dE/dw, with numbers for each parameter
        asked: the rule and formula of ``symprop step`` (seed 004), the new values from it."""
        params = self._asked_params(asked, "the update step")
        if not params:
            return None
        M, mean = self.batch or 1, self.net.reduction == "mean"
        taken = descent_step(self.net, dict(self.batch_values), lr=lr, bind=self.bind or None)
        E, eta = self.name(self.net.loss), r"\eta"
        rows = []
        for w in params:
            g = taken.gradient[w]  # the whole batch's, as the step takes it
            old = latex_number(self.batch_values[w])
            rows.append({"lhs": self.name(w),
                         "rhs": rf"{old} - {latex_number(lr)} \cdot {_signed(latex_number(g))} = "
                                rf"\boxed{{{latex_number(taken.params[w])}}}"})
        gradient_symbol = lambda tex: rf"\frac{{d {tex}}}{{d w}}"  # noqa: E731
        formula = rf"w \leftarrow w - {eta} {gradient_symbol(E)}"
        if M > 1:  # seed 004: the batch's loss is the sum (mean) of the per-sample losses, so is its gradient
            scale = rf"\frac{{{eta}}}{{M}}" if mean else eta
            formula = (rf"w \leftarrow w - {scale} \sum_{{m=1}}^{{M}} {gradient_symbol(E + '^{(m)}')} "
                       rf"= w - {eta} {gradient_symbol(E)}")
        name, _ = update_rule(self.net.reduction, M)
        return {"rule": name, "formula": formula, "lr": latex_number(lr), "samples": M, "mean": mean, "rows": rows,
                "loss_before": latex_number(taken.loss_before), "loss_after": latex_number(taken.loss_after),
                "every": len(params) < len(self.net.params)}

    def finite_differences(self, asked, epsilon) -> dict | None:
        """Seed 004's brute-force gradient against backprop's, for each parameter asked:
        the forward difference (E(w + h) − E(w))/h and the central one (E(w + h) − E(w − h))/2h,
        h = ε·max(1, |w|), their values, relative errors and verdicts from ``symprop check``,
        and what they cost: P + 1 or 2P forward passes for the P parameters against backprop's
        one forward and one backward pass."""
        params = self._asked_params(asked, "the finite-difference check")
        if not params:
            return None
        values, bind = dict(self.batch_values), self.bind or None
        checks = {how: gradient_check(self.net, values, bind=bind, only=[w.name for w in params], difference=how,
                                      epsilon=epsilon) for how in ("forward", "central")}
        rows = {how: {r.name: r for r in c.rows} for how, c in checks.items()}
        E = self.name(self.net.loss)
        table = [{"name": self.name(w), "backprop": latex_number(rows["forward"][w].engine),
                  **{how: latex_number(rows[how][w].other) for how in rows},
                  **{how + "_error": latex_number(rows[how][w].rel_error, 2) for how in rows},
                  **{how + "_verdict": rows[how][w].verdict for how in rows}} for w in params]
        first = params[0]
        base = float(values[first])
        h = epsilon * max(1.0, abs(base))
        loss = {shift: gradient(self.net, {**values, first: base + shift}, bind=bind).loss for shift in (h, 0.0, -h)}
        digits = _digits_to_show(loss[h], loss[-h])
        number = lambda x: latex_number(x, digits)  # noqa: E731
        w = self.name(first)
        goal = self.math(Total(self.net.loss, first))
        forward = _row(rf"{goal} \approx \frac{{{E}({w} + h) - {E}({w})}}{{h}}",
                       [[rf"\frac{{{number(loss[h])} - {number(loss[0.0])}}}{{{latex_number(h)}}}"],
                        [latex_number(rows["forward"][first].other)]])
        central = _row(rf"{goal} \approx \frac{{{E}({w} + h) - {E}({w} - h)}}{{2h}}",
                       [[rf"\frac{{{number(loss[h])} - {number(loss[-h])}}}{{{latex_number(2 * h)}}}"],
                        [latex_number(rows["central"][first].other)]])
        P = len(self.net.params)
        return {
            "epsilon": latex_number(epsilon), "h": latex_number(h), "weight": w, "weight_value": latex_number(base),
            "goal": goal,
            "backprop": latex_number(rows["forward"][first].engine),
            "rows": [forward, central],
            "table": table if len(params) > 1 else None,
            "verdicts": {how: rows[how][first].verdict for how in rows},
            "errors": {how: latex_number(rows[how][first].rel_error, 2) for how in rows},
            "params": P, "forward_passes": P + 1, "central_passes": 2 * P,
            "checked": {how: checks[how].forward_passes for how in checks}, "count": len(params),
            "passed": all(c.passed for c in checks.values()),
        }

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
        if self.figure_numbers:  # the figure shows every node's value and delta already
            nodes = outputs = []
        columns = 1 if len(leaves) <= 6 else 2 if len(leaves) <= 10 or nodes else 3  # side by side, short
        height = -(-len(leaves) // columns)
        parts = [leaves[i:i + height] for i in range(0, len(leaves), height)]
        # one tabular, the parts side by side: row i holds the i-th entry of every part
        rows = [[part[i] if i < len(part) else None for part in parts] for i in range(height)]
        return {"loss": latex_number(num["loss"]), "nodes": nodes, "outputs": outputs, "leaves": rows,
                "columns": len(parts),
                "sample": self.batch is not None}  # the numbers are the first sample's

    def figure(self, highlight=()):
        """The network's figure (:func:`~symprop.documents.figures.network_figure`), or None with a note."""
        figure, note = network_figure(self.net, self.name, self.numbers, highlight)
        if note is not None:
            self.notes.append(note)
        self.figure_numbers = figure is not None and self.numbers is not None
        return figure


def _bound_name(activation) -> str | None:
    """The name of the activation a generic function is bound to (a name or a record)."""
    return getattr(activation, "name", activation)


def _gradient_of(result, wrt) -> float:
    """dE/d``wrt`` from a numeric :class:`~symprop.numeric.Gradient`: a parameter's or an
    input's gradient, or a node's delta reduced over the batch (:func:`~symprop.report.gradient_for`)."""
    if wrt in result.gradient:
        return float(result.gradient[wrt])
    from ..report import gradient_for

    return float(gradient_for(result, [wrt]).gradient[wrt])


def _signed(number: str) -> str:
    r"""A printed number in parentheses when negative, for a product: ``0.1 \cdot (-0.2)``."""
    return rf"\left({number}\right)" if number.startswith("-") else number


def _digits_to_show(a: float, b: float) -> int:
    """Significant digits that show the difference of two nearly equal losses to four
    digits: E(w + h) and E(w) differ in their seventh digit at ε = 1e-5."""
    scale = max(abs(a), abs(b))
    if a == b or scale == 0:
        return 4
    return max(4, min(15, 4 + math.ceil(math.log10(scale / abs(a - b)))))


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


def _groups(steps) -> list[tuple]:
    """The steps as (main step, its local partial steps): a delta or the gradient with the
    local partials its formula uses; the collapse of softmax then cross-entropy as (its first
    step, the others). The final substitutions are the path forms, shown apart."""
    groups = []
    for step in steps:
        if step.rule == "substitute":
            continue
        if groups and (step.rule == "local partial" or step.rule in COLLAPSE_RULES[1:]):
            groups[-1][1].append(step)
        else:
            groups.append((step, []))
    return groups


def _row(lhs: str, parts: list[list[str]]) -> dict:
    return equation_row(lhs, parts, ROW_WIDTH)


def _pairs(definitions) -> list[list[dict]] | None:
    """Short one-line definitions two to a line, in forward order (a long one alone)."""
    short = [len(r["lines"]) == 1 and visible_width(r["lhs"]) + visible_width(r["lines"][0]) <= ROW_WIDTH // 2
             for r in definitions]
    pairs, i = [], 0
    while i < len(definitions):
        if short[i] and i + 1 < len(definitions) and short[i + 1]:
            pairs.append(definitions[i:i + 2])
            i += 2
        else:
            pairs.append(definitions[i:i + 1])
            i += 1
    return pairs if len(pairs) < len(definitions) else None


def _direct_words(nodes: list[str], loss: str, method: str) -> tuple[str, str]:
    """Title and sentence of the deltas of the nodes the loss uses directly."""
    if len(nodes) == 1:
        return step_title("loss directly", method, nodes[0]), step_sentence("loss directly", method, nodes[0], [], "", loss, 0)
    return (f"The deltas of {names(nodes)}.",
            f"The loss ${loss}$ depends on each of them directly, so each delta is a local partial derivative of ${loss}$.")


def _replace_in_order(expr, mapping: dict):
    """``expr.xreplace(mapping)`` keeping the order of sums and products as printed
    (``g'(u) w`` stays in chain order; SymPy would rebuild it as ``w g'(u)``)."""
    if expr in mapping:
        return mapping[expr]
    if not expr.args or isinstance(expr, (Partial, Total)):
        return expr
    args = [_replace_in_order(a, mapping) for a in expr.args]
    if args == list(expr.args):
        return expr
    return expr.func(*args, evaluate=False) if expr.is_Add or expr.is_Mul else expr.func(*args)
