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
        b = result.batch_size
        sizes = f"M = {m}" + ("" if b is None else f", B = {b}, samples shuffled each pass")
        if b is not None and m % b:  # the formula's η/B: a pass's last minibatch is smaller
            sizes += f", the last minibatch of a pass has {m % b} sample{'s' * (m % b != 1)}"
        sizes += f"; 𝓛(m): the loss {net.loss} of sample m"
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


def _json_matrix_steps(items) -> list:
    """Matrix steps as data: each with its rule, equation, reasons and shapes."""
    return [{"rule": s.rule, "equation": f"{matrix_text(s.lhs)} = {matrix_text(s.rhs)}", "because": list(s.because),
             "shapes": {matrix_text(q): [matrix_text(r), matrix_text(c)] for q, (r, c) in s.shapes}} for s in items]


def _json_MatrixDerivation(result) -> dict:
    """The derivation as data: every step with its rule, equation and shapes."""
    steps = _json_matrix_steps

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
    return "\n".join(lines + _matrix_lines({f"dE/d{k}": g for k, g in result.named().items()}))


def _matrix_lines(named) -> list[str]:
    """One line a matrix (its label, shape, norm and largest entry), then its rows when it
    has at most MAX_SHOWN entries."""
    width = max(len(k) for k in named) + 2
    lines = []
    for k, g in named.items():
        lines.append(k.ljust(width) + f"{g.shape[0]}×{g.shape[1]}  "
                     f"norm {_plain(np.linalg.norm(g)):.6g}  max |entry| {_plain(np.abs(g).max()):.6g}")
        if g.size <= MAX_SHOWN:
            lines += ["    " + "  ".join(f"{_plain(x):>11.6g}" for x in row) for row in g]
    return lines



# -- the matrix form's Hessian-vector product and checkpointed gradient (matrix_hvp, checkpoint)

def _matrices(named: dict):
    """Nested lists of every matrix, or None past ``MAX_LISTED`` entries in all."""
    if sum(g.size for g in named.values()) > MAX_LISTED:
        return None
    return {k: [[_plain(x) for x in row] for row in g] for k, g in named.items()}


def _json_MatrixHvp(result) -> dict:
    """``{"form", "loss", "batch", "gradient", "hvp", "steps"}``: the gradient and H v by
    parameter (nested lists; null with a ``"note"`` past ``MAX_LISTED`` entries), and the
    one-sample R steps (forward, then backward)."""
    gradient, hvp = result.gradient.named(), result.named()
    record = {
        "form": "matrix",
        "loss": _plain(result.loss),
        "batch": result.batch,
        "gradient": _matrices(gradient),
        "hvp": _matrices(hvp),
        "hvp_summary": {k: {"shape": list(g.shape), "norm": _plain(np.linalg.norm(g)), "max_abs": _plain(np.abs(g).max())}
                        for k, g in hvp.items()},
        "steps": _json_matrix_steps(result.derivation.forward + result.derivation.steps),
    }
    if record["hvp"] is None:
        record["note"] = f"more than {MAX_LISTED:,} entries: the gradient and H v are not listed, only H v's summary"
    return record


def _text_MatrixHvp(result) -> str:
    h = result.derivation
    lines = [f"Hessian-vector product (R-operator), matrix form: {h.d.description}", "",
             "R forward (one sample; R{x} = 0, R{W^l} and R{b^l} are the direction v):"]
    lines += [_format_step(s) for s in h.forward]
    lines += ["", "R backward (one sample):"]
    lines += [_format_step(s) for s in h.steps]
    lines += ["", f"loss E = {_plain(result.loss):.10g}  (batch of {result.batch})", ""]
    return "\n".join(lines + _matrix_lines({f"(H v) for {k}": g for k, g in result.named().items()}))


def _checkpoint_record(result) -> dict:
    plan = result.plan
    return {"every": plan.every, "layers": plan.depth, "checkpoints": list(plan.checkpoints),
            "plain_stored_values": result.plain_stored_values,
            "extra_layer_evaluations": result.extra_layer_evaluations}


def _json_CheckpointedGradient(result) -> dict:
    """``grad --checkpoints K``: grad's matrix JSON plus ``"stored_values"`` (forward numbers
    held at once at the fullest), ``"recomputed_layers"`` and ``"checkpointing"``."""
    record = _json_MatrixGradient(result.gradient)
    record["stored_values"] = result.stored_values
    record["recomputed_layers"] = list(result.recomputed_layers)
    record["checkpointing"] = _checkpoint_record(result)
    return record


def _text_CheckpointedGradient(result) -> str:
    plan = result.plan
    saved = 1 - result.stored_values / result.plain_stored_values
    recomputed = ", ".join(map(str, result.recomputed_layers)) or "none"
    return "\n".join([
        _text_MatrixGradient(result.gradient), "",
        f"checkpointed backprop: a checkpoint every {plan.every} layers of {plan.depth} "
        f"(layers {', '.join(map(str, plan.checkpoints)) or 'none'})",
        f"  stored forward values: {result.stored_values:,} (plain backprop: {result.plain_stored_values:,}; "
        f"{saved:.0%} fewer)",
        f"  recomputed layers: {recomputed} ({result.extra_layer_evaluations} extra layer evaluations)",
    ])


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


# -- Jacobians of vector-valued functions (seed 000) -----------------------------------------
# A Jacobian's entries are derivations of one output each: their records are _json_Derivation's,
# with the output they differentiate ("of") and "output directly" where a scalar loss says
# "loss directly".

def _vector_text(layer) -> str:
    """A layer's name as the terminal writes it: f, or s^(1) for a made-up one."""
    return layer.name if layer.stem else f"{layer.name[0]}^({layer.name[1:]})"


def _jacobian_text_name(J) -> str:
    if J.layers is None:
        return f"d({', '.join(map(str, J.outputs))})/d({', '.join(map(str, J.wrt))})"
    return f"d{_vector_text(J.layers[-1])}/d{_vector_text(J.layers[0])}"


def _matrix_text(rows) -> list[str]:
    """A matrix of printed entries as bracketed lines with aligned columns."""
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    return ["[ " + "  ".join(e.ljust(w) for e, w in zip(row, widths)) + " ]" for row in rows]


def _equation_text(lhs: str, parts, why: str | None = None) -> list[str]:
    """``lhs = part = part``, each part a list of lines, continuation lines aligned under the
    first; ``why`` (the rule) after the first line of each part when given per part."""
    lines, pad = [], " " * len(lhs)
    for i, (part, reason) in enumerate(parts):
        for k, line in enumerate(part):
            head = (lhs if i == 0 and k == 0 else pad) + (" = " if k == 0 else "   ")
            tail = f"    [{reason}]" if reason and k == 0 else ""
            lines.append("  " + head + line + tail)
    return lines


def _entry_record(d, of) -> dict:
    record = {"of": str(of), **_json_Derivation(d)}
    record["steps"] = [{**s, "rule": "output directly" if s["rule"] == "loss directly" else s["rule"]}
                       for s in record["steps"]]
    return record


def _text_Jacobian(J) -> str:
    from .derive import Total
    from .printing import rule_text as rule_text_of
    from .printing import text_chain as text_chain_of

    m, n = J.shape
    name = _jacobian_text_name(J)
    lines = [f"{name}  (the Jacobian of ({', '.join(map(str, J.outputs))}) with respect to "
             f"({', '.join(map(str, J.wrt))}): {m}×{n}, one row per output; {J.method})"]
    if J.factors is not None:
        chain = "·".join(f"∂{_vector_text(f.of)}/∂{_vector_text(f.wrt)}" for f in J.factors)
        why = "chain rule: the product of the layers' Jacobians" if len(J.factors) > 1 else "one layer: its local partials"
        lines.append(f"  {name} = {chain}    [{why}]")
        for layer in J.layers:
            carried = f"; {', '.join(map(str, layer.carried))} carried unchanged" if layer.carried else ""
            lines.append(f"    {_vector_text(layer)} = ({', '.join(map(str, layer.entries))}){carried}")
        for f in J.factors:
            symbols = [[text_of(e) for e in row] for row in f.partials.tolist()]
            local = [[text_of(e) if e.is_Number else text_chain_of(e) for e in row] for row in f.local.tolist()]
            why = "local partials" + (": " + "; ".join(rule_text_of(r) for r in f.because) if f.because else "")
            lines += _equation_text(f"∂{_vector_text(f.of)}/∂{_vector_text(f.wrt)}",
                                    [(_matrix_text(symbols), None), (_matrix_text(local), why)])
        lines.append("  entry (i, j): the sum over the paths from variable j to output i of the products of "
                     "local partials")
    for o, row in zip(J.outputs, J.entries):
        for d in row:
            lhs = text_of(Total(o, d.wrt))
            paths = d.as_paths
            if paths is None:
                parts = [([text_chain_of(d.in_deltas)], "in deltas")]
            else:
                count = f"{d.path_count} path{'s' * (d.path_count != 1)}"
                parts = [([text_chain_of(paths)], f"sum over paths: {count}")]
                if d.in_local_partials is not None and d.path_count:
                    parts.append(([text_chain_of(d.in_local_partials)], "local partials"))
            full = d.substituted
            if full is not None and d.path_count:
                parts.append(([text_of(full)], "substitute the node definitions"))
            lines += _equation_text(lhs, parts)
    notes = list(J.notes)
    for row in J.entries:
        for d in row:
            notes += [note for note in d.notes if note not in notes]
    lines += [f"  note: {note}" for note in notes]
    return "\n".join(lines)


def _json_Jacobian(J) -> dict:
    derivations = [_entry_record(d, o) for o, row in zip(J.outputs, J.entries) for d in row]
    results = [r["result"] for r in derivations]  # printed once: a substituted form is costly to print
    n = J.shape[1]
    record = {
        "of": [str(o) for o in J.outputs],
        "wrt": [str(w) for w in J.wrt],
        "method": J.method,
        "shape": list(J.shape),
        "chain": None,
        "layers": None,
        "factors": None,
        "result": None if None in results else [results[i:i + n] for i in range(0, len(results), n)],
    }
    if J.factors is not None:
        record["chain"] = f"{J.name} = " + "*".join(f.name for f in J.factors)
        record["layers"] = [{"name": layer.name, "entries": [str(s) for s in layer.entries],
                             "carried": [str(s) for s in layer.carried]} for layer in J.layers]
        record["factors"] = [{
            "name": f.name, "rows": [str(s) for s in f.of.entries], "columns": [str(s) for s in f.wrt.entries],
            "partials": [[spec_string(e) for e in row] for row in f.partials.tolist()],
            "local": [[spec_chain(e) for e in row] for row in f.local.tolist()],
        } for f in J.factors]
    notes = list(J.notes)
    for row in J.entries:
        for d in row:
            notes += [note for note in d.notes if note not in notes]
    if notes:
        record["note"] = "; ".join(notes)
    return {"jacobian": record, "derivations": derivations}


def _text_JacobianValues(v) -> str:
    J = v.jacobian
    point = ", ".join(f"{s} = {_num(x)}" for s, x in v.point.items())
    lines = [f"{_jacobian_text_name(J)} at {point}  ({J.shape[0]}×{J.shape[1]}: row i is the gradient of output i)"]
    lines += ["", _table(["node", "value"], [[str(k), _num(x)] for k, x in v.values.items()])]
    header = [""] + [f"d/d{w}" for w in J.wrt]
    rows = [[str(o)] + [_num(x) for x in row] for o, row in zip(J.outputs, v.matrix.tolist())]
    lines += ["", _table(header, rows)]
    if v.factors is not None:
        chain = " · ".join(f"∂{_vector_text(f.of)}/∂{_vector_text(f.wrt)}" for f in J.factors)
        lines += ["", f"the factors, whose product is the Jacobian: {_jacobian_text_name(J)} = {chain}"]
        for f, numbers in zip(J.factors, v.factors):
            rows = [[str(a)] + [_num(x) for x in row] for a, row in zip(f.of.entries, numbers.tolist())]
            lines += ["", f"∂{_vector_text(f.of)}/∂{_vector_text(f.wrt)}",
                      _table([""] + [f"∂/∂{b}" for b in f.wrt.entries], rows)]
    else:
        lines += ["", *[f"note: {note}" for note in J.notes]]
    return "\n".join(lines)


def _json_JacobianValues(v) -> dict:
    J = v.jacobian
    return {
        "of": [str(o) for o in J.outputs],
        "wrt": [str(w) for w in J.wrt],
        "values": {str(k): _plain(x) for k, x in v.values.items()},
        "jacobian": [[_plain(x) for x in row] for row in v.matrix.tolist()],
        "factors": None if v.factors is None else [
            {"name": f.name, "rows": [str(s) for s in f.of.entries], "columns": [str(s) for s in f.wrt.entries],
             "matrix": [[_plain(x) for x in row] for row in numbers.tolist()]}
            for f, numbers in zip(J.factors, v.factors)
        ],
    }


# -- second order: Hessian-vector products and the Hessian (symprop.hvp) --------------------

def _step_value(result, symbol):
    """A step's number: one for a single sample, one per sample for a batch."""
    values = result.numbers.get(symbol)
    if values is None:
        return None
    return [_plain(x) for x in values] if result.batched else _plain(values[0])


def _json_HvpResult(result) -> dict:
    """``{"loss", "gradient", "direction", "hvp", "steps"}``; each step ``{"rule", "equation",
    "value"}`` (per sample for a batch; ``"hvp"`` is reduced as ``"gradient"`` is)."""
    return {
        "loss": _plain(result.loss),
        "gradient": {str(s): _plain(v) for s, v in result.gradient.items()},
        "direction": {str(s): _plain(v) for s, v in result.direction.items()},
        "hvp": {str(s): _plain(v) for s, v in result.hvp.items()},
        "steps": [{"rule": s.rule, "equation": f"{spec_string(s.lhs)} = {spec_chain(s.rhs)}",
                   "value": _step_value(result, s.lhs)} for s in result.derivation.steps],
    }


def _text_HvpResult(result) -> str:
    net = result.network
    m = len(next(iter(result.numbers.values()))) if result.numbers else 1
    lines = [f"Hv by the R-operator  (loss {net.loss} = {_num(result.loss)}"
             + (f", {net.reduction} over {m} samples; step values of sample 1)" if result.batched else ")")]
    for s in result.derivation.steps:
        value = result.numbers.get(s.lhs)
        shown = "" if value is None or s.rhs.is_Number else f" = {_num(value[0])}"
        lines.append(f"  {text_of(s.lhs)} = {_chain_text(s.rhs)}{shown}    [{s.rule}]")
    rows = [[str(p), _num(result.gradient[p]), _num(result.direction[p]), _num(result.hvp[p])] for p in net.params]
    lines += ["", _table(["param", f"d{net.loss}/dparam", "v", "(Hv)"], rows)]
    return "\n".join(lines)


def _chain_text(expr) -> str:
    from .printing import text_chain

    return text_chain(expr)


def _json_Hessian(result) -> dict:
    """``{"loss", "params", "hessian", "entries", "eigenvalues", "outputs", "gauss_newton",
    "gauss_newton_eigenvalues", "note"?}``: ``"entries"`` are the symbolic H_ij (spec syntax)."""
    record = {
        "loss": _plain(result.loss),
        "params": [str(p) for p in result.params],
        "hessian": [[_plain(x) for x in row] for row in result.matrix],
        "entries": [[spec_string(e) for e in row] for row in result.entries],
        "eigenvalues": [_plain(x) for x in result.eigenvalues],
        "outputs": [str(o) for o in result.outputs],
        "gauss_newton": None if result.gauss_newton is None else [[_plain(x) for x in row] for row in result.gauss_newton],
        "gauss_newton_eigenvalues": None if result.gauss_newton_eigenvalues is None
        else [_plain(x) for x in result.gauss_newton_eigenvalues],
    }
    if result.note:
        record["note"] = result.note
    return record


def _text_Hessian(result) -> str:
    names = [str(p) for p in result.params]
    net = result.network
    lines = [f"Hessian of {net.loss} ({len(names)} parameters; loss {_num(result.loss)})", "", "entries:"]
    for i, row in enumerate(result.entries):
        for j, e in enumerate(row[i:], i):
            lines.append(f"  H[{names[i]}, {names[j]}] = {text_of(e)}")
    lines += ["", _table([""] + names, [[n] + [_num(x) for x in row] for n, row in zip(names, result.matrix)])]
    lines += ["", "eigenvalues: " + ", ".join(_num(x) for x in result.eigenvalues)]
    if result.gauss_newton is None:
        lines += ["", result.note or "no Gauss-Newton matrix"]
    else:
        outs = ", ".join(str(o) for o in result.outputs)
        lines += ["", f"Gauss-Newton J^T H_L J  (J = d({outs})/dparams, H_L = the Hessian of {net.loss} in {outs}):",
                  _table([""] + names, [[n] + [_num(x) for x in row] for n, row in zip(names, result.gauss_newton)]),
                  "", "its eigenvalues: " + ", ".join(_num(x) for x in result.gauss_newton_eigenvalues)]
    return "\n".join(lines)
