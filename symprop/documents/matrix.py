"""The matrix form's worked solution: the data ``templates/matrix_solution.tex.j2`` receives."""

from __future__ import annotations

from ..matrix import GATES, OUTPUT_RULES, MatrixDerivation, MatrixStep, latex
from .. import functions as fn
from ..printing import LatexPrinter, latex_escape
from .environment import environment
from .prose import defined_functions, rule_sentence

__all__ = ["matrix_solution_context", "render_matrix_solution"]


def render_matrix_solution(d: MatrixDerivation, *, title=None, standalone=True) -> str:
    """The matrix derivation as a LaTeX worked solution (``templates/matrix_solution.tex.j2``)."""
    context = matrix_solution_context(d, title=title, standalone=standalone)
    return environment().get_template("matrix_solution.tex.j2").render(context)


def matrix_solution_context(d: MatrixDerivation, *, title=None, standalone=True) -> dict:
    """Printed LaTeX strings and finished sentences for the template."""
    names = d.names
    acts = d.net.activations
    printer = LatexPrinter()
    steps = d.forward + d.steps + d.batch_forward + d.batch_steps
    used = {s.rule for s in steps}
    rules = [r for r in (*GATES.values(), *OUTPUT_RULES.values()) if r.name in used]
    return {
        "title": title,
        "standalone": standalone,
        "description": d.description,
        "sizes": [{"name": latex(n), "value": str(v)} for n, v in zip(d.dims, d.sizes)],
        "depth": d.depth,
        "reduction": d.net.reduction,
        "softmax_output": acts[-1].name == "softmax",
        "loss": latex(d.loss, names),
        "forward": [_latex_step(s, names) for s in d.forward],
        "steps": [_latex_step(s, names) for s in d.steps],
        "batch_forward": [_latex_step(s, names) for s in d.batch_forward],
        "batch_steps": [_latex_step(s, names) for s in d.batch_steps],
        "rules": [{"title": r.title, "sentence": r.sentence} for r in rules],
        "activations": [rule_sentence(f, printer) for f in sorted({f for f in acts if f.name != "identity"}, key=lambda f: f.name)],
        "defined": defined_functions([f.build(fn.U) for f in acts if f.kind == "defined"], printer),
        "quantities": _quantities(d, names),
    }


def _why(step: MatrixStep) -> str:
    """A step's justification: its rule's title, and the activation of an elementwise step."""
    rule = GATES.get(step.rule) or OUTPUT_RULES.get(step.rule)
    why = rule.title if rule is not None else latex_escape(step.rule)
    if step.rule == "elementwise f" and step.because:
        why += f" ({latex_escape(', '.join(step.because))})"
    return why


def _latex_step(step: MatrixStep, names) -> dict:
    return {
        "lhs": latex(step.lhs, names),
        "rhs": latex(step.rhs, names),
        "why": _why(step),
        "shapes": [{"name": latex(q, names), "rows": latex(r, names), "cols": latex(c, names)} for q, (r, c) in step.shapes],
    }


def _quantities(d: MatrixDerivation, names) -> list[dict]:
    """Every named matrix once, with its symbolic shape and its shape at the given sizes."""
    seen = {}
    for step in d.forward + d.steps + d.batch_forward + d.batch_steps:
        for q, shape in step.shapes:
            seen.setdefault(q, shape)
    values = d.dimension_values()
    rows = []
    for q, (r, c) in seen.items():
        rows.append({
            "name": latex(q, names), "rows": latex(r), "cols": latex(c),
            "rows_value": latex(r.xreplace(values)), "cols_value": latex(c.xreplace(values)),
        })
    return rows
