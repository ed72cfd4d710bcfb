r"""Quiz formats of a question family's variants: the answer key as CSV and Moodle XML.

Moodle XML follows Moodle's own XML export (``question/format/xml/format.php``): a
``<quiz>`` of ``<question type="...">`` elements, a ``category`` question first. Every
question has ``name``, ``questiontext format="html"``, ``generalfeedback`` (the worked
solution), ``defaultgrade``, ``penalty`` and ``hidden``. A ``numerical`` question has one
answer of fraction 100 with an absolute ``tolerance`` (``[family] tolerance`` times the
answer); a ``multichoice`` question has ``single``, ``shuffleanswers``,
``answernumbering``, the combined feedbacks and one answer per option: fraction 100 for
the right one, 0 for each wrong one, whose feedback names the mistake behind it.

Text with HTML goes in CDATA sections, as Moodle writes it (only where the text holds
``& < > " '``, split around any ``]]>``); math is LaTeX in ``\\( \\)`` and ``\\[ \\]`` for
MathJax. Only the standard library's ``xml.etree`` writes the file.

>>> import xml.etree.ElementTree as ET
>>> from symprop.exam import variants
>>> from symprop.spec import family_from_text
>>> fam = family_from_text('[family]\noptions = 2\n[family.layered]\nsizes = [1, 1, 1]\n', "demo.toml")
>>> root = ET.fromstring(moodle_xml(fam, variants(fam, 1, seed=1)))
>>> [q.get("type") for q in root]
['category', 'numerical', 'multichoice']
"""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from html import escape as html_escape

from .documents.environment import environment
from .documents.variants import circuit_variant_context, plain_number, variant_context
from .exam import Variant, variant_number
from .spec import Family

__all__ = ["answer_key_csv", "moodle_xml", "PENALTY"]


def answer_key_csv(family: Family, vs: Sequence[Variant]) -> str:
    """The answer key as CSV: variant, question, value (12 significant digits), the value
    rounded as shown, and the letter of the right option; one row per question."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["variant", "question", "value", "rounded", "option"])
    for v in vs:
        for q in v.questions:
            writer.writerow([v.index, q.question, plain_number(q.answer, 12), plain_number(q.answer, family.digits),
                             q.correct_letter if family.options else ""])
    return out.getvalue()


# -- Moodle XML -------------------------------------------------------------------------

# Moodle's default penalty for a wrong try (interactive behaviour), as its export writes it.
PENALTY = "0.3333333"
_HTML_SPECIAL = re.compile(r"[&<>\"']")
# Characters XML 1.0 forbids: control characters other than tab, newline, carriage return.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class _Writer:
    """Builds the element tree; text that needs it becomes CDATA after serialisation
    (ElementTree has no CDATA node, so a placeholder stands in until then)."""

    def __init__(self):
        self.cdata: list[str] = []

    def text(self, parent, tag, text, **attrib):
        """``<tag attrib><text>...</text></tag>``, the way Moodle wraps its texts."""
        elem = ET.SubElement(parent, tag, attrib)
        self.set(ET.SubElement(elem, "text"), text)
        return elem

    def set(self, elem, text):
        text = _NOT_XML.sub("", text)
        if _HTML_SPECIAL.search(text) and "\ue000" not in text and "\ue001" not in text:
            elem.text = f"\ue000{len(self.cdata)}\ue001"
            self.cdata.append(text)
        else:
            elem.text = text  # plain text, escaped by ElementTree where needed

    def leaf(self, parent, tag, value):
        ET.SubElement(parent, tag).text = str(value)

    def serialise(self, root) -> str:
        ET.indent(root, space="  ")
        body = ET.tostring(root, encoding="unicode")

        def cdata(match):
            text = self.cdata[int(match.group(1))]
            return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"

        return '<?xml version="1.0" encoding="UTF-8"?>\n' + re.sub("\ue000(\\d+)\ue001", cdata, body) + "\n"


def moodle_xml(family, variants: Sequence, *, numerical: bool = True, multichoice: bool | None = None,
               category: str | None = None) -> str:
    """The variants as a Moodle XML quiz file (text). ``multichoice`` defaults to whether
    the family has wrong options; ``category`` defaults to ``$course$/top/symprop/NAME``.
    A circuit variant asking for several gradients gives one question per gradient."""
    if multichoice is None:
        multichoice = family.options > 0
    if multichoice and family.options == 0:
        raise ValueError("multiple-choice questions need wrong options: [family] options is 0")
    circuit = family.kind == "circuit"
    html = environment().get_template(
        "exam_variant_circuit_moodle.html.j2" if circuit else "exam_variant_moodle.html.j2").module
    w = _Writer()
    quiz = ET.Element("quiz")

    head = ET.SubElement(quiz, "question", type="category")
    w.text(head, "category", category or f"$course$/top/symprop/{family.name}")
    w.text(head, "info", f"<p>{html_escape(family.title)}: {len(variants)} variants of the question family "
           f"{html_escape(family.name)}.</p>", format="html")

    # enough digits that the answer as written lies well inside the tolerance
    digits = max(family.digits, math.ceil(-math.log10(family.tolerance)) + 3)
    for v in variants:
        number = variant_number(v.index)
        if circuit:  # one question per gradient asked, all with the variant's worked solution
            ctx = circuit_variant_context(family, v, number)
            items = [(q, qc, lambda choices, qc=qc: str(html.question(ctx, qc, choices)))
                     for q, qc in zip(v.questions, ctx["questions"])]
        else:
            ctx = variant_context(family, v, number)
            items = [(v, ctx, lambda choices: str(html.question(ctx, choices)))]
        solution = str(html.feedback(ctx)).strip()
        for item, qc, question_text in items:
            _questions(w, quiz, family, f"{family.name} {number} {item.question}", item.answer, qc, question_text,
                       solution, html, numerical=numerical, multichoice=multichoice, digits=digits)
    return w.serialise(quiz)


def _questions(w, quiz, family, base, value, ctx, question_text, solution, html, *, numerical, multichoice, digits):
    """The numerical and the multiple-choice question for one answer ``value``; ``ctx``
    holds its printed ``goal``, ``answer`` and ``options``."""
    if numerical:
        q = _question(w, quiz, "numerical", f"{base} (numerical)", question_text(False), solution)
        answer = ET.SubElement(q, "answer", fraction="100", format="moodle_auto_format")
        w.set(ET.SubElement(answer, "text"), plain_number(value, digits))
        w.text(answer, "feedback", f"<p>Right: \\({ctx['goal']} = {ctx['answer']}\\).</p>", format="html")
        w.leaf(answer, "tolerance", plain_number(family.tolerance * abs(value), 3))
        w.leaf(q, "unitgradingtype", 0)
        w.leaf(q, "unitpenalty", "0.1000000")
        w.leaf(q, "showunits", 3)  # no units
        w.leaf(q, "unitsleft", 0)
    if multichoice:
        q = _question(w, quiz, "multichoice", f"{base} (multiple choice)", question_text(True), solution)
        w.leaf(q, "single", "true")
        w.leaf(q, "shuffleanswers", "true")
        w.leaf(q, "answernumbering", "abc")
        w.leaf(q, "showstandardinstruction", 0)
        w.text(q, "correctfeedback", "<p>Your answer is correct.</p>", format="html")
        w.text(q, "partiallycorrectfeedback", "<p>Your answer is partially correct.</p>", format="html")
        w.text(q, "incorrectfeedback", "<p>Your answer is incorrect.</p>", format="html")
        for o in ctx["options"]:
            answer = ET.SubElement(q, "answer", fraction="100" if o["correct"] else "0", format="html")
            w.set(ET.SubElement(answer, "text"), f"<p>\\({o['value']}\\)</p>")
            feedback = "<p>Right.</p>" if o["correct"] else str(html.mistake(o["mistake"])).strip()
            w.text(answer, "feedback", feedback, format="html")


def _question(w, quiz, kind, name, text, solution):
    q = ET.SubElement(quiz, "question", type=kind)
    w.text(q, "name", name)
    w.text(q, "questiontext", text.strip(), format="html")
    w.text(q, "generalfeedback", solution, format="html")
    w.leaf(q, "defaultgrade", "1.0000000")
    w.leaf(q, "penalty", PENALTY)
    w.leaf(q, "hidden", 0)
    return q
