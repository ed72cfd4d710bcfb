"""Printers: derived expressions for a terminal, in spec identifiers and as LaTeX.

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
>>> print(latex(sp.diff(g(u), u)))
g'\\left(u\\right)
"""

from __future__ import annotations

import functools
import math
import re

from sympy import Add, Mul, S, Symbol
from sympy.printing.latex import LatexPrinter as _SymPyLatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .functions import U, Primitive, record_of
from .graph import display_name

__all__ = [
    "TextPrinter", "SpecPrinter", "text", "text_chain", "spec_string", "spec_chain", "rule_text", "derivation_text",
    "LatexPrinter", "latex", "latex_chain", "latex_derivation", "latex_escape", "latex_name",
    "latex_number", "latex_softmax",
]


def rule_text(rule) -> str:
    """What a derivative rule says in plain text (a :class:`~symprop.functions.Rule`):
    a built-in's rule in the words of the texts, a defined function's from its formula.

    >>> import sympy as sp
    >>> from symprop.functions import define_function, record_of
    >>> x = sp.Symbol("x")
    >>> rule_text(record_of("sigmoid")), rule_text(record_of(define_function("cube", x**3, x)))
    ("σ'(u) = σ(u)(1 - σ(u))", "cube'(u) = 3*u**2")
    """
    if rule.rule is not None:
        return rule.rule
    if getattr(rule, "definition", None) is not None:
        return f"{rule.text_head}'(u) = {text(rule.derivative_definition)}"
    return rule.name


def _positive_first(terms) -> list:
    """Positive terms first, each group in the given order: "ŷ_1 - y_1" as the texts write
    it, not "-y_1 + ŷ_1"."""
    return [t for t in terms if not t.could_extract_minus_sign()] + [t for t in terms if t.could_extract_minus_sign()]


def _complement_after(factors) -> list:
    """``σ(u)(1 - σ(u))`` as the texts write it, not SymPy's ``(1 - σ(u))σ(u)``: a factor
    ``1 - f`` moved right after ``f``."""
    factors = list(factors)
    for a in list(factors):
        f = 1 - a
        if a.is_Add and f in factors and factors.index(a) < factors.index(f):
            factors.remove(a)
            factors.insert(factors.index(f) + 1, a)
    return factors


def decimal(q) -> str | None:
    """A rational that came from a decimal literal (its denominator a power-of-ten divisor of
    at least 1000, such as 0.7978845608) as that decimal; None for any other number, which
    prints as a fraction (1/2, 1/100)."""
    if not q.is_Rational or q.q < 1000:
        return None
    n, twos, fives = q.q, 0, 0
    while n % 2 == 0:
        n, twos = n // 2, twos + 1
    while n % 5 == 0:
        n, fives = n // 5, fives + 1
    if n != 1:
        return None
    places = max(twos, fives)
    digits = str(abs(q.p) * 10**places // q.q).rjust(places + 1, "0")
    return ("-" if q.p < 0 else "") + digits[:-places] + "." + digits[-places:]


def _mul_complement_after(expr: Mul) -> Mul:
    factors = _complement_after(expr.args)
    expr = expr if factors == list(expr.args) else Mul(*factors, evaluate=False)
    coeff, rest = expr.as_coeff_Mul()
    shown = decimal(abs(coeff))
    if shown is None:
        return expr
    # a decimal coefficient prints as written (0.7978845608*u, not 997355701*u/1250000000)
    sign = (S.NegativeOne,) if coeff < 0 else ()
    return Mul(*sign, Symbol(shown), *Mul.make_args(rest), evaluate=False)


class _SymPropStr(StrPrinter):
    """Shared printing of symprop's classes; subclasses choose the spelling."""

    def chain(self, expr) -> str:
        """A sum of chain products with terms and factors in the order they were built."""
        terms = []
        for term in _positive_first(Add.make_args(expr)):
            factors = _complement_after(Mul.make_args(term))
            sign = ""
            if factors[0] == -1 and len(factors) > 1:
                sign, factors = "-", factors[1:]
            parts = [self.parenthesize(f, PRECEDENCE["Mul"]) for f in factors]
            terms.append(sign + "*".join(parts))
        return " + ".join(terms).replace("+ -", "- ")

    def _print_Mul(self, expr):
        return super()._print_Mul(_mul_complement_after(expr))

    def _head(self, record) -> str | None:
        """The name a function prints as (None: its class name). The spec's names by default."""
        return record.name if record is not None and record.kind == "builtin" else None

    def _print_Function(self, expr):
        head = self._head(record_of(expr))
        if head is None:
            return super()._print_Function(expr)
        return f"{head}({self._list(expr.args)})"

    def _print_Symbol(self, expr):
        return "u" if expr == U else super()._print_Symbol(expr)

    def _print_Rational(self, expr):
        return decimal(expr) or super()._print_Rational(expr)

    def _print_softmax_cross_entropy(self, expr):
        return f"softmax_cross_entropy([{self._list(expr.logits)}], [{self._list(expr.targets)}])"

    def _list(self, items):
        return ", ".join(self._print(i) for i in items)


class TextPrinter(_SymPropStr):
    """Readable terminal output: ``∂z_1/∂z_5``, ``dE/dz_5``, ``g'(u)``, ``σ(u)``."""

    # factors as built, so that σ(u)(1 - σ(u)) keeps the texts' order (see _complement_after)
    _default_settings = {**_SymPropStr._default_settings, "order": "none"}

    def _print_Partial(self, expr):
        return f"∂{expr.of}/∂{expr.wrt}"

    def _print_Total(self, expr):
        return f"d{expr.of}/d{expr.wrt}"

    def _head(self, record) -> str | None:
        if record is None:
            return None
        if record.kind == "generic":
            return record.cls.base_name + "'" * record.cls.order
        return record.text_head or (record.name if record.kind == "builtin" else None)

    def _print_softmax(self, expr):
        return f"softmax_{expr.index}({self._list(expr.logits)})"

    def _print_Add(self, expr, order=None):
        terms = _positive_first(self._as_ordered_terms(expr, order=order))
        return super()._print_Add(Add(*terms, evaluate=False), order="none")


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


def derivation_text(d) -> str:
    """A derivation: one equation a line, its rule on the right."""
    lines = [f"d{d.target}/d{d.wrt}  ({d.method}, {d.path_count} path{'s' * (d.path_count != 1)})"]
    for step in d.steps:
        eq = f"  {text(step.lhs)} = {text_chain(step.rhs)}"
        why = step.rule
        if step.because:
            why += ": " + "; ".join(rule_text(r) for r in step.because)
        lines.append(f"{eq}    [{why}]")
    full = d.substituted
    if full is not None:
        lines.append(f"  = {text(full)}    [substitute the node definitions]")
    lines += [f"  note: {n}" for n in d.notes]
    return "\n".join(lines)


# -- LaTeX ------------------------------------------------------------------------------
# SymPy's output is trusted LaTeX; anything a user typed (titles, notes, display names)
# goes through latex_escape or latex_name first.

_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_SPECIAL = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")


def latex_escape(text) -> str:
    r"""User text as LaTeX that prints it literally (line breaks become spaces).

    >>> print(latex_escape(r"50% of $x_1 & \input{f}"))
    50\% of \$x\_1 \& \textbackslash{}input\{f\}
    """
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group()], " ".join(str(text).split()))


_GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi "
    "varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
    "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega"
).split()
# The commands a display name may use: letters and accents, nothing that reads files or
# changes catcodes, so a display name cannot do more than name a symbol.
_NAME_COMMANDS = frozenset(_GREEK + [
    "hat", "widehat", "bar", "overline", "tilde", "widetilde", "vec", "dot", "ddot", "check", "breve",
    "mathbf", "mathrm", "mathit", "mathsf", "mathcal", "mathbb", "boldsymbol", "operatorname",
    "prime", "ell", "star", "ast", "infty", "partial", "nabla", "cdot", "circ", "dagger",
])
_NAME_TOKEN = re.compile(r"\\[A-Za-z]+|\\[,;!]|[A-Za-z0-9 _^{}',.()\[\]+\-=|/*<>:]")


def latex_name(name: str) -> str:
    r"""A display name as math: kept when it is plain math, otherwise printed literally.

    Plain math means letters, digits, sub- and superscripts, balanced braces and a few
    harmless commands (Greek letters, accents, font switches). Anything else (``&``,
    ``%``, ``\input``, a double subscript) is shown verbatim in ``\text{...}``, so a name
    can neither break the document nor run TeX code.

    >>> latex_name(r"\hat{y}_{2}"), latex_name("w_{5,7}")
    ('\\hat{y}_{2}', 'w_{5,7}')
    >>> print(latex_name(r"x & \input{f}"))
    \text{x \& \textbackslash{}input\{f\}}
    """
    return name if _plain_math(name) else r"\text{" + latex_escape(name) + "}"


@functools.lru_cache(maxsize=4096)
def _plain_math(name: str) -> bool:
    tokens = _NAME_TOKEN.findall(name)
    if not name.strip() or "".join(tokens) != name:
        return False
    pending = False  # a _ or ^ waits for its argument
    scripts: set[str] = set()  # the scripts the current base already has
    groups: list[tuple[bool, set[str]]] = []
    for tok in tokens:
        if tok[0] == "\\" and tok[1:].isalpha() and tok[1:] not in _NAME_COMMANDS:
            return False
        if tok == " ":
            continue
        if tok in ("_", "^"):
            if pending or tok in scripts:
                return False  # "x__" or a double subscript: a LaTeX error
            scripts.add(tok)
            pending = True
        elif tok == "{":
            groups.append((pending, scripts))
            pending, scripts = False, set()
        elif tok == "}":
            if not groups or pending:
                return False
            was_argument, scripts = groups.pop()
            if not was_argument:
                scripts = set()
        elif pending:
            pending = False
        elif tok != "'":
            scripts = set()
    return not groups and not pending


def latex_number(x, digits: int = 4) -> str:
    r"""A number for a worked solution: ``digits`` significant digits, powers of ten as LaTeX.

    >>> latex_number(0.123456), latex_number(-2.0), latex_number(1.5e-7)
    ('0.1235', '-2', '1.5 \\times 10^{-7}')
    """
    x = float(x)
    if math.isnan(x):
        return r"\mathrm{NaN}"
    if math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


class LatexPrinter(_SymPyLatexPrinter):
    r"""LaTeX in the texts' notation: ``\frac{\partial z_{1}}{\partial z_{5}}`` for a local
    partial, ``\frac{d E}{d z_{5}}`` for a delta, ``g'\left(u\right)``, ``\sigma``.

    Settings beyond SymPy's: ``names`` maps symbols to display names (by default the naming
    rule ``w_5_7 -> w_{5,7}``); ``values`` maps symbols to numbers printed in their place
    (numeric substitution, products then use ``\cdot``); ``softmax_names`` maps a tuple of
    logits to the name of their softmax (``\hat{y}`` prints ``softmax_k`` as ``\hat{y}_{k}``);
    ``digits`` is the significant digits of substituted numbers. Products keep their order.

    >>> import sympy as sp
    >>> from symprop import sigmoid
    >>> z, w = sp.Symbol("z_5"), sp.Symbol("w_5_7")
    >>> LatexPrinter().doprint(sigmoid(w * z))
    '\\sigma\\left(w_{5,7} z_{5}\\right)'
    >>> LatexPrinter({"values": {z: 0.5, w: -2}}).doprint(w * z)
    '\\left(-2\\right) \\cdot 0.5'
    """

    _default_settings = {
        **_SymPyLatexPrinter._default_settings,
        "order": "none",
        "names": {},
        "values": {},
        "softmax_names": {},
        "digits": 4,
    }

    def __init__(self, settings=None):
        settings = dict(settings or {})
        if settings.get("values") and "mul_symbol" not in settings:
            settings["mul_symbol"] = "dot"  # "0.5 2" would read as 0.52
        super().__init__(settings)

    def _print_Mul(self, expr):
        return super()._print_Mul(_mul_complement_after(expr))

    # -- names and numbers

    def _name(self, symbol) -> str:
        return latex_name(self._settings["names"].get(symbol) or display_name(symbol.name))

    def _value(self, symbol):
        values = self._settings["values"]
        if symbol not in values:
            return None
        number = latex_number(values[symbol], self._settings["digits"])
        return rf"\left({number}\right)" if number.startswith("-") else number

    def _print_Symbol(self, expr, style="plain"):
        value = self._value(expr)
        return self._name(expr) if value is None else value

    def _print_Partial(self, expr):
        value = self._value(expr)
        if value is not None:
            return value
        return rf"\frac{{\partial {self._name(expr.of)}}}{{\partial {self._name(expr.wrt)}}}"

    def _print_Total(self, expr):
        value = self._value(expr)
        if value is not None:
            return value
        return rf"\frac{{d {self._name(expr.of)}}}{{d {self._name(expr.wrt)}}}"

    # -- functions

    def _call(self, head, *args) -> str:
        return head + r"\left(" + ", ".join(self._print(a) for a in args) + r"\right)"

    def head(self, f) -> str | None:
        """The LaTeX head of a function (a call, a class or a record): a ``names`` entry,
        a generic's display name with its primes, a symprop record's head; None for
        SymPy's own functions, which print as SymPy prints them."""
        record = f if isinstance(f, Primitive) else record_of(f)
        if record is None:
            return None
        cls = record.cls
        if record.kind == "generic":
            return latex_name(display_name(cls.base_name)) + "'" * cls.order
        if record.kind == "defined":
            named = self._settings["names"].get(cls.base)
            return record.head if named is None else latex_name(named) + "'" * cls.order
        return record.head if cls is not None and cls.__module__ == Primitive.__module__ else None

    def _print_Function(self, expr, exp=None):
        head = self.head(expr)
        if head is None:
            return super()._print_Function(expr, exp)
        return self._powered(self._call(head, *expr.args), exp)

    def _print_DiagMatrix(self, expr):
        return self._call(r"\operatorname{Diag}", expr.args[0])

    def _print_Rational(self, expr):
        return decimal(expr) or super()._print_Rational(expr)

    def _print_softmax(self, expr, exp=None):
        if expr in self._settings["values"]:
            return self._powered(self._value(expr), exp)
        name = self._settings["softmax_names"].get(tuple(expr.logits))
        if name is not None:
            return self._powered(rf"{name}_{{{expr.index}}}", exp)
        return self._powered(self._call(rf"\operatorname{{softmax}}_{{{expr.index}}}", *expr.logits), exp)

    def _print_softmax_cross_entropy(self, expr, exp=None):
        name = self._settings["softmax_names"].get(tuple(expr.logits))
        if name is None:
            probs = self._call(r"\operatorname{softmax}", *expr.logits)
            targets = self._call("", *expr.targets)
            return self._powered(rf"\operatorname{{CE}}\left({probs}, {targets}\right)", exp)
        terms = [rf"{self._print(t)} \log {name}_{{{k}}}" for k, t in enumerate(expr.targets, 1)]
        return self._powered(r"- \left(" + " + ".join(terms) + r"\right)", exp)

    def _powered(self, tex, exp):
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"

    def _print_Add(self, expr, order=None):
        terms = _positive_first(self._as_ordered_terms(expr, order=order))
        tex = ""
        for i, term in enumerate(terms):
            if i and term.could_extract_minus_sign():
                tex += " - "
                term = -term
            elif i:
                tex += " + "
            term_tex = self._print(term)
            if self._needs_add_brackets(term):
                term_tex = rf"\left({term_tex}\right)"
            tex += term_tex
        return tex

    # -- chains

    def terms(self, expr, product: bool = False) -> list[tuple[str, list[str]]]:
        """A chain-rule sum as ``(sign, factors)`` pairs, in the order it was built.

        ``product=True`` reads ``expr`` as one product (a local partial with a single
        chain, such as ``softmax_1 - y_1``): a sole factor prints without parentheses,
        as a plain sum (``\\hat{y}_{1} - y_{1}``).
        """
        result = []
        for term in [expr] if product else Add.make_args(expr):
            factors = _complement_after(Mul.make_args(term))
            sign = "+"
            if factors[0].is_Number and factors[0] < 0:
                sign = "-"
                factors[0] = -factors[0]
                if factors[0] == 1 and len(factors) > 1:
                    factors = factors[1:]
            if len(factors) == 1:
                result.append((sign, [self._print(factors[0])]))
            else:
                result.append((sign, [self.parenthesize(f, PRECEDENCE["Mul"]) for f in factors]))
        return result

    def separator(self, factor: str) -> str:
        """What goes before ``factor`` in a product: a space, or ``\\cdot`` where
        juxtaposition would misread (numbers: ``2 3`` is not 6)."""
        if self._settings["values"] or factor[:1].isdigit() or factor[:1] == "-":
            return r" \cdot "
        return " "

    def join_factors(self, factors) -> str:
        """Printed factors side by side, in order."""
        return factors[0] + "".join(self.separator(f) + f for f in factors[1:])

    def chain(self, expr, product: bool = False) -> str:
        """A chain-rule sum with terms and factors in the order they were built."""
        tex = ""
        for i, (sign, factors) in enumerate(self.terms(expr, product)):
            if i:
                tex += f" {sign} "
            elif sign == "-":
                tex += "-"
            tex += self.join_factors(factors)
        return tex


def latex(expr, names=None, **settings) -> str:
    r"""``expr`` as LaTeX math, with ``names`` (Symbol -> display name) where given.

    >>> import sympy as sp
    >>> from symprop import Partial
    >>> latex(Partial(sp.Symbol("E"), sp.Symbol("w_5_7")))
    '\\frac{\\partial E}{\\partial w_{5,7}}'
    """
    return LatexPrinter({**settings, "names": dict(names or {})}).doprint(expr)


def latex_chain(expr, names=None, product: bool = False, **settings) -> str:
    r"""A chain-rule sum as LaTeX, terms and factors in the order they were built
    (``product=True``: ``expr`` is one product, see :meth:`LatexPrinter.terms`).

    >>> import sympy as sp
    >>> from symprop import Partial, Total
    >>> E, z1, z5, w = sp.symbols("E z_1 z_5 w_5_7")
    >>> latex_chain(sp.Mul(Total(E, z1), Partial(z1, z5), evaluate=False))
    '\\frac{d E}{d z_{1}} \\frac{\\partial z_{1}}{\\partial z_{5}}'
    """
    return LatexPrinter({**settings, "names": dict(names or {})}).chain(expr, product)


def latex_softmax(logits, names=None, index: str = "k") -> str:
    r"""``\operatorname{softmax}_{k}(z_1, ...)``: the definition behind a ``softmax_names`` entry."""
    printer = LatexPrinter({"names": dict(names or {})})
    return printer._call(rf"\operatorname{{softmax}}_{{{index}}}", *logits)


def latex_derivation(d, names=None) -> str:
    r"""A derivation as one LaTeX ``aligned`` block: an equation a line, its rule on the right.

    This is what a notebook shows for a :class:`~symprop.derive.Derivation`.
    """
    printer = LatexPrinter({"names": dict(names or {})})
    rows = []
    for step in d.steps:
        why = step.rule + (" (" + ", ".join(r.name for r in step.because) + ")" if step.because else "")
        # a local partial with a single chain is one product: "\hat{y} - y", not a sum of terms
        product = step.partial is not None and step.partial.is_product
        rows.append(
            rf"{printer.doprint(step.lhs)} &= {printer.chain(step.rhs, product)} && \text{{{latex_escape(why)}}}"
        )
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
