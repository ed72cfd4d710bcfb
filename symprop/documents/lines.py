"""Line breaking of displayed equations: chain sums broken between terms, about
:data:`LINE_WIDTH` characters of visible math a line."""

from __future__ import annotations

import re

from ..printing import LatexPrinter

__all__ = ["LINE_WIDTH", "visible_width", "break_lines", "fit"]

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


def break_lines(printer: LatexPrinter, expr, product: bool = False) -> list[str]:
    """The chain sum ``expr`` as display lines of about ``LINE_WIDTH`` characters each.

    Lines break between terms (the next line starts with its sign) and, inside a very long
    product, between factors (the next line starts with ``\\cdot``).
    """
    lines: list[str] = []
    current, width = "", 0
    for i, (sign, factors) in enumerate(printer.terms(expr, product)):
        for j, factor in enumerate(factors):
            if j:
                piece, separator = factor, printer.separator(factor)
            elif i:
                piece, separator = f"{sign} {factor}", " "
            else:
                piece, separator = ("-" if sign == "-" else "") + factor, ""
            w = visible_width(piece)
            if current and width + w > LINE_WIDTH:
                lines.append(current)
                current, width = (piece if not j else r"\cdot " + factor), w
            else:
                current, width = current + separator + piece, width + w
    lines.append(current)
    return fit(lines)


def fit(lines: list[str]) -> list[str]:
    """Lines that cannot break (one huge factor) are set smaller rather than overflow."""
    return [rf"{{\scriptstyle {line}}}" if visible_width(line) > 1.3 * LINE_WIDTH else line for line in lines]
