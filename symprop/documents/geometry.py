"""The plane geometry of figure layout, in cm: boxes, circles and segments that tell whether
they meet, and the size a piece of LaTeX math prints at (see :func:`label_size`).

Both figures (a network's, a gate circuit's) place their labels with these.
"""

from __future__ import annotations

import math

__all__ = ["CM", "Box", "Circle", "Segment", "distance_to_segment", "label_size"]

CM = 2.54 / 72.27  # one pt in cm


class Box:
    """An axis-parallel box: centre and half sizes, in cm."""

    def __init__(self, x, y, hw, hh):
        self.x, self.y, self.hw, self.hh = x, y, hw, hh

    @property
    def extent(self):
        return self.hw, self.hh

    def hits(self, other, gap=0.0) -> bool:
        """Whether ``other`` (a box, circle or segment) comes closer than ``gap`` cm (a
        negative gap: whether it reaches that far inside)."""
        if isinstance(other, Box):
            return abs(self.x - other.x) < self.hw + other.hw + gap and abs(self.y - other.y) < self.hh + other.hh + gap
        if isinstance(other, Circle):
            dx = max(abs(other.x - self.x) - self.hw, 0.0)
            dy = max(abs(other.y - self.y) - self.hh, 0.0)
            return math.hypot(dx, dy) < other.r + gap
        return other.hits(self, gap)


class Circle:
    def __init__(self, x, y, r):
        self.x, self.y, self.r = x, y, r

    @property
    def extent(self):
        return self.r, self.r

    def hits(self, other, gap=0.0) -> bool:
        if isinstance(other, Circle):
            return math.dist((self.x, self.y), (other.x, other.y)) < self.r + other.r + gap
        return other.hits(self, gap)


class Segment:
    """A straight stretch of line (an edge, a wire) from ``p`` to ``q``."""

    def __init__(self, p, q):
        self.p, self.q = p, q

    def hits(self, other, gap=0.0) -> bool:
        if isinstance(other, Circle):
            return distance_to_segment((other.x, other.y), self.p, self.q) < other.r + gap
        if isinstance(other, Box):
            return _segment_meets_box(self.p, self.q, other.x - other.hw - gap, other.x + other.hw + gap,
                                      other.y - other.hh - gap, other.y + other.hh + gap)
        return False


def distance_to_segment(p, a, b) -> float:
    """How far (cm) point ``p`` lies from the segment from ``a`` to ``b``."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / ((dx * dx + dy * dy) or 1.0)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def _segment_meets_box(p, q, x0, x1, y0, y1) -> bool:
    """Whether the segment ``p``-``q`` meets the closed box [x0, x1] x [y0, y1] (Liang-Barsky
    clipping; a segment that only touches its edge meets it)."""
    lo, hi = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for d, near, far in ((dx, x0 - p[0], x1 - p[0]), (dy, y0 - p[1], y1 - p[1])):
        if d == 0:
            if near > 0 or far < 0:
                return False
            continue
        a, b = near / d, far / d
        if a > b:
            a, b = b, a
        lo, hi = max(lo, a), min(hi, b)
        if lo > hi:
            return False
    return True


# -- the printed size of math text -----------------------------------------------------------
#
# Compared against pdftotext's word boxes; every estimate errs generous.

# Widths in em of the characters of math text (Computer/Latin Modern, rounded up; an italic f
# as wide as most letters, its tail overhangs); a subscript or superscript is set at 70 % of
# its base's size, its characters relatively wider.
_EM = {**dict.fromkeys("0123456789", 0.52), **dict.fromkeys("()[]", 0.42), **dict.fromkeys(",.;:!'", 0.32),
       **dict.fromkeys("+=<>", 1.25), "-": 0.82, "|": 0.32, "/": 0.52, "*": 0.52,
       **dict.fromkeys("ijlt", 0.42), "r": 0.52, **dict.fromkeys("mw", 0.9), "W": 1.12, "M": 1.0}
# Widths in em of commands that print a symbol of their own width (binary operators are
# spaced as + is); a function name (\exp, \tanh) is measured as its letters, and any other
# command (a Greek letter, a symbol) is taken as 0.85 em.
_SYMBOLS = {**dict.fromkeys(("times", "cdot", "pm", "mp", "div", "leq", "geq", "le", "ge", "neq", "ne", "to",
                              "approx"), 1.25), "infty": 1.0, "ldots": 1.2, "cdots": 1.2, "dots": 1.2}
_FUNCTIONS = {"arccos", "arcsin", "arctan", "arg", "cos", "cosh", "cot", "coth", "csc", "deg", "det", "dim", "exp",
              "gcd", "hom", "inf", "ker", "lg", "lim", "liminf", "limsup", "ln", "log", "max", "min", "Pr", "sec",
              "sin", "sinh", "sup", "tan", "tanh"}
_ACCENTS = {"hat", "bar", "tilde", "vec", "dot", "ddot", "widehat", "widetilde", "overline"}
_STYLES = {"mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathcal", "boldsymbol", "operatorname", "text",
           "textrm", "textit", "textbf", "texttt", "left", "right", "big", "Big", "bigl", "bigr", "displaystyle",
           "textstyle", "scriptstyle"}
_SPACES = {",": 0.17, ":": 0.22, ";": 0.28, " ": 0.33, "quad": 1.0, "qquad": 2.0, "!": 0.0}


def label_size(tex: str, pt: float, sep: float = 1.0) -> tuple[float, float]:
    """Width and height (cm) of math text (or text with ``$...$`` in it) set at ``pt``, with
    ``sep`` pt of inner sep around it: a generous estimate from its characters."""
    width, up, down = _measure(tex, pt)
    return (width * 1.03 + 2 * sep) * CM, (pt * 0.97 + up + down) * 1.04 * CM + 2 * sep * CM


def _measure(tex: str, pt: float) -> tuple[float, float, float]:
    """Width (pt) of ``tex`` and how far (pt) its scripts reach above and below the base line's box."""
    width = up = down = 0.0
    # small sizes are set relatively wider (cmr9 is 3 % wider than cmr10, cmr8 more)
    scale = 1.0 if pt >= 10 else 1.03 if pt >= 9 else 1.08
    script = max(pt * 0.7, 5.0)
    i = 0
    while i < len(tex):
        c = tex[i]
        if c in "^_":
            sup = sub = 0.0
            while i < len(tex) and tex[i] in "^_":
                kind = tex[i]
                arg, i = _argument(tex, i + 1)
                w, u, d = _measure(arg, script)
                if kind == "^":
                    sup, up = max(sup, w), max(up, pt * 0.37 + u)
                else:
                    sub, down = max(sub, w), max(down, pt * 0.3 + d)
            width += max(sup, sub)
            continue
        if c == "\\":
            j = i + 1
            while j < len(tex) and tex[j].isalpha():
                j += 1
            command = tex[i + 1:j] if j > i + 1 else tex[i + 1:i + 2]
            i = max(j, i + 2)
            if command == "frac":  # in line: numerator over denominator, both at script size
                top, i = _argument(tex, i)
                bottom, i = _argument(tex, i)
                (w0, u0, d0), (w1, u1, d1) = _measure(top, script), _measure(bottom, script)
                width += max(w0, w1) + 0.3 * pt  # and a null delimiter each side
                up, down = max(up, pt * 0.6 + u0 + d0), max(down, pt * 0.6 + u1 + d1)
            elif command in _ACCENTS:
                up = max(up, pt * 0.15)
            elif command in _SPACES:
                width += _SPACES[command] * pt
            elif command in _SYMBOLS:
                width += _SYMBOLS[command] * pt * scale
            elif command in _FUNCTIONS:
                width += _measure(command, pt)[0]
            elif command not in _STYLES:
                width += (0.6 if len(command) == 1 else 0.85) * pt * scale  # an escaped character or a symbol
            continue
        i += 1
        if c in "{} ~$" or c.isspace():
            continue
        em = _EM.get(c, 0.8 if c.isupper() else 0.62)
        width += em * pt * scale
    return width, up, down


def _argument(tex: str, i: int) -> tuple[str, int]:
    """The argument starting at ``tex[i]``: a braced group, a command or one character."""
    if i >= len(tex):
        return "", i
    if tex[i] == "{":
        depth, j = 0, i
        while j < len(tex):
            depth += {"{": 1, "}": -1}.get(tex[j], 0)
            if depth == 0:
                return tex[i + 1:j], j + 1
            j += 1
        return tex[i + 1:], len(tex)
    if tex[i] == "\\":
        j = i + 1
        while j < len(tex) and tex[j].isalpha():
            j += 1
        j = max(j, i + 2)
        return tex[i:j], j
    return tex[i], i + 1
