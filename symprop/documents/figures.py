"""Figure layout: where each node of a network, each gate of a circuit and each label go.

Positions are computed here, in cm; the templates draw them with TikZ.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy as sp

from ..printing import latex_number
from .geometry import CM, Box, Circle, Segment, distance_to_segment
from .geometry import label_size as _label_size  # under its old name, which the tests read

__all__ = ["network_figure", "network_figure_overlaps", "circuit_figure", "circuit_clashes", "MAX_FIGURE_NODES",
           "MAX_FIGURE_GATES"]

# Networks with more drawable nodes than this get no figure (it would be unreadable).
MAX_FIGURE_NODES = 40
# The figure's node centres span at most this many cm (the text is 16.6 cm wide).
FIGURE_WIDTH, FIGURE_HEIGHT = 14.0, 14.0
# Circuits with more gates than this get no figure (it would be unreadable).
MAX_FIGURE_GATES = 40


def network_figure(net, name: Callable, num, highlight=()) -> tuple[dict | None, str | None]:
    """Nodes placed by depth (inputs left, the loss right), edges labelled by weight; ``num``
    the forward values and deltas (or None); ``highlight`` the weights asked for, drawn thick.
    Returns ``(figure, None)`` or ``(None, why)``.

    Every label is placed here: a weight on its own edge (a white box the edge runs into), at
    the point along the edge where it meets no other edge, label or node; a node's value
    above it and its delta below it, shifted sideways when an edge would cross them. Spacing
    grows until such a layout exists; :func:`network_figure_overlaps` checks the result."""
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
    edges = []
    for k in net.order:
        for s in net.producers[k]:
            if s in ident:
                weight = _edge_weight(net, s, k)
                edges.append({"source": ident[s], "target": ident[k], "weight": weight,
                              "label": None if weight is None else name(weight)})
    # every weight asked for is drawn thick, unless that is (nearly) every edge: then none is
    asked = [e for e in edges if e["weight"] is not None and e["weight"] in highlight]
    if len(asked) > max(3, len(edges) // 2):
        asked = []
    for e in edges:
        e["highlight"] = any(e is a for a in asked)
        del e["weight"]
    nodes = [{
        "id": ident[s], "label": name(s),
        "number": None if num is None else latex_number(num["point"][s]),
        "delta": None if num is None or s not in num["deltas"] else latex_number(num["deltas"][s]),
    } for s in drawn]
    # spacing in cm: roomy for small nets, squeezed to fit the page for deep or wide ones
    wide = max(1, max(columns))
    tall = max(1, max(len(m) for m in columns.values()) - 1)
    dx0, dy0 = min(3.2, FIGURE_WIDTH / wide), min(2.0, FIGURE_HEIGHT / tall)
    tries = [(raises, grow) for raises in (_RAISES, _RAISES_FAR) for grow in _NETWORK_SPACINGS]
    for raises, (grow_x, grow_y) in tries:
        dx, dy = dx0 * grow_x, dy0 * grow_y
        where = {}
        for col, members in sorted(columns.items()):
            for row, s in enumerate(members):
                where[ident[s]] = (dx * col, dy * ((len(members) - 1) / 2 - row))
        for n in nodes:
            n["x"], n["y"] = (f"{v:.2f}" for v in where[n["id"]])
        if _place_network_labels(nodes, edges, raises):
            break
    figure = {
        "nodes": nodes, "edges": edges, "numbers": num is not None,
        "loss": name(net.loss),
        "asked": list(dict.fromkeys(e["label"] for e in asked)),  # a shared weight is named once
        "thick": len(asked),
    }
    return figure, None


# Spacings tried in turn (multiples of the default column and row spacing) until every
# label finds a place; the last one is used even if some label still overlaps.
_NETWORK_SPACINGS = ((1, 1), (1.2, 1), (1.2, 1.2), (1.4, 1.2), (1.4, 1.4), (1.6, 1.4))
# Font sizes in pt (an 11 pt document: \small node names, \scriptsize labels), cm per pt,
# the radius of a node's circle (minimum size=8mm) and the room kept free around a label.
_NAME_PT, _LABEL_PT = 10.0, 8.0
_RADIUS, _GAP = 0.4, 0.05
# A node's value and delta are shifted sideways by one of these (cm), the smallest that fits;
# a weight sits at one of these fractions of the way along its edge.
_SHIFTS = (0.0, 0.3, -0.3, 0.55, -0.55, 0.8, -0.8)
_RAISES = (0.0, 0.15, 0.3)
# raised further only when no spacing finds room otherwise (a node under two fans of edges)
_RAISES_FAR = _RAISES + (0.45, 0.6)
_ALONG = tuple(round(0.15 + 0.025 * i, 3) for i in range(29))


def _place_network_labels(nodes: list[dict], edges: list[dict], raises=_RAISES) -> bool:
    """Chooses every label's place (``shift`` and ``raise``, one of ``raises``, of a node's
    ``number`` and ``delta``, ``at`` of an edge's weight), writing it into the dicts; True
    when nothing overlaps."""
    geometry = _NetworkGeometry(nodes, edges)
    # (dict, key, candidates [(cost, value, box)], what the label belongs to: the node's id
    # for a value or delta, the edge's index for a weight)
    items = []
    for n in nodes:
        for key, side in (("number", 1), ("delta", -1)):
            if n[key] is not None:
                cands = [(abs(s) + 1.5 * r, (f"{s:.2f}", f"{side * r:.2f}"), geometry.node_label_box(n, n[key], side, s, r))
                         for s in _SHIFTS for r in raises]
                items.append((n, key, cands, n["id"]))
    fan_out, fan_in = {}, {}
    for e in edges:
        if e["label"] is not None:
            fan_out[e["source"]] = fan_out.get(e["source"], 0) + 1
            fan_in[e["target"]] = fan_in.get(e["target"], 0) + 1
    for i, e in enumerate(edges):
        if e["label"] is None:
            continue
        # a weight goes nearer the end where fewer edges meet: where edges converge, labels crowd
        crowd = fan_in[e["target"]] - fan_out[e["source"]]
        prefer = 0.5 - 0.2 * (crowd > 0) + 0.2 * (crowd < 0)
        (x0, y0), (x1, y1) = geometry.centre[e["source"]], geometry.centre[e["target"]]
        cands = []
        for t in _ALONG:
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            w, h = _label_size(e["label"], _LABEL_PT)
            cands.append((abs(t - prefer), f"{x:.2f}, {y:.2f}", Box(float(f"{x:.2f}"), float(f"{y:.2f}"), w / 2, h / 2)))
        items.append((e, "at", cands, i))
    # candidates that no edge (but a weight's own) crosses and that stay clear of every node
    options = []
    for owner, key, cands, own in items:
        fits = [c for c in sorted(cands, key=lambda c: c[0]) if geometry.clear(c[2], own)]
        options.append((owner, key, fits or sorted(cands, key=lambda c: c[0])[:1], bool(fits)))
    order = sorted(range(len(options)), key=lambda i: len(options[i][2]))
    chosen: dict[int, tuple] = {}
    budget = [20000]

    def search(depth: int) -> bool:
        if depth == len(order):
            return True
        i = order[depth]
        for cand in options[i][2]:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            if all(not cand[2].hits(c[2], 2 * _GAP) for c in chosen.values()):
                chosen[i] = cand
                if search(depth + 1):
                    return True
                del chosen[i]
        return False

    placed = search(0) and all(o[3] for o in options)
    if not placed:  # keep the preferred places; the caller tries wider spacing
        chosen = {i: o[2][0] for i, o in enumerate(options)}
    for i, (owner, key, _, _) in enumerate(options):
        if key == "at":
            owner["at"] = chosen[i][1]
        else:
            owner[key + "_shift"], owner[key + "_raise"] = chosen[i][1]
    for n in nodes:
        for key in ("number_shift", "number_raise", "delta_shift", "delta_raise"):
            n.setdefault(key, None)
    for e in edges:
        e.setdefault("at", None)
    return placed


def network_figure_overlaps(figure: dict) -> list[str]:
    """What overlaps in a network figure, each as a sentence (an empty list when nothing does):
    two labels (weights, values, deltas) whose boxes meet, a label on a node's circle, an edge
    through a label other than its own weight. Boxes are estimated from the labels' text, and
    places read from the figure's printed coordinates, as the template draws them."""
    geometry = _NetworkGeometry(figure["nodes"], figure["edges"])
    labels = []  # (what, box, own edge index)
    for n in figure["nodes"]:
        for key, side in (("number", 1), ("delta", -1)):
            if n.get(key) is not None:
                box = geometry.node_label_box(n, n[key], side, float(n[key + "_shift"]), side * float(n[key + "_raise"]))
                labels.append((f"{key} ${n[key]}$ of ${n['label']}$", box, n["id"]))
    for i, e in enumerate(figure["edges"]):
        if e.get("label") is not None:
            x, y = (float(v) for v in e["at"].split(","))
            w, h = _label_size(e["label"], _LABEL_PT)
            labels.append((f"weight ${e['label']}$", Box(x, y, w / 2, h / 2), i))
    found = []
    for a, (what, box, own) in enumerate(labels):
        for other, box2, _ in labels[a + 1:]:
            if box.hits(box2, 2 * _GAP):
                found.append(f"{what} overlaps {other}")
        for i, segment in enumerate(geometry.segments):
            if i != own and segment.hits(box, _GAP):
                e = figure["edges"][i]
                found.append(f"edge {e['source']}->{e['target']} crosses {what}")
        for n in figure["nodes"]:
            if geometry.circle[n["id"]].hits(box, _GAP if n["id"] != own else -0.01):
                found.append(f"{what} lies on node ${n['label']}$")
    return found


class _NetworkGeometry:
    """Node centres and circles, and each edge as the segment between the circles (cm)."""

    def __init__(self, nodes, edges):
        self.centre = {n["id"]: (float(n["x"]), float(n["y"])) for n in nodes}
        self.circle = {}
        for n in nodes:
            w, h = _label_size(n["label"], _NAME_PT)
            self.circle[n["id"]] = Circle(*self.centre[n["id"]], max(_RADIUS, math.hypot(w / 2, h / 2)))
        self.segments = []
        for e in edges:
            (x0, y0), (x1, y1) = self.centre[e["source"]], self.centre[e["target"]]
            length = math.hypot(x1 - x0, y1 - y0) or 1.0
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            r0, r1 = self.circle[e["source"]].r, self.circle[e["target"]].r
            self.segments.append(Segment((x0 + r0 * ux, y0 + r0 * uy), (x1 - r1 * ux, y1 - r1 * uy)))

    def node_label_box(self, node, text, side, shift, away=0.0):
        """The box of a node's value (``side`` 1: above) or delta (-1: below), ``shift`` cm
        right and ``away`` cm further from the node than it would touch."""
        circle = self.circle[node["id"]]
        w, h = _label_size(text, _LABEL_PT)
        return Box(circle.x + shift, circle.y + side * (circle.r + away + h / 2), w / 2, h / 2)

    def clear(self, box, own=None) -> bool:
        """Whether no edge but ``own`` (an edge's index) crosses ``box`` and no node's circle
        meets it (nor comes near, unless it is ``own``, the node the box labels)."""
        if any(i != own and segment.hits(box, _GAP) for i, segment in enumerate(self.segments)):
            return False
        return not any(circle.hits(box, _GAP if k != own else -0.01) for k, circle in self.circle.items())


def _edge_weight(net, source, target):
    """The one parameter multiplying ``source`` in ``target``'s expression, if there is one."""
    found = set()
    for sub in sp.preorder_traversal(net.nodes[target]):
        if sub.is_Mul and source in sub.args:
            found.update(a for a in sub.args if a in net.params)
    return found.pop() if len(found) == 1 else None


# -- gate circuits ---------------------------------------------------------------------------
#
# A circuit figure is laid out here to the last label: every node, gate name, value, gradient
# and (on an exam) answer box gets a centre and a size in cm, estimated from its LaTeX at the
# size the template sets it in, and is placed where it meets no wire, no node and no other
# label (circuit_clashes checks a finished figure). The template only draws what it is given.

# Figure spacing in cm: columns (gate depth) and rows.
_C_DX, _C_DY = 2.7, 1.5
# On a page, node centres span at most _C_WIDTH cm (the output's column included), with
# columns no closer than _C_MIN_DX, and at most _C_HEIGHT cm from top to bottom; everything drawn
# (labels included) fits in _C_PAGE cm (the text is 16.6 cm wide).
_C_WIDTH, _C_MIN_DX, _C_HEIGHT, _C_PAGE = 14.5, 1.9, 20.0, 16.2
# Lanes for wires routed around the circuit, this far apart (cm).
_C_LANE = 0.9
# Font sizes (pt) the template sets: node text \small, wire labels \scriptsize, gate names
# \footnotesize (in an 11pt document).
NODE_PT, LABEL_PT, NAME_PT = 10.0, 8.0, 9.0
# inner sep (pt) of a wire label and of a gate name, as in the template's styles
LABEL_SEP, NAME_SEP = 1.5, 1.0
# An exam's answer box on a wire, in cm: room for "-0.1966" written by hand.
BOX_WIDTH, BOX_HEIGHT = 1.7, 0.65
# A label's offsets (cm) from its wire (the least room around it is _GAP, as in a network).
_C_OFFSETS = (0.08, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.2)
# Where along its wire a label may go (fractions, tried in turn; a wire that fans out
# prefers its far end, where it has parted from its siblings).
_C_ALONG = (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.1, 0.9, 0.05, 0.95)
_C_ALONG_FAN = (0.6, 0.7, 0.5, 0.8, 0.4, 0.9, 0.3, 0.95, 0.2)
# Gates are circles at least 9 mm across.
_C_GATE_MIN_R = 0.45


def circuit_figure(flow, name: Callable, page: bool, words: Callable, digits: int = 4) -> tuple[dict | None, str | None]:
    """Gates placed by depth (variables left, the output right), each wire labelled with
    its forward value and the gradient flowing back along it (and where an exam's answer
    box goes), numbers printed as the text prints them (``digits`` significant digits);
    or None and why not. ``words(gate)`` gives a gate's printed ``label``.
    """
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
    columns = max(column.values()) + 0.85
    dx = min(_C_DX, _C_WIDTH / columns) if page else _C_DX  # squeeze onto the page
    too_large = ("No figure: the circuit is too large to draw legibly on a page; the table lists every wire "
                 "(the figure alone, drawn at full size, comes from render_circuit(..., figure=True)).")
    if page and dx < _C_MIN_DX:
        return None, too_large

    def number(x):
        return latex_number(x, digits)

    text = {
        "leaves": leaves, "drawn": drawn, "column": column,
        "name": {s: name(s) for s in list(leaves) + [g.symbol for g in drawn]},
        "label": {g.symbol: words(g)["label"] for g in drawn},
        "total": {s: number(flow.deltas[s]) for s in column if len(flow.uses.get(s, ())) > 1},
        "value": {s: number(flow.values[s]) for s in column},
        "gradient": {(u, g.symbol): number(dict(flow.uses[u])[g.symbol]) for g in drawn for u in g.inputs},
    }
    solution = _spread(c, text, dx, page, boxes=False)
    exam = _spread(c, text, dx, page, boxes=True)
    if page and any(f["width"] > _C_PAGE or f["height"] > _C_HEIGHT for f in (solution, exam)):
        return None, too_large
    # the exam's figure draws the same wires (their printed values shared, so a caller that
    # reprints a value reprints it in both), with an answer box where the gradient goes
    for mine, theirs in zip(exam["wires"], solution["wires"]):
        mine["wire"] = theirs
    solution["exam"] = exam
    return solution, None


def _spread(c, text, dx, page, boxes) -> dict:
    """The layout at the column spacing ``dx``, its rows spread (or, on a page, its columns
    narrowed) until every label has a free place, or the best one tried."""
    dy, best = _C_DY, None
    for _ in range(8):
        figure = _circuit_layout(c, text, dx, dy, boxes)
        if best is None or (figure["clashes"], figure["width"]) < (best["clashes"], best["width"]):
            best = figure
        if page and figure["width"] > _C_PAGE and dx * 0.92 >= _C_MIN_DX:
            dx *= 0.92
        elif figure["clashes"]:
            dy *= 1.15
        else:
            break
    return best


def _circuit_layout(c, text, dx, dy, boxes) -> dict:
    """Every node and label of the figure at spacing ``dx``, ``dy``, with an answer box
    (``boxes``) or the gradient's number on each wire; ``clashes`` counts the labels that
    found no free place (0 for a good figure)."""
    leaves, drawn, column = text["leaves"], text["drawn"], text["column"]
    # rows: variables in the order the output's inputs reach them; a gate level with the
    # mean of its inputs; then, column by column, nodes pushed apart to one row at least
    y = {s: -i * dy for i, s in enumerate(leaves)}
    for col in range(max(column.values()) + 1):
        members = [s for s in column if column[s] == col]
        for s in members:
            if s in c.gate_of:
                inputs = c.gate_of[s].inputs
                y[s] = sum(y[u] for u in inputs) / len(inputs)
        members.sort(key=lambda s: -y[s])
        for above, below in zip(members, members[1:]):
            y[below] = min(y[below], y[above] - dy)
    ident = {s: f"v{i}" for i, s in enumerate(leaves)}
    ident.update({g.symbol: f"g{i}" for i, g in enumerate(drawn)})
    centre = {s: (dx * column[s], y[s]) for s in column}
    out = c.output
    centre["out"] = (dx * (column[out] + 0.85), y[out])

    # the shapes: gates are circles, variables and the output text boxes
    shape = {}
    for s in leaves:
        w, h = _label_size(text["name"][s], NODE_PT, 2.0)
        shape[s] = Box(*centre[s], w / 2, h / 2)
    for g in drawn:
        w, h = _label_size(text["label"][g.symbol], NODE_PT, 1.0)
        shape[g.symbol] = Circle(*centre[g.symbol], max(_C_GATE_MIN_R, math.hypot(w, h) / 2 + 0.8 * CM))
    w, h = _label_size(text["name"][out], NODE_PT, 2.0)
    shape["out"] = Box(*centre["out"], w / 2, h / 2)

    # the wires: straight, or along a lane above (below) the circuit when the straight line
    # would pass through another node
    top, bottom = max(y.values()), min(y.values())
    lanes = {"above": 0, "below": 0}
    wires = []
    for g in drawn:
        for u in g.inputs:
            a, b = centre[u], centre[g.symbol]
            points = [a, b]
            if any(_near(centre[s], a, b) for s in column if s not in (u, g.symbol)):
                side = "above" if (a[1] + b[1]) / 2 >= (top + bottom) / 2 else "below"
                lanes[side] += 1
                level = top + _C_LANE * lanes[side] if side == "above" else bottom - _C_LANE * lanes[side]
                points = [a, (a[0] + dx / 3, level), (b[0] - dx / 3, level), b]
            wires.append({"source": u, "target": g.symbol, "points": points, "fan": len(c.uses(u)) > 1,
                          "value": text["value"][u], "gradient": text["gradient"][u, g.symbol]})
    wires.append({"source": out, "target": "out", "points": [centre[out], centre["out"]], "fan": False,
                  "value": text["value"][out], "gradient": "1"})
    segments = []
    for w in wires:
        pts = list(w["points"])
        pts[0] = _trim(shape[w["source"]], pts[0], pts[1])
        pts[-1] = _trim(shape[w["target"]], pts[-1], pts[-2])
        w["visible"] = pts
        segments.extend(Segment(p, q) for p, q in zip(pts, pts[1:]))
    taken = list(shape.values()) + segments
    def free(item):
        return not any(item.hits(o, _GAP) for o in taken)

    # a gate's name above its circle (or below, or beside, where no wire passes); a fan-out's
    # total (solutions only) below a gate or left of a variable
    names, totals = {}, {}
    for g in drawn:
        circle = shape[g.symbol]
        w, h = _label_size(text["name"][g.symbol], NAME_PT, NAME_SEP)
        r = circle.r + _GAP + 0.01
        spots = [(sx, sy) for sy in (r + h / 2, -r - h / 2) for sx in (0, 0.3, -0.3, 0.5, -0.5)]
        spots += [(-r - w / 2 + 0.1, r + h / 2 - 0.05), (r + w / 2 - 0.1, r + h / 2 - 0.05), (0, r + h / 2 + 0.25)]
        found = next((b for b in (Box(circle.x + sx, circle.y + sy, w / 2, h / 2) for sx, sy in spots) if free(b)), None)
        if found is None:
            found = Box(circle.x, circle.y + r + h / 2, w / 2, h / 2)
        names[g.symbol] = found
        taken.append(found)
    if not boxes:
        for s, total in text["total"].items():
            w, h = _label_size(r"\Sigma\," + total, LABEL_PT, LABEL_SEP)
            node = shape[s]
            if isinstance(node, Circle):
                spots = [(node.x, node.y - node.r - h / 2 - _GAP - 0.01), (node.x + node.r + w / 2, node.y - node.r - h / 2)]
            else:
                spots = [(node.x - node.hw - w / 2 - 0.05, node.y), (node.x, node.y - node.hh - h / 2 - 0.05)]
            found = next((b for b in (Box(x, y_, w / 2, h / 2) for x, y_ in spots) if free(b)), None)
            if found is None:
                found = Box(*spots[0], w / 2, h / 2)
            totals[s] = found
            taken.append(found)

    # the labels, the most cramped wires first: the value on the upper side of the wire, the
    # gradient (or the exam's box) on the lower side, each as close to its wire as it can be
    # where it meets nothing (a value within 0.35 cm of it, a gradient 0.5 cm, a box 1.2 cm);
    # where that finds no room, the other way round
    def visible_length(w):
        p, q = _labelled_segment(w)
        return math.dist(p, q)

    for w in sorted(wires, key=visible_length):
        p0, p1 = _labelled_segment(w)
        ux, uy = (p1[0] - p0[0]), (p1[1] - p0[1])
        length = math.hypot(ux, uy) or 1.0
        nx, ny = -uy / length, ux / length
        if ny < 0 or (ny == 0 and nx > 0):
            nx, ny = -nx, -ny
        value_size = _label_size(w["value"], LABEL_PT, LABEL_SEP)
        if boxes and w["target"] != "out":
            gradient_size, reach = (BOX_WIDTH, BOX_HEIGHT), _C_OFFSETS
        else:
            gradient_size, reach = _label_size(w["gradient"], LABEL_PT, LABEL_SEP), _C_OFFSETS[:4]
        ts = _C_ALONG_FAN if w["fan"] else _C_ALONG
        chosen = None
        for side in (1, -1):
            up, down = (side * nx, side * ny), (-side * nx, -side * ny)
            value = _first_free(p0, (ux, uy), ts, _C_OFFSETS[:3], up, value_size, free)
            if value is None:
                continue
            gradient = _first_free(p0, (ux, uy), ts, reach, down, gradient_size, lambda b: free(b) and not b.hits(value, _GAP))
            if gradient is not None:
                chosen = value, gradient
                break
        if chosen is None:  # nowhere free: the middle (a clash, counted below)
            p = (p0[0] + 0.5 * ux, p0[1] + 0.5 * uy)
            chosen = _beside(p, (nx, ny), value_size, _C_OFFSETS[0]), _beside(p, (-nx, -ny), gradient_size, _C_OFFSETS[0])
        w["value_box"], w["gradient_box"] = chosen
        taken.extend(chosen)

    def at(item):
        return f"{item.x:.2f}, {item.y:.2f}"

    nodes = []
    for s in leaves:
        nodes.append({"id": ident[s], "x": f"{centre[s][0]:.2f}", "y": f"{centre[s][1]:.2f}", "kind": "variable",
                      "label": text["name"][s], "total": text["total"].get(s),
                      "total_at": at(totals[s]) if s in totals else None})
    for g in drawn:
        s = g.symbol
        nodes.append({"id": ident[s], "x": f"{centre[s][0]:.2f}", "y": f"{centre[s][1]:.2f}", "kind": "gate",
                      "name": text["name"][s], "name_at": at(names[s]), "label": text["label"][s],
                      "total": text["total"].get(s), "total_at": at(totals[s]) if s in totals else None})
    ident["out"] = "out"
    kind = "box" if boxes else "gradient"
    drawn_wires = [{
        "source": ident[w["source"]], "target": ident[w["target"]],
        "via": [f"{x:.2f}, {y:.2f}" for x, y in w["points"][1:-1]] or None,
        "value": w["value"], "gradient": w["gradient"],
        "value_at": at(w["value_box"]), f"{kind}_at": at(w["gradient_box"]),
    } for w in wires]
    items = [o for o in taken if not isinstance(o, Segment)]
    left = min(o.x - o.extent[0] for o in items)
    right = max(o.x + o.extent[0] for o in items)
    low = min(o.y - o.extent[1] for o in items)
    high = max(o.y + o.extent[1] for o in items)
    figure = {
        "nodes": nodes,
        "output": {"id": "out", "x": f"{centre['out'][0]:.2f}", "y": f"{centre['out'][1]:.2f}", "label": text["name"][out]},
        "wires": drawn_wires,
        "box": {"width": f"{BOX_WIDTH * 10:.0f}mm", "height": f"{BOX_HEIGHT * 10:.1f}mm"},
        "width": right - left, "height": high - low,
        # everything placed, for circuit_clashes
        "_items": [("node", shape[s]) for s in shape] + [("name", b) for b in names.values()]
        + [("total", b) for b in totals.values()] + [(f"wire {i}", seg) for i, seg in enumerate(segments)]
        + [item for i, w in enumerate(wires) for item in ((f"value {i}", w["value_box"]), (f"{kind} {i}", w["gradient_box"]))],
    }
    # what counts is what touches (with a little room), whether or not the search found a place
    figure["clashes"] = len(_touching(figure["_items"], 0.02))
    return figure


def circuit_clashes(figure: dict) -> list[tuple[str, str]]:
    """The pairs of things in a circuit figure that touch: a label (a value, a gradient, an
    answer box, a gate's name, a total) on a wire, a node or another label; an empty list for
    a good figure. The solution's figure and the exam's (``figure["exam"]``) are checked."""
    return [pair for f in [figure] + ([figure["exam"]] if "exam" in figure else []) for pair in _touching(f["_items"], 0.0)]


def _touching(items, gap) -> list[tuple[str, str]]:
    found = []
    for i, (what, a) in enumerate(items):
        for other, b in items[i + 1:]:
            if what.startswith(("node", "wire")) and other.startswith(("node", "wire")):
                continue  # the drawing itself: wires end on their nodes
            if a.hits(b, gap=gap):
                found.append((what, other))
    return found


def _labelled_segment(w):
    """The part of a wire its labels go along: the wire, or the lane of a routed wire."""
    pts = w["visible"]
    if len(pts) == 4:
        return pts[1], pts[2]
    return pts[0], pts[1]


def _beside(p, n, size, offset) -> Box:
    """A box of ``size`` on the side ``n`` of a line through ``p``, ``offset`` cm from it."""
    hw, hh = size[0] / 2, size[1] / 2
    d = offset + hw * abs(n[0]) + hh * abs(n[1])
    return Box(p[0] + n[0] * d, p[1] + n[1] * d, hw, hh)


def _first_free(p0, u, ts, offsets, n, size, ok):
    """The first box of ``size`` beside the wire from ``p0`` along ``u`` (side ``n``) that is
    ``ok``: the nearest offsets first, then the fractions ``ts`` along the wire."""
    length2 = u[0] * u[0] + u[1] * u[1] or 1.0
    for offset in offsets:
        for t in ts:
            b = _beside((p0[0] + t * u[0], p0[1] + t * u[1]), n, size, offset)
            # beside its own stretch of wire, not past either end
            along = ((b.x - p0[0]) * u[0] + (b.y - p0[1]) * u[1]) / length2
            if 0.0 <= along <= 1.0 and ok(b):
                return b
    return None


def _trim(node, p, q):
    """Where the straight line from ``p`` (the centre of ``node``) towards ``q`` leaves it."""
    ux, uy = q[0] - p[0], q[1] - p[1]
    length = math.hypot(ux, uy) or 1.0
    if isinstance(node, Circle):
        r = node.r
    else:
        r = min(node.hw / abs(ux / length) if ux else math.inf, node.hh / abs(uy / length) if uy else math.inf)
    r = min(r, length / 2)
    return p[0] + ux / length * r, p[1] + uy / length * r


def _near(p, a, b, reach=0.7) -> bool:
    """Whether point ``p`` lies within ``reach`` cm of the segment from ``a`` to ``b``."""
    return distance_to_segment(p, a, b) < reach
