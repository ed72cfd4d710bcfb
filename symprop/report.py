"""Reports: every result as terminal text and as JSON, in one room.

Each result type has a ``_text_<Class>`` and a ``_json_<Class>`` function here; :func:`text`
and :func:`json` dispatch on the result's class name, as SymPy's printers dispatch
``_print_<Class>``. JSON holds plain numbers, lists and dicts with the spec's
identifiers as keys.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .derive import local_partial, resolve_wrt
from .matrix import MAX_LISTED, MAX_SHOWN, MatrixStep
from .matrix import text as matrix_text
from .numeric import EXPLODING_RATIO, SATURATION, VANISHING, VANISHING_RATIO
from .printing import derivation_text, spec_chain, spec_string, text as text_of

__all__ = ["text", "json", "gradient_for"]

MAX_COLUMNS = 6  # samples shown side by side in text tables


def text(result) -> str:
    """``result`` for a terminal."""
    return _dispatch("_text_", result)()


def json(result) -> dict:
    """``result`` as JSON-ready data."""
    return _dispatch("_json_", result)()


def _dispatch(prefix, result):
    for cls in type(result).__mro__:
        f = globals().get(prefix + cls.__name__)
        if f is not None:
            return lambda: f(result)
    raise TypeError(f"no report for {type(result).__name__}")


# -- derivations ---------------------------------------------------------------------------

def _text_Derivation(d) -> str:
    return derivation_text(d)


def _json_Derivation(d) -> dict:
    result = d.substituted
    record = {
        "wrt": str(d.wrt),
        "method": d.method,
        "steps": [{"rule": s.rule, "equation": f"{spec_string(s.lhs)} = {spec_chain(s.rhs)}"} for s in d.steps],
        "result": None if result is None else spec_string(result),
        "forms": {
            "deltas": spec_chain(d.in_deltas),
            "local": None if d.in_local_partials is None else spec_chain(d.in_local_partials),
            "paths": None if d.as_paths is None else spec_chain(d.as_paths),
        },
        "path_count": d.path_count,
    }
    if d.notes:
        record["note"] = "; ".join(d.notes)
    return record


# -- numbers: gradient, check, descent, flow ----------------------------------------------

def _json_Gradient(result) -> dict:
    """The CLI's JSON: ``{"loss", "values", "deltas", "gradient"}`` keyed by identifiers."""
    return {
        "loss": _plain(result.loss),
        "values": {str(k): _sample_Gradient(result, v) for k, v in result.values.items()},
        "deltas": {str(k): _sample_Gradient(result, v) for k, v in result.deltas.items()},
        "gradient": {str(s): _plain(v) for s, v in result.gradient.items()},
    }


def gradient_for(result, wrt):
    """``result`` (a numeric :class:`~symprop.numeric.Gradient`) with its ``gradient`` holding
    only dE/d``w`` for each ``w`` of ``wrt`` (names or symbols), in that order. A node's is its
    delta, reduced over a batch as an input's gradient is (the change of the loss for a
    change added to the node's value in every sample): ``symprop grad --wrt z_4``."""
    net = result.network
    selected = {}
    for w in wrt:
        s = resolve_wrt(net, w)
        if s in result.gradient:
            selected[s] = result.gradient[s]
        else:
            deltas = result.deltas[s]
            total = math.fsum(float(x) for x in deltas)
            selected[s] = total / len(deltas) if net.reduction == "mean" else total
    return dataclasses.replace(result, gradient=selected)


def _sample_Gradient(result, v):
    return [_plain(x) for x in v] if result.batched else _plain(v[0])


def _text_Gradient(result) -> str:
    net = result.network
    m = len(next(iter(result.values.values())))
    shown = min(m, MAX_COLUMNS)
    lines = [f"loss {net.loss} = {_num(result.loss)}" + (f"  ({net.reduction} over {m} samples)" if result.batched else "")]
    cols = [""] if not result.batched else [f"[{i + 1}]" for i in range(shown)]
    header = ["node"] + [f"value{c}" for c in cols] + [f"d{net.loss}/dnode{c}" for c in cols]
    rows = [
        [str(k)] + [_num(v) for v in result.values[k][:shown]] + [_num(d) for d in result.deltas[k][:shown]]
        for k in net.order
    ]
    lines += ["", _table(header, rows)]
    if shown < m:
        lines.append(f"(the first {shown} of {m} samples; --format json lists them all)")
    rows = [[f"d{net.loss}/d{s}", _num(v), "node" if s in net.nodes else net.role(s)]  # a node: grad --wrt
            for s, v in result.gradient.items()]
    lines += ["", _table(["gradient", "value", "of"], rows)]
    return "\n".join(lines)


def _json_Check(result) -> dict:
    def row(r, other):
        record = {"engine": _plain(r.engine), other: _maybe(r.other),
                  "relative_error": _maybe(r.rel_error), "verdict": r.verdict}
        if r.expression is not None:
            record["expression"] = spec_string(r.expression)
        if r.failed:
            record["paths"] = [
                {"path": [str(s) for s in p.path],
                 "factors": [[_plain(x) for x in f] if result.batched else _plain(f[0]) for f in p.factors],
                 "value": _plain(p.value)}
                for p in r.paths
            ]
            if r.note:
                record["note"] = r.note
        return record

    good, ok, suspicious = result.thresholds
    return {
        "loss": _plain(result.loss),
        "step": result.epsilon,
        "parameters": {str(r.name): row(r, "numeric") for r in result.rows},
        "against": {str(r.name): row(r, "yours") for r in result.against},
        "passed": result.passed,
        "difference": result.difference,
        "epsilon": result.epsilon,
        "formula": _difference_formula(result.difference, result.network.loss),
        "thresholds": {"good": good, "ok": ok, "suspicious": suspicious},
        "cost": {
            "parameters": len(result.rows),
            "forward_passes": result.forward_passes,
            "passes_rule": "P + 1" if result.difference == "forward" else "2P",
            **({} if result.seconds is None else {"seconds": _plain(result.seconds)}),
            "backprop": {"forward_passes": 1, "backward_passes": 1,
                         **({} if result.backprop_seconds is None else {"seconds": _plain(result.backprop_seconds)})},
        },
    }


def _difference_formula(difference, loss) -> str:
    if difference == "forward":
        return f"({loss}(w + h) − {loss}(w)) / h, h = ε·max(1, |w|)"
    return f"({loss}(w + h) − {loss}(w − h)) / 2h, h = ε·max(1, |w|)"


def _ms(seconds) -> str:
    return f"{seconds * 1e3:.3g} ms"


def _text_Check(result) -> str:
    net = result.network
    lines = [f"gradient check of d{net.loss}/dw at {net.loss} = {_num(result.loss)}: {result.difference} differences "
             f"{_difference_formula(result.difference, net.loss)}, ε = {result.epsilon:g}"]
    header = ["param", "engine", "numeric", "rel. error", "verdict"]
    rows = [[str(r.name), _num(r.engine), _num(r.other), _rel(r.rel_error), r.verdict] for r in result.rows]
    lines += ["", _table(header, rows)]
    if result.against:
        header = ["param", "engine", "yours", "rel. error", "verdict", "your expression"]
        rows = [[str(r.name), _num(r.engine), "n/a" if r.other is None else _num(r.other), _rel(r.rel_error), r.verdict,
                     text_of(r.expression)]
                for r in result.against]
        lines += ["", _table(header, rows)]
    for r in result.rows + result.against:
        if r.failed:
            lines += ["", f"{r.name}: {r.verdict}; its path terms (d{net.loss}/d{r.name} is their sum):"]
            for p in r.paths:
                factors = "" if result.batched else " = " + "·".join(f"({_num(f[0])})" for f in p.factors)
                lines.append(f"  {p.chain()}{factors} = {_num(p.value)}")
            if r.note:
                lines.append(f"  {r.note}")
    p, passes = len(result.rows), result.forward_passes
    rule = f"P + 1 = {passes}" if result.difference == "forward" else f"2P = {passes}"
    if result.seconds is None:  # untimed: the same input, the same output
        lines += ["", f"cost: {rule} forward passes for P = {p} parameter{'s' * (p != 1)}; "
                      "backprop: 1 forward + 1 backward pass (--timing measures both)"]
    else:
        per = f", {_ms(result.seconds / passes)} each" if passes else ""
        lines += ["", f"cost: {rule} forward passes for P = {p} parameter{'s' * (p != 1)}, {_ms(result.seconds)}{per}; "
                      f"backprop: 1 forward + 1 backward pass, {_ms(result.backprop_seconds)}"]
    lines += ["", "passed" if result.passed else "FAILED: " + ", ".join(result.failures)]
    good, ok, suspicious = result.thresholds
    why = "" if result.difference == "central" else f", allowing the O(ε) error of {result.difference} differences"
    lines.append(f"(verdicts: good <= {good:g} < ok <= {ok:g} < suspicious <= {suspicious:g} < wrong{why})")
    return "\n".join(lines)


def _json_Descent(result) -> dict:
    """The CLI's JSON: ``{"loss_before", "loss_after", "params", "gradient"}``."""
    return {
        "loss_before": _plain(result.loss_before),
        "loss_after": _plain(result.loss_after),
        "params": {str(p): _plain(v) for p, v in result.params.items()},
        "gradient": {str(p): _plain(v) for p, v in result.gradient.items()},
        "rule": {"name": result.rule, "formula": result.formula, "learning_rate": result.lr,
                 "samples": result.samples, "batch_size": result.batch_size, "steps": len(result.history)},
    }


def _text_Descent(result) -> str:
    net = result.network
    n = len(result.history)
    m = result.samples
    if m == 1:
        sizes = f"𝓛: the loss {net.loss}"
    else:
        sizes = f"M = {m}" + ("" if result.batch_size is None else f", B = {result.batch_size}, samples shuffled "
                              "each pass") + f"; 𝓛(m): the loss {net.loss} of sample m"
    lines = [f"{n} step{'s' * (n != 1)} of {result.rule}, learning rate η = {result.lr:g}",
             f"update: {result.formula}  ({sizes})",
             f"loss {net.loss}: {_num(result.loss_before)} -> {_num(result.loss_after)}", ""]
    rows = [[str(p), _num(result.gradient[p]), _num(v), "" if p in result.updated else "(fixed)"]
            for p, v in result.params.items()]
    lines.append(_table(["param", f"d{net.loss}/dw at start", "new value", ""], rows))
    return "\n".join(lines).rstrip()


def _json_Flow(result) -> dict:
    return {
        "loss": _plain(result.loss),
        "nodes": {str(k): {"depth": result.depth[k], "delta": _plain(result.delta[k])} for k in result.depth},
        "layers": [
            {"depth": l.depth, "nodes": [str(k) for k in l.nodes], "delta_norm": _plain(l.delta_norm),
             "params": [str(p) for p in l.params],
             "gradient_norm": None if l.gradient_norm is None else _plain(l.gradient_norm)}
            for l in result.layers
        ],
        "ratio": None if result.ratio is None or not np.isfinite(result.ratio) else _plain(result.ratio),
        "saturated": [str(k) for k in result.saturated],
        "dead": [str(k) for k in result.dead],
        "verdict": result.verdict,
        "verdict_thresholds": {"exploding_above": EXPLODING_RATIO, "vanishing_below": VANISHING_RATIO},
        "zero_gradients": {
            str(k): {"gradient": state, "input_gradient": _plain(result.input_gradient[k]),
                     "causes": [{"cause": c.kind, "text": c.text, "nodes": [str(n) for n in c.nodes],
                                 "weights": [str(w) for w in c.weights]} for c in result.causes[k]]}
            for k, state in result.vanishing.items()
        },
    }


def _text_Flow(result) -> str:
    net = result.network
    flags = {**{k: "saturated" for k in result.saturated}, **{k: "dead" for k in result.dead}}
    rows = []
    for k in result.depth:
        share = result.fraction.get(k)
        note = flags.get(k, "")
        if not note and share:
            note = f"{share:.0%} of samples saturated/off"
        if k in result.vanishing:
            note = "; ".join(x for x in (note, f"{result.vanishing[k]} input gradient") if x)
        rows.append([str(k), str(result.depth[k]), _num(result.delta[k]), note])
    lines = [f"gradient flow at {net.loss} = {_num(result.loss)}", "",
             _table(["node", "depth", f"|d{net.loss}/dnode|", ""], rows), ""]
    rows = [[str(l.depth), " ".join(map(str, l.nodes)), _num(l.delta_norm),
             "" if l.gradient_norm is None else _num(l.gradient_norm)] for l in result.layers]
    lines.append(_table(["depth", "nodes", "delta norm", "param gradient norm"], rows))
    lines.append("")
    ratio = "n/a" if result.ratio is None else _num(result.ratio)
    lines.append(f"first/last layer gradient norm ratio: {ratio}")
    verdict = {"exploding": f"exploding (ratio > {EXPLODING_RATIO:g})",
               "vanishing": f"vanishing (ratio < {VANISHING_RATIO:g})",
               "stable": f"stable ({VANISHING_RATIO:g} <= ratio <= {EXPLODING_RATIO:g})"}.get(result.verdict, "n/a")
    lines.append(f"verdict: {verdict}")
    lines.append("saturated sigmoid/tanh units: " + (", ".join(map(str, result.saturated)) or "none")
                 + f"  (f'(u) < {SATURATION:g} in every sample)")
    lines.append("dead relu units: " + (", ".join(map(str, result.dead)) or "none")
                 + "  (u <= 0 in every sample)")
    lines += ["", "zero or vanishing input gradients:" + ("" if result.vanishing else " none")]
    for k, state in result.vanishing.items():
        lines.append(f"  {k}: {state} ({_num(result.input_gradient[k])})")
        lines += [f"    - {c.text}" for c in result.causes[k]]
    lines.append(f"(input gradient: d{net.loss}/du of a unit f(u), d{net.loss}/dnode of another node; vanishing: "
                 f"at most {VANISHING:g} times the gradient from the loss)")
    return "\n".join(lines)



def _num(x) -> str:
    return f"{_plain(x):.6g}"


def _plain(x) -> float:
    return float(x) + 0.0  # a Python float, no -0.0


def _maybe(x) -> float | None:
    return None if x is None else _plain(x)


def _rel(x) -> str:
    return "n/a" if x is None else f"{x:.1e}"


def _table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


# -- the matrix form ----------------------------------------------------------------------

def _text_MatrixDerivation(result) -> str:
    lines = [f"Matrix form: {result.description}",
             f"Layout: {result.layout}",
             "Sizes: " + ", ".join(f"{n} = {v}" for n, v in zip(result.dims, result.sizes)),
             "", "Forward (one sample; a^0 = x):"]
    lines += [_format_step(s, rule=False) for s in result.forward]
    lines.append(f"  E = {matrix_text(result.loss)}")
    lines += ["", "Backward (one sample):"]
    lines += [_format_step(s) for s in result.steps]
    reduce = "E = 1/N sum of the samples' losses" if result.net.reduction == "mean" else "E = sum of the samples' losses"
    lines += ["", f"Batch of N samples (columns of X; {reduce}):"]
    lines += [_format_step(s, rule=False) for s in result.batch_forward]
    lines += [_format_step(s) for s in result.batch_steps]
    return "\n".join(lines)


def _json_MatrixDerivation(result) -> dict:
    """The derivation as data: every step with its rule, equation and shapes."""
    def steps(items):
        return [{"rule": s.rule, "equation": f"{matrix_text(s.lhs)} = {matrix_text(s.rhs)}", "because": list(s.because),
                 "shapes": {matrix_text(q): [matrix_text(r), matrix_text(c)] for q, (r, c) in s.shapes}} for s in items]

    return {
        "form": "matrix",
        "network": result.description,
        "layout": result.layout,
        "sizes": {matrix_text(n): v for n, v in zip(result.dims, result.sizes)},
        "loss": f"E = {matrix_text(result.loss)}",
        "forward": steps(result.forward),
        "steps": steps(result.steps),
        "batch_forward": steps(result.batch_forward),
        "batch_steps": steps(result.batch_steps),
    }


def _json_MatrixGradient(result) -> dict:
    """``{"form", "loss", "batch", "summary", "gradient"}``; ``gradient`` (nested lists,
    rows of dE/dW^l) only up to ``MAX_LISTED`` numbers in all, else None and a note."""
    named = result.named()
    total = sum(g.size for g in named.values())
    record = {
        "form": "matrix",
        "loss": _plain(result.loss),
        "batch": result.batch,
        "summary": {k: {"shape": list(g.shape), "norm": _plain(np.linalg.norm(g)), "max_abs": _plain(np.abs(g).max())}
                    for k, g in named.items()},
        "gradient": {k: [[_plain(x) for x in row] for row in g] for k, g in named.items()} if total <= MAX_LISTED else None,
    }
    if total > MAX_LISTED:
        record["note"] = f"{total:,} gradient entries: only their summary is listed (at most {MAX_LISTED:,})"
    return record


def _text_MatrixGradient(result) -> str:
    lines = [f"loss E = {_plain(result.loss):.10g}  (batch of {result.batch})", ""]
    named = result.named()
    width = max(len(k) for k in named) + 6
    for k, g in named.items():
        lines.append(f"dE/d{k}".ljust(width) + f"{g.shape[0]}×{g.shape[1]}  "
                     f"norm {_plain(np.linalg.norm(g)):.6g}  max |entry| {_plain(np.abs(g).max()):.6g}")
        if g.size <= MAX_SHOWN:
            lines += ["    " + "  ".join(f"{_plain(x):>11.6g}" for x in row) for row in g]
    return "\n".join(lines)



def _format_step(s: MatrixStep, rule=True) -> str:
    eq = f"  {matrix_text(s.lhs)} = {matrix_text(s.rhs)}"
    shapes = ", ".join(f"{matrix_text(q)}: {_shape_text(shape)}" for q, shape in s.shapes)
    why = s.rule + (": " + "; ".join(s.because) if s.because else "")
    return f"{eq}    [{why}]    ({shapes})" if rule else f"{eq}    ({shapes})"


def _shape_text(shape) -> str:
    return "×".join(matrix_text(d) for d in shape)


# -- gate circuits ------------------------------------------------------------------------

def _num4(x: float) -> str:
    """4 significant digits, no "-0"."""
    s = f"{x:.4g}"
    return "0" if s in ("-0", "0") else s


def _text_CircuitFlow(flow) -> str:
    """The circuit as a terminal table, the rule of each gate, the fan-out sums and the gradient.

    >>> import sympy as sp
    >>> from symprop.gates import stage
    >>> x, y = sp.symbols("x y")
    >>> print(text(stage(x * y).evaluate({x: 3, y: -2})))  # doctest: +NORMALIZE_WHITESPACE
    f = x*y  at x = 3, y = -2
    <BLANKLINE>
    gate  op   value  df/dgate  input  local  df/dinput
    f     mul     -6         1  x      y = -2        -2
                                y      x = 3          3
    <BLANKLINE>
    rules
      f = x*y: multiply swaps the inputs and multiplies: each input gets the gradient times the other input
    <BLANKLINE>
    gradient
      df/dx = -2
      df/dy = 3
    """
    c, net = flow.circuit, flow.circuit.network
    E = c.output.name
    at = ", ".join(f"{s} = {_num4(flow.point[s])}" for s in net.leaves if s in flow.point)
    lines = [f"{_source_text(c)}  at {at}", ""]
    header = ["gate", "op", "value", f"d{E}/dgate", "input", "local", f"d{E}/dinput"]
    rows = []
    for g in c.gates:
        for i, u in enumerate(g.inputs or (None,)):
            first = [g.name, _op_text(g), _num4(flow.values[g.symbol]), _num4(flow.deltas[g.symbol])] if i == 0 else [""] * 4
            if u is None:
                rows.append(first + ["", "", ""])
                continue
            formula = text_of(local_partial(net, g.symbol, u).expr)
            value = _num4(flow.local[g.symbol, u])
            local = value if formula == value else f"{formula} = {value}"
            rows.append(first + [u.name, local, _num4(flow.deltas[g.symbol] * flow.local[g.symbol, u])])
    right = {2, 3, 6}
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    lines += ["", "rules"]
    lines += [f"  {g.name} = {text_of(g.expr)}: {g.rule()}" for g in c.gates]
    if flow.fan_out:
        lines += ["", "fan-out: a value used by several gates gets the sum of their gradients"]
        for s in flow.fan_out:
            terms = " + ".join(f"{_num4(v)} (via {k})" for k, v in flow.uses[s])
            lines.append(f"  d{E}/d{s} = {terms} = {_num4(flow.deltas[s])}".replace("+ -", "- "))
    lines += ["", "gradient"]
    lines += [f"  d{E}/d{s} = {_num4(v)}" for s, v in flow.gradient.items()]
    return "\n".join(lines)


def _source_text(circuit) -> str:
    if hasattr(circuit.source, "nodes"):
        return "; ".join(f"{k} = {text_of(e)}" for k, e in circuit.source.nodes.items())
    return f"{circuit.output} = {text_of(circuit.source)}"


def _op_text(g) -> str:
    const = g.constants
    if g.op == "scale":
        return f"scale {text_of(const['k'])}"
    if g.op == "pow":
        return f"pow {text_of(const['n'])}"
    if g.op == "add" and "c" in const:
        return f"add {text_of(const['c'])}"
    if g.op in ("generic", "function"):
        return g.function
    return g.op


def _json_CircuitFlow(flow) -> dict:
    """The JSON record: the keys of ``symprop grad`` ("loss", "values", "deltas",
    "gradient") plus "gates" in topological order and "fan_out"."""
    c = flow.circuit
    return {
        "loss": flow.loss,
        "values": {g.name: flow.values[g.symbol] for g in c.gates},
        "deltas": {g.name: flow.deltas[g.symbol] for g in c.gates},
        "gradient": {s.name: v for s, v in flow.gradient.items()},
        "gates": [
            {
                "name": g.name,
                "op": g.op,
                "inputs": [u.name for u in g.inputs],
                "expr": spec_string(g.expr),
                "value": flow.values[g.symbol],
                "local": [flow.local[g.symbol, u] for u in g.inputs],
                "delta": flow.deltas[g.symbol],
            }
            for g in c.gates
        ],
        "fan_out": [
            {"name": s.name, "uses": [{"gate": k.name, "gradient": v} for k, v in flow.uses[s]], "delta": flow.deltas[s]}
            for s in flow.fan_out
        ],
    }


# -- grading ------------------------------------------------------------------------------

def _json_GradeResult(result) -> dict:
    def mistake(m):
        return {"kind": m.kind, "label": m.label, "node": None if m.node is None else str(m.node)}

    return {
        "wrt": str(result.wrt),
        "correct": result.correct,
        "checked": result.how,
        "points": result.points,
        "answer": spec_string(result.answer),
        "expected": spec_string(result.expected),
        "mistake": None if result.mistake is None else mistake(result.mistake),
        "matches": [mistake(m) for m in result.matches],
    }


def _text_GradeResult(result) -> str:
    return result.message()
