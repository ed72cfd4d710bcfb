"""QTI 2.1 export: a zip content package that pyslet (a QTI 2.1 and IMS Content Packaging
parser from PyPI: it checks each element's content model, e.g. a table's rows in a tbody)
reads, whose response processing pyslet runs to score answers, and whose identifiers,
manifest and attributes are checked here against the QTI 2.1 and IMS CP 1.1 rules.

The official XSD (imsqti_v2p1.xsd) is not in any package on PyPI that we found, so the
schema rules pyslet does not check (required attributes, NCName identifiers, the order of
an item's parts) are checked by ``check_item`` below."""

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from pyslet import imscpv1p2
from pyslet.qtiv2 import expressions, items, variables
from pyslet.qtiv2.xml import QTIDocument

from symprop.exam import variant_number, variants
from symprop.quiz import ZIP_DATE, qti_package
from symprop.spec import family_from_text, load_family
from test_moodle import BATCH, FAMILY, PHRASES

# pyslet 0.7 calls its own deprecated names while it runs response processing
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyslet")

QTI = "{http://www.imsglobal.org/xsd/imsqti_v2p1}"
CP = "{http://www.imsglobal.org/xsd/imscp_v1p1}"
XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
EXAMPLES = Path(__file__).parent.parent / "examples"

# The attributes QTI 2.1 requires (and allows) on the elements an item uses; the XHTML
# elements allow class (and th/td rowspan, colspan, scope; table summary).
REQUIRED = {
    "assessmentItem": {"identifier", "title", "adaptive", "timeDependent"},
    "responseDeclaration": {"identifier", "cardinality"}, "outcomeDeclaration": {"identifier", "cardinality"},
    "textEntryInteraction": {"responseIdentifier"}, "choiceInteraction": {"responseIdentifier", "maxChoices"},
    "simpleChoice": {"identifier"}, "modalFeedback": {"outcomeIdentifier", "showHide", "identifier"},
    "equal": {"toleranceMode"}, "variable": {"identifier"}, "correct": {"identifier"},
    "setOutcomeValue": {"identifier"}, "baseValue": {"baseType"},
}
OPTIONAL = {
    "assessmentItem": {f"{XSI}schemaLocation", "label", "toolName", "toolVersion"},
    "responseDeclaration": {"baseType"}, "outcomeDeclaration": {"baseType", "interpretation", "normalMaximum"},
    "textEntryInteraction": {"expectedLength", "base", "patternMask", "placeholderText"},
    "choiceInteraction": {"shuffle", "minChoices"}, "modalFeedback": {"title"},
    "equal": {"tolerance", "includeLowerBound", "includeUpperBound"},
    "table": {"summary"}, "th": {"rowspan", "colspan", "scope"}, "td": {"rowspan", "colspan", "scope"},
}
STRUCTURE = {"responseDeclaration", "outcomeDeclaration", "itemBody", "responseProcessing", "modalFeedback"}
ORDER = ["responseDeclaration", "outcomeDeclaration", "itemBody", "responseProcessing", "modalFeedback"]


def local(elem):
    assert elem.tag.startswith(QTI), elem.tag
    return elem.tag[len(QTI):]


def check_item(root, identifier):
    """The QTI 2.1 schema rules pyslet leaves out; returns the identifiers the item declares."""
    assert local(root) == "assessmentItem" and root.get("identifier") == identifier
    assert root.get(f"{XSI}schemaLocation").split()[0] == QTI.strip("{}")
    parts = [local(c) for c in root]
    assert parts == sorted(parts, key=ORDER.index) and parts.count("itemBody") == 1
    for el in root.iter():
        name = local(el)
        attrs = set(el.attrib)
        assert REQUIRED.get(name, set()) <= attrs, (name, attrs)
        assert attrs <= REQUIRED.get(name, set()) | OPTIONAL.get(name, set()) | {"class"}, (name, attrs)
    assert root.get("adaptive") == root.get("timeDependent") == "false"
    declared = [el.get("identifier") for el in root.iter()
                if local(el) in ("responseDeclaration", "outcomeDeclaration", "simpleChoice", "modalFeedback")]
    for ident in declared + [identifier]:
        assert NCNAME.fullmatch(ident), ident
    variables_ = [el.get("identifier") for el in root if local(el) in ("responseDeclaration", "outcomeDeclaration")]
    assert len(set(variables_)) == len(variables_)
    choices = [el.get("identifier") for el in root.iter(f"{QTI}simpleChoice")]
    assert len(set(choices)) == len(choices)
    for el in root.iter():  # every reference is to a declared variable
        for attr in ("responseIdentifier", "outcomeIdentifier"):
            assert el.get(attr) is None or el.get(attr) in variables_
        if local(el) in ("variable", "correct", "setOutcomeValue"):
            assert el.get("identifier") in variables_
    body = ET.tostring(root.find(f"{QTI}itemBody"), encoding="unicode")
    assert r"\(" in body and body.count(r"\(") == body.count(r"\)") and body.count(r"\[") == body.count(r"\]")
    return declared


def read_package(data):
    """The package's items by file name, each as (ElementTree root, pyslet item), after
    checking the zip, the manifest (by pyslet's content-package reader too) and each item."""
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.testzip() is None
    names = z.namelist()
    assert names == sorted(names) and names[0] == "imsmanifest.xml" and len(set(names)) == len(names)
    for info in z.infolist():
        assert info.date_time == ZIP_DATE and info.create_system == 3 and info.compress_type == zipfile.ZIP_DEFLATED
    manifest = ET.fromstring(z.read("imsmanifest.xml"))
    assert manifest.tag == f"{CP}manifest" and NCNAME.fullmatch(manifest.get("identifier"))
    assert manifest.findtext(f"{CP}metadata/{CP}schema") == "QTIv2.1 Package"
    resources = manifest.findall(f"{CP}resources/{CP}resource")
    ids = [manifest.get("identifier")] + [r.get("identifier") for r in resources]
    assert len(set(ids)) == len(ids) and all(NCNAME.fullmatch(i) for i in ids)
    hrefs = []
    for r in resources:
        assert r.get("type") == "imsqti_item_xmlv2p1"
        assert [f.get("href") for f in r.findall(f"{CP}file")] == [r.get("href")]
        hrefs.append(r.get("href"))
    assert sorted(hrefs) == names[1:], "every item is a resource of the manifest, and every resource is in the zip"

    found = {}
    item_ids = set()
    for href in hrefs:
        text = z.read(href)
        root = ET.fromstring(text)
        identifier = href.removeprefix("items/").removesuffix(".xml")
        check_item(root, identifier)
        assert identifier not in item_ids
        item_ids.add(identifier)
        doc = QTIDocument()
        doc.read(src=text)  # raises on an element out of place
        assert isinstance(doc.root, items.AssessmentItem) and doc.root.identifier == identifier
        found[href] = (root, doc.root)
    return found


@pytest.fixture(scope="module")
def read_by_pyslet(tmp_path_factory):
    """A package written to disk and opened by pyslet's IMS CP reader: its resources."""
    def read(data):
        path = tmp_path_factory.mktemp("qti") / "package.zip"
        path.write_bytes(data)
        package = imscpv1p2.ContentPackage(str(path))
        try:
            return {(r.id, r.type, str(r.href)) for r in package.manifest.root.Resources.Resource}
        finally:
            package.close()
    return read


def score(item, response):
    """Runs the item's response processing with ``response`` (None: no answer); returns
    SCORE and the identifiers of the modal feedbacks shown."""
    for equal in item.find_children_depth_first(expressions.Equal):
        if isinstance(equal.tolerance, str):  # pyslet 0.7 declares the list but keeps the text
            equal.tolerance = equal.tolerance.split()
    state = variables.ItemSessionState(item)
    state.begin_session()
    state["numAttempts"].set_value(1)
    if response is not None:
        state["RESPONSE"].set_value(response)
    state.end_attempt()
    feedback = state["FEEDBACK"].value
    shown = set(feedback) if isinstance(feedback, dict) else {feedback}
    return state["SCORE"].value, shown


def asked(vs):
    return [(v, q) for v in vs for q in v.questions]


def check_scoring(fam, vs, found, kinds=("numerical", "multichoice")):
    """Each question's items: the right answer scores 1, within the tolerance too; every
    wrong option and every value outside the tolerance 0; the feedback names the mistake."""
    assert len(found) == len(kinds) * len(asked(vs))
    for v, q in asked(vs):
        stem = f"items/{fam.name}-{variant_number(v.index)}-{q.wrt}"
        if "numerical" in kinds:
            root, item = found[f"{stem}-numerical.xml"]
            assert root.get("title") == f"{fam.name} {variant_number(v.index)} {q.question} (numerical)"
            declaration = root.find(f"{QTI}responseDeclaration")
            assert declaration.get("baseType") == "float" and declaration.get("cardinality") == "single"
            correct = float(declaration.findtext(f"{QTI}correctResponse/{QTI}value"))
            equal = root.find(f".//{QTI}equal")
            assert equal.get("toleranceMode") == "absolute"
            tolerance = float(equal.get("tolerance"))
            assert tolerance == pytest.approx(fam.tolerance * abs(q.answer), rel=1e-2)
            assert abs(correct - q.answer) <= tolerance / 10 + 1e-12
            assert root.find(f".//{QTI}textEntryInteraction").get("responseIdentifier") == "RESPONSE"
            assert score(item, correct) == (1.0, {"SOLUTION"})
            for inside in (q.answer + 0.9 * tolerance, q.answer - 0.9 * tolerance):
                assert score(item, inside)[0] == 1.0
            for outside in (q.answer + 1.1 * tolerance, q.answer - 1.1 * tolerance, -q.answer):
                assert score(item, outside)[0] == 0.0
            for o in q.wrong_options:
                assert score(item, o.value)[0] == 0.0
            assert score(item, None)[0] == 0.0
        if "multichoice" in kinds:
            root, item = found[f"{stem}-multichoice.xml"]
            declaration = root.find(f"{QTI}responseDeclaration")
            assert declaration.get("baseType") == "identifier" and declaration.get("cardinality") == "single"
            assert declaration.findtext(f"{QTI}correctResponse/{QTI}value") == q.correct_letter
            interaction = root.find(f".//{QTI}choiceInteraction")
            assert interaction.get("maxChoices") == "1"
            choices = interaction.findall(f"{QTI}simpleChoice")
            assert [c.get("identifier") for c in choices] == [o.letter for o in q.options]
            feedback = {f.get("identifier"): ET.tostring(f, encoding="unicode") for f in root.findall(f"{QTI}modalFeedback")}
            for o, c in zip(q.options, choices):
                shown = float(re.fullmatch(r"\\\((.*)\\\)", c.text).group(1).replace(r" \times 10^{", "e").rstrip("}"))
                assert shown == pytest.approx(o.value, rel=1e-3)
                assert score(item, o.letter) == (1.0 if o.correct else 0.0, {"SOLUTION", o.letter})
                if not o.correct:
                    assert "This value comes from" in feedback[o.letter]
                    assert PHRASES.get(o.mistake.kind, "") in feedback[o.letter] or fam.kind == "circuit"
            assert score(item, None) == (0.0, {"SOLUTION"})
            assert "Worked solution" in feedback["SOLUTION"]


@pytest.fixture(scope="module")
def quiz():
    fam = family_from_text(FAMILY, "quiz.toml")
    vs = variants(fam, 4, seed=17)
    return fam, vs, qti_package(fam, vs)


def test_the_package_validates_and_scores_like_moodle(quiz, read_by_pyslet):
    fam, vs, data = quiz
    found = read_package(data)
    check_scoring(fam, vs, found)
    z = zipfile.ZipFile(io.BytesIO(data))
    manifest = ET.fromstring(z.read("imsmanifest.xml"))
    resources = {(r.get("identifier"), r.get("type"), r.get("href")) for r in manifest.iter(f"{CP}resource")}
    assert read_by_pyslet(data) == resources and len(resources) == 8


def test_the_bytes_are_the_same_for_the_same_variants(quiz):
    fam, vs, data = quiz
    assert qti_package(fam, vs) == data
    assert qti_package(fam, variants(fam, 4, seed=17)) == data
    assert qti_package(fam, vs[:2]) != data


def test_item_bodies_are_the_moodle_html_in_qtis_xhtml(quiz):
    fam, vs, data = quiz
    z = zipfile.ZipFile(io.BytesIO(data))
    text = z.read(f"items/quiz-{variant_number(vs[0].index)}-{vs[0].wrt}-numerical.xml").decode()
    root = ET.fromstring(text)
    assert root.get("title") == f"quiz 0001 {vs[0].question} (numerical)"
    assert "<table" not in text or "<tbody>" in text
    assert "border=" not in text and "cellpadding=" not in text
    assert r"\begin{aligned}" in text and "&amp;=" in text  # LaTeX for MathJax, & escaped once


def test_a_circuit_family_and_a_numerical_only_family(read_by_pyslet):
    fam = load_family(EXAMPLES / "exam_circuit_family.toml")
    vs = variants(fam, 3, seed=2024)
    data = qti_package(fam, vs)
    found = read_package(data)
    assert any(len(v.questions) > 1 for v in vs)
    check_scoring(fam, vs, found)
    assert len(read_by_pyslet(data)) == len(found)

    batch = family_from_text(BATCH, "batch.toml")
    numerical_only = replace(batch, options=0)
    vs = variants(numerical_only, 2, seed=5)
    found = read_package(qti_package(numerical_only, vs))
    check_scoring(numerical_only, vs, found, kinds=("numerical",))
    with pytest.raises(ValueError, match="options is 0"):
        qti_package(numerical_only, vs, multichoice=True)


def test_the_checks_catch_broken_items(quiz):
    """check_item and pyslet refuse what an importer would: each edit must fail."""
    fam, vs, data = quiz
    z = zipfile.ZipFile(io.BytesIO(data))
    name = f"items/quiz-{variant_number(vs[0].index)}-{vs[0].wrt}-multichoice.xml"
    text = z.read(name).decode()
    identifier = name.removeprefix("items/").removesuffix(".xml")
    check_item(ET.fromstring(text), identifier)
    edits = [
        ('identifier="A"', 'identifier="1A"'),  # not an NCName
        ('maxChoices="1"', ""),  # a required attribute
        ('<simpleChoice identifier="B"', '<simpleChoice identifier="A"'),  # a choice twice
        ('<table>', '<table border="1">'),  # not QTI's XHTML
        ('responseIdentifier="RESPONSE"', 'responseIdentifier="ANSWER"'),  # undeclared
    ]
    for old, new in edits:
        assert old in text, old
        with pytest.raises(AssertionError):
            check_item(ET.fromstring(text.replace(old, new, 1)), identifier)
    root = ET.fromstring(text)  # the body after the response processing
    body = root.find(f"{QTI}itemBody")
    root.remove(body)
    root.append(body)
    with pytest.raises(AssertionError):
        check_item(root, identifier)
    for broken in (text.replace("<tbody>", "").replace("</tbody>", ""),  # table rows outside a tbody
                   text.replace("<itemBody>", "<itemBody><blink />")):  # no QTI element
        with pytest.raises(Exception, match="not allowed|blink"):
            QTIDocument().read(src=broken.encode())


def test_each_item_is_its_variants_alone():
    """An item is the same whether its variant is exported alone or with others (each
    question's text is its own variant's: its given numbers, not the last variant's)."""
    fam = load_family(EXAMPLES / "exam_circuit_family.toml")
    vs = variants(fam, 4, seed=2024)
    together = zipfile.ZipFile(io.BytesIO(qti_package(fam, vs)))
    for v in vs:
        alone = zipfile.ZipFile(io.BytesIO(qti_package(fam, [v])))
        for name in alone.namelist()[1:]:
            assert together.read(name) == alone.read(name), name
    texts = {}
    for v in vs:
        name = f"items/{fam.name}-{variant_number(v.index)}-{v.questions[0].wrt}-numerical.xml"
        texts[v.index] = ET.tostring(ET.fromstring(together.read(name)).find(f"{QTI}itemBody"), encoding="unicode")
    assert len(set(texts.values())) == len(vs)


def test_the_exam_command_writes_the_package_next_to_moodle(tmp_path, capsys):
    from symprop.cli import main

    family = Path(__file__).resolve().parent.parent / "examples" / "exam_family.toml"
    out, zipped, xml = tmp_path / "out", tmp_path / "q.zip", tmp_path / "q.xml"
    assert main(["exam", str(family), "--variants", "2", "--seed", "3", "-o", str(out),
                 "--moodle", str(xml), "--qti", str(zipped)]) == 0
    capsys.readouterr()
    assert zipped.read_bytes() == qti_package(load_family(family), variants(load_family(family), 2, seed=3))
    assert xml.exists()
    # a network spec has no variants to export: one line, exit 2
    spec = Path(__file__).resolve().parent.parent / "examples" / "seed002_seven_neurons.toml"
    assert main(["exam", str(spec), "--qti", str(tmp_path / "x.zip")]) == 2
    assert "--qti need a question family" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()
