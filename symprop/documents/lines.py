"""Line breaking of displayed equations: chain sums broken between terms, about
:data:`LINE_WIDTH` characters of visible math a line."""

from __future__ import annotations

import re

from sympy import Mul
from sympy.printing.precedence import PRECEDENCE

from ..printing import LatexPrinter

__all__ = ["LINE_WIDTH", "visible_width", "break_lines", "break_sum", "fit"]

# A line of a displayed equation holds about this many characters of visible math
# (a stacked fraction counts as 4); longer sums and products break onto more lines.
LINE_WIDTH = 52


_FRACTION = re.compile(r"\\frac\{(?:[^{}]|\{[^{}]*\})*\}\{(?:[^{}]|\{[^{}]*\})*\}")
_SCRIPT = re.compile(r"[_^]\{([^{}]*)\}")


def visible_width(tex: str) -> int:
    """A rough count of the characters ``tex`` shows (fractions stack, scripts are small)."""
    tex = _FRACTION.sub("ffff", tex)
    tex = re.sub(r"\\(left|right)", "", tex)
    tex = _SCRIPT.sub(lambda m: "x" * ((len(m.group(1)) + 1) // 2), tex)
    tex = re.sub(r"\\operatorname\{([^{}]*)\}", r"\1", tex)
    tex = re.sub(r"\\[A-Za-z]+", "x", tex)
    return len(re.sub(r"[{}\s]", "", tex)) + 2 * len(re.findall(r"[+=-]", tex))


def break_lines(printer: LatexPrinter, expr, product: bool = False, width: int = LINE_WIDTH) -> list[str]:
    """The chain sum ``expr`` as display lines of about ``width`` characters each.

    Lines break only between terms (the next line starts with its sign): a product stays on
    one line, unless it alone is far wider than a line (a chain through hundreds of nodes),
    when it breaks between factors (the next line starts with ``\\cdot``).
    """
    lines: list[str] = []
    current, used = "", 0
    for i, (sign, factors) in enumerate(printer.terms(expr, product)):
        pieces = []
        for j, factor in enumerate(factors):
            if j:
                pieces.append((printer.separator(factor), factor))
            elif i:
                pieces.append((" ", f"{sign} {factor}"))
            else:
                pieces.append(("", ("-" if sign == "-" else "") + factor))
        term_width = sum(visible_width(p) for _, p in pieces)
        if current and used + term_width > width:  # the term starts a line of its own
            lines.append(current)
            current, used = "", 0
        for j, (separator, piece) in enumerate(pieces):
            w = visible_width(piece)
            if current and j and used + w > width and term_width > 1.3 * width:
                lines.append(current)
                current, used = r"\cdot " + piece, w
            else:
                current, used = (current + separator + piece if current else piece), used + w
    lines.append(current)
    return fit(lines, width)


def break_sum(printer: LatexPrinter, expr) -> list[str]:
    """A formula as display lines, each term printed as SymPy writes it (fractions stacked),
    breaking between terms: for definitions, where chain order means nothing."""
    lines, current = [], ""
    for i, term in enumerate(printer._as_ordered_terms(expr, order=None) if expr.is_Add else [expr]):
        negative = i > 0 and term.could_extract_minus_sign()
        sign = "" if i == 0 else "- " if negative else "+ "
        for j, piece in enumerate(_factors(printer, -term if negative else term)):
            piece = sign + piece if j == 0 else r"\cdot " + piece
            if current and visible_width(current) + visible_width(piece) > LINE_WIDTH:
                lines.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    lines.append(current)
    return fit(lines)


def _factors(printer: LatexPrinter, term) -> list[str]:
    """A term as SymPy prints it, or, when that is too wide for a line, its factors one by
    one (a number coefficient first), so that the line can break between them."""
    tex = printer.doprint(term)
    if visible_width(tex) <= LINE_WIDTH or not term.is_Mul:
        return [tex]
    coeff, rest = term.as_coeff_Mul()
    factors = ([printer.doprint(coeff)] if coeff != 1 else []) + [
        printer.parenthesize(f, PRECEDENCE["Mul"]) for f in Mul.make_args(rest)]
    return factors


def fit(lines: list[str], width: int = LINE_WIDTH) -> list[str]:
    """Lines that cannot break (one huge factor) are set smaller rather than overflow."""
    return [rf"{{\scriptstyle {line}}}" if visible_width(line) > 1.3 * width else line for line in lines]


def equation_row(lhs: str, parts: list[list[str]], width: int, *, tag: str = "", widest: int = 0) -> dict:
    r"""One displayed equation ``lhs = part = part ...`` of an align block, each part a list
    of lines (a sum broken between its terms, :func:`break_lines`). Parts share a line while
    it has room for ``width`` visible characters; the lines after the first start with ``=``
    (the next part) or ``\quad`` (a part's continuation). A ``tag`` at the right margin and a
    left-hand column ``widest`` characters wide take room from every line but the first's
    start. A row of up to three lines stays on one page; a longer one may break before an
    ``=`` (``breakable``: unbreakable tall rows overfill the exam class's framed solutions).

    >>> equation_row("y", [["a + b"], ["3"]], 64)["lines"]
    ['a + b = 3']
    """
    lines, used = [], width + 1
    wide = max(0, widest - 4) + (len(tag) // 2 + 1 if tag else 0)
    for part in parts:
        for i, piece in enumerate(part):
            w = visible_width(piece)
            if i == 0 and len(part) == 1 and lines and used + w + 2 <= width:
                lines[-1] += " = " + piece
                used += w + 2
            else:
                lines.append(("= " if i == 0 else r"\quad ") + piece)
                used = w + wide
    lines[0] = lines[0][2:]  # the first line follows "lhs &= "
    return {"lhs": lhs, "lines": lines, "tag": tag, "breakable": len(lines) > 3}
