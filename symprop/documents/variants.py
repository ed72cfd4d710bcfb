"""Exam variants of a question family: the data their LaTeX and HTML templates receive.

Every value arrives printed: the given numbers exactly as drawn, answers and options to the
family's digits, each wrong option with the sentence that says which mistake it comes from
(:func:`~symprop.documents.prose.mistake_sentence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import sympy as sp

from .. import functions as fn
from ..derive import Total, delta_expr, derive
from ..exam import CircuitVariant, Variant, variant_number
from ..numeric import Evaluator
from ..printing import LatexPrinter, latex_number
from ..spec import Family
from .circuit import circuit_context, circuit_formula, circuit_names
from .environment import environment
from .figures import network_figure
from .lines import break_lines
from .prose import circuit_mistake_sentence, mistake_sentence
from .solution import solution_context

__all__ = [
    "variant_context", "circuit_variant_context", "render_variants", "answer_key_tex", "decimal_text", "plain_number",
]


def decimal_text(value: Fraction, decimals: int) -> str:
    """A given number with at least ``decimals`` decimals, exactly as drawn (no float noise)."""
    value = Fraction(value)
    places = decimals
    while (value * 10**places).denominator != 1 and places < 12:
        places += 1
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}" + (f".{frac:0{places}d}" if places else "")


def plain_number(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits as plain text (answer keys, Moodle)."""
    return f"{x:.{digits}g}"


def _printer(net, values=None):
    settings = {"names": net.display, "params": frozenset(net.params)}  # w a + b, as the texts write it
    if values:
        settings["values"] = values
    return LatexPrinter(settings)


def variant_context(family: Family, v: Variant, number: str | None = None) -> dict:
    """The data a variant's templates receive: printed LaTeX strings, lists and dicts."""
    net, wrt, E = v.network, v.wrt, v.network.loss
    context = solution_context(net, wrt, method=family.method)
    d = context["derivations"][0]
    printer = _printer(net)
    name = printer.doprint
    derivation = derive(net, wrt, method=family.method)
    on = [k for k in net.order if k in set(net.on_paths(wrt))]
    ev = Evaluator(net)

    def given(sample, leaves):
        return [{"name": name(s), "number": decimal_text(sample[s], family.decimals)} for s in leaves]

    samples, numbers_figure = [], None
    for m, (sample, point, gradient) in enumerate(zip(v.samples, v.points, v.gradients), 1):
        deltas = {k: ev.value(delta_expr(net, k), point) for k in on}
        if m == 1 and len(v.samples) == 1:  # the figure of the solution: forward values and deltas
            numbers_figure, _ = network_figure(net, name, {"point": point, "deltas": deltas}, (wrt,))
        values = {s: float(x) for s, x in point.items()}
        values.update({Total(E, k): x for k, x in deltas.items()})
        for f in sorted(derivation.in_deltas.atoms(fn.softmax), key=sp.default_sort_key):
            values[f] = ev.value(f, point)
        samples.append({
            "number": m,
            "given": given(sample, net.inputs + net.targets),
            "nodes": [{"name": name(k), "value": latex_number(point[k], family.digits)} for k in net.order],
            "deltas": [{"name": name(Total(E, k)), "value": latex_number(deltas[k], family.digits)} for k in on if k != E],
            "rows": [{"name": name(k), "value": latex_number(point[k], family.digits),
                      "delta": latex_number(deltas[k], family.digits) if k in deltas and k != E else None}
                     for k in net.order],
            "formula": break_lines(_printer(net), derivation.in_deltas),
            "substituted": break_lines(_printer(net, values), derivation.in_deltas),
            "gradient": latex_number(gradient, family.digits),
        })
    options = [
        {"letter": o.letter, "value": latex_number(o.value, family.digits), "plain": plain_number(o.value, family.digits),
         "correct": o.correct, "mistake": None if o.correct else mistake_sentence(o.mistake, net, printer)}
        for o in v.options
    ] if family.options else []
    network = dict(context["network"], given=[])
    paths = d["path_count"]
    return {
        "number": number or str(v.index),
        "index": v.index,
        "network": network,
        "figure": context["figure"],
        "numbers_figure": numbers_figure,
        "points": _points(family, paths, len(v.samples)),
        "answer_lines": _answer_lines(len(net.order), len(on), len(v.samples)),
        "derivation": d,
        "goal": d["goal"],
        "wrt": d["wrt"],
        "params": given(v.samples[0], net.params),
        "samples": samples,
        "batch": len(v.samples),
        "reduction": net.reduction,
        "answer": latex_number(v.answer, family.digits),
        "answer_plain": plain_number(v.answer, family.digits),
        "digits": family.digits,
        "options": options,
        "notes": list(context["notes"]),
        "dropped": [
            {"mistake": mistake_sentence(m, net, printer), "why": _why_dropped(why, twin, v.options)}
            for m, why, twin in v.dropped
        ] if family.options else [],
        "distinct": f"{family.distinct * 100:g}",
        "batch_sum": _batch_sum([s["gradient"] for s in samples]),
    }


def circuit_variant_context(family: Family, v: CircuitVariant, number: str | None = None) -> dict:
    r"""The data a circuit variant's templates receive: the circuit as :func:`~symprop.documents.circuit.circuit_context`
    prints it (the given numbers exactly as drawn), and per question the goal, the answer and the options.

    >>> from symprop.exam import variant
    >>> from symprop.spec import family_from_text
    >>> fam = family_from_text('''
    ... [family]
    ... kind = "circuit"
    ... expressions = ["(x + y)*z"]
    ... variables = ["x", "y", "z"]
    ... wrt = "z"
    ... options = 1
    ... ''', "demo.toml")
    >>> q = circuit_variant_context(fam, variant(fam, 1, 1))["questions"][0]
    >>> q["goal"], [o["mistake"] for o in q["options"] if not o["correct"]]
    ('\\frac{d f}{d z}', ['a sign error: the gradient taken with the wrong sign'])
    """
    net = v.circuit.network
    printer = LatexPrinter({"names": circuit_names(net)})  # w0 as w_{0}, as the circuit's figure writes it
    name = printer.doprint
    c = circuit_context(v.flow, digits=family.digits)
    exact = {name(s): decimal_text(x, family.decimals) for s, x in v.values.items()}
    for item in c["given"]:
        item["value"] = exact.get(item["name"], item["value"])
    if c["figure"] is not None:  # the variables' wires show the numbers as given, unrounded
        ids = {n["id"]: exact[n["label"]] for n in c["figure"]["nodes"] if n["kind"] == "variable" and n["label"] in exact}
        for wire in c["figure"]["wires"]:
            wire["value"] = ids.get(wire["source"], wire["value"])

    def mistake(m):
        return None if m is None else circuit_mistake_sentence(m, v.circuit, printer)

    questions = []
    for q in v.questions:
        options = [
            {"letter": o.letter, "value": latex_number(o.value, family.digits), "plain": plain_number(o.value, family.digits),
             "correct": o.correct, "mistake": mistake(o.mistake)}
            for o in q.options
        ] if family.options else []
        dropped = [{"mistake": mistake(m), "why": _why_dropped(why, twin, q.options)} for m, why, twin in q.dropped
                   ] if family.options else []
        questions.append({
            "wrt": name(q.wrt), "goal": name(Total(net.loss, q.wrt)), "question": q.question,
            "answer": latex_number(q.answer, family.digits), "answer_plain": plain_number(q.answer, family.digits),
            "options": options, "dropped": dropped,
        })
    return {
        "number": number or str(v.index),
        "index": v.index,
        "c": c,
        "all": family.all_gradients,
        "questions": questions,
        "digits": family.digits,
        "distinct": f"{family.distinct * 100:g}",
    }


def _points(family: Family, paths: int, batch: int) -> int:
    """The points of a question: the family's ``points`` when it gives them, else two for
    the forward pass and one per path from the weight to the loss (at most ten), one more
    for each further sample of a batch."""
    given = getattr(family, "points", None)
    if given is not None:
        return given
    return min(10, 2 + paths) + (batch - 1)


def _answer_lines(nodes: int, on_paths: int, batch: int) -> int:
    """Ruled lines for the work: per sample a line per node value, one per delta, two for
    the gradient; one more for a batch's sum; at most 32 (a page and a half)."""
    return min(32, batch * (nodes + on_paths + 2) + (batch > 1))


def _why_dropped(why: str, twin, options) -> str:
    """What a left-out mistake gives: the right answer, another option, or no number."""
    if why == "right":
        return "the right answer"
    if why == "option":
        return "option " + next(o.letter for o in options if o.mistake is twin)
    return "not a finite number"


def _batch_sum(terms: list[str]) -> str:
    """``g_1 + g_2 - g_3`` from printed numbers: a negative term brings its own sign."""
    text = terms[0]
    for t in terms[1:]:
        text += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
    return text


def render_variants(family: Family, vs: Sequence[Variant], *, combined: bool = False, answers: bool = False) -> dict[str, str]:
    """The LaTeX documents of the variants: ``{file name: text}``, one document per
    variant (``variant-01.tex``, ...) or one ``{name}.tex`` with ``combined=True``.
    ``answers`` prints the worked solutions (``\\printanswers``)."""
    circuit = family.kind == "circuit"
    template = environment().get_template("exam_variant_circuit.tex.j2" if circuit else "exam_variant.tex.j2")
    context = circuit_variant_context if circuit else variant_context
    contexts = [context(family, v, variant_number(v.index)) for v in vs]
    common = {"title": family.title, "answers": answers, "family": family.name}
    if combined:
        return {f"{family.name}.tex": template.render(common, variants=contexts)}
    return {f"variant-{c['number']}.tex": template.render(common, variants=[c]) for c in contexts}


def answer_key_tex(family: Family, vs: Sequence[Variant]) -> str:
    """The answer key as a LaTeX document (a long table). A layered family's network is
    spelled out in columns (sizes, hidden and output activation, the loss by its name in
    words); a graph family's bound activations and a circuit's formula get one column."""
    circuit = family.kind == "circuit"
    rows = [
        {"variant": v.index, "question": LatexPrinter({"names": circuit_names(q.network) if circuit else q.network.display})
         .doprint(Total(q.network.loss, q.wrt)),
         "value": latex_number(q.answer, family.digits), "option": q.correct_letter if family.options else "",
         "architecture": v.architecture, "network": None if circuit else _architecture(v.layers),
         "formula": _circuit_formula(v) if circuit else None}
        for v in vs for q in v.questions
    ]
    layered = not circuit and all(r["network"] is not None for r in rows)
    template = environment().get_template("exam_variant_key.tex.j2")
    return template.render(title=family.title, family=family.name, rows=rows, options=bool(family.options),
                           circuit=circuit, layered=layered, count=len(vs))


def _architecture(layers: dict | None) -> dict | None:
    """A layered variant's network in parts for the key's columns (sizes, hidden and output
    activation, the loss by its name in words: ``half squared error``); None otherwise."""
    if layers is None:
        return None
    record = fn.BUILTINS.get(layers["loss"])
    rule = getattr(record, "loss", None)
    return {"sizes": "--".join(map(str, layers["sizes"])), "hidden": layers["hidden"], "output": layers["output"],
            "loss": rule.title if rule is not None else layers["loss"].replace("_", " ")}


def _circuit_formula(v: CircuitVariant) -> str:
    """The circuit's formula as staged (as written), for the key."""
    printer = LatexPrinter({"names": circuit_names(v.network)})
    return "; ".join(f"{lhs} = {rhs}" for lhs, rhs in circuit_formula(v.circuit, printer))
