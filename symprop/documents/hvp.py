r"""The worked solution of a Hessian-vector product by the R-operator (``symprop hvp
--format latex``, ``symprop solve --hvp``): what ``templates/hvp_solution.tex.j2`` receives.

The document is laid out as a hand computation that fits a few pages:

- every local partial a pass uses (first order, then second order) is derived once, node by
  node, in one block per node, each row ``lhs = formula = numbers = value``; the rules behind
  them are stated once, at first use, and each row is tagged with their numbers;
- ``∂²z/∂a∂b`` and ``∂²z/∂b∂a`` are one quantity (the order of differentiation does not
  matter): it is derived once, under both names;
- the rules of the R-operator are stated once in general; in the passes, a term with a factor
  ``v_w = 0`` (or an R-value that is 0 because of such factors) is left out, and quantities
  only such terms read are not computed at all;
- the passes (R-forward, deltas, R-backward, Hv) are one block each, every row after the rows
  it reads.

The numbers are those of :func:`symprop.hvp.hvp` (the first sample of a batch), and the
document ends with the check a student can make without the R-operator: central differences
of the gradient along v.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> from symprop.hvp import hvp
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> tex = render_hvp_solution(hvp(net, {"x": 1.0, "t": 1.0, "w": 0.0}, {"w": 1.0}))
>>> r"\mathcal{R}\left\{h\right\}" in tex and tex.rstrip().endswith(r"\end{document}")
True
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp

from .. import functions as fn
from ..hvp import RULES, HvEntry, SecondPartial, reads_first
from ..numeric import gradient
from ..printing import LatexPrinter, latex_escape, latex_number
from .environment import environment
from .lines import break_lines, break_sum, equation_row, visible_width
from .prose import defined_functions, rule_sentence

__all__ = ["render_hvp_solution", "hvp_context", "shown_steps", "DIFFERENCE_STEP"]

DIFFERENCE_STEP = 1e-5  # ε of the closing check (∇E(w + εv) − ∇E(w − εv)) / 2ε

# A displayed row's parts (formula, numbers, value) share a line up to ROW_WIDTH visible
# characters (lines.visible_width), and a sum breaks between its terms past LINE_WIDTH; the
# rest of the text width holds the row's rule tag.
ROW_WIDTH = 68
LINE_WIDTH = 60

# Each rule of the R-operator as the document states it once, in LaTeX.
_RULES_TEX = {
    "R forward": r"\mathcal{R}\{z_k\} = \sum_j \frac{\partial z_k}{\partial z_j}\,\mathcal{R}\{z_j\}"
                 r" + \sum_w \frac{\partial z_k}{\partial w}\, v_w",
    "R backward": r"\mathcal{R}\{\delta_k\} = \sum_l \Big[\mathcal{R}\{\delta_l\}\,\frac{\partial z_l}{\partial z_k}"
                  r" + \delta_l\,\mathcal{R}\Big\{\frac{\partial z_l}{\partial z_k}\Big\}\Big]",
    "R of a local partial": r"\mathcal{R}\Big\{\frac{\partial z_l}{\partial z_k}\Big\} = \sum_s "
                            r"\frac{\partial^2 z_l}{\partial z_k\,\partial s}\,\mathcal{R}\{s\}",
    "Hessian-vector product": r"(\mathbf{H}\mathbf{v})_w = \sum_k \Big[\mathcal{R}\{\delta_k\}\,"
                              r"\frac{\partial z_k}{\partial w} + \delta_k\,\mathcal{R}\Big\{\frac{\partial z_k}{\partial w}\Big\}\Big]",
}
assert _RULES_TEX.keys() == RULES.keys()

# The steps whose right-hand side is a sum of products the R-operator builds (and whose
# terms with a zero factor are left out).
_R_RULES = ("R forward", "R of a local partial", "R backward", "Hessian-vector product")
_LOCAL_RULES = ("local partial", "second local partial")


def shown_steps(derivation, direction) -> dict:
    """The steps the worked solution shows, as ``{symbol: right-hand side}`` in the
    derivation's order: each R-operator sum without its terms that have a zero factor (a
    ``v_w`` that ``direction`` sets to 0, or an R-value that is 0 because of such factors),
    and only the steps the ``(Hv)_w`` entries read through what is left.

    >>> import sympy as sp
    >>> from symprop import Network
    >>> from symprop.hvp import derive_hvp
    >>> x, w, b, E = sp.symbols("x w b E")
    >>> d = derive_hvp(Network({E: (w*x + b)**2/2}, loss=E, params=[w, b], inputs=[x]))
    >>> shown = shown_steps(d, {w: 1.0, b: 0.0})
    >>> [s.name for s in shown if s.name.startswith("p2")]   # ∂²E/∂w∂b and ∂²E/∂b² are not needed
    ['p2E_pw_pw', 'p2E_pb_pw']
    """
    zero = {derivation.directions[w] for w, x in dict(direction).items() if x == 0}
    rhs = {s.lhs: s.rhs for s in derivation.steps}
    changed = True
    while changed:  # a sum left empty is a zero factor of the sums that read it
        changed = False
        for step in derivation.steps:
            if step.rule in _R_RULES and step.lhs not in zero:
                rhs[step.lhs] = _without(step.rhs, zero)
                if rhs[step.lhs] == 0:
                    zero.add(step.lhs)
                    changed = True
    needed, todo = set(), list(derivation.entries.values())
    while todo:
        s = todo.pop()
        if s not in needed and s in rhs:
            needed.add(s)
            todo += [a for a in rhs[s].free_symbols if a in rhs and a not in needed]
    return {s.lhs: rhs[s.lhs] for s in derivation.steps if s.lhs in needed}


def _without(expr, zero):
    """The chain sum ``expr`` without its terms that have a factor in ``zero`` (0 when no
    term is left); ``expr`` itself when every term stays, so that it prints as before."""
    terms = sp.Add.make_args(expr) if expr.is_Add else (expr,)
    kept = [t for t in terms if not any(f in zero for f in sp.Mul.make_args(t))]
    if len(kept) == len(terms):
        return expr
    if not kept:
        return sp.S.Zero
    return kept[0] if len(kept) == 1 else sp.Add(*kept, evaluate=False)


def hvp_context(result, title=None) -> dict:
    """The template's context: the network, the given numbers, the four rules, the local
    partials node by node, each pass as rows ``lhs = formula = numbers = value``, the result
    and the closing check."""
    return _Document(result).context(title)


class _Document:
    """One worked solution: its printers, the numbers of the first sample, the steps shown
    and the rule sentences stated so far (each labelled once, at its first use)."""

    def __init__(self, result):
        self.result = result
        self.net, self.derivation = result.network, result.derivation
        names = dict(self.net.display)
        self.printer = LatexPrinter({"names": names})
        self.first = {s: float(v[0]) for s, v in result.numbers.items()}
        self.numbers = LatexPrinter({"names": names, "values": self.first})
        self.shown = shown_steps(self.derivation, result.direction)
        self.steps = {s.lhs: s for s in self.derivation.steps}
        self.labels: dict[str, str] = {}  # rule sentence -> its letter

    def context(self, title) -> dict:
        net, d, result, printer = self.net, self.derivation, self.result, self.printer
        math_of = printer.doprint
        given = [f"{math_of(s)} = {latex_number(self.first[s])}" for s in net.leaves if s in self.first]
        # a definition as SymPy writes it (1/2 over the square, not a factor (1/2) of its own)
        nodes = [{"name": math_of(k), "lines": break_sum(printer, net.nodes[k]),
                  "value": latex_number(self.first[k])} for k in net.order]
        rows = [{"name": math_of(p), "gradient": latex_number(result.gradient[p]),
                 "v": latex_number(result.direction[p]), "hv": latex_number(result.hvp[p]),
                 "check": latex_number(c)} for p, c in zip(net.params, _differences(result))]
        passes = {key: self._pass(steps) for key, steps in d.sections.items()}
        return {
            "title": title,
            "loss": math_of(net.loss),
            "nodes": nodes,
            "given": given,
            "direction": [f"v_{{{math_of(p)}}} = {latex_number(result.direction[p])}" for p in net.params],
            "zero": [f"v_{{{math_of(p)}}}" for p in net.params if result.direction[p] == 0],
            "rules": _RULES_TEX,
            "defined": defined_functions(list(net.nodes.values()), printer),
            "generics": self._generics(),
            "partials": self._partials(),
            "passes": [{"key": key, "rows": rows_} for key, rows_ in passes.items() if rows_],
            "rows": rows,
            "batched": result.batched,
            "samples": len(next(iter(result.numbers.values()))),
            "reduction": net.reduction,
            "step": latex_number(DIFFERENCE_STEP),
            "live": [math_of(k) for k in d.live],
        }

    def _generics(self) -> list[dict]:
        """Each generic activation with the one its numbers take and that one's first and
        second derivatives (``g'(u) = 1 - \\tanh^{2}(u)``, ...): how a number of ``g''`` comes."""
        found = {type(f).base_name for e in self.net.nodes.values() for f in e.atoms(fn.GenericFunction)}
        out, u = [], sp.Symbol("u")
        for name in sorted(found):
            bound = self.result.bind.get(name)
            rules = None
            if bound is not None:
                act = fn.activation(bound)(u)
                rules = [f"{self.printer.doprint(fn.generic(name, n)(u))} = {self.printer.doprint(sp.diff(act, u, n))}"
                         for n in (1, 2)]
            out.append({"name": self.printer.doprint(fn.generic(name, 0)(u)).removesuffix(r"\left(u\right)"),
                        "bound": None if bound is None else getattr(bound, "name", str(bound)), "rules": rules})
        return out

    # -- the local partials, node by node

    def _partials(self) -> list[dict]:
        """One block per node: its first partials, then its second partials (a symmetric pair
        once, under both names), with the rules stated for the first time in the block."""
        blocks = []
        for k in self.net.order:
            producers = {s: i for i, s in enumerate(self.net.producers[k])}
            local = [s for s in self.shown if self.steps[s].node == k and self.steps[s].rule in _LOCAL_RULES]
            firsts = sorted((s for s in local if self.steps[s].rule == "local partial"),
                            key=lambda s: producers.get(s.wrt, len(producers)))
            seconds = sorted((s for s in local if self.steps[s].rule == "second local partial"),
                             key=lambda s: (producers.get(s.wrt, len(producers)), producers.get(s.by, len(producers))))
            if not firsts and not seconds:
                continue
            before = len(self.labels)
            named = [[s] for s in firsts]
            done = set()
            for s in seconds:
                if s in done:
                    continue
                twin = SecondPartial(s.of, s.by, s.wrt)
                named.append([s])
                if twin != s and twin in self.shown and math.isclose(
                        self.first[s], self.first[twin], rel_tol=1e-9, abs_tol=1e-12):
                    named[-1].append(twin)
                    done.add(twin)
            rows = self._rows(named, [self._tag(self.steps[names[0]].because) for names in named])
            new = list(self.labels.items())[before:]
            blocks.append({"node": self.printer.doprint(k), "rows": rows,
                           "rules": [{"label": label, "sentence": sentence} for sentence, label in new]})
        return blocks

    def _tag(self, because) -> str:
        """The letters of the rules ``because`` names, each rule lettered at its first use."""
        letters = []
        for rule in because:
            sentence = rule_sentence(rule, self.printer)
            if sentence not in self.labels:
                self.labels[sentence] = _letter(len(self.labels))
            if self.labels[sentence] not in letters:
                letters.append(self.labels[sentence])
        return ", ".join(sorted(letters, key=lambda x: (len(x), x)))

    # -- the passes

    def _pass(self, steps) -> list[dict]:
        """The section's steps that are shown (local partials are in their node's block),
        each after the rows of the section it reads."""
        symbols = [s.lhs for s in steps if s.lhs in self.shown and s.rule not in _LOCAL_RULES]
        return self._rows([[s] for s in reads_first(symbols, self.shown)])

    def _rows(self, named, tags=None) -> list[dict]:
        """The rows of one aligned block: for each list of names (a symmetric second partial
        has two), ``lhs = formula = numbers = value`` of the step defining the first, the
        formula as shown (terms with a zero factor left out)."""
        lhs = [" = ".join(self.printer.doprint(s) for s in names) for names in named]
        widest = max((visible_width(x) for x in lhs), default=0)  # the block's column of left-hand sides
        return [self._row(names[0], left, widest, tag) for names, left, tag in zip(named, lhs, tags or [""] * len(lhs))]

    def _row(self, symbol, lhs, widest, tag) -> dict:
        step, rhs = self.steps[symbol], self.shown[symbol]
        product = step.partial is not None and step.partial.is_product and rhs is step.rhs
        parts = [break_lines(self.printer, rhs, product=product, width=LINE_WIDTH)]
        if not (rhs.is_Number or rhs.is_Symbol):
            parts.append(break_lines(self.numbers, rhs, product=product, width=LINE_WIDTH))
        if isinstance(symbol, HvEntry):  # the result: its value boxed (alone when the sum is empty)
            parts = parts[1:] if rhs.is_Number else parts
            parts.append([rf"\boxed{{{latex_number(self.first[symbol])}}}"])
        elif not rhs.is_Number:
            parts.append([latex_number(self.first[symbol])])
        return equation_row(lhs, parts, ROW_WIDTH, tag=tag, widest=widest)


def _letter(i: int) -> str:
    """a, b, ..., z, aa, ab, ...: the label of the i-th rule stated."""
    return _letter(i // 26 - 1) + chr(ord("a") + i % 26) if i >= 26 else chr(ord("a") + i)


def _differences(result) -> list[float]:
    """``(∇E(w + εv) − ∇E(w − εv)) / 2ε`` per parameter: Hv without the R-operator."""
    net = result.network
    leaves = {s: np.asarray(result.numbers[s]) for s in net.leaves}
    batched = result.batched

    def at(sign):
        point = {}
        for s, v in leaves.items():
            if s in result.direction:
                point[s] = float(v[0]) + sign * DIFFERENCE_STEP * result.direction[s]
            else:
                point[s] = [float(x) for x in v] if batched else float(v[0])
        return gradient(net, point, bind=result.bind or None).gradient

    plus, minus = at(+1), at(-1)
    return [(plus[p] - minus[p]) / (2 * DIFFERENCE_STEP) for p in net.params]


def render_hvp_solution(result, title=None, standalone=True) -> str:
    """The worked solution of ``result`` (a :class:`~symprop.hvp.HvpResult`) as LaTeX:
    a standalone article, or (``standalone=False``) a fragment to ``\\input``."""
    context = hvp_context(result, title)
    return environment().get_template("hvp_solution.tex.j2").render(
        **context, standalone=standalone, title_tex=None if title is None else latex_escape(title))
