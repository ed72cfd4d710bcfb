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

from sympy import Add, Basic, Mul, S, Symbol
from sympy.printing.latex import LatexPrinter as _SymPyLatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from . import limits
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




def tree_size(expr) -> int:
    """The number of nodes of ``expr`` written out as a tree, computed on the DAG of its
    distinct subexpressions (linear in those, however large the tree).

    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> tree_size(x), tree_size(sp.exp(x) * sp.exp(x + 1))
    (1, 7)
    """
    if not isinstance(expr, Basic):
        return 1
    memo, stack = {}, [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if e in memo:
            continue
        if ready or not e.args:
            memo[e] = 1 + sum(memo[a] for a in e.args)
        else:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if a not in memo)
    return memo[expr]


def _too_large(expr) -> int | None:
    """The tree size of ``expr`` when it is too large to print, else None: its tree (each
    shared subexpression counted every time it appears, as a printer writes it) would take
    minutes to print and fill pages; a note says so instead."""
    n = tree_size(expr)
    return n if n > limits.MAX_PRINTED else None


def _positive_first(terms) -> list:
    """Positive terms first, each group in the given order: "ŷ_1 - y_1" as the texts write
    it, not "-y_1 + ŷ_1"."""
    return [t for t in terms if not t.could_extract_minus_sign()] + [t for t in terms if t.could_extract_minus_sign()]


def _complement_after(factors) -> list:
    """``σ(u)(1 - σ(u))`` as the texts write it, not SymPy's ``(1 - σ(u))σ(u)``: a factor
    ``1 - f`` moved right after ``f``. Linear in the factors (a 500-deep chain has 500)."""
    factors = list(factors)
    sums = [a for a in factors if a.is_Add]
    if not sums:
        return factors
    present = set(factors)
    for a in sums:
        f = 1 - a
        if f in present and factors.index(a) < factors.index(f):
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

    def doprint(self, expr):
        n = _too_large(expr)
        return f"<an expression of {n:,} nodes: too large to print, see MAX_PRINTED>" if n else super().doprint(expr)

    def chain(self, expr) -> str:
        """A sum of chain products with terms and factors in the order they were built."""
        n = _too_large(expr)
        if n:
            return f"<an expression of {n:,} nodes: too large to print, see MAX_PRINTED>"
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

class LatexCharacterWarning(UserWarning):
    """A character of user text that LaTeX cannot print: shown as ``[U+XXXX]`` or dropped."""


_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "`": r"\textasciigrave{}",
}
# T1 fonts join "--" (an en dash), "<<", ">>" (guillemets), ",," and "''" (quotes): a {}
# between the two keeps each character as typed.
_LIGATURE_CHARS = frozenset("-<>,'")

# The characters pdflatex's utf8 input sets up with the T1 and TS1 encodings (TeX Live's
# t1enc.dfu, ts1enc.dfu and utf8.def; each checked by compiling it): written as they are.
# Accented Latin letters are here; a document without T1 (a fragment \input into one)
# lacks a few of them (đ, ŋ, «).
_UTF8_READY_RANGES = (
    "00A0-0125 0128-0137 0139-013E 0141-0148 014A-0165 0168-017E 0192 01C4-01D4 01E2-01E3 01E6-01EB "
    "01F0 01F4-01F5 0218-021B 0232-0233 0237 02C6-02C7 02D8-02D9 02DB-02DD 0E3F 1E02-1E03 1E0D "
    "1E1E-1E21 1E25 1E30-1E31 1E37 1E43 1E45 1E47 1E5B 1E63 1E6D 1E8E-1E91 1E9E 1EF2-1EF3 200C "
    "2010-2016 2018-201A 201C-201E 2020-2022 2026 2030-2031 2039-203B 203D 2044 204E 2052 20A1 20A4 "
    "20A6 20A9 20AB-20AC 20B1 2103 2116-2117 211E 2120 2122 2126-2127 212E 2190-2193 2329-232A "
    "2422-2423 25E6 25EF 266A 27E8-27E9 3008-3009 FB00-FB06 FEFF"
)
_UTF8_READY = frozenset(
    chr(c)
    for part in _UTF8_READY_RANGES.split()
    for c in range(int(part[:4], 16), int(part.rpartition("-")[2], 16) + 1)
)

# Greek letters by the commands that print them (U+03B5 and U+03C6 are drawn as \varepsilon
# and \varphi; U+03F5 and U+03D5 as \epsilon and \phi). The letters that look like Latin
# ones (the capitals Α, Β, ... and omicron) have no command and print as those letters,
# the capitals upright as \Gamma is.
_GREEK_LETTERS = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "varepsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi", "π": "pi",
    "ρ": "rho", "ς": "varsigma", "σ": "sigma", "τ": "tau", "υ": "upsilon", "φ": "varphi", "χ": "chi",
    "ψ": "psi", "ω": "omega", "ϵ": "epsilon", "ϑ": "vartheta", "ϕ": "phi", "ϖ": "varpi", "ϱ": "varrho",
    "ϰ": "varkappa", "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "ϴ": "Theta", "Λ": "Lambda", "Ξ": "Xi",
    "Π": "Pi", "Σ": "Sigma", "Υ": "Upsilon", "Φ": "Phi", "Ψ": "Psi", "Ω": "Omega",
}
_GREEK_AS_LATIN = {
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Χ": "X", "ο": "o",
}
# Symbols that may stand in a name (each a single math symbol, fine after _ or ^) ...
_NAME_SYMBOLS = {
    "∞": r"\infty", "∂": r"\partial", "∇": r"\nabla", "ℓ": r"\ell", "ℏ": r"\hbar", "⋆": r"\star",
    "∗": r"\ast", "∘": r"\circ", "⊤": r"\top", "†": r"\dagger", "·": r"\cdot", "⋅": r"\cdot",
    "ı": r"\imath", "ȷ": r"\jmath", "µ": r"\mu",
}
_NAME_LETTERS = {"ℝ": r"\mathbb{R}", "ℕ": r"\mathbb{N}", "ℤ": r"\mathbb{Z}", "ℚ": r"\mathbb{Q}", "ℂ": r"\mathbb{C}"}
_PRIMES = {"′": "'", "″": "''", "‴": "'''"}
# ... and, in text, math symbols through \ensuremath (ligature-free, the same in math mode).
_TEXT_MATH = {
    **{k: v for k, v in _NAME_SYMBOLS.items() if k not in "ıȷµ·†"}, **_NAME_LETTERS,
    "→": r"\to", "←": r"\leftarrow", "↑": r"\uparrow", "↓": r"\downarrow", "↔": r"\leftrightarrow",
    "↕": r"\updownarrow", "↦": r"\mapsto", "⇒": r"\Rightarrow", "⇐": r"\Leftarrow", "⇔": r"\Leftrightarrow",
    "⇑": r"\Uparrow", "⇓": r"\Downarrow", "⟶": r"\longrightarrow", "⟵": r"\longleftarrow",
    "⟷": r"\longleftrightarrow", "⟹": r"\Longrightarrow", "⟸": r"\Longleftarrow", "⟺": r"\Longleftrightarrow",
    "↗": r"\nearrow", "↘": r"\searrow", "↖": r"\nwarrow", "↙": r"\swarrow", "↪": r"\hookrightarrow",
    "↩": r"\hookleftarrow", "⇌": r"\rightleftharpoons",
    "≤": r"\leq", "≥": r"\geq", "≠": r"\neq", "≈": r"\approx", "≡": r"\equiv", "∼": r"\sim", "≃": r"\simeq",
    "≅": r"\cong", "∝": r"\propto", "≪": r"\ll", "≫": r"\gg", "≺": r"\prec", "≻": r"\succ", "∈": r"\in",
    "∉": r"\notin", "∋": r"\ni", "⊂": r"\subset", "⊆": r"\subseteq", "⊃": r"\supset", "⊇": r"\supseteq",
    "⊥": r"\perp", "∥": r"\parallel", "∣": r"\mid",
    "×": r"\times", "·": r"\cdot", "∙": r"\bullet", "±": r"\pm", "∓": r"\mp", "÷": r"\div", "−": "-",
    "∪": r"\cup", "∩": r"\cap", "∧": r"\wedge", "∨": r"\vee", "⊕": r"\oplus", "⊖": r"\ominus",
    "⊗": r"\otimes", "⊙": r"\odot", "⊘": r"\oslash", "∖": r"\setminus",
    "∑": r"\sum", "∏": r"\prod", "∫": r"\int", "∮": r"\oint", "⋃": r"\bigcup", "⋂": r"\bigcap",
    "√": r"\surd", "∅": r"\emptyset", "∀": r"\forall", "∃": r"\exists", "ℜ": r"\Re", "ℑ": r"\Im",
    "ℵ": r"\aleph", "℘": r"\wp", "⌊": r"\lfloor", "⌋": r"\rfloor", "⌈": r"\lceil", "⌉": r"\rceil",
    "⋯": r"\cdots", "⋮": r"\vdots", "⋱": r"\ddots",
    "′": r"{}^{\prime}", "″": r"{}^{\prime\prime}", "‴": r"{}^{\prime\prime\prime}",
}
# Combining accents: as math accents (in names, and on Greek letters) and as text accents
# (on a Latin letter that has no precomposed form, such as x̂).
_MATH_ACCENTS = {
    "\u0300": "grave", "\u0301": "acute", "\u0302": "hat", "\u0303": "tilde", "\u0304": "bar",
    "\u0305": "bar", "\u0306": "breve", "\u0307": "dot", "\u0308": "ddot", "\u030a": "mathring",
    "\u030c": "check", "\u20d7": "vec",
}
_TEXT_ACCENTS = {
    "\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u", "\u0307": ".",
    "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0323": "d", "\u0327": "c", "\u0328": "k",
    "\u0331": "b",
}
# The other characters with no LaTeX form print visibly in their place, as [U+XXXX]; each
# is named in a warning once.
_WARNED: set[str] = set()


def _warn_character(c: str, what: str) -> None:
    if c in _WARNED:
        return
    _WARNED.add(c)
    import unicodedata
    import warnings

    code = f"U+{ord(c):04X}" + (" " + unicodedata.name(c, "")).rstrip()
    label = f"{c!r} ({code})" if c.isprintable() else code
    warnings.warn(f"{label} {what}", LatexCharacterWarning, stacklevel=3)


def _script_of(c: str) -> tuple[str, str] | None:
    """``("^", "2")`` for ², ``("_", "i")`` for ᵢ: a super- or subscript digit, sign or letter."""
    import unicodedata

    tag = unicodedata.decomposition(c).split(" ", 1)[0]
    if tag not in ("<super>", "<sub>"):
        return None
    plain = unicodedata.normalize("NFKC", c).replace("−", "-")
    if len(plain) != 1 or not (plain.isascii() and (plain.isalnum() or plain in "+-=()")):
        return None
    return ("^" if tag == "<super>" else "_"), plain


def _greek_math(cluster: str) -> str | None:
    r"""Math LaTeX of a Greek letter, its accents included (ά: ``\acute{\alpha}``); else None."""
    import unicodedata

    base, *marks = unicodedata.normalize("NFD", cluster)
    if base in _GREEK_LETTERS:
        tex = "\\" + _GREEK_LETTERS[base]
    elif base in _GREEK_AS_LATIN:
        tex = "o" if base == "ο" else r"\mathrm{" + _GREEK_AS_LATIN[base] + "}"
    else:
        return None
    for mark in marks:
        if mark not in _MATH_ACCENTS:
            return None
        tex = "\\" + _MATH_ACCENTS[mark] + "{" + tex + "}"
    return tex


def _text_accents(c: str) -> str | None:
    r"""A Latin letter with accents that T1 has no glyph for, built with text accents
    (ȩ: ``\c{e}``, ệ: ``\^{\d{e}}``); None for any other character."""
    import unicodedata

    base, *marks = unicodedata.normalize("NFD", c)
    if not (marks and base.isascii() and base.isalpha() and all(m in _TEXT_ACCENTS for m in marks)):
        return None
    for mark in marks:
        base = "\\" + _TEXT_ACCENTS[mark] + "{" + base + "}"
    return base


def latex_escape(text) -> str:
    r"""User text as LaTeX that prints it literally (line breaks become spaces).

    ``--``, backticks and T1's other ligatures (``<<``, ``,,``, ``''``) print as typed.
    Beyond ASCII: what LaTeX's utf8 input prints with T1 stays (accented Latin letters,
    typographic quotes and dashes); Greek letters and math symbols print through
    ``\ensuremath``; control and invisible formatting characters are dropped and any other
    character shows as ``[U+XXXX]``, each named once in a :class:`LatexCharacterWarning`.

    >>> print(latex_escape(r"50% of $x_1 & \input{f}"))
    50\% of \$x\_1 \& \textbackslash{}input\{f\}
    >>> print(latex_escape("Ω → ∞ -- `a'' café"))
    \ensuremath{\Omega} \ensuremath{\to} \ensuremath{\infty} -{}- \textasciigrave{}a'{}' café
    """
    import unicodedata

    text = unicodedata.normalize("NFC", " ".join(str(text).split()))
    runs: list[list[str]] = []  # [kind, text]: "tex", "missing" ([U+XXXX]) or a script "^", "_"

    def add(kind: str, piece: str) -> None:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += piece
        else:
            runs.append([kind, piece])

    for i, c in enumerate(text):
        before = text[i - 1] if i else ""
        if c in _ESCAPES:
            add("tex", _ESCAPES[c])
        elif c in _LIGATURE_CHARS and before == c:
            add("tex", "{}" + c)
        elif " " <= c <= "~":
            add("tex", c)
        elif c < " " or "\x7f" <= c < "\xa0":
            _warn_character(c, "is a control character: dropped")
        elif c in _TEXT_MATH:
            add("tex", r"\ensuremath{" + _TEXT_MATH[c] + "}")
        elif c in _GREEK_AS_LATIN:
            add("tex", _GREEK_AS_LATIN[c])
        elif (greek := _greek_math(c)) is not None:
            add("tex", r"\ensuremath{" + greek + "}")
        elif c in _UTF8_READY and c not in "¹²³":
            add("tex", c)
        elif (script := _script_of(c)) is not None:
            add(*script)
        elif c in _TEXT_ACCENTS and before.isascii() and before.isalpha() and runs and runs[-1][0] == "tex":
            runs[-1][1] = runs[-1][1][:-1] + "\\" + _TEXT_ACCENTS[c] + "{" + before + "}"
        elif (accented := _text_accents(c)) is not None:
            add("tex", accented)
        elif unicodedata.category(c) == "Cf" or "\ufe00" <= c <= "\ufe0f" or "\U000e0100" <= c <= "\U000e01ef":
            if c == "\u200b":  # a zero-width space: a place to break the line
                add("tex", r"\hspace{0pt}")
            else:
                _warn_character(c, "is an invisible formatting character: dropped")
        else:
            _warn_character(c, f"has no LaTeX form here: printed as [U+{ord(c):04X}]")
            add("missing", f"[U+{ord(c):04X}]")
    wrap = {"tex": "{}", "missing": r"\texttt{{{}}}", "^": r"\ensuremath{{^{{{}}}}}", "_": r"\ensuremath{{_{{{}}}}}"}
    return "".join(wrap[kind].format(piece) for kind, piece in runs)


# -- display names ----------------------------------------------------------------------
# A display name is LaTeX math the user wrote. It is kept when it is plain math: letters,
# digits, sub- and superscripts, primes, balanced braces and a fixed set of commands,
# arranged as TeX accepts them (each rule below was checked by compiling with pdflatex).
# A name with anything else (&, %, \input, \\) is text: it prints literally in \text{...}.

_GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi "
    "varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
    "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega"
).split()
# The commands a display name may use: letters and accents, nothing that reads files or
# changes catcodes, so a display name cannot do more than name a symbol. By what follows them:
_SYMBOL_COMMANDS = frozenset(_GREEK + [  # nothing; one symbol, fine as a sub- or superscript
    "prime", "ell", "star", "ast", "infty", "partial", "nabla", "cdot", "circ", "dagger",
    "top", "bot", "hbar", "imath", "jmath",
])
_ACCENT_COMMANDS = frozenset([  # an argument; as a subscript only in braces (x_{\hat{y}})
    "hat", "widehat", "bar", "overline", "tilde", "widetilde", "vec", "dot", "ddot", "check", "breve",
    "acute", "grave", "mathring", "boldsymbol", "operatorname",
])
_FONT_COMMANDS = frozenset(["mathbf", "mathrm", "mathit", "mathsf", "mathtt", "mathcal", "mathbb"])  # an argument
_SPACING_COMMANDS = frozenset([r"\,", r"\;", r"\!"])
_NAME_COMMANDS = _SYMBOL_COMMANDS | _ACCENT_COMMANDS | _FONT_COMMANDS | {"text"}
_NAME_TOKEN = re.compile(
    r"\\text(?![A-Za-z]) *(\{[^{}]*\})?|\\[A-Za-z]+|\\.?|[A-Za-z0-9 _^{}',.()\[\]+\-=|/*<>:]|.", re.S
)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _^{}',.()[]+-=|/*<>:")
_TEXT_ARGUMENT = re.compile(r"\{[^\\{}_^$&%#~]*\}")  # \text{...}: plain text


class _Atom(str):
    """A token made here (\\alpha for α, \\text{...} for other letters): one symbol, braced
    where it is the argument of _, ^ or an accent unless it is a single command."""

    single = False


class _Symbol(_Atom):
    single = True


class _Bad(str):
    """A token that makes the name wrong as math; the string is the problem."""


def _name_tokens(name: str) -> list[str] | None:
    """The tokens of a display name, or None when it is text (a character or command that
    plain math does not use). Non-ASCII letters become atoms: Greek letters their commands,
    accented letters math accents, other letters ``\\text{...}``; ′ is a prime, ² a ``^{2}``."""
    import unicodedata

    name = unicodedata.normalize("NFC", name)
    tokens: list[str] = []
    text_run = ""  # letters with no math form, printed in one \text{...}
    i = 0
    script_end = -1  # where the last ² or ₁ ended
    while i < len(name):
        c = name[i]
        marked = i + 1 < len(name) and unicodedata.category(name[i + 1]).startswith("M")  # x̂: x and U+0302
        if c.isascii() and not (marked and c.isalpha()):
            if text_run:
                tokens.append(_Atom(r"\text{" + latex_escape(text_run) + "}"))
                text_run = ""
            m = _NAME_TOKEN.match(name, i)
            tok, i = m.group(), m.end()
            if re.match(r"\\text(?![A-Za-z])", tok):
                arg = m.group(1)
                if arg is None or not _TEXT_ARGUMENT.fullmatch(arg):
                    tokens.append(_Bad(r"\text takes plain text in braces, as in \text{out}"))
                else:
                    tokens.append(_Atom(r"\text{" + latex_escape(arg[1:-1]) + "}"))
            elif tok in _SPACING_COMMANDS or tok in _NAME_CHARS:
                tokens.append(tok)
            elif tok[0] == "\\" and tok[1:] in _NAME_COMMANDS:
                tokens.append(tok)
            else:
                return None  # another command, \\, \{, & % $ # ~ ...: text
            continue
        cluster = c
        i += 1
        while i < len(name) and unicodedata.category(name[i]).startswith("M"):
            cluster += name[i]
            i += 1
        math = _cluster_math(cluster)
        if math is None and all(unicodedata.category(ch)[0] in "LMN" for ch in cluster):
            text_run += cluster
            continue
        if text_run:
            tokens.append(_Atom(r"\text{" + latex_escape(text_run) + "}"))
            text_run = ""
        if math is None:
            return None  # a symbol with no place in a name (→, &-like signs, spaces): text
        if math[0] in ("^", "_") and tokens[-4:-2] == [math[0], "{"] and i - len(cluster) == script_end:
            tokens.insert(len(tokens) - 1, math[2])  # x₁₂: one subscript, x_{12}
        else:
            tokens.extend(math)
        script_end = i if math[0] in ("^", "_") else -1
    if text_run:
        tokens.append(_Atom(r"\text{" + latex_escape(text_run) + "}"))
    return tokens


def _cluster_math(cluster: str) -> list[str] | None:
    """The tokens of one non-ASCII character with its combining marks, or None."""
    import unicodedata

    c = cluster[0]
    if len(cluster) == 1:
        if c in _NAME_SYMBOLS:
            return [_Symbol(_NAME_SYMBOLS[c])]
        if c in _NAME_LETTERS:
            return [_Atom(_NAME_LETTERS[c])]
        if c in _PRIMES:
            return list(_PRIMES[c])
        script = _script_of(c)
        if script is not None:
            return [script[0], "{", script[1], "}"]
    greek = _greek_math(cluster)
    if greek is not None:
        return [_Symbol(greek) if re.fullmatch(r"\\[A-Za-z]+|[A-Za-z]", greek) else _Atom(greek)]
    base, *marks = unicodedata.normalize("NFD", cluster)
    if base.isascii() and base.isalpha() and marks and all(m in _MATH_ACCENTS for m in marks):
        tex = {"i": r"\imath", "j": r"\jmath"}.get(base, base)
        for mark in marks:
            tex = "\\" + _MATH_ACCENTS[mark] + "{" + tex + "}"
        return [_Atom(tex)]
    return None


def _name_problem(tokens: list[str]) -> str | None:
    """Why these tokens are not math that TeX accepts (None: they are).

    Per symbol: at most one subscript and one superscript; primes are a superscript, which
    a ^ right after them joins (x'^{2}) but which a space, a subscript or another
    superscript ends (x'_{1}^{2}, x^{2}' are double superscripts). _ and ^ take one
    character, one symbol command, a font command with its argument, or a braced group;
    accents and font commands take one character, one symbol command or a braced group.
    """
    # per group level: [has a subscript, superscript ("" none, "^", "'": primes), primes open]
    stack = [[False, "", False]]
    expect = None  # (who, is a script): what waits for its argument
    for tok in tokens:
        if isinstance(tok, _Bad):
            return str(tok)
        base = stack[-1]
        if tok == " ":
            base[2] = False  # a space ends the primes: x' ^{2} is a double superscript
            continue
        if expect is not None:
            who, script = expect
            expect = None
            if tok == "{":
                stack.append([False, "", False])
            elif isinstance(tok, _Atom):
                pass  # one symbol (braced when written, if need be)
            elif tok in _SPACING_COMMANDS or tok in ("_", "^", "'"):
                return f"{who} is followed by {tok}: give it one character or a braced group"
            elif tok == "}":
                return f"{who} has nothing after it"
            elif tok[0] == "\\" and tok[1:] not in _SYMBOL_COMMANDS:
                if not (script and tok[1:] in _FONT_COMMANDS):
                    return f"{who}{tok} needs braces: {who}{{{tok}{{...}}}}"
                expect = (tok, False)  # x_\mathbf{y}: the font command's argument next
            continue
        if tok == "'":
            if base[1] and not base[2]:
                return ("a prime after a superscript is a double superscript in LaTeX: "
                        "put the primes first, as in x'^{2} or x_{1}'^{2}")
            base[1], base[2] = "'", True
        elif tok == "^":
            if base[1] == "^":
                return "two superscripts on one symbol (a double superscript in LaTeX)"
            if base[1] == "'" and not base[2]:
                return ("a superscript after primes that a subscript or a space ended (a double superscript "
                        "in LaTeX): put the primes right before ^, as in x_{1}'^{2}")
            base[1], base[2] = "^", False
            expect = ("^", True)
        elif tok == "_":
            if base[0]:
                return "two subscripts on one symbol (a double subscript in LaTeX)"
            base[0], base[2] = True, False
            expect = ("_", True)
        elif tok == "{":
            base[:] = [False, "", False]
            stack.append([False, "", False])
        elif tok == "}":
            if len(stack) == 1:
                return "unbalanced braces: a } without its {"
            stack.pop()
        else:
            base[:] = [False, "", False]  # a new symbol
            if tok[0] == "\\" and tok[1:] in _ACCENT_COMMANDS | _FONT_COMMANDS:
                expect = (tok, False)
    if expect is not None:
        who = expect[0]
        return f"{who} needs an argument, as in {who}{{x}}" if who[0] == "\\" else f"{who} has nothing after it"
    if len(stack) > 1:
        return "unbalanced braces: a { is not closed"
    return None


def _name_tex(tokens: list[str]) -> str:
    """The tokens as LaTeX, outer spaces left out: made atoms braced where they are an
    argument, a space between a command and a letter."""
    out = ""
    wants_argument = False
    for tok in tokens:
        if tok == " ":
            out += " "
            continue
        if isinstance(tok, _Atom) and not tok.single and wants_argument:
            tok = "{" + tok + "}"
        if re.search(r"\\[A-Za-z]+$", out) and tok[:1].isalpha():
            out += " "
        out += tok
        wants_argument = tok in ("_", "^") or tok[0] == "\\" and tok[1:] in _ACCENT_COMMANDS | _FONT_COMMANDS
    return out.strip()


_POWER = ["^", "{", "2", "}"]  # how SymPy raises a name to a power when it has no ^ of its own


def check_display_name(name, *, function: bool = False) -> str | None:
    r"""Why ``name`` cannot be a display name (None: it can). ``function``: the name of a
    function, which its derivatives print with primes after.

    A name of plain math (see :func:`latex_name`) must be math that LaTeX accepts, also
    raised to a power; a name with other characters or commands prints literally and is
    accepted.

    >>> check_display_name(r"\hat{y}_{2}"), check_display_name(r"x & \input{f}")
    (None, None)
    >>> check_display_name("x^2'")
    "a prime after a superscript is a double superscript in LaTeX: put the primes first, as in x'^{2} or x_{1}'^{2}"
    """
    if not isinstance(name, str) or not name.strip():
        return "an empty name: give a LaTeX name such as w_{1}"
    tokens = _name_tokens(name)
    if tokens is None:
        return None
    problem = _name_problem(tokens)
    if problem is None and "^" not in _name_tex(tokens) and _name_problem(tokens + _POWER):
        problem = f"{name} cannot be raised to a power ({name}^{{2}} is a double superscript): write the primes last"
    if problem is None and function and _name_problem(tokens + ["'"]):
        problem = f"the derivative {name}' would be a double superscript: write {{{name}}} instead"
    return problem


def latex_name(name: str) -> str:
    r"""A display name as math: kept when it is plain math, otherwise printed literally.

    Plain math means letters, digits, sub- and superscripts, primes, balanced braces and
    a few harmless commands (Greek letters, accents, font switches), as LaTeX accepts them
    (:func:`check_display_name` says what is wrong with the others). Greek letters typed
    as such become their commands, other non-ASCII letters ``\text{...}``. Anything else
    (``&``, ``%``, ``\input``, a double subscript) is shown verbatim in ``\text{...}``, so
    a name can neither break the document nor run TeX code.

    >>> latex_name(r"\hat{y}_{2}"), latex_name("w_{5,7}"), latex_name("ω_1")
    ('\\hat{y}_{2}', 'w_{5,7}', '\\omega_1')
    >>> print(latex_name(r"x & \input{f}"))
    \text{x \& \textbackslash{}input\{f\}}
    """
    math = _math_name(name)
    return math if math is not None else r"\text{" + latex_escape(name) + "}"


@functools.lru_cache(maxsize=4096)
def _math_name(name: str) -> str | None:
    """``name`` as LaTeX math when it is plain math (raised to a power too), else None."""
    if not name.strip():
        return None
    tokens = _name_tokens(name)
    if tokens is None or _name_problem(tokens):
        return None
    tex = _name_tex(tokens)
    if "^" not in tex and _name_problem(tokens + _POWER):
        return None
    return tex


def _plain_math(name: str) -> bool:
    """Whether latex_name keeps ``name`` as math."""
    return _math_name(name) is not None


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
    ``digits`` is the significant digits of substituted numbers; with ``params`` (a set of
    symbols), a product prints its parameters first and a sum its lone parameters last, as the
    texts write a neuron (``w_{1,4} z_{4} + b_{1}``). Products keep their order otherwise.

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
        "params": frozenset(),
    }

    def __init__(self, settings=None):
        settings = dict(settings or {})
        if settings.get("values") and "mul_symbol" not in settings:
            settings["mul_symbol"] = "dot"  # "0.5 2" would read as 0.52
        super().__init__(settings)

    def doprint(self, expr):
        n = _too_large(expr)
        return rf"\text{{(an expression of {n:,} nodes: too large to print, see MAX\_PRINTED)}}" if n else super().doprint(expr)

    def _print_Mul(self, expr):
        params = self._settings["params"]
        if params and any(f in params for f in expr.args):  # the weight before its input: w_{1,4} z_4
            factors = sorted(expr.args, key=lambda f: 0 if f.is_Number else 1 if f in params else 2)
            if factors != list(expr.args):
                expr = Mul(*factors, evaluate=False)
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
        # a number in place of an argument needs no parentheses of its own: g'(-0.04649)
        printed = [latex_number(self._settings["values"][a], self._settings["digits"])
                   if a.is_Symbol and a in self._settings["values"] else self._print(a) for a in args]
        return head + r"\left(" + ", ".join(printed) + r"\right)"

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
            if named is None and cls.base_name.isascii():
                return record.head
            return latex_name(named or cls.base_name) + "'" * cls.order  # ψ as \psi
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
        params = self._settings["params"]
        if params:  # as the texts write a neuron, sum_j w_kj z_j + b_k: a lone parameter (the bias) last
            terms = [t for t in terms if t not in params] + [t for t in terms if t in params]
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
        n = _too_large(expr)
        if n:
            return [("+", [rf"\text{{(an expression of {n:,} nodes: too large to print, see MAX\_PRINTED)}}"])]
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
