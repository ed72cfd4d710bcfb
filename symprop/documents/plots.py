r"""Plots of activations and their derivatives, with a network's units marked at their values.

Seed 000 explains two ways a gradient dies with plots of σ, σ′, tanh′ and relu′: a sigmoid
whose input is large sits where σ′(u) ≈ 0 (saturated), a relu whose input is negative sits
where relu′(u) = 0 (dead). This module draws the same plots for the activations a network
uses and marks on them the pre-activation u of every unit at the network's values, so that
a saturated or dead unit shows where it sits.

The coordinates are computed here, from each primitive's NumPy form (the function) and its
derivative rule (the derivative, lambdified with the same NumPy forms), and handed to
pgfplots as a table: TeX never evaluates a formula, so a defined function plots as exactly
as a built-in one, and the same input gives the same bytes. A jump of the derivative
(relu′ at 0) is located by bisection and drawn as a gap, not as a steep line.

>>> c = curve("relu")
>>> [(round(u, 9), d) for u, _, d in c.rows if -0.1 < u < 0.1]  # relu'(0) = 0, a break, then 1
[(-0.05, 0.0), (0.0, 0.0), (0.0, nan), (0.0, 1.0), (0.05, 1.0)]
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .. import functions as F
from ..graph import Network
from ..numeric import SATURATION, gradient
from ..printing import LatexPrinter, latex_number
from .environment import environment

__all__ = ["Curve", "Mark", "ActivationPlot", "curve", "activation_plots", "render_plot_document",
           "gradient_flow_remark", "PGFPLOTS_PREAMBLE"]

# pgfplots' behaviour is pinned to this version (1.16: TeX Live 2018 and later; Debian's
# texlive-pictures ships it, which .ci/run installs).
PGFPLOTS_PREAMBLE = "\\usepackage{pgfplots}\n\\pgfplotsset{compat=1.16}"

SAMPLES = 240  # intervals of the sampled window: 0.05 apart in the default window [-6, 6]
# Half-widths of the plotted window: the first that holds every marked unit (with a margin).
WINDOWS = (6.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
JUMP = 0.02  # a derivative change between two samples above this share of its range is looked at
TABLE_ROWS = 6  # rows of the unit table under a plot, in two column groups: 12 marks, the rest counted
MAX_LABEL_ROWS = 3  # rows of unit names above a plot; names that fit in none are left to the table


@dataclass(frozen=True)
class Curve:
    """An activation ``function`` (an expression in :data:`symprop.functions.U`), its
    ``derivative``, and ``rows`` of ``(u, f(u), f'(u))`` sampled over ``window`` (NaN where
    a line is broken: at a jump of the derivative, or where the function is undefined)."""

    function: sp.Expr
    derivative: sp.Expr
    window: tuple[float, float]
    rows: tuple[tuple[float, float, float], ...]

    def values(self, u) -> np.ndarray:
        """f at ``u`` (an array) by the primitive's NumPy form."""
        return _numpy(self.function)(u)

    def slopes(self, u) -> np.ndarray:
        """f′ at ``u`` (an array) by the derivative rule, lambdified with the NumPy forms."""
        return _numpy(self.derivative)(u)


@dataclass(frozen=True)
class Mark:
    """One unit at one sample: its node, the sample (1-based; None for a single sample), its
    pre-activation ``u``, ``value`` f(u) and ``slope`` f′(u), and ``state``: "saturated"
    (f′(u) below :data:`~symprop.numeric.SATURATION` for a saturating activation, or a
    nonzero f′ below it for another), "dead" (f′(u) = 0: the unit is off in this sample; dead
    when it is off in every sample), or None."""

    node: sp.Symbol
    sample: int | None
    u: float
    value: float
    slope: float
    state: str | None


@dataclass(frozen=True)
class ActivationPlot:
    """One activation of a network: its curve and the marks of its units."""

    curve: Curve
    marks: tuple[Mark, ...]


def curve(activation, window: float = WINDOWS[0]) -> Curve:
    """The sampled curve of ``activation`` (a name such as "sigmoid", a record, a function
    class, or an expression in :data:`symprop.functions.U` such as ``leaky_relu(U, 0.2)``)
    over ``[-window, window]``.

    >>> c = curve("sigmoid")
    >>> c.window, len(c.rows), c.rows[120]
    ((-6.0, 6.0), 241, (0.0, 0.5, 0.25))
    """
    f = activation if isinstance(activation, sp.Expr) else F.activation(activation)(F.U)
    d = sp.diff(f, F.U)  # the primitive's own derivative rule (fdiff), not a numeric difference
    value, slope = _numpy(f), _numpy(d)
    step = 2 * window / SAMPLES
    u = np.array([round(-window + i * step, 10) for i in range(SAMPLES + 1)])
    with np.errstate(all="ignore"):
        ys, ds = value(u), slope(u)
    rows = []
    finite = ds[np.isfinite(ds)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    for i in range(len(u)):
        rows.append((float(u[i]), _finite(ys[i]), _finite(ds[i])))
        if i + 1 < len(u) and span > 0 and abs(ds[i + 1] - ds[i]) > JUMP * span:
            rows += _jump(value, slope, float(u[i]), float(u[i + 1]))
    return Curve(f, d, (-window, window), tuple(rows))


def _jump(value, slope, a: float, b: float) -> list:
    """Rows at a jump of the derivative between samples ``a`` and ``b``: the last point
    before it, a break, the first after it; none when bisection finds a steep but
    continuous change (tanh′ near 0 is steep, relu′ at 0 jumps)."""
    start = a
    da, db = _at(slope, a), _at(slope, b)
    size = abs(db - da)
    width = (b - a) * 1e-9  # a billionth of the sample spacing: far below any pixel
    while b - a > width:
        m = (a + b) / 2
        if not a < m < b:
            break
        dm = _at(slope, m)
        if abs(dm - da) > abs(db - dm):
            b, db = m, dm
        else:
            a, da = m, dm
    if not abs(db - da) > size / 2:
        return []
    rows = [(a, _at(value, a), da)] if a != start else []
    return rows + [((a + b) / 2, _at(value, (a + b) / 2), math.nan), (b, _at(value, b), db)]


def _at(fn, x: float) -> float:
    with np.errstate(all="ignore"):
        return _finite(np.asarray(fn(np.array([x])), dtype=float).reshape(-1)[0])


def _finite(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else math.nan


_LAMBDAS: dict = {}


def _numpy(expr):
    """``expr`` (in U) as a NumPy function of an array, each primitive by its stable NumPy
    form; a constant is broadcast to the array's shape."""
    if expr not in _LAMBDAS:
        x = sp.Dummy("x")
        f = sp.lambdify([x], expr.xreplace({F.U: x}), modules=[F.numpy_namespace([expr]), "numpy"])
        _LAMBDAS[expr] = lambda u, f=f: np.asarray(f(np.asarray(u, dtype=float)), dtype=float) \
            + np.zeros_like(np.asarray(u, dtype=float))
    return _LAMBDAS[expr]


# -- a network's units -------------------------------------------------------------------

def _unit(expr, bind) -> tuple[sp.Expr, sp.Expr] | None:
    """``(activation, pre-activation)`` of a unit ``f(u)``: the activation as an expression in
    U (a bound generic as its activation; further arguments such as leaky relu's slope
    kept), or None when ``expr`` is not one elementwise activation call. SymPy writes
    ``tanh(a - b)`` as ``-tanh(b - a)`` (tanh is odd): that is the unit tanh at ``a - b``."""
    if isinstance(expr, sp.Mul) and len(expr.args) == 2 and expr.args[0] == -1 and _unit(expr.args[1], bind):
        f, u = _unit(expr.args[1], bind)
        return (f, -u) if f.func in _ODD else None
    if not isinstance(expr, sp.Function) or not expr.args or not all(a.is_Number for a in expr.args[1:]):
        return None
    if isinstance(expr, F.GenericFunction):
        if expr.order != 0 or expr.base_name not in bind:
            return None
        return F.activation(bind[expr.base_name])(F.U), expr.args[0]
    record = F.record_of(expr)
    if record is None or not record.activation:
        return None
    return expr.func(F.U, *expr.args[1:]), expr.args[0]


_ODD = (sp.tanh, sp.sinh)  # functions SymPy takes a minus sign out of: f(-u) = -f(u)


def activation_plots(net: Network, values, bind: Mapping | None = None) -> list[ActivationPlot]:
    """One plot for each activation ``net``'s units use (a unit: a node that is one
    activation call), in the order of the nodes, each with its units marked at their
    pre-activations at ``values`` (a batch gives one mark per unit and sample). Forward
    values come from :func:`symprop.numeric.gradient` (its errors name the symbol).

    >>> import sympy as sp
    >>> from symprop import Network, sigmoid, relu
    >>> x, t, w, v, h, r, E = sp.symbols("x t w v h r E")
    >>> net = Network({h: sigmoid(w*x), r: relu(-w*x), E: (t - h - v*r)**2/2}, loss=E,
    ...               params=[w, v], inputs=[x], targets=[t])
    >>> plots = activation_plots(net, {"x": 1.0, "t": 0.0, "w": 8.0, "v": 1.0})
    >>> [(str(p.curve.function), [(str(m.node), m.u, m.state) for m in p.marks]) for p in plots]
    [('sigmoid(u)', [('h', 8.0, 'saturated')]), ('relu(u)', [('r', -8.0, 'dead')])]
    """
    return [ActivationPlot(curve(f, _window(marks)), marks) for f, marks in _marked_units(net, values, bind)]


def _marked_units(net: Network, values, bind) -> list[tuple[sp.Expr, tuple[Mark, ...]]]:
    """Each activation (in U) with the marks of its units, without sampling its curve."""
    bind = dict(bind or {})
    result = gradient(net, values, bind=bind or None)
    point = {(net.symbol(s) if isinstance(s, str) else s): np.asarray(v, dtype=float) for s, v in dict(values).items()}
    point.update(result.values)
    m = max((np.size(v) for v in result.values.values()), default=1)
    units = [(k, unit) for k in net.order if (unit := _unit(net.nodes[k], bind)) is not None]
    # one compiled function for them all; a generic g inside an input is its activation
    inputs = _evaluate([F.bind_generics(pre, bind) for _, (_, pre) in units], point)
    groups: dict = {}
    for (k, (f, _)), u in zip(units, inputs):
        groups.setdefault(f, []).append((k, _broadcast(u, m)))
    found = []
    for f, members in groups.items():
        record = F.record_of(f) or F.record_of("identity")
        value, slope = _numpy(f), _numpy(sp.diff(f, F.U))
        marks = []
        for k, u in members:
            with np.errstate(all="ignore"):
                ys, ds = value(u), slope(u)
            for i, (x, y, d) in enumerate(zip(u, ys, ds)):
                marks.append(Mark(k, i + 1 if result.batched else None, float(x), float(y), float(d),
                                  _state(record, float(d))))
        found.append((f, tuple(marks)))
    return found


def _window(marks) -> float:
    """The first of :data:`WINDOWS` that holds every mark with a margin (else the last)."""
    top = max((abs(m.u) for m in marks if math.isfinite(m.u)), default=0.0)
    return next((w for w in WINDOWS if top <= 0.95 * w), WINDOWS[-1])


def _state(record, slope: float) -> str | None:
    """A mark's state by flow's measure: a saturating activation is saturated below
    SATURATION (even where f′ rounds to 0); another is dead at f′ = 0, saturated below it."""
    if record.saturating and abs(slope) < SATURATION:
        return "saturated"
    if slope == 0:
        return "dead"
    return "saturated" if abs(slope) < SATURATION else None


def _evaluate(exprs: list, point) -> list:
    """Each of ``exprs`` (leaves and node values) at ``point``, by the primitives' NumPy
    forms, compiled as one function; the symbols become plain names, so that a spec's names
    never meet NumPy's."""
    if not exprs:
        return []
    symbols = sorted(set().union(*[e.free_symbols for e in exprs]), key=lambda s: s.name)
    names = [sp.Symbol(f"_a{i}") for i in range(len(symbols))]
    renamed = [e.xreplace(dict(zip(symbols, names))) for e in exprs]
    fn = sp.lambdify(names, renamed, modules=[F.numpy_namespace(exprs), "numpy"])
    with np.errstate(all="ignore"):
        return [np.asarray(v, dtype=float) for v in fn(*[point[s] for s in symbols])]


def _broadcast(u, m) -> np.ndarray:
    return np.broadcast_to(np.asarray(u, dtype=float).reshape(-1), (m,)).copy() if np.size(u) in (1, m) \
        else np.asarray(u, dtype=float).reshape(-1)


# -- LaTeX ---------------------------------------------------------------------------------

def _number(x: float) -> str:
    """A coordinate for pgfplots: round-trip exact, ``nan`` for a break."""
    return "nan" if math.isnan(x) else repr(float(x))


def _limits(ys, include_zero: bool) -> tuple[float, float]:
    """The y range of an axis: the finite values (and 0 for a derivative), 8 % margin."""
    finite = [y for y in ys if math.isfinite(y)] + ([0.0] if include_zero else [])
    low, high = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    if high - low < 1e-9 * max(1.0, abs(high)):
        low, high = low - 1, high + 1
    pad = 0.08 * (high - low)
    return low - pad, high + pad


class _Labels:
    """Unit names above a plot, in rows so that no two meet: each name's width is estimated
    in u units from its visible length (the axis is 0.8 of a 16.6 cm text width, 375 pt)."""

    def __init__(self, window):
        self.scale = (window[1] - window[0]) / 375.0  # u units per point
        self.rows: list[list[tuple[float, float]]] = [[] for _ in range(MAX_LABEL_ROWS)]

    def place(self, u: float, visible: int) -> int | None:
        half = (4.8 * visible + 4) * self.scale / 2  # \scriptsize: under 4.8 pt a character
        for r, taken in enumerate(self.rows):
            if all(u + half < a or u - half > b for a, b in taken):
                taken.append((u - half, u + half))
                return r
        return None


def _visible(tex: str) -> int:
    """A generous count of the printed characters of a short LaTeX name (a command as one)."""
    return max(1, len(re.sub(r"[{}^_\s]", "", re.sub(r"\\[A-Za-z]+", "x", tex))))


def _shown(rows: list, n: int) -> list:
    """At most ``n`` of the table's rows, in their order: the units dead or saturated in every
    sample first, then the marks off or saturated in theirs, then the others."""
    rank = lambda row: 2 if row["state"] is None else 0 if row["throughout"] else 1  # noqa: E731
    keep = sorted(range(len(rows)), key=lambda i: rank(rows[i]))[:n]
    return [rows[i] for i in sorted(keep)]


def _columns(rows: list, height: int) -> list:
    """``rows`` side by side in groups of ``height``: row i holds the i-th of each group."""
    groups = [rows[i:i + height] for i in range(0, len(rows), height)] or [[]]
    return [[g[i] if i < len(g) else None for g in groups] for i in range(len(groups[0]))]


def _plot_context(plot: ActivationPlot, printer: LatexPrinter, height: str) -> dict:
    c = plot.curve
    lo, hi = c.window
    f_limits = _limits([r[1] for r in c.rows], include_zero=False)
    d_limits = _limits([r[2] for r in c.rows], include_zero=True)
    labels = _Labels(c.window)
    every: dict = {}
    for mark in plot.marks:
        every.setdefault(mark.node, set()).add(mark.state)
    marks, table = [], []
    for mark in plot.marks:
        name = printer.doprint(mark.node)
        if mark.sample is not None:  # braced when a layered name a^{1}_{2} has a superscript of its own
            name = f"{{{name}}}^{{({mark.sample})}}" if "^" in name else f"{name}^{{({mark.sample})}}"
        u = min(max(mark.u, lo), hi)  # a unit beyond the window sits at its edge (the table has its u)
        marks.append({
            "u": _number(u),
            "value": _number(min(max(mark.value, f_limits[0]), f_limits[1])),
            "slope": _number(min(max(mark.slope, d_limits[0]), d_limits[1])),
            "state": mark.state or "live",
            "name": name,
            "row": labels.place(u, _visible(name)),
            "beyond": u != mark.u,
        })
        table.append({"name": name, "u": latex_number(mark.u), "value": latex_number(mark.value),
                      "slope": latex_number(mark.slope), "state": mark.state, "beyond": u != mark.u,
                      # in a batch, a unit is dead (saturated) only when it is in every sample
                      "throughout": mark.sample is None or every[mark.node] == {mark.state}})
    states = {m["state"] for m in marks}
    head = _head(c.function, printer)
    return {
        "function": _call(head, c.function, printer),
        "derivative": _call(head + "'", c.function, printer),
        "head": head,
        "xmin": _number(lo), "xmax": _number(hi),
        "f_limits": [_number(x) for x in f_limits],
        "d_limits": [_number(x) for x in d_limits],
        "rows": [" ".join(_number(x) for x in r) for r in c.rows],
        "marks": marks,
        "kinds": [k for k in ("live", "saturated", "dead") if k in states],
        "table": _columns(_shown(table, 2 * TABLE_ROWS), TABLE_ROWS),
        "more": max(0, len(table) - 2 * TABLE_ROWS),
        "unlabelled": sum(m["row"] is None for m in marks),
        "saturation": latex_number(SATURATION),
        "height": height,
        "label_step": 16 if any("^" in m["name"] for m in marks) else 11,  # points between rows of names
        "units": len({m.node for m in plot.marks}),
        "batch": any(m.sample is not None for m in plot.marks),
    }


def _head(f: sp.Expr, printer: LatexPrinter) -> str:
    record = F.record_of(f) or F.record_of("identity")
    return printer.head(record) or record.head


def _call(head: str, f: sp.Expr, printer: LatexPrinter) -> str:
    args = [F.U] + (list(f.args[1:]) if isinstance(f, sp.Function) else [])
    return head + "(" + ", ".join(printer.doprint(a) for a in args) + ")"


def _printer(net: Network) -> LatexPrinter:
    return LatexPrinter({"names": net.display})


def render_plot_document(net: Network, values, bind: Mapping | None = None, *, title: str | None = None) -> str:
    r"""A standalone LaTeX document with one page per activation ``net`` uses: the function
    above, its derivative below, each unit marked at its pre-activation, and a table of the
    units (u, f(u), f′(u), saturated or dead). ``title`` is printed literally. A network
    without units is a ValueError.

    >>> import sympy as sp
    >>> from symprop import Network, relu
    >>> x, t, w, r, E = sp.symbols("x t w r E")
    >>> net = Network({r: relu(w*x), E: (t - r)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
    >>> tex = render_plot_document(net, {"x": 1.0, "t": 0.0, "w": -2.0})
    >>> r"\usepackage{pgfplots}" in tex, tex.count(r"\begin{axis}")
    (True, 2)
    """
    printer = _printer(net)
    plots = [_plot_context(p, printer, "4.2cm") for p in activation_plots(net, values, bind)]
    if not plots:
        raise ValueError("no unit to plot: no node is one activation call (sigmoid, tanh, relu, ...)")
    return environment().get_template("activation_plot.tex.j2").render(
        plots=plots, title=title, pgfplots=PGFPLOTS_PREAMBLE, loss=printer.doprint(net.loss))


def gradient_flow_remark(net: Network, values, bind: Mapping | None = None) -> dict | None:
    r"""The worked solution's "Gradient flow" remark, when a unit is saturated or dead at
    ``values`` in every sample (by flow's measure, :data:`~symprop.numeric.SATURATION`): ``{"preamble":
    the packages it needs, "remark": the LaTeX}``, with the plots of the activations of
    those units. None otherwise, or without numbers (the solution says why elsewhere).

    >>> import sympy as sp
    >>> from symprop import Network, relu
    >>> x, t, w, r, E = sp.symbols("x t w r E")
    >>> net = Network({r: relu(w*x), E: (t - r)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
    >>> gradient_flow_remark(net, {"x": 1.0, "t": 0.0, "w": 2.0}) is None
    True
    >>> "dead" in gradient_flow_remark(net, {"x": 1.0, "t": 0.0, "w": -2.0})["remark"]
    True
    """
    if not values:
        return None
    try:
        every = _marked_units(net, values, bind)
    except (ValueError, TypeError, ArithmeticError):  # NumericError (a NetworkError) included
        return None
    states: dict = {}
    for _, marks in every:
        for mark in marks:
            states.setdefault(mark.node, set()).add(mark.state)
    # as flow judges a unit: dead or saturated in every sample
    dead = [k for k, s in states.items() if s == {"dead"}]
    saturated = [k for k, s in states.items() if s and None not in s and k not in dead]
    if not (dead or saturated):
        return None
    printer = _printer(net)
    plots = [ActivationPlot(curve(f, _window(marks)), marks) for f, marks in every
             if any(m.node in dead or m.node in saturated for m in marks)]
    remark = environment().get_template("activation_plot_remark.tex.j2").render(
        plots=[_plot_context(p, printer, "3.6cm") for p in plots],
        saturated=[printer.doprint(k) for k in saturated],
        dead=[printer.doprint(k) for k in dead],
        batch=any(m.sample is not None for p in plots for m in p.marks),
        saturation=latex_number(SATURATION),
    )
    return {"preamble": PGFPLOTS_PREAMBLE, "remark": remark}
