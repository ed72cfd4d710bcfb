r"""Checkpointed backprop explained for one ``[layers]`` spec: the data
``templates/checkpoint.tex.j2`` receives (``symprop solve SPEC --checkpoints K``).

What is stored, what is recomputed and when, layer by layer, and the trade-off as numbers:
forward numbers held with and without checkpoints, the layers evaluated twice and their
multiply-adds against one forward pass, and the same for every other K.
"""

from __future__ import annotations

from ..checkpoint import CheckpointedGradient, checkpoint_plan, stored_values_of
from ..matrix import MatrixDerivation
from .environment import environment
from .matrix_hvp import describe

__all__ = ["render_checkpoint_solution", "checkpoint_context"]

MAX_TABLE_LAYERS = 40  # layers listed one a row; past it, the table groups runs of layers
MAX_K_ROWS = 24  # rows of the table over K


def render_checkpoint_solution(d: MatrixDerivation, result: CheckpointedGradient, *, title=None,
                               standalone=True) -> str:
    """The explanation as LaTeX (``templates/checkpoint.tex.j2``)."""
    context = checkpoint_context(d, result, title=title, standalone=standalone)
    return environment().get_template("checkpoint.tex.j2").render(context)


def _count(n: int) -> str:
    r"""``12{,}345``: a count with thousands separated, as LaTeX math."""
    return f"{n:,}".replace(",", "{,}")


def _layers_text(layers) -> str:
    """``1, 2 and 4--6``: layer numbers for prose, runs of three or more shortened."""
    out, run = [], []
    for l in list(layers) + [None]:
        if run and (l is None or l != run[-1] + 1):
            out.extend(map(str, run) if len(run) <= 2 else [f"{run[0]}--{run[-1]}"])
            run = []
        if l is not None:
            run.append(l)
    if not out:
        return "none"
    return out[0] if len(out) == 1 else ", ".join(out[:-1]) + " and " + out[-1]


def _span(first: int, last: int) -> str:
    r"""``9, 8, 7`` or ``9, \dots, 6``: the layers from ``first`` to ``last`` (either direction), as math."""
    step = 1 if last >= first else -1
    numbers = list(range(first, last + step, step))
    return ", ".join(map(str, numbers)) if len(numbers) <= 3 else f"{first}, \\dots, {last}"


def _multiply_adds(d: MatrixDerivation, batch: int, layers) -> int:
    """Multiply-adds of the forward matrix products W^l A^(l-1) of ``layers``."""
    return sum(d.sizes[l] * d.sizes[l - 1] * batch for l in layers)


def checkpoint_context(d: MatrixDerivation, result: CheckpointedGradient, *, title=None, standalone=True) -> dict:
    plan = result.plan
    L = plan.depth
    batch = result.gradient.batch
    every_layer = range(1, L + 1)
    forward_cost = _multiply_adds(d, batch, every_layer)
    kept, checkpoints, last = set(plan.kept), set(plan.checkpoints), plan.segments[-1][0]
    rows = []
    for l in every_layer:
        if l in checkpoints:
            status = r"checkpoint: kept"
        elif l == L:
            status = "output layer: kept"
        elif l in kept:
            status = "last segment: kept"
        else:
            status = "dropped, recomputed once"
        rows.append({"layer": l, "width": d.sizes[l], "count": _count(result.layer_values[l - 1]), "status": status})
    segments = []
    for start, end in reversed(plan.segments):
        recompute = list(range(start + 1, end)) if start != last else []
        segments.append({
            "start": start, "end": end, "steps": _span(end, start + 1), "needs": _span(start, end - 1),
            "single": end == start + 1,
            "recompute": _layers_text(recompute) if recompute else "",
            "recompute_count": len(recompute),
            "from_input": start == 0,
        })
    options = sorted({1, 2, 3, 4, plan.every, max(1, round(L ** 0.5)), L} | set(range(1, min(L, MAX_K_ROWS) + 1)))
    trade = []
    for k in [k for k in options if k <= L][:MAX_K_ROWS]:
        other = checkpoint_plan(L, k)
        stored = stored_values_of(other, result.layer_values)
        trade.append({"k": k, "stored": _count(stored), "share": f"{stored / result.plain_stored_values:.0%}".replace("%", r"\%"),
                      "recomputed": len(other.recomputed),
                      "work": f"{_multiply_adds(d, batch, other.recomputed) / forward_cost:.0%}".replace("%", r"\%"),
                      "chosen": k == plan.every})
    extra = _multiply_adds(d, batch, plan.recomputed)
    return {
        "title": title,
        "standalone": standalone,
        "description": describe(d),
        "depth": L,
        "every": plan.every,
        "batch": batch,
        "checkpoints": _layers_text(plan.checkpoints),
        "checkpoint_count": len(plan.checkpoints),
        "rows": rows if L <= MAX_TABLE_LAYERS else [],
        "segments": segments,
        "stored": _count(result.stored_values),
        "plain": _count(result.plain_stored_values),
        "share": f"{result.stored_values / result.plain_stored_values:.0%}".replace("%", r"\%"),
        "recomputed": _layers_text(plan.recomputed),
        "recomputed_count": len(plan.recomputed),
        "extra": _count(extra),
        "forward": _count(forward_cost),
        "extra_share": f"{extra / forward_cost:.0%}".replace("%", r"\%"),
        "trade": trade,
        "loss": f"{result.gradient.loss:.6g}",
    }
