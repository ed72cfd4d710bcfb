r"""The matrix form's Hessian-vector product as a worked solution: the data
``templates/matrix_hvp.tex.j2`` receives (``symprop hvp SPEC --format latex`` on a ``[layers]``
spec).

Every R step is printed with its shape at the spec's widths and the rule that justifies it
(:data:`symprop.matrix_hvp.R_RULES`); a long right side breaks between its terms. The numbers
are the ones ``hvp`` prints: the loss, vᵀHv and H v by parameter (every entry for a small
network, norms otherwise), with the central difference of the gradient along v beside them.
"""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..matrix import E, Gradient, LayeredValues, latex
from ..matrix_hvp import R_RULES, MatrixHvp, r_of
from ..printing import latex_escape
from .environment import environment
from .matrix import ONE_LOSS, bmatrix, number

__all__ = ["render_matrix_hvp", "matrix_hvp_context", "describe"]

MAX_LINE_CHARACTERS = 60  # a longer sum breaks between its terms, one a line
MAX_TAGGED_CHARACTERS = 40  # a broken sum's first term, if longer, starts below its tag (else the tag is pushed down between the terms)
MAX_SHOWN_ENTRIES = 12
MAX_PAIR_EMS = 30  # a direction block and its H v block side by side, at most this wide  # rows or columns of a matrix shown entry by entry
DIFFERENCE_STEP = 1e-5  # the step of the central-difference cross-check


def render_matrix_hvp(result: MatrixHvp, *, title=None, standalone=True) -> str:
    """H v's derivation and numbers as LaTeX (``templates/matrix_hvp.tex.j2``)."""
    return environment().get_template("matrix_hvp.tex.j2").render(matrix_hvp_context(result, title=title,
                                                                                     standalone=standalone))


def describe(d) -> str:
    """The network in words as LaTeX, a long list of widths free to break after a dash."""
    text = d.describe(name=lambda a: latex_escape(a.replace("_", " ")), title=latex_escape, reduction=False)
    return re.sub(r"(?<=\d)-(?=\d)", r"-\\allowbreak{}", text)


def _shape(lhs, sizes) -> str:
    rows, cols = (int(n.xreplace(sizes)) for n in lhs.shape)
    return rf"\mathbb{{R}}^{{{rows} \times {cols}}}"


def _why(step, loss: str | None = None) -> str:
    if step.rule == "R of elementwise f" and loss is not None and step.because[:1] == (loss,):
        # R{g} = h ⊙ R{a^L}: the loss's own second derivative, which the "loss gradient" rule names h
        return f"{R_RULES['R of the loss gradient'].title}, {latex_escape(loss.replace('_', ' '))}"
    rule = R_RULES.get(step.rule)
    title = rule.title if rule is not None else latex_escape(step.rule)  # the first-order "loss gradient"
    if step.rule in ("R of elementwise f", "R of the delta recursion", "loss gradient") and step.because:
        return f"{title}, {latex_escape(step.because[0].replace('_', ' '))}"
    return title


def _row(step, names, sizes, loss: str | None = None) -> dict:
    """One step: its left side, its right side as lines (a sum breaks between its terms)."""
    whole = latex(step.rhs, names)
    long = _visible(whole) > MAX_LINE_CHARACTERS and isinstance(step.rhs, sp.MatAdd)
    lines = [latex(t, names) for t in step.rhs.args] if long else [whole]
    return {"lhs": latex(step.lhs, names), "lines": lines, "shape": _shape(step.lhs, sizes), "why": _why(step, loss),
            "alone": long and _visible(lines[0]) > MAX_TAGGED_CHARACTERS}


def _visible(tex: str) -> int:
    """Roughly how many characters ``tex`` shows: commands and braces left out."""
    return len(re.sub(r"\\[a-zA-Z]+|[{}^_]", "", tex))


def _shifted(values: LayeredValues, direction, eps) -> LayeredValues:
    return LayeredValues([w + eps * v for w, v in zip(values.weights, direction.weights)],
                         [b + eps * v for b, v in zip(values.biases, direction.biases)], values.x, values.y)


def matrix_hvp_context(result: MatrixHvp, *, title=None, standalone=True) -> dict:
    """Printed LaTeX strings and finished sentences for the template."""
    h = result.derivation
    d = h.d
    sizes = d.dimension_values()
    names = {**h.names, E: ONE_LOSS}  # the loss of one sample is 𝓛 (seed 004)
    hv = result.named()
    v = result.direction.named()
    curvature = float(sum(np.sum(hv[k] * v[k]) for k in hv))
    small = all(max(g.shape) <= MAX_SHOWN_ENTRIES for g in hv.values())
    blocks = []
    for l in range(1, d.depth + 1):
        for kind, symbol in (("W", d.one.W[l - 1]), ("b", d.one.b[l - 1])):
            key = f"{kind}^{l}"
            block = {"name": latex(symbol, names), "r": latex(r_of(Gradient(E, symbol)), names), "norm": number(float(np.linalg.norm(hv[key]))),
                     "shape": f"{hv[key].shape[0]} \\times {hv[key].shape[1]}"}
            if small:
                (block["matrix"], hv_width), (block["direction"], v_width) = bmatrix(hv[key]), bmatrix(v[key])
                block["split"] = hv_width + v_width > MAX_PAIR_EMS  # too wide for one line: one under the other
            blocks.append(block)
    used = {s.rule for s in h.forward + h.steps}
    return {
        "title": title,
        "standalone": standalone,
        "description": describe(d),
        "rules": [r for r in R_RULES.values() if r.name in used or r.name == "R is a derivative"],
        "forward": [_row(s, names, sizes, d.net.loss.name) for s in h.forward],
        "steps": [_row(s, names, sizes, d.net.loss.name) for s in h.steps],
        "all_shapes": sorted({_shape(s.lhs, sizes) for s in h.forward + h.steps}),
        "all_whys": sorted({_why(s, d.net.loss.name) for s in h.forward + h.steps}),
        "loss": number(result.loss),
        "batch": result.batch,
        "mean": d.net.reduction == "mean",
        "curvature": number(curvature),
        "blocks": blocks,
        "small": small,
        "difference": _difference(result),
        "difference_step": f"10^{{{int(np.log10(DIFFERENCE_STEP))}}}",
        "gradient_norm": number(float(np.sqrt(sum(np.sum(g * g) for g in result.gradient.named().values())))),
    }


def _difference(result: MatrixHvp) -> str:
    """The largest |entry| of (∇E(θ + εv) - ∇E(θ - εv)) / 2ε - H v, relative to max |H v|."""
    d = result.derivation.d
    values = result.values
    plus = d.gradient(_shifted(values, result.direction, DIFFERENCE_STEP)).named()
    minus = d.gradient(_shifted(values, result.direction, -DIFFERENCE_STEP)).named()
    hv = result.named()
    scale = max(1e-300, max(float(np.abs(g).max()) for g in hv.values()))
    worst = max(float(np.abs((plus[k] - minus[k]) / (2 * DIFFERENCE_STEP) - hv[k]).max()) for k in hv)
    return f"{worst / scale:.1e}".replace("e-0", "e-").replace("e", r" \times 10^{") + "}"
