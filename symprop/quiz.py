r"""Quiz formats of a question family's variants: the answer key as CSV, Moodle XML and a
QTI 2.1 content package.

Moodle XML follows Moodle's own XML export (``question/format/xml/format.php``): a
``<quiz>`` of ``<question type="...">`` elements. A ``category`` question names the
category that the questions after it are imported into: first the family's
(``$course$/top/symprop/NAME``, with a description), then one subcategory per kind of
question, ``NAME/numerical`` and ``NAME/multichoice``, each followed by its questions, so
that a quiz's "random question from category" slot draws one kind only. Every question has
``name``, ``questiontext format="html"``, ``generalfeedback`` (the worked solution),
``defaultgrade``, ``penalty``, ``hidden`` and ``tags``: the family's name,
``variant-0007``, ``wrt-w_1_2`` (the weight or variable asked about) and its kind. A
``numerical`` question has one answer of fraction 100 with an absolute ``tolerance``
(``[family] tolerance`` times the answer); a ``multichoice`` question has ``single``,
``shuffleanswers``, ``answernumbering``, the combined feedbacks and one answer per option:
fraction 100 for the right one, 0 for each wrong one, whose feedback names the mistake
behind it.

Text with HTML goes in CDATA sections, as Moodle writes it (only where the text holds
``& < > " '``, split around any ``]]>``); math is LaTeX in ``\\( \\)`` and ``\\[ \\]`` for
MathJax. Only the standard library's ``xml.etree`` writes the file.

The QTI 2.1 package (:func:`qti_package`) holds the same questions: an ``imsmanifest.xml``
(IMS Content Packaging 1.1, QTI 2.1 package profile) and one ``assessmentItem`` per
question in ``items/``: a numerical question is a ``textEntryInteraction`` whose float
response is right within the same absolute tolerance (``equal toleranceMode="absolute"``),
a multiple-choice question a ``choiceInteraction`` with the right option as its correct
response; the item body is the Moodle question's HTML, the worked solution a
``modalFeedback``.

>>> import xml.etree.ElementTree as ET
>>> from symprop.exam import variants
>>> from symprop.spec import family_from_text
>>> fam = family_from_text('[family]\noptions = 2\n[family.layered]\nsizes = [1, 1, 1]\n', "demo.toml")
>>> vs = variants(fam, 1, seed=1)
>>> root = ET.fromstring(moodle_xml(fam, vs))
>>> [(q.get("type"), q.findtext("category/text")) for q in root]  # doctest: +NORMALIZE_WHITESPACE
[('category', '$course$/top/symprop/demo'), ('category', '$course$/top/symprop/demo/numerical'), ('numerical', None),
 ('category', '$course$/top/symprop/demo/multichoice'), ('multichoice', None)]
>>> [t.text for t in root[2].iterfind("tags/tag/text")] == ["demo", "variant-0001", f"wrt-{vs[0].wrt}", "numerical"]
True
>>> import io, zipfile
>>> names = zipfile.ZipFile(io.BytesIO(qti_package(fam, vs))).namelist()
>>> names == ["imsmanifest.xml", f"items/demo-0001-{vs[0].wrt}-multichoice.xml", f"items/demo-0001-{vs[0].wrt}-numerical.xml"]
True
"""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html import escape as html_escape

from .documents.environment import environment
from .documents.variants import circuit_variant_context, plain_number, variant_context
from .exam import Variant, variant_number
from .spec import Family

__all__ = ["answer_key_csv", "moodle_xml", "qti_package", "question_tags", "PENALTY", "KINDS"]


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


# -- the questions, shared by Moodle XML and QTI --------------------------------------------

# The kinds of question, in the order they are written, with their names in Moodle's
# category path, tags and QTI identifiers.
KINDS = ("numerical", "multichoice")
_KIND_TITLE = {"numerical": "numerical", "multichoice": "multiple choice"}


@dataclass(frozen=True)
class _Item:
    """One question of one variant: the variant's number, the question (a :class:`Variant`
    or a circuit question), its printed context (``goal``, ``answer``, ``options``), its
    HTML text (``text(choices)``), the variant's worked solution and the template module."""

    family: Family
    number: str
    question: object
    ctx: dict
    text: Callable[[bool], str]
    solution: str
    html: object

    @property
    def base(self) -> str:
        return f"{self.family.name} {self.number} {self.question.question}"

    @property
    def value(self) -> float:
        return self.question.answer


def _items(family: Family, variants: Sequence) -> Iterator[_Item]:
    """Every question of the variants, in order; a circuit variant asking for several
    gradients gives one per gradient, all with the variant's worked solution."""
    circuit = family.kind == "circuit"
    html = environment().get_template(
        "exam_variant_circuit_moodle.html.j2" if circuit else "exam_variant_moodle.html.j2").module
    for v in variants:  # (each text is rendered when asked for: the lambdas keep their variant's ctx)
        number = variant_number(v.index)
        if circuit:
            ctx = circuit_variant_context(family, v, number)
            pairs = [(q, qc, lambda choices, ctx=ctx, qc=qc: str(html.question(ctx, qc, choices)))
                     for q, qc in zip(v.questions, ctx["questions"])]
        else:
            ctx = variant_context(family, v, number)
            pairs = [(v, ctx, lambda choices, ctx=ctx: str(html.question(ctx, choices)))]
        solution = str(html.feedback(ctx)).strip()
        for q, qc, text in pairs:
            yield _Item(family, number, q, qc, text, solution, html)


def _kinds(family, numerical, multichoice) -> tuple[str, ...]:
    if multichoice is None:
        multichoice = family.options > 0
    if multichoice and family.options == 0:
        raise ValueError("multiple-choice questions need wrong options: [family] options is 0")
    return tuple(k for k, on in zip(KINDS, (numerical, multichoice)) if on)


def _digits(family) -> int:
    """Enough digits that the answer as written lies well inside the tolerance."""
    return max(family.digits, math.ceil(-math.log10(family.tolerance)) + 3)


# Moodle's longest tag (TAG_MAX_LENGTH) and what its PARAM_TAG cleaning removes.
TAG_MAX_LENGTH = 50
_NOT_IN_TAG = re.compile(r"[\x00-\x1f\x7f<>`,]")


def question_tags(family: Family, number: str, wrt, kind: str) -> list[str]:
    """The tags of a question: the family's name, ``variant-NNNN``, ``wrt-NAME`` (the weight
    or variable asked about) and the kind (``numerical`` or ``multichoice``), each as
    Moodle keeps it (no control characters, ``< > ` ,``, at most 50 characters)."""
    tags = [family.name, f"variant-{number}", f"wrt-{wrt}", kind]
    return [re.sub(r"\s+", " ", _NOT_IN_TAG.sub("", t)).strip()[:TAG_MAX_LENGTH] for t in tags]


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
    the family has wrong options; ``category`` (the family's category) defaults to
    ``$course$/top/symprop/NAME``; each kind of question goes in its own subcategory,
    ``CATEGORY/numerical`` and ``CATEGORY/multichoice``. A circuit variant asking for
    several gradients gives one question per gradient."""
    kinds = _kinds(family, numerical, multichoice)
    base = category or f"$course$/top/symprop/{family.name}"
    w = _Writer()
    quiz = ET.Element("quiz")
    _category(w, quiz, base, f"<p>{html_escape(family.title)}: {len(variants)} variants of the question family "
              f"{html_escape(family.name)}, one subcategory per kind of question.</p>")
    items = list(_items(family, variants))
    digits = _digits(family)
    for kind in kinds:
        _category(w, quiz, f"{base}/{kind}",
                  f"<p>{html_escape(family.title)}: the {_KIND_TITLE[kind]} version of each of the "
                  f"{len(variants)} variants. A random question from this category gives each student one "
                  f"variant of one kind.</p>")
        for item in items:
            q = (_numerical if kind == "numerical" else _multichoice)(w, quiz, item, digits)
            tags = ET.SubElement(q, "tags")
            for tag in question_tags(family, item.number, item.question.wrt, kind):
                w.text(tags, "tag", tag)
    return w.serialise(quiz)


def _category(w, quiz, path, info):
    """A category question: the questions after it are imported into ``path``."""
    head = ET.SubElement(quiz, "question", type="category")
    w.text(head, "category", path)
    w.text(head, "info", info, format="html")


def _numerical(w, quiz, item, digits):
    family, ctx, value = item.family, item.ctx, item.value
    q = _question(w, quiz, "numerical", f"{item.base} (numerical)", item.text(False), item.solution)
    answer = ET.SubElement(q, "answer", fraction="100", format="moodle_auto_format")
    w.set(ET.SubElement(answer, "text"), plain_number(value, digits))
    w.text(answer, "feedback", f"<p>Right: \\({ctx['goal']} = {ctx['answer']}\\).</p>", format="html")
    w.leaf(answer, "tolerance", plain_number(family.tolerance * abs(value), 3))
    w.leaf(q, "unitgradingtype", 0)
    w.leaf(q, "unitpenalty", "0.1000000")
    w.leaf(q, "showunits", 3)  # no units
    w.leaf(q, "unitsleft", 0)
    return q


def _multichoice(w, quiz, item, digits):
    q = _question(w, quiz, "multichoice", f"{item.base} (multiple choice)", item.text(True), item.solution)
    w.leaf(q, "single", "true")
    w.leaf(q, "shuffleanswers", "true")
    w.leaf(q, "answernumbering", "abc")
    w.leaf(q, "showstandardinstruction", 0)
    w.text(q, "correctfeedback", "<p>Your answer is correct.</p>", format="html")
    w.text(q, "partiallycorrectfeedback", "<p>Your answer is partially correct.</p>", format="html")
    w.text(q, "incorrectfeedback", "<p>Your answer is incorrect.</p>", format="html")
    for o in item.ctx["options"]:
        answer = ET.SubElement(q, "answer", fraction="100" if o["correct"] else "0", format="html")
        w.set(ET.SubElement(answer, "text"), f"<p>\\({o['value']}\\)</p>")
        feedback = "<p>Right.</p>" if o["correct"] else str(item.html.mistake(o["mistake"])).strip()
        w.text(answer, "feedback", feedback, format="html")
    return q


def _question(w, quiz, kind, name, text, solution):
    q = ET.SubElement(quiz, "question", type=kind)
    w.text(q, "name", name)
    w.text(q, "questiontext", text.strip(), format="html")
    w.text(q, "generalfeedback", solution, format="html")
    w.leaf(q, "defaultgrade", "1.0000000")
    w.leaf(q, "penalty", PENALTY)
    w.leaf(q, "hidden", 0)
    return q


# -- QTI 2.1 ----------------------------------------------------------------------------

QTI_NS = "http://www.imsglobal.org/xsd/imsqti_v2p1"
QTI_SCHEMA = "http://www.imsglobal.org/xsd/qti/qtiv2p1/imsqti_v2p1.xsd"
CP_NS = "http://www.imsglobal.org/xsd/imscp_v1p1"
CP_SCHEMA = "http://www.imsglobal.org/xsd/imscp_v1p1.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
QTI_ITEM = "imsqti_item_xmlv2p1"  # a content package resource holding one assessmentItem
# Every entry of the zip carries this date (the earliest a zip can hold): the same
# variants give the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# The XHTML that a QTI 2.1 item body may hold (in QTI's namespace) and the attributes each
# element keeps; anything else in the Moodle HTML (a table's border, cellpadding) is dropped.
_QTI_HTML = {
    "p", "div", "span", "strong", "em", "b", "i", "sub", "sup", "br", "code", "small", "big", "pre", "blockquote",
    "ul", "ol", "li", "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td", "hr",
}
_QTI_ATTRS = {"table": {"summary"}, "th": {"rowspan", "colspan", "scope"}, "td": {"rowspan", "colspan", "scope"}}
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")


def _ncname(text: str) -> str:
    """``text`` as an XML name without colons (a QTI identifier): other characters become
    ``_``, and a name that does not start with a letter gets a leading ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    return name if _NCNAME.fullmatch(name) else "_" + name


def _qti_html(fragment: str, cls: str) -> ET.Element:
    """The Moodle HTML ``fragment`` as a QTI ``div``: only QTI's XHTML elements, each with
    the attributes QTI allows (plus ``class``), table rows inside a ``tbody``."""
    div = ET.fromstring(f"<div>{_NOT_XML.sub('', fragment)}</div>")
    for el in div.iter():
        if el.tag not in _QTI_HTML:
            raise ValueError(f"<{el.tag}> is not XHTML that a QTI 2.1 item may hold")
        allowed = _QTI_ATTRS.get(el.tag, set()) | {"class"}
        el.attrib = {k: v for k, v in el.attrib.items() if k in allowed}
    for table in div.iter("table"):
        rows = [c for c in table if c.tag == "tr"]
        if rows:
            at = list(table).index(rows[0])
            for r in rows:
                table.remove(r)
            tbody = ET.Element("tbody")
            tbody.extend(rows)
            table.insert(at, tbody)
    div.set("class", cls)
    return div


def _sub(parent, tag, text=None, **attrib):
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = str(text)
    return el


def _set_outcome(parent, identifier, base_type, value):
    _sub(_sub(parent, "setOutcomeValue", identifier=identifier), "baseValue", value, baseType=base_type)


def _xml_bytes(root) -> bytes:
    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n").encode()


def _qti_item(item: _Item, kind: str, identifier: str, digits: int) -> bytes:
    """One question as a QTI 2.1 ``assessmentItem`` (the bytes of its file)."""
    family, value = item.family, item.value
    root = ET.Element("assessmentItem", {
        "xmlns": QTI_NS, "xmlns:xsi": XSI_NS, "xsi:schemaLocation": f"{QTI_NS} {QTI_SCHEMA}",
        "identifier": identifier, "title": f"{item.base} ({_KIND_TITLE[kind]})",
        "adaptive": "false", "timeDependent": "false",
    })
    numerical = kind == "numerical"
    options = [] if numerical else [(_ncname(o["letter"]), o) for o in item.ctx["options"]]
    response = _sub(root, "responseDeclaration", identifier="RESPONSE", cardinality="single",
                    baseType="float" if numerical else "identifier")
    correct = plain_number(value, digits) if numerical else next(i for i, o in options if o["correct"])
    _sub(_sub(response, "correctResponse"), "value", correct)
    for name, default in (("SCORE", "0"), ("MAXSCORE", "1")):
        _sub(_sub(_sub(root, "outcomeDeclaration", identifier=name, cardinality="single", baseType="float"),
                  "defaultValue"), "value", default)
    # which modal feedbacks show: the worked solution, and for a choice the chosen option's
    _sub(root, "outcomeDeclaration", identifier="FEEDBACK", cardinality="single" if numerical else "multiple",
         baseType="identifier")

    body = _sub(root, "itemBody")
    body.append(_qti_html(item.text(not numerical), "question"))
    if numerical:
        _sub(_sub(body, "p", "Your answer: "), "textEntryInteraction", responseIdentifier="RESPONSE",
             expectedLength=str(digits + 8))
    else:
        choice = _sub(body, "choiceInteraction", responseIdentifier="RESPONSE", shuffle="true", maxChoices="1")
        for ident, o in options:
            _sub(choice, "simpleChoice", f"\\({o['value']}\\)", identifier=ident)

    rules = _sub(root, "responseProcessing")
    condition = _sub(rules, "responseCondition")
    test = _sub(condition, "responseIf")
    if numerical:  # right within the tolerance Moodle gives: [family] tolerance times the answer
        test = _sub(test, "equal", toleranceMode="absolute", tolerance=plain_number(family.tolerance * abs(value), 3))
    else:
        test = _sub(test, "match")
    _sub(test, "variable", identifier="RESPONSE")
    _sub(test, "correct", identifier="RESPONSE")
    _set_outcome(condition[0], "SCORE", "float", "1")
    _set_outcome(_sub(condition, "responseElse"), "SCORE", "float", "0")
    if numerical:
        _set_outcome(rules, "FEEDBACK", "identifier", "SOLUTION")
    else:
        shown = _sub(_sub(rules, "setOutcomeValue", identifier="FEEDBACK"), "multiple")
        _sub(shown, "baseValue", "SOLUTION", baseType="identifier")
        _sub(shown, "variable", identifier="RESPONSE")

    for ident, o in options:  # what the chosen option's value comes from
        feedback = _sub(root, "modalFeedback", outcomeIdentifier="FEEDBACK", showHide="show", identifier=ident)
        feedback.append(_qti_html("<p>Right.</p>" if o["correct"] else str(item.html.mistake(o["mistake"])), "feedback"))
    solution = _sub(root, "modalFeedback", outcomeIdentifier="FEEDBACK", showHide="show", identifier="SOLUTION",
                    title="Worked solution")
    solution.append(_qti_html(item.solution, "solution"))
    return _xml_bytes(root)


def qti_package(family, variants: Sequence, *, numerical: bool = True, multichoice: bool | None = None) -> bytes:
    """The variants as a QTI 2.1 content package (the bytes of a zip file): an
    ``imsmanifest.xml`` and one ``assessmentItem`` per question and kind, in
    ``items/NAME-NNNN-WRT-KIND.xml``, for Canvas, Blackboard and other systems that import
    QTI. ``numerical`` and ``multichoice`` choose the kinds as in :func:`moodle_xml`. The
    same variants give the same bytes: entries in name order, each dated :data:`ZIP_DATE`."""
    kinds = _kinds(family, numerical, multichoice)
    digits = _digits(family)
    items = list(_items(family, variants))
    files: dict[str, bytes] = {}
    manifest = ET.Element("manifest", {
        "xmlns": CP_NS, "xmlns:xsi": XSI_NS, "xsi:schemaLocation": f"{CP_NS} {CP_SCHEMA}",
        "identifier": _ncname(f"MANIFEST-{family.name}"),
    })
    metadata = _sub(manifest, "metadata")
    _sub(metadata, "schema", "QTIv2.1 Package")
    _sub(metadata, "schemaversion", "1.0.0")
    _sub(manifest, "organizations")
    resources = _sub(manifest, "resources")
    used: set[str] = set()
    for kind in kinds:
        for item in items:
            identifier = stem = _ncname(f"{family.name}-{item.number}-{item.question.wrt}-{kind}")
            k = 1
            while identifier in used:  # only if two names differ in characters an identifier cannot hold
                k += 1
                identifier = f"{stem}-{k}"
            used.add(identifier)
            href = f"items/{identifier}.xml"
            files[href] = _qti_item(item, kind, identifier, digits)
            resource = _sub(resources, "resource", identifier=f"RES-{identifier}", type=QTI_ITEM, href=href)
            _sub(resource, "file", href=href)
    files["imsmanifest.xml"] = _xml_bytes(manifest)

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the machine
            info.external_attr = 0o644 << 16
            z.writestr(info, files[name])
    return out.getvalue()
