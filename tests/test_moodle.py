"""Moodle XML export: parses with xml.etree and has the structure Moodle's importer reads
(question/format/xml/format.php): question types, required children, answers with
fractions, tolerances, feedback naming the mistake, HTML with MathJax math in CDATA."""

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from symprop.exam import variants
from symprop.quiz import _Writer, moodle_xml
from symprop.spec import family_from_text

FAMILY = """
[family]
name = "quiz"
title = "Backprop <quiz> & more ]]> end"
options = 4
wrt = ["w_*"]
[family.layered]
sizes = [[2, 2, 2], [2, 3, 2]]
hidden = ["sigmoid", "tanh"]
output = ["sigmoid", "identity"]
"""

BATCH = """
[family]
name = "batch"
options = 3
batch = 2
[family.layered]
sizes = [2, 2, 1]
hidden = "tanh"
output = "sigmoid"
loss = "binary_cross_entropy"
reduction = "mean"
"""

FORMATS = {"html", "moodle_auto_format", "plain_text", "markdown"}
NUMBERINGS = {"abc", "ABCD", "123", "iii", "IIII", "none"}
# what the feedback of each kind of wrong option must say (the LaTeX documents' mistake sentences)
PHRASES = {
    "sign": "a sign error", "missing-derivative": "a missing activation derivative",
    "pre-activation": "the pre-activation used instead of the output",
    "output-for-input": "the output used instead of the pre-activation",
    "transpose": "a missing transpose", "dropped-path": "a dropped path", "batch-sum": "forgetting the batch mean",
}


def text_of(elem, tag):
    child = elem.find(tag)
    assert child is not None, f"<{elem.tag}> has no <{tag}>"
    text = child.find("text")
    assert text is not None, f"<{tag}> has no <text>"
    return text.text or ""


def html_ok(fragment):
    """The HTML is well formed (so nothing in it was left unescaped) and its math is MathJax's."""
    ET.fromstring(f"<div>{fragment}</div>")
    assert fragment.count(r"\(") == fragment.count(r"\)") and fragment.count(r"\[") == fragment.count(r"\]")


def check_quiz(root):
    """Moodle's import structure; returns the questions by type."""
    assert root.tag == "quiz"
    questions = root.findall("question")
    assert questions and all(set(q.attrib) == {"type"} for q in questions)
    found = {}
    for q in questions:
        kind = q.get("type")
        assert kind in ("category", "numerical", "multichoice"), kind
        found.setdefault(kind, []).append(q)
        if kind == "category":
            assert text_of(q, "category").startswith("$course$/")
            continue
        assert text_of(q, "name").strip()
        for tag in ("questiontext", "generalfeedback"):
            assert q.find(tag).get("format") in FORMATS
            html_ok(text_of(q, tag))
        assert r"\(" in text_of(q, "questiontext") and "\\[" in text_of(q, "generalfeedback")
        assert float(q.findtext("defaultgrade")) > 0
        assert 0 <= float(q.findtext("penalty")) <= 1
        assert q.findtext("hidden") in ("0", "1")
        answers = q.findall("answer")
        assert answers
        for a in answers:
            fraction = float(a.get("fraction"))
            assert 0 <= fraction <= 100 and a.get("format") in FORMATS
            assert a.find("text") is not None and a.find("feedback").get("format") in FORMATS
            html_ok(text_of(a, "feedback"))
        fractions = [float(a.get("fraction")) for a in answers]
        if kind == "numerical":
            assert max(fractions) == 100
            for a in answers:
                assert math.isfinite(float(a.findtext("text"))) and float(a.findtext("tolerance")) >= 0
            assert q.findtext("showunits") in ("0", "1", "2", "3")
        else:
            assert q.findtext("single") == "true" and q.findtext("shuffleanswers") in ("true", "false")
            assert q.findtext("answernumbering") in NUMBERINGS
            for tag in ("correctfeedback", "partiallycorrectfeedback", "incorrectfeedback"):
                html_ok(text_of(q, tag))
            # single answer: exactly one fully right option, the others worth nothing
            assert sorted(fractions) == [0] * (len(answers) - 1) + [100] and len(answers) >= 2
            for a in answers:
                html_ok(a.findtext("text"))
    assert found["category"][0] is questions[0]
    return found


@pytest.fixture(scope="module")
def quiz():
    fam = family_from_text(FAMILY, "quiz.toml")
    vs = variants(fam, 4, seed=17)
    return fam, vs, moodle_xml(fam, vs)


def test_the_file_parses_and_has_moodles_structure(quiz):
    fam, vs, xml = quiz
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<quiz>')
    found = check_quiz(ET.fromstring(xml))
    assert len(found["numerical"]) == len(found["multichoice"]) == 4 and len(found["category"]) == 1


def test_numerical_answers_and_tolerances(quiz):
    fam, vs, xml = quiz
    for v, q in zip(vs, ET.fromstring(xml).findall("question[@type='numerical']")):
        (a,) = q.findall("answer")
        value, tolerance = float(a.findtext("text")), float(a.findtext("tolerance"))
        assert a.get("fraction") == "100"
        assert abs(value - v.answer) <= tolerance / 10
        assert tolerance == pytest.approx(fam.tolerance * abs(v.answer), rel=1e-2)
        for o in v.wrong_options:  # Moodle would not accept any wrong option's value
            assert abs(o.value - value) > tolerance


def test_multiple_choice_feedback_names_each_mistake(quiz):
    fam, vs, xml = quiz
    for v, q in zip(vs, ET.fromstring(xml).findall("question[@type='multichoice']")):
        answers = q.findall("answer")
        assert len(answers) == len(v.options)
        for o, a in zip(v.options, answers):
            shown = float(re.search(r"\\\((.*?)\\\)", a.findtext("text")).group(1).replace(r" \times 10^{", "e").rstrip("}"))
            assert shown == pytest.approx(o.value, rel=1e-3)
            feedback = text_of(a, "feedback")
            if o.correct:
                assert a.get("fraction") == "100"
            else:
                assert a.get("fraction") == "0" and PHRASES[o.mistake.kind] in feedback


def test_html_goes_in_cdata_and_round_trips(quiz):
    fam, vs, xml = quiz
    assert xml.count("<![CDATA[") > 8 * len(vs)
    root = ET.fromstring(xml)
    info = root.find("question[@type='category']/info/text").text
    # the title holds < & ]]>: escaped as HTML inside CDATA, and the CDATA split around ]]>
    assert "Backprop &lt;quiz&gt; &amp; more ]]&gt; end" in info
    # a text holding "]]>" itself is split across two CDATA sections and reads back whole
    w = _Writer()
    element = ET.Element("quiz")
    w.text(element, "x", "<p>a ]]> b & c</p>")
    serialised = w.serialise(element)
    assert "]]]]><![CDATA[>" in serialised
    assert ET.fromstring(serialised).find("x/text").text == "<p>a ]]> b & c</p>"


def test_a_batch_family_and_numerical_only(tmp_path):
    fam = family_from_text(BATCH, "batch.toml")
    vs = variants(fam, 3, seed=5)
    root = ET.fromstring(moodle_xml(fam, vs))
    found = check_quiz(root)
    assert any(o.mistake and o.mistake.kind == "batch-sum" for v in vs for o in v.options)
    assert "batch" in text_of(found["numerical"][0], "questiontext")
    numerical_only = replace(fam, options=0)
    vs = variants(numerical_only, 2, seed=5)
    found = check_quiz(ET.fromstring(moodle_xml(numerical_only, vs)))
    assert "multichoice" not in found and len(found["numerical"]) == 2
