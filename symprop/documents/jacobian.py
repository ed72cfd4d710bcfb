r"""The worked solution of a Jacobian (a vector-valued spec): the data its template receives.

Seed 000's route: the layer vectors, the chain rule as a product of Jacobians
(dg/dx = ∂g/∂f · ∂f/∂x, each factor a matrix of local partials, first as symbols, then
written out), the product entry by entry (each entry a sum over paths of products of local
partials, then substituted), and with values the numbers of every factor and of the
product. Every equation is printed here by :class:`~symprop.printing.LatexPrinter`; the
template ``jacobian.tex.j2`` holds the prose and the layout.

>>> import sympy as sp
>>> from symprop.jacobian import VectorNetwork, jacobian
>>> x, f_1, f_2, g_1, g_2 = sp.symbols("x f_1 f_2 g_1 g_2")
>>> net = VectorNetwork({f_1: x**2, f_2: 3*x, g_1: f_1*f_2, g_2: f_1 + f_2},
...                     outputs=[g_1, g_2], inputs=[x])
>>> tex = render_jacobian_solution(jacobian(net), values={x: 1.0})
>>> r"\frac{d \mathbf{g}}{d x} &= \frac{\partial \mathbf{g}}{\partial \mathbf{f}} \frac{\partial \mathbf{f}}{\partial x}" in tex
True
>>> r"\boxed{\begin{bmatrix} 9 \\ 5 \end{bmatrix}}" in tex   # 9x^2 and 2x + 3 at x = 1
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import sympy as sp

from ..derive import Partial, Total
from ..graph import NetworkError
from ..jacobian import Jacobian, jacobian_at
from ..printing import LatexPrinter, latex_name, latex_number
from .environment import environment
from .lines import break_lines, visible_width
from .prose import defined_functions, rule_sentence

__all__ = ["jacobian_context", "render_jacobian_solution"]

# A matrix whose widest row shows more than this many characters of math is written entry by
# entry instead (the text block holds about 80, the left-hand side takes its share).
MAX_MATRIX_WIDTH = 56
# A matrix of numbers wider than this is not printed (grad --format json lists it); the
# Jacobian's own numbers are then listed entry by entry.
MAX_NUMBERS_WIDTH = 72
# An entry's substituted form is shown up to this many lines.
MAX_SUBSTITUTED_LINES = 4


def render_jacobian_solution(J: Jacobian, *, values: Mapping | None = None, bind: Mapping | None = None,
                             title: str | None = None, standalone: bool = True) -> str:
    """A worked solution of the Jacobian ``J`` as LaTeX (a standalone article, or with
    ``standalone=False`` a fragment to ``\\input``); ``values`` (every input and parameter:
    one number each) add the numbers of every factor and of the product."""
    context = jacobian_context(J, values=values, bind=bind, title=title, standalone=standalone)
    return environment().get_template("jacobian.tex.j2").render(context)


def jacobian_context(J: Jacobian, *, values=None, bind=None, title=None, standalone=True) -> dict:
    """The data the template receives: plain strings, lists and dicts."""
    doc = _Document(J)
    numbers = doc.numbers(values, bind)
    return {
        "title": title,
        "standalone": standalone,
        "definitions": doc.definitions(),
        "defined": defined_functions(list(J.network.nodes.values()), doc.printer),
        "outputs": [doc.name(o) for o in J.outputs],
        "wrt": [doc.name(w) for w in J.wrt],
        "shape": J.shape,
        "goal": doc.goal(),
        "layers": None if J.layers is None else [doc.layer(layer) for layer in J.layers],
        "chain": doc.chain(),
        "factors": [] if J.factors is None else [doc.factor(f) for f in J.factors],
        "product": doc.product(),
        "entries": [doc.entry(o, d) for o, row in zip(J.outputs, J.entries) for d in row],
        "numbers": numbers,
        "notes": doc.notes,
    }


class _Document:
    SUBSTITUTED_NOTE = ("an entry whose substituted form (in inputs and parameters only) is too long to read here "
                        "is given in local partials; symprop derive --format json gives every substituted form")

    def __init__(self, J: Jacobian):
        self.J = J
        self.printer = LatexPrinter({"names": dict(J.network.display)})
        self.notes = list(J.notes)
        for row in J.entries:
            for d in row:
                self.notes += [n for n in d.notes if n not in self.notes]

    # -- names

    def name(self, symbol) -> str:
        return self.printer.doprint(symbol)

    def vector(self, layer) -> str:
        """A layer as a vector: a sole entry by its own name, else a bold stem (f), or a made-up
        state s^(1) when the entries share no stem."""
        if len(layer.entries) == 1 and layer.name == layer.entries[0].name:
            return self.name(layer.entries[0])
        stem = layer.name if layer.stem else layer.name[0]
        tex = latex_name(stem)
        bold = rf"\boldsymbol{{{tex}}}" if tex.startswith("\\") else rf"\mathbf{{{tex}}}"
        return bold if layer.stem else rf"{bold}^{{({layer.name[1:]})}}"

    def goal(self) -> str:
        J = self.J
        if J.layers is None:
            return r"\frac{d (" + ", ".join(map(self.name, J.outputs)) + r")}{d (" + ", ".join(map(self.name, J.wrt)) + ")}"
        return rf"\frac{{d {self.vector(J.layers[-1])}}}{{d {self.vector(J.layers[0])}}}"

    def partial_name(self, factor) -> str:
        return rf"\frac{{\partial {self.vector(factor.of)}}}{{\partial {self.vector(factor.wrt)}}}"

    # -- the function and its layers

    def definitions(self) -> list[dict]:
        net = self.J.network
        return [{"lhs": self.name(k), "lines": break_lines(self.printer, net.nodes[k], product=True)}
                for k in net.order]

    def layer(self, layer) -> dict:
        return {"name": self.vector(layer), "entries": [self.name(s) for s in layer.entries],
                "carried": [self.name(s) for s in layer.carried]}

    def chain(self) -> dict | None:
        J = self.J
        if J.factors is None:
            return None
        symbols = " ".join(self._matrix(f.partials) for f in J.factors)
        named = " ".join(self.partial_name(f) for f in J.factors)
        wide = sum(self._width(f.partials) for f in J.factors) > MAX_MATRIX_WIDTH
        return {"lhs": self.goal(), "named": named, "matrices": None if wide else symbols,
                "single": len(J.factors) == 1}

    def factor(self, f) -> dict:
        symbols, local = self._matrix(f.partials), self._matrix(f.local, chain=True)
        return {
            "lhs": self.partial_name(f),
            "of": self.vector(f.of), "wrt": self.vector(f.wrt),
            "symbols": symbols,
            "local": local if self._width(f.partials) + self._width(f.local, True) <= MAX_MATRIX_WIDTH else None,
            "entries": [{"lhs": self.printer.doprint(p), "rhs": self.printer.chain(e, product=True)}
                        for p, e in zip(f.partials, f.local) if isinstance(p, Partial)],
            "because": [rule_sentence(r, self.printer) for r in f.because],
            "carried": [self.name(a) for a in f.of.carried],
        }

    def product(self) -> dict | None:
        """The product as one matrix of sums over paths (seed 000's column of sums), when it
        fits a line."""
        J = self.J
        if J.factors is None or any(d.as_paths is None for row in J.entries for d in row):
            return None
        paths = sp.Matrix([[d.as_paths for d in row] for row in J.entries])
        if self._width(paths, True) > MAX_MATRIX_WIDTH:
            return None
        return {"lhs": self.goal(), "rhs": self._matrix(paths, chain=True)}

    def entry(self, o, d) -> dict:
        parts = []
        if d.as_paths is not None:
            parts.append(break_lines(self.printer, d.as_paths))
            if d.path_count:
                parts.append(break_lines(self.printer, d.in_local_partials))
        else:
            parts.append(break_lines(self.printer, d.in_deltas))
        full = d.substituted
        if full is not None and d.path_count:
            lines = break_lines(self.printer, full)
            # a nest of functions cannot break inside a call: left out past a few readable lines
            if len(lines) <= MAX_SUBSTITUTED_LINES and max(map(visible_width, lines)) <= MAX_MATRIX_WIDTH * 1.2:
                parts.append(lines)
            elif self.SUBSTITUTED_NOTE not in self.notes:
                self.notes.append(self.SUBSTITUTED_NOTE)
        # each form after the first starts with "= ", a line that continues a form is indented
        lines = [("" if not (i or k) else "= " if not k else r"\quad ") + line
                 for i, part in enumerate(parts) for k, line in enumerate(part)]
        return {"lhs": self.printer.doprint(Total(o, d.wrt)), "lines": lines, "paths": d.path_count,
                "output": self.name(o), "wrt": self.name(d.wrt)}

    def _width(self, m: sp.Matrix, chain: bool = False) -> int:
        """The visible width of a matrix's widest row, as :func:`_matrix` prints it."""
        return max(sum(visible_width(self._entry(e, chain)) + 2 for e in row) for row in m.tolist())

    def _entry(self, e, chain: bool) -> str:
        return self.printer.chain(e, product=True) if chain else self.printer.doprint(e)

    def _matrix(self, m: sp.Matrix, chain: bool = False) -> str:
        rows = [" & ".join(self._entry(e, chain) for e in row) for row in m.tolist()]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"

    # -- numbers

    @staticmethod
    def _numbers_width(matrices) -> int:
        """The visible width of numeric matrices side by side (their widest rows)."""
        return sum(max(sum(len(latex_number(x)) + 2 for x in row) for row in m.tolist()) for m in matrices)

    def numbers(self, values, bind) -> dict | None:
        if not values:
            return None
        try:
            v = jacobian_at(self.J, values, bind=bind)
        except (ValueError, TypeError, NetworkError) as err:  # NumericError names the symbol
            message = f"numbers left out: {err}"
            self.notes.append(message)
            warnings.warn(message, stacklevel=3)
            return None
        net = self.J.network

        def numeric(matrix) -> str | None:
            """A matrix of numbers, or None when it is too wide for a line."""
            if self._numbers_width([matrix]) > MAX_NUMBERS_WIDTH:
                return None
            cells = [[latex_number(x) for x in row] for row in matrix.tolist()]
            return r"\begin{bmatrix} " + r" \\ ".join(" & ".join(row) for row in cells) + r" \end{bmatrix}"

        factors = None
        if v.factors is not None:
            factors = [{"lhs": self.partial_name(f), "rhs": numeric(m)} for f, m in zip(self.J.factors, v.factors)]
        result = numeric(v.matrix)
        product = " ".join(f["rhs"] or "" for f in factors or ())
        return {
            "point": [{"name": self.name(s), "value": latex_number(x)} for s, x in v.point.items()
                      if s in net.inputs or s in net.params],
            "forward": [{"name": self.name(k), "value": latex_number(x)} for k, x in v.values.items()],
            "factors": factors,
            "product": product if factors and len(factors) > 1 and result is not None
            and self._numbers_width(v.factors) <= MAX_MATRIX_WIDTH else None,
            "result": None if result is None else rf"\boxed{{{result}}}",
            "entries": [{"lhs": self.printer.doprint(Total(o, w)), "value": latex_number(x)}
                        for o, row in zip(self.J.outputs, v.matrix.tolist()) for w, x in zip(self.J.wrt, row)],
        }
