r"""The matrix form's worked solution: the data ``templates/matrix_solution.tex.j2`` receives.

Seed 004's names: the loss of one sample is :math:`\mathcal{L}` (``\mathcal{L}(m)`` for
sample m), the loss of a batch of M samples ``L = 1/M Σ_m 𝓛(m)`` (or the sum). Every step
carries its shape at the spec's widths (``δ^(2) ∈ ℝ^{10×1}``); activation derivatives are
written with the layer's output as the derivation uses them (σ'(z^(l)) = a^(l) ⊙ (1 - a^(l))).
"""

from __future__ import annotations

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


def render_matrix_solution(d: MatrixDerivation, *, title=None, standalone=True) -> str:
    """The matrix derivation as a LaTeX worked solution (``templates/matrix_solution.tex.j2``)."""
    context = matrix_solution_context(d, title=title, standalone=standalone)
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


def matrix_solution_context(d: MatrixDerivation, *, title=None, standalone=True) -> dict:
    """Printed LaTeX strings and finished sentences for the template."""
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
        "description": latex_escape(_description(d)),
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
    }


def _description(d: MatrixDerivation) -> str:
    """``784-128-10, sigmoid hidden, softmax output, cross-entropy loss`` (the reduction is
    in the batch loss's formula)."""
    acts = [name.replace("_", " ") for name in d.net.names]
    hidden = acts[:-1]
    parts = ["-".join(map(str, d.sizes))]
    if hidden:
        parts.append(f"{hidden[0] if len(set(hidden)) == 1 else ', '.join(hidden)} hidden")
    parts.append(f"{acts[-1]} output")
    parts.append(f"{d.net.loss.loss.title} loss")
    return ", ".join(parts)


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
    """An activation's name in a sentence: ``leaky relu``, not ``leaky\\_relu``."""
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
