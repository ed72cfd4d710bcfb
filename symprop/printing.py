"""Printers: the terminal form and the spec-identifier form of derived expressions.

Both keep chain-rule products in the order they were built (``order="none"``) and know
symprop's own classes by name (``Partial``, ``Total``, ``GenericFunction``, ...), so
this module knows nothing of graphs or derivations beyond the records it is handed.

>>> import sympy as sp
>>> from symprop.functions import generic, softmax
>>> g = generic("g"); u, a, b = sp.symbols("u a b")
>>> text(sp.diff(g(u), u)), spec_string(sp.diff(g(u), u))
("g'(u)", 'g_prime(u)')
>>> spec_string(softmax(2, a, b))
'softmax([a, b], 2)'
"""

from __future__ import annotations

from sympy import Add, Mul
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

__all__ = ["TextPrinter", "SpecPrinter", "text", "text_chain", "spec_string", "spec_chain", "format_derivation", "RULE_TEXT"]

# What each derivative rule says, in the words of the texts (seed 004's gate rules).
RULE_TEXT = {
    "multiply": "multiply: the other factor",
    "scale": "multiply by a constant: scale",
    "power": "power rule",
    "exponential": "exponential",
    "fan-out": "used more than once: sum the contributions",
    "sigmoid": "σ'(u) = σ(u)(1 - σ(u))",
    "tanh": "tanh'(u) = 1 - tanh²(u)",
    "relu": "relu'(u) = step(u), relu'(0) = 0",
    "leaky_relu": "leaky_relu'(u) = a + (1 - a) step(u)",
    "softplus": "softplus'(u) = σ(u)",
    "maximum": "max: routes the gradient to the larger input",
    "minimum": "min: routes the gradient to the smaller input",
    "softmax": "softmax: ∂y_k/∂z_j = y_k(δ_kj - y_j)",
    "softmax_cross_entropy": "softmax + cross-entropy: ∂L/∂z_j = ŷ_j - y_j",
    "generic": "generic activation: g'(u)",
    "exp": "exp' = exp",
    "log": "log'(u) = 1/u",
}


class _SymPropStr(StrPrinter):
    """Shared printing of symprop's classes; subclasses choose the spelling."""

    def chain(self, expr) -> str:
        """A sum of chain products with terms and factors in the order they were built."""
        terms = []
        for term in Add.make_args(expr):
            factors = list(Mul.make_args(term))
            sign = ""
            if factors[0] == -1 and len(factors) > 1:
                sign, factors = "-", factors[1:]
            parts = [self.parenthesize(f, PRECEDENCE["Mul"]) for f in factors]
            terms.append(sign + "*".join(parts))
        return " + ".join(terms).replace("+ -", "- ")

    def _print_maximum(self, expr):
        return f"max({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_minimum(self, expr):
        return f"min({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_softmax_cross_entropy(self, expr):
        return f"softmax_cross_entropy([{self._list(expr.logits)}], [{self._list(expr.targets)}])"

    def _list(self, items):
        return ", ".join(self._print(i) for i in items)


class TextPrinter(_SymPropStr):
    """Readable terminal output: ``∂z_1/∂z_5``, ``dE/dz_5``, ``g'(u)``, ``σ(u)``."""

    def _print_Partial(self, expr):
        return f"∂{expr.of}/∂{expr.wrt}"

    def _print_Total(self, expr):
        return f"d{expr.of}/d{expr.wrt}"

    def _print_GenericFunction(self, expr):
        return f"{expr.base_name}{chr(39) * expr.order}({self._print(expr.args[0])})"

    def _print_sigmoid(self, expr):
        return f"σ({self._print(expr.args[0])})"

    def _print_softmax(self, expr):
        return f"softmax_{expr.index}({self._list(expr.logits)})"

    def _print_Function(self, expr):
        from .functions import GenericFunction

        if isinstance(expr, GenericFunction):
            return self._print_GenericFunction(expr)
        return super()._print_Function(expr)


class SpecPrinter(_SymPropStr):
    """Spec syntax: what the spec parser reads back (``g_prime(u)``, ``max(a, b)``)."""

    def _print_softmax(self, expr):
        return f"softmax([{self._list(expr.logits)}], {expr.index})"


def text(expr) -> str:
    """``expr`` for a terminal."""
    return TextPrinter().doprint(expr)


def text_chain(expr) -> str:
    """A chain-rule sum for a terminal, in the order it was built."""
    return TextPrinter().chain(expr)


def spec_chain(expr) -> str:
    """A chain-rule sum in spec identifiers, in the order it was built."""
    return SpecPrinter().chain(expr)


def spec_string(expr) -> str:
    """``expr`` in spec syntax, with the spec's identifiers and function names."""
    return SpecPrinter().doprint(expr)


def format_derivation(d) -> str:
    """A derivation as terminal text: one equation a line, its rule on the right."""
    lines = [f"d{d.target}/d{d.wrt}  ({d.method}, {d.path_count} path{'s' * (d.path_count != 1)})"]
    for step in d.steps:
        eq = f"  {text(step.lhs)} = {text_chain(step.rhs)}"
        why = step.rule
        if step.because:
            why += ": " + "; ".join(RULE_TEXT.get(r, r) for r in step.because)
        lines.append(f"{eq}    [{why}]")
    full = d.substituted
    if full is not None:
        lines.append(f"  = {text(full)}    [substitute the node definitions]")
    lines += [f"  note: {n}" for n in d.notes]
    return "\n".join(lines)
