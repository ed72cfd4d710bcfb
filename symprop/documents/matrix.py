r"""The matrix form's worked solution: the data ``templates/matrix_solution.tex.j2`` receives.

Seed 004's names: the loss of one sample is :math:`\mathcal{L}` (``\mathcal{L}(m)`` for
sample m), the loss of a batch of M samples ``L = 1/M Σ_m 𝓛(m)`` (or the sum). Every step
carries its shape at the spec's widths (``δ^(2) ∈ ℝ^{10×1}``); activation derivatives are
written with the layer's output as the derivation uses them (σ'(z^(l)) = a^(l) ⊙ (1 - a^(l))).
"""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..matrix import E, GATES, N, OUTPUT_RULES, MatrixDerivation, MatrixStep, Ones, activation_derivative, latex
from .. import functions as fn
from ..printing import LatexPrinter, latex_escape
from .environment import environment
from .prose import defined_functions

__all__ = ["matrix_solution_context", "render_matrix_solution", "enumeration"]

ONE_LOSS = r"\mathcal{L}"  # the loss of one sample (seed 004)
BATCH_LOSS = "L"  # the loss of a batch
SAMPLES = "M"  # samples in a batch (seed 004's M; symprop.matrix calls it N)
STEP_NOTE = r"$\operatorname{step}(u) = 1$ for $u > 0$ and $0$ otherwise"


def render_matrix_solution(d: MatrixDerivation, *, numbers=None, bound=None, title=None, standalone=True) -> str:
    """The matrix derivation as a LaTeX worked solution (``templates/matrix_solution.tex.j2``);
    with ``numbers``, a pair ``(derivation, values)`` of one sample as
    :func:`symprop.matrix.from_layers` gives it (generic activations bound, as ``bound``
    maps them), a section works that sample's forward pass, deltas and gradients in numbers."""
    context = matrix_solution_context(d, numbers=numbers, bound=bound, title=title, standalone=standalone)
    return environment().get_template("matrix_solution.tex.j2").render(context)


def enumeration(items) -> str:
    r"""``1, 2, 3`` for fewer than four items, else ``1, \dots, 7``.

    >>> enumeration([1, 2]), enumeration([1, 2, 3]), enumeration(range(1, 6))
    ('1, 2', '1, 2, 3', '1, \\dots, 5')
    """
    items = [str(i) for i in items]
    if len(items) < 4:
        return ", ".join(items)
    return f"{items[0]}, \\dots, {items[-1]}"


def matrix_solution_context(d: MatrixDerivation, *, numbers=None, bound=None, title=None, standalone=True) -> dict:
    """Printed LaTeX strings and finished sentences for the template (``numbers`` and
    ``bound`` as :func:`render_matrix_solution` takes them)."""
    one = {**d.names, E: ONE_LOSS}
    # the batch form with seed 004's M samples (symprop.matrix's N) and its loss L
    samples = {N: sp.Symbol(SAMPLES, integer=True, positive=True)}
    batch = {k.xreplace(samples): v for k, v in d.names.items()}
    batch[E] = BATCH_LOSS
    acts = d.net.activations
    printer = LatexPrinter()
    steps = d.steps + d.batch_steps
    used = {s.rule for s in steps} | {b for s in steps for b in s.because}
    rules = [r for r in (*GATES.values(), *OUTPUT_RULES.values()) if r.name in used]
    sizes = d.dimension_values()
    mean = d.net.reduction == "mean"
    scale = rf"\frac{{1}}{{{SAMPLES}}} " if mean else ""
    rows = {key: [_row(s, one, sizes, why=key == "steps") for s in getattr(d, key)] for key in ("forward", "steps")}
    for key in ("batch_forward", "batch_steps"):
        rows[key] = [_row(s, batch, sizes, why=key == "batch_steps", batch=True, replace=samples) for s in getattr(d, key)]
    every = [r for group in rows.values() for r in group]
    return {
        **rows,
        "all_shapes": sorted({r["shape"] for r in every}),
        "all_whys": sorted({r["why"] for r in every if r["why"]}),
        "title": title,
        "standalone": standalone,
        "description": _description(d),
        "generics": [rf"${g}$" for g in d.generics],
        "entries": _entries(d, one),
        "sizes": [{"name": latex(n), "value": str(v)} for n, v in zip(d.dims, d.sizes)],
        "layers": enumeration(range(1, d.depth + 1)),
        "softmax_output": acts[-1].name == "softmax",
        "one_loss": ONE_LOSS,
        "batch_loss": BATCH_LOSS,
        "samples": SAMPLES,
        "loss": latex(d.loss, one),
        "loss_ones": [latex(o.args[0]) for o in d.loss.atoms(Ones)],
        "batch_loss_definition": rf"{BATCH_LOSS} = {scale}\sum_{{m=1}}^{{{SAMPLES}}} {ONE_LOSS}(m)",
        "mean": mean,
        "weight_sum": (
            rf"\frac{{\partial {BATCH_LOSS}}}{{\partial \mathbf{{W}}^{{(l)}}}} = \boldsymbol{{\Delta}}^{{(l)}} "
            rf"\bigl(\mathbf{{A}}^{{(l-1)}}\bigr)^{{T}} = {scale}\sum_{{m=1}}^{{{SAMPLES}}} \boldsymbol{{\delta}}^{{(l)}}(m)"
            rf"\,\bigl(\mathbf{{a}}^{{(l-1)}}(m)\bigr)^{{T}} = {scale}\sum_{{m=1}}^{{{SAMPLES}}} "
            rf"\frac{{\partial {ONE_LOSS}(m)}}{{\partial \mathbf{{W}}^{{(l)}}}}"),
        "scale": scale,
        "rules": [{"title": r.title, "sentence": r.sentence} for r in rules],
        "derivatives": _derivatives(d, one, printer),
        "defined": defined_functions([f.build(fn.U) for f in acts if f.kind == "defined"], printer),
        "numbers": worked_numbers_context(*numbers) if numbers else None,
        "bound": _bound_prose(d, bound),
    }


def _bound_prose(d: MatrixDerivation, bound) -> list[dict]:
    """Each generic activation with the activation it stands for in the numbers, for the prose."""
    return [{"name": rf"${sp.latex(sp.Symbol(g))}$", "activation": _prose(r.name)} for g, r in (bound or {}).items()
            if g in d.generics]


def _description(d: MatrixDerivation) -> str:
    """The network in words, as LaTeX (a generic activation is math: ``$f$ hidden``); the
    reduction is in the batch loss's formula."""
    return d.describe(name=_prose, title=latex_escape, reduction=False)


def _entries(d: MatrixDerivation, names) -> list[dict]:
    r"""Seed 003's entry-by-entry view of dE/dW^l = δ^l (a^(l-1))^T, one row per layer:
    ``{"lhs": ∂𝓛/∂w^(l)_ij, "rhs": δ^(l)_i a^(l-1)_j, "delta": δ^(l), "column": (a^(l-1))^T}``."""
    s, rows = d.one, []
    for l in range(1, d.depth + 1):
        below = latex(s.a[l - 1], names)
        entry = "x_{j}" if l == 1 else rf"a^{{({l - 1})}}_{{j}}"
        rows.append({
            "lhs": rf"\frac{{\partial {ONE_LOSS}}}{{\partial w^{{({l})}}_{{ij}}}}",
            "rhs": rf"\delta^{{({l})}}_{{i}}\, {entry}",
            "delta": latex(s.delta[l - 1], names),
            "column": rf"\bigl({below}\bigr)^{{T}}" if l > 1 else rf"{below}^{{T}}",
        })
    return rows


def _shape(lhs, names, sizes) -> str:
    r"""``\mathbb{R}^{10 \times 1}``: the shape of a step's left side at the spec's widths."""
    rows, cols = (n.xreplace(sizes) for n in lhs.shape)  # SymPy numbers and symbols
    return rf"\mathbb{{R}}^{{{latex(rows, names)} \times {latex(cols, names)}}}"


def _why(step: MatrixStep, batch: bool) -> str:
    """A step's justification, short enough for the margin column, naming each rule once:
    its rule's title, the activation of an elementwise step; a batch step, which does in one
    line what the one-sample steps do in several, names the rules it combines (the 1/M of a
    mean and the sum of a bias gradient are explained once, above the batch steps)."""
    if step.rule == "elementwise f" and step.because:
        return f"elementwise {_prose(step.because[0])}"
    if not batch or step.rule != "chain rule" and step.rule != "softmax":
        return _title(step.rule)
    parts = [] if step.rule == "chain rule" else [_title(step.rule)]
    because = list(step.because)
    while because:
        b = because.pop(0)
        if b == "elementwise f":
            name = because.pop(0) if because and _rule(because[0]) is None else "f"
            parts.append(f"elementwise {_prose(name)}")
        elif b == "loss gradient":
            if because and _rule(because[0]) is None and because[0] != "elementwise f":
                because.pop(0)  # the loss's name: the network line names the loss
            parts.append("loss gradient")
        else:
            parts.append(_title(b))
    return ", ".join(parts) or _title(step.rule)


def _prose(name) -> str:
    """An activation's name in a sentence: ``leaky relu``, not ``leaky\\_relu``; a generic
    activation (``f``) or the placeholder f in math, as the texts write it."""
    record = fn.record_of(name)
    if name == "f" or (record is not None and record.kind == "generic"):
        return f"${sp.latex(sp.Symbol(name))}$"
    return latex_escape(name.replace("_", " "))


def _rule(name):
    return GATES.get(name) or OUTPUT_RULES.get(name)


def _title(name) -> str:
    rule = _rule(name)
    return rule.title if rule is not None else latex_escape(name)


def _row(step: MatrixStep, names, sizes, why=True, batch=False, replace=None) -> dict:
    lhs, rhs = step.lhs, step.rhs
    if replace:
        lhs, rhs = lhs.xreplace(replace), rhs.xreplace(replace)
    return {
        "lhs": latex(lhs, names),
        "rhs": latex(rhs, names),
        "shape": _shape(lhs, names, sizes),
        "why": _why(step, batch) if why else "",
    }


def _derivatives(d: MatrixDerivation, names, printer) -> dict:
    """Each layer's activation derivative as the steps use it, written with the layer's
    output where it can be (``σ'(z^(1)) = a^(1) ⊙ (1 - a^(1))``), and the rules in u they
    come from, each once: ``{"rows": [{"lhs", "rhs"}], "rules": [...], "outputs": bool,
    "notes": [...]}``. Layers whose derivative no step uses (identity; the output of a fused
    loss; softmax) are left out; so is a defined function's rule (listed with its definition)."""
    u = sp.Symbol("u")
    step = fn.record_of("step").cls
    s, rows, rules, outputs, notes = d.one, [], [], False, []
    for l, f in enumerate(d.net.activations, 1):
        if f.name == "softmax" or (l == d.depth and d.net.fused):
            continue
        fprime = activation_derivative(f, s.z[l - 1], s.a[l])
        if fprime is None:
            continue
        built = f.build(u)
        head = printer.head(f) or printer.doprint(built.func)
        lhs, rhs = rf"{head}'\left({latex(s.z[l - 1], names)}\right)", latex(fprime, names)
        if rhs == lhs:  # a defined function's derivative, listed with its definition
            continue
        rows.append({"lhs": lhs, "rhs": rhs})
        rule = f"{head}'(u) = {printer.doprint(sp.diff(built, u))}"
        if rule not in rules:
            rules.append(rule)
        outputs = outputs or s.a[l] in fprime.matrices
        if fprime.has(step) and STEP_NOTE not in notes:
            notes.append(STEP_NOTE)
    return {"rows": rows, "rules": rules, "outputs": outputs, "notes": notes}


# -- the matrix-form exam question (templates/matrix_exam.tex.j2) ----------------------------

MAX_EXAM_WIDTH = 6  # widest layer whose matrices an exam prints as numbers
MAX_EXAM_DEPTH = 4  # layers
LINE_BUDGET = 30.0  # ems of numbers on one line of a solution (11pt, 2.2 cm margins: about 42 em wide)


def render_matrix_exam(d: MatrixDerivation, values, *, entries=(), bound=None, title=None, answers=False) -> str:
    r"""An exam question on the matrix form (exam class), with numbers: given x, y and every
    W^l, b^l of one sample, the forward pass, the deltas by the recursion and dE/dW^l,
    dE/db^l (or the entries named in ``entries``, ``(kind, l, j, i)`` as
    :func:`symprop.matrix.parameter_entry` gives them), each part with its worked
    solution. ``d`` is the derivation with numbers (generic activations bound); ``bound``
    maps each generic activation's name to the activation it stands for, for the prose."""
    context = matrix_exam_context(d, values, entries=entries, bound=bound, title=title, answers=answers)
    return environment().get_template("matrix_exam.tex.j2").render(context)


def number(x: float) -> str:
    r"""``x`` to 4 significant digits as LaTeX: ``-0.4237``, ``1.5 \cdot 10^{-5}``, ``0``."""
    text = f"{float(x):.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \cdot 10^{{{int(exponent)}}}"
    return "0" if text in ("0", "-0") else text


def _em(text: str) -> float:
    """A rough width in ems of a printed number (digits are half an em)."""
    return 0.5 * len(text.replace(r" \cdot ", "").replace("{", "").replace("}", "")) + (1.5 if r"\cdot" in text else 0)


def bmatrix(array) -> tuple[str, float]:
    """A NumPy column or matrix as a bracketed matrix of 4-digit numbers (the exam template's
    ``numbers`` environment, a ``bmatrix``), and its rough width in ems."""
    rows = [[number(x) for x in row] for row in np.atleast_2d(array)]
    width = 1.2 + sum(max(_em(r[j]) for r in rows) + 1.0 for j in range(len(rows[0])))
    body = r" \\ ".join(" & ".join(r) for r in rows)
    return rf"\begin{{numbers}} {body} \end{{numbers}}", width


def _chain(lhs: str, segments) -> dict:
    """One equation ``lhs = s_1 = s_2 = ...`` as align lines: segments are ``(latex, ems)``,
    packed greedily so that no line holds more than LINE_BUDGET ems."""
    lines, width = [], 0.0
    for tex, ems in segments:
        if lines and width + ems > LINE_BUDGET:
            lines.append(tex)
            width = ems
        elif lines:
            lines[-1] += " = " + tex
            width += ems + 1.5
        else:
            lines.append(tex)
            width = ems
    return {"lhs": lhs, "lines": lines}


def _joined(*parts) -> tuple[str, float]:
    """Printed pieces (``(latex, ems)`` or a plain operator string) side by side."""
    tex, ems = [], 0.0
    for part in parts:
        if isinstance(part, str):
            tex.append(part)
            ems += 1.5 if part.strip() else 0.2
        else:
            tex.append(part[0])
            ems += part[1]
    return " ".join(t for t in tex if t.strip()), ems


def _formula(tex: str, ems: float | None = None) -> tuple[str, float]:
    """A printed formula with its rough width: about 0.6 em a visible symbol, a fraction's
    numerator and denominator counted side by side (an overestimate: lines break early)."""
    if ems is None:
        visible = re.sub(r"\\(left|right|bigl|bigr|mathbf|boldsymbol|mathcal|operatorname|frac|partial|,)(?![a-zA-Z])",
                         "", tex)
        visible = re.sub(r"\\[a-zA-Z]+", "x", visible)
        visible = re.sub(r"[\^_]\{[^{}]*\}", "x", visible)  # a super- or subscript: about half a symbol each
        ems = 0.6 * len(re.sub(r"[{}\s]", "", visible)) + 1.0 * tex.count(r"\partial")
    return tex, ems


def worked_numbers_context(d: MatrixDerivation, values, entries=()) -> dict:
    r"""One sample's numbers, printed as chains of equations (``lhs = formula = numbers =
    result``, broken between members): what is given, the forward pass, the deltas and the
    gradients (or the entries named in ``entries``). The exam's solutions and the worked
    solution's numbers section both show these (the ``chains`` macro of
    ``templates/matrix_numbers.tex.j2``)."""
    w = d.worked_numbers(values)
    s, L = d.one, d.depth
    one = {**d.names, E: ONE_LOSS}
    printer = LatexPrinter()
    n = {q: latex(q, one) for q in (*s.W, *s.b, *s.z, *s.a, *s.delta, s.x, s.y)}
    acts = d.net.activations

    def grad(q):
        return rf"\frac{{\partial {ONE_LOSS}}}{{\partial {n[q]}}}"

    def T(q):  # a column as the row it transposes to
        return rf"{n[q]}^{{T}}" if q is s.x else rf"\bigl({n[q]}\bigr)^{{T}}"

    given = [{"name": n[s.x], "value": bmatrix(values.x)[0]}, {"name": n[s.y], "value": bmatrix(values.y)[0]}]
    given_layers = [[{"name": n[s.W[l]], "value": bmatrix(values.weights[l])[0]},
                     {"name": n[s.b[l]], "value": bmatrix(values.biases[l])[0]}] for l in range(L)]

    # (a) the forward pass
    forward = []
    for l in range(1, L + 1):
        W, b, below = bmatrix(values.weights[l - 1]), bmatrix(values.biases[l - 1]), bmatrix(w.a[l - 1])
        forward.append(_chain(n[s.z[l - 1]], [
            _formula(latex(d.forward[2 * l - 2].rhs, one)), _joined(W, "", below, "+", b), bmatrix(w.z[l - 1])]))
        forward.append(_chain(n[s.a[l]], [_formula(latex(d.forward[2 * l - 1].rhs, one)), bmatrix(w.a[l])]))
    loss = {"lhs": ONE_LOSS, "lines": [f"{latex(d.loss, one)} = {number(w.loss)}"]}

    # (b) the deltas
    deltas = []
    out, delta_L = s.a[L], bmatrix(w.deltas[L - 1])
    if d.net.fused:
        deltas.append(_chain(n[s.delta[L - 1]], [_formula(latex(out - s.y, one)),
                                                  _joined(bmatrix(w.a[L]), "-", bmatrix(values.y)), delta_L]))
    else:
        loss_rhs = next(st.rhs for st in d.steps if st.rule == "loss gradient")
        linear = loss_rhs == out - s.y
        g_numbers = [_joined(bmatrix(w.a[L]), "-", bmatrix(values.y))] if linear else []
        fprime = w.fprime[L - 1]
        if fprime is None and acts[-1].name != "softmax":  # identity output: δ^L = dE/da^L
            deltas.append(_chain(n[s.delta[L - 1]], [_formula(grad(out)), _formula(latex(loss_rhs, one)),
                                                      *g_numbers, delta_L]))
        else:
            deltas.append(_chain(grad(out), [_formula(latex(loss_rhs, one)), *g_numbers, bmatrix(w.loss_gradient)]))
            if fprime is not None:
                fp = activation_derivative(acts[-1], s.z[L - 1], out)
                deltas.append(_chain(rf"{_head(acts[-1], printer)}'\left({n[s.z[L - 1]]}\right)",
                                     [_formula(latex(fp, one)), bmatrix(fprime)]))
                deltas.append(_chain(n[s.delta[L - 1]], [
                    _formula(latex(d.program[0][1], one)),
                    _formula(rf"{_head(acts[-1], printer)}'\left({n[s.z[L - 1]]}\right) \odot {grad(out)}"),
                    _joined(bmatrix(fprime), r"\odot", bmatrix(w.loss_gradient)), delta_L]))
            else:  # softmax without its fused loss
                deltas.append(_chain(n[s.delta[L - 1]], [_formula(latex(d.program[0][1], one)), delta_L]))
    recursion = []
    for l in range(L - 1, 0, -1):
        f, back = acts[l - 1], rf"\bigl({n[s.W[l]]}\bigr)^{{T}} {n[s.delta[l]]}"
        back_numbers = _joined(bmatrix(values.weights[l].T), "", bmatrix(w.deltas[l]))
        delta = n[s.delta[l - 1]]
        if w.fprime[l - 1] is None:  # identity: f' = 1
            deltas.append(_chain(delta, [_formula(back), back_numbers, bmatrix(w.deltas[l - 1])]))
            continue
        head = _head(f, printer)
        fp = activation_derivative(f, s.z[l - 1], s.a[l])
        deltas.append(_chain(rf"{head}'\left({n[s.z[l - 1]]}\right)", [_formula(latex(fp, one)), bmatrix(w.fprime[l - 1])]))
        deltas.append(_chain(back, [back_numbers, bmatrix(w.back[l - 1])]))
        deltas.append(_chain(delta, [
            _formula(rf"\operatorname{{Diag}}\left({head}'\left({n[s.z[l - 1]]}\right)\right) {back}"),
            _formula(rf"{head}'\left({n[s.z[l - 1]]}\right) \odot {back}"),
            _joined(bmatrix(w.fprime[l - 1]), r"\odot", bmatrix(w.back[l - 1])), bmatrix(w.deltas[l - 1])]))
        recursion.append(l)

    # (c) the gradients, or the entries asked for
    gradients = []
    for l in range(L, 0, -1):
        if entries and not any(e[1] == l for e in entries):
            continue
        if not entries:
            gradients.append(_chain(grad(s.W[l - 1]), [
                _formula(rf"{n[s.delta[l - 1]]} {T(s.a[l - 1])}"),
                _joined(bmatrix(w.deltas[l - 1]), "", bmatrix(w.a[l - 1].T)), bmatrix(w.dW[l - 1])]))
            gradients.append(_chain(grad(s.b[l - 1]), [_formula(n[s.delta[l - 1]]), bmatrix(w.db[l - 1])]))
    asked = []
    for kind, l, j, i in entries:
        below = "x" if l == 1 else f"a^{{({l - 1})}}"
        if kind == "w":
            name = rf"w^{{({l})}}_{{{j}{i}}}" if max(j, i) < 10 else rf"w^{{({l})}}_{{{j},{i}}}"
            value = w.dW[l - 1][j - 1, i - 1]
            gradients.append(_chain(rf"\frac{{\partial {ONE_LOSS}}}{{\partial {name}}}", [
                _formula(rf"\delta^{{({l})}}_{{{j}}}\, {below}_{{{i}}}"),
                _formula(rf"({number(w.deltas[l - 1][j - 1, 0])})({number(w.a[l - 1][i - 1, 0])})"),
                _formula(number(value))]))
        else:
            name = rf"b^{{({l})}}_{{{j}}}"
            value = w.db[l - 1][j - 1, 0]
            gradients.append(_chain(rf"\frac{{\partial {ONE_LOSS}}}{{\partial {name}}}", [
                _formula(rf"\delta^{{({l})}}_{{{j}}}"), _formula(number(value))]))
        asked.append({"name": name, "kind": kind, "layer": l, "row": j, "column": i, "value": number(value)})

    return {
        "given": given,
        "given_layers": given_layers,
        "forward": forward,
        "loss_value": loss,
        "deltas": deltas,
        "gradients": gradients,
        "asked": asked,
        "recursion": recursion,
    }


def matrix_exam_context(d: MatrixDerivation, values, *, entries=(), bound=None, title=None, answers=False) -> dict:
    """The data ``templates/matrix_exam.tex.j2`` receives: printed LaTeX and sentences."""
    numbers = worked_numbers_context(d, values, entries)
    s, L = d.one, d.depth
    one = {**d.names, E: ONE_LOSS}
    printer = LatexPrinter()
    n = {q: latex(q, one) for q in (*s.delta,)}
    acts = d.net.activations
    used = {st.rule for st in d.steps} | {b for st in d.steps for b in st.because}
    derivative_rules = _derivatives(d, one, printer)["rules"]
    generics = [{"name": rf"${sp.latex(sp.Symbol(g))}$", "activation": _prose(r.name)} for g, r in (bound or {}).items()
                if r.name in d.net.names]  # d is bound: its network names the activations the generics stand for
    points = {"forward": L + 1, "deltas": L + 1, "gradients": 2 * L if not entries else len(entries) + 1}
    lines = {"forward": 3 * L + 4, "deltas": 3 * L + 2 + 2 * len(numbers["recursion"]),
             "gradients": (3 * L + 3) if not entries else 2 * len(entries) + 2}
    return {
        "title": title,
        "answers": answers,
        "description": _description(d),
        "sizes": "-".join(map(str, d.sizes)),
        "softmax_output": acts[-1].name == "softmax",
        "generics": generics,
        "one_loss": ONE_LOSS,
        "loss": latex(d.loss, one),
        "loss_ones": [latex(o.args[0]) for o in d.loss.atoms(Ones)],
        "numbers": numbers,
        "depth": L,
        "last": n[s.delta[L - 1]],
        "recursion_deltas": ", ".join(f"${n[s.delta[l - 1]]}$" for l in range(L - 1, 0, -1)),
        "gates": _exam_gates(d, used),
        "derivative_rules": derivative_rules,
        "step_note": STEP_NOTE if any(STEP_NOTE in note for note in _derivatives(d, one, printer)["notes"]) else None,
        "points": points,
        "total": sum(points.values()),
        "lines": lines,
    }


def _head(f, printer) -> str:
    """An activation's name as its derivative prints it (``\\sigma``, ``\\tanh``, ``f``)."""
    return printer.head(f) or printer.doprint(f.build(sp.Symbol("u")).func)


def _exam_gates(d: MatrixDerivation, used) -> list[dict]:
    r"""Seed 000's gate gradients the question may give, as (gate, local gradient) rows in
    this document's layout (denominator layout: dL/dW = δ x^T with δ a column)."""
    rows = [
        (r"$\mathbf{z} = \mathbf{W}\mathbf{x}$", r"$\frac{\partial \mathbf{z}}{\partial \mathbf{x}} = \mathbf{W}$, "
         r"so $\frac{\partial \mathcal{L}}{\partial \mathbf{x}} = \mathbf{W}^{T} \frac{\partial \mathcal{L}}{\partial \mathbf{z}}$"),
        (r"$\mathbf{z} = \mathbf{x} + \mathbf{b}$", r"$\frac{\partial \mathbf{z}}{\partial \mathbf{x}} = "
         r"\frac{\partial \mathbf{z}}{\partial \mathbf{b}} = \mathbf{I}$"),
        (r"$\mathbf{a} = f(\mathbf{z})$ elementwise", r"$\frac{\partial \mathbf{a}}{\partial \mathbf{z}} = "
         r"\operatorname{Diag}[f'(\mathbf{z})]$, and $\operatorname{Diag}(\mathbf{v})\,\mathbf{u} = \mathbf{v} \odot \mathbf{u}$"),
        (r"$\boldsymbol{\delta} = \frac{\partial \mathcal{L}}{\partial \mathbf{z}}$, $\mathbf{z} = \mathbf{W}\mathbf{x}$",
         r"$\frac{\partial \mathcal{L}}{\partial \mathbf{W}} = \boldsymbol{\delta}\,\mathbf{x}^{T}$"),
    ]
    for rule in OUTPUT_RULES.values():
        if rule.name in used:
            rows.append((rule.title, rule.sentence))
    if "softmax + cross-entropy" in used:
        rows.append((r"$\hat{\mathbf{y}} = \operatorname{softmax}(\mathbf{z})$, $\mathcal{L} = CE(\mathbf{y}, \hat{\mathbf{y}})$",
                     r"$\frac{\partial \mathcal{L}}{\partial \mathbf{z}} = \hat{\mathbf{y}} - \mathbf{y}$"))
    return [{"gate": g, "gradient": r} for g, r in rows]
