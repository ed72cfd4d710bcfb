"""Figure layout: where each node of a network, each gate of a circuit and each label go.

Positions are computed here, in cm; the templates draw them with TikZ.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy as sp

from ..printing import latex_number

__all__ = ["network_figure", "circuit_figure", "MAX_FIGURE_NODES", "MAX_FIGURE_GATES"]

# Networks with more drawable nodes than this get no figure (it would be unreadable).
MAX_FIGURE_NODES = 40
# The figure's node centres span at most this many cm (the text is 16.6 cm wide).
FIGURE_WIDTH, FIGURE_HEIGHT = 14.0, 14.0
# Circuits with more gates than this get no figure (it would be unreadable).
MAX_FIGURE_GATES = 40


def network_figure(net, name: Callable, num, highlight=()) -> tuple[dict | None, str | None]:
    """Nodes placed by depth (inputs left, the loss right), edges labelled by weight; ``num``
    the forward values and deltas (or None). Returns ``(figure, None)`` or ``(None, why)``."""
    drawn = list(net.inputs) + [k for k in net.order]
    if len(drawn) > MAX_FIGURE_NODES:
        return None, f"no figure: {len(drawn)} nodes are too many to draw"
    level = {s: 0 for s in net.inputs}
    for k in net.order:
        level[k] = 1 + max((level[s] for s in net.producers[k] if s in level), default=-1)
    columns: dict[int, list] = {}
    for s in drawn:
        columns.setdefault(level[s], []).append(s)
    ident = {s: f"n{i}" for i, s in enumerate(drawn)}
    # spacing in cm: roomy for small nets, squeezed to fit the page for deep or wide ones
    dx = min(3.2, FIGURE_WIDTH / max(1, max(columns)))
    dy = min(2.0, FIGURE_HEIGHT / max(1, max(len(m) for m in columns.values()) - 1))
    nodes = []
    for col, members in sorted(columns.items()):
        for row, s in enumerate(members):
            nodes.append({
                "id": ident[s],
                "x": f"{dx * col:.2f}",
                "y": f"{dy * ((len(members) - 1) / 2 - row):.2f}",
                "label": name(s),
                "number": None if num is None else latex_number(num["point"][s]),
                "delta": None if num is None or s not in num["deltas"] else latex_number(num["deltas"][s]),
            })
    edges = []
    for k in net.order:
        for s in net.producers[k]:
            if s in ident:
                weight = _edge_weight(net, s, k)
                edges.append({
                    "source": ident[s], "target": ident[k],
                    "label": None if weight is None else name(weight),
                    "highlight": weight in highlight,
                })
    return {"nodes": nodes, "edges": edges, "numbers": num is not None}, None


def _edge_weight(net, source, target):
    """The one parameter multiplying ``source`` in ``target``'s expression, if there is one."""
    found = set()
    for sub in sp.preorder_traversal(net.nodes[target]):
        if sub.is_Mul and source in sub.args:
            found.update(a for a in sub.args if a in net.params)
    return found.pop() if len(found) == 1 else None


# Figure spacing in cm: columns (gate depth) and rows.
_DX, _DY = 2.7, 1.5
# On a page, the figure spans at most this many cm (the output's column included), with
# columns no closer than _MIN_DX, and at most _HEIGHT cm from top to bottom.
_WIDTH, _MIN_DX, _HEIGHT = 14.5, 1.9, 20.0
# Lanes for wires routed around the circuit, this far apart (cm).
_LANE = 0.9


def circuit_figure(flow, name: Callable, page: bool, words: Callable) -> tuple[dict | None, str | None]:
    """Gates placed by depth (variables left, the output right), each wire labelled with
    its forward value and the gradient flowing back along it; or None and why not.
    ``words(gate)`` gives a gate's printed ``label``."""
    c = flow.circuit
    if len(c.gates) > MAX_FIGURE_GATES:
        return None, f"No figure: {len(c.gates)} gates are too many to draw; the table lists every wire."
    # variables top to bottom in the order the output's inputs reach them
    leaves, seen = [], set()

    def visit(s):
        if s in seen:
            return
        seen.add(s)
        if s in c.gate_of:
            for u in c.gate_of[s].inputs:
                visit(u)
        else:
            leaves.append(s)

    visit(c.output)
    drawn = [g for g in c.gates if g.symbol in seen]
    column = {s: 0 for s in leaves}
    for g in drawn:  # a gate's column is its depth: one past its deepest input
        column[g.symbol] = 1 + max(column[u] for u in g.inputs)
    for s in leaves:  # a variable stands just left of the first gate that reads it
        column[s] = min(column[k] for k in c.uses(s) if k in column) - 1
    # rows: variables in the order the output's inputs reach them; a gate level with the
    # mean of its inputs; then, column by column, nodes pushed apart to one row at least
    y = {s: -i * _DY for i, s in enumerate(leaves)}
    for col in range(max(column.values()) + 1):
        members = [s for s in column if column[s] == col]
        for s in members:
            if s in c.gate_of:
                inputs = c.gate_of[s].inputs
                y[s] = sum(y[u] for u in inputs) / len(inputs)
        members.sort(key=lambda s: -y[s])
        for above, below in zip(members, members[1:]):
            y[below] = min(y[below], y[above] - _DY)
    dx = min(_DX, _WIDTH / (max(column.values()) + 0.85)) if page else _DX  # squeeze onto the page
    if page and (dx < _MIN_DX or max(y.values()) - min(y.values()) > _HEIGHT):
        return None, ("No figure: the circuit is too large to draw legibly on a page; the table lists every wire "
                      "(the figure alone, drawn at full size, comes from render_circuit(..., figure=True)).")
    ident = {s: f"v{i}" for i, s in enumerate(leaves)}
    ident.update({g.symbol: f"g{i}" for i, g in enumerate(drawn)})

    def place(s):
        return {"id": ident[s], "x": f"{dx * column[s]:.2f}", "y": f"{y[s]:.2f}"}

    def total(s):  # the summed gradient, shown at a wire that fans out
        return short(flow.deltas[s]) if len(flow.uses.get(s, ())) > 1 else None

    def short(x):
        return latex_number(x, 3)

    nodes = [{**place(s), "kind": "variable", "label": name(s), "total": total(s)} for s in leaves]
    nodes += [{**place(g.symbol), "kind": "gate", "name": name(g.symbol), "label": words(g)["label"],
               "total": total(g.symbol)} for g in drawn]
    # a wire whose straight line would cross another node runs along a lane of its own
    # above (or below) the circuit instead: down its middle go the value and the gradient
    centre = {s: (dx * column[s], y[s]) for s in column}
    top, bottom = max(y.values()), min(y.values())
    lanes = {"above": 0, "below": 0}
    wires = []
    for g in drawn:
        for u in g.inputs:
            contribution = dict(flow.uses[u])[g.symbol]
            # wires that leave one source together are labelled nearer their ends, where they part
            pos = "0.62" if len(flow.uses[u]) > 1 else "0.4"
            wire = {"source": ident[u], "target": ident[g.symbol], "via": None, "pos": pos,
                    "value": short(flow.values[u]), "gradient": short(contribution)}
            a, b = centre[u], centre[g.symbol]
            if any(_near(centre[s], a, b) for s in column if s not in (u, g.symbol)):
                side = "above" if (a[1] + b[1]) / 2 >= (top + bottom) / 2 else "below"
                lanes[side] += 1
                level = top + _LANE * lanes[side] if side == "above" else bottom - _LANE * lanes[side]
                wire["via"] = [f"{a[0] + dx / 3:.2f}, {level:.2f}", f"{b[0] - dx / 3:.2f}, {level:.2f}"]
            wires.append(wire)
    out = c.output
    end = {"id": "out", "x": f"{dx * (column[out] + 0.85):.2f}", "y": f"{y[out]:.2f}", "label": name(out)}
    wires.append({"source": ident[out], "target": "out", "via": None, "pos": "0.4", "value": short(flow.values[out]), "gradient": "1"})
    return {"nodes": nodes, "output": end, "wires": wires}, None


def _near(p, a, b, reach=0.7) -> bool:
    """Whether point ``p`` lies within ``reach`` cm of the segment from ``a`` to ``b``."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy) < reach
