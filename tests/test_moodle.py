"""Moodle XML export: parses with xml.etree and has the structure Moodle's importer reads
(question/format/xml/format.php, question/format.php): question types, required children,
answers with fractions, tolerances, feedback naming the mistake, HTML with MathJax math in
CDATA, category questions whose paths Moodle resolves (one subcategory per kind of
question) and tags as Moodle stores them (family, variant, weight asked, kind)."""

import math
import re
from pathlib import Path
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from symprop.exam import variant_number, variants
from symprop.quiz import _Writer, moodle_xml
from symprop.spec import family_from_text, load_family

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
    "loss-factor": "of the loss forgotten",
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


# question/format.php: a path's context ($course$, ...) then category names, split at a
# single "/" ("//" is a slash inside a name); each name is trimmed and cleaned as PARAM_TEXT.
CONTEXTS = re.compile(r"\$(course|system|coursecategory|module)\$")
# Moodle's PARAM_TAG removes control characters and < > `, folds white space, and keeps 50
# characters (TAG_MAX_LENGTH); a comma separates tags in Moodle's forms.
TAG_MAX_LENGTH = 50


def category_names(path):
    """The category names of a path as Moodle's importer reads it (split_category_path)."""
    assert path == path.strip() and path
    names = [name.replace("//", "/").strip() for name in re.split(r"(?<!/)/(?!/)", path)]
    assert CONTEXTS.fullmatch(names[0]), f"{path!r} does not start with a context such as $course$"
    names = names[1:]
    # since Moodle 3.5 every category is below its context's "top"; a path without it gets it prepended
    assert names[0] == "top" and len(names) >= 2, f"{path!r} is not below top"
    for name in names:
        assert name and len(name) <= 255 and not re.search(r"<[^>]*>", name), f"category name {name!r}"
    return names


def check_category(q):
    """A category question as import_category() reads it: <category><text>, <info format>."""
    assert {c.tag for c in q} <= {"category", "info", "idnumber"}, [c.tag for c in q]
    assert len(q.findall("category")) == 1 and len(q.findall("info")) <= 1
    category_names(text_of(q, "category"))
    info = q.find("info")
    if info is not None:  # import_category() reads the format attribute unconditionally
        assert info.get("format") in FORMATS
        html_ok(text_of(q, "info"))


def question_tags(q):
    """The tags of a question as import_question_tags() reads them, checked as Moodle stores them."""
    holders = q.findall("tags")
    assert len(holders) <= 1 and not q.findall("coursetags")
    if not holders:
        return []
    tags = []
    for tag in holders[0]:
        assert tag.tag == "tag" and [c.tag for c in tag] == ["text"], "a <tags> holds <tag><text>...</text></tag>"
        text = tag.find("text")
        assert len(text) == 0 and text.text, "a tag's <text> is plain text"
        cleaned = re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f<>`]", "", text.text)).strip()[:TAG_MAX_LENGTH]
        assert cleaned == text.text and "," not in cleaned, f"Moodle would store tag {text.text!r} as {cleaned!r}"
        tags.append(cleaned)
    assert len({t.lower() for t in tags}) == len(tags), f"tags repeat (Moodle ignores case): {tags}"
    return tags


def questions_by_category(root):
    """The questions each category path receives: a category question switches the
    category for the questions after it (importprocess with "get category from file")."""
    found, current = {}, None
    for q in root.findall("question"):
        if q.get("type") == "category":
            current = "/".join(category_names(text_of(q, "category")))
            found.setdefault(current, [])
        else:
            assert current is not None, "a question before any category goes to the category chosen on import"
            found[current].append(q)
    return found


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
            check_category(q)
            continue
        assert text_of(q, "name").strip()
        for tag in ("questiontext", "generalfeedback"):
            assert q.find(tag).get("format") in FORMATS
            html_ok(text_of(q, tag))
        assert r"\(" in text_of(q, "questiontext") and "\\[" in text_of(q, "generalfeedback")
        assert float(q.findtext("defaultgrade")) > 0
        assert 0 <= float(q.findtext("penalty")) <= 1
        assert q.findtext("hidden") in ("0", "1")
        question_tags(q)
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
    questions_by_category(root)
    return found


def check_kinds_and_tags(root, fam, vs):
    """One subcategory per kind below the family's category, each holding that kind only,
    in variant order; every question tagged with family, variant, weight asked and kind."""
    by_category = questions_by_category(root)
    base = ["top", "symprop", fam.name]
    asked = [(v, q) for v in vs for q in v.questions]
    kinds = [k for k in ("numerical", "multichoice") if by_category.get("/".join(base + [k]))]
    assert by_category == {"/".join(base): [], **{"/".join(base + [k]): by_category["/".join(base + [k])] for k in kinds}}
    for kind in kinds:
        held = by_category["/".join(base + [kind])]
        assert {q.get("type") for q in held} == {kind} and len(held) == len(asked)
        for (v, question), q in zip(asked, held):
            assert question_tags(q) == [fam.name, f"variant-{variant_number(v.index)}", f"wrt-{question.wrt}", kind]
            assert text_of(q, "name").startswith(f"{fam.name} {variant_number(v.index)} {question.question} ")
    return kinds


@pytest.fixture(scope="module")
def quiz():
    fam = family_from_text(FAMILY, "quiz.toml")
    vs = variants(fam, 4, seed=17)
    return fam, vs, moodle_xml(fam, vs)


def test_the_file_parses_and_has_moodles_structure(quiz):
    fam, vs, xml = quiz
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<quiz>')
    root = ET.fromstring(xml)
    found = check_quiz(root)
    assert len(found["numerical"]) == len(found["multichoice"]) == 4 and len(found["category"]) == 3
    assert check_kinds_and_tags(root, fam, vs) == ["numerical", "multichoice"]


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
                # the sentence of the mistake; its words checked for the kinds listed above
                assert a.get("fraction") == "0" and re.fullmatch(r"<p>This value comes from \S.*\.</p>", feedback)
                assert PHRASES.get(o.mistake.kind, "") in feedback


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
    vs = variants(fam, 5, seed=5)  # variant 5 has the batch-sum option
    root = ET.fromstring(moodle_xml(fam, vs))
    found = check_quiz(root)
    assert any(o.mistake and o.mistake.kind == "batch-sum" for v in vs for o in v.options)
    assert "batch" in text_of(found["numerical"][0], "questiontext")
    numerical_only = replace(fam, options=0)
    vs = variants(numerical_only, 2, seed=5)
    root = ET.fromstring(moodle_xml(numerical_only, vs))
    found = check_quiz(root)
    assert "multichoice" not in found and len(found["numerical"]) == 2
    assert check_kinds_and_tags(root, numerical_only, vs) == ["numerical"]


def test_a_circuit_family_asking_several_gradients_tags_each_question():
    fam = load_family(Path(__file__).parent.parent / "examples" / "exam_circuit_family.toml")
    vs = variants(fam, 3, seed=2024)
    root = ET.fromstring(moodle_xml(fam, vs))
    check_quiz(root)
    assert check_kinds_and_tags(root, fam, vs) == ["numerical", "multichoice"]
    assert any(len(v.questions) > 1 for v in vs)  # one question per gradient, each with its own wrt tag
    wrt = {t.text for t in root.iterfind("question/tags/tag/text") if t.text.startswith("wrt-")}
    assert wrt == {f"wrt-{q.wrt}" for v in vs for q in v.questions} and len(wrt) > 1


def test_a_chosen_category_gets_the_kinds_below_it(quiz):
    fam, vs, _ = quiz
    root = ET.fromstring(moodle_xml(fam, vs[:1], category="$course$/top/Exams 2024//25/backprop"))
    check_quiz(root)
    assert list(questions_by_category(root)) == [
        "top/Exams 2024/25/backprop", "top/Exams 2024/25/backprop/numerical", "top/Exams 2024/25/backprop/multichoice"]


def test_the_checker_refuses_what_moodle_would_import_differently(quiz):
    """The category and tag rules catch real faults: each edit of a good file must fail."""
    fam, vs, xml = quiz
    xml = moodle_xml(fam, vs[:1])
    check_quiz(ET.fromstring(xml))
    edits = [
        ("<text>$course$/top/symprop/quiz/numerical</text>", "<text>top/symprop/quiz/numerical</text>"),  # no context
        ("<text>$course$/top/symprop/quiz/numerical</text>", "<text>$course$/symprop/quiz/numerical</text>"),  # no top
        ("<text>$course$/top/symprop/quiz/numerical</text>", "<text>$course$/top/symprop/<b>quiz</b></text>"),
        ("<text>variant-0001</text>", "<text>variant 0001, the first</text>"),  # a comma splits it
        ("<text>variant-0001</text>", "<text>" + "v" * 51 + "</text>"),  # Moodle cuts it at 50
        ("<text>variant-0001</text>", "<text>QUIZ</text>"),  # the family's name again, in other case
        ("<text>variant-0001</text>", "<text>variant  0001</text>"),  # white space folded
    ]
    for old, new in edits:
        assert old in xml, old
        with pytest.raises(AssertionError):
            check_quiz(ET.fromstring(xml.replace(old, new, 1)))
    info = re.search(r"\s*<info format=\"html\">.*?</info>", xml, re.S).group(0)
    with pytest.raises(AssertionError):
        check_quiz(ET.fromstring(xml.replace(info, info.replace(' format="html"', ""), 1)))
    root = ET.fromstring(xml)  # a tag not in <text>
    tag = root.find("question/tags/tag")
    tag.text = tag.find("text").text
    tag.remove(tag.find("text"))
    with pytest.raises(AssertionError):
        check_quiz(root)
    root = ET.fromstring(xml)  # a question before the first category question
    root.insert(0, root[2])
    with pytest.raises(AssertionError):
        check_quiz(root)
    root = ET.fromstring(xml)  # both kinds in one category
    root.remove(root.findall("question[@type='category']")[2])
    check_quiz(root)
    with pytest.raises(AssertionError):
        check_kinds_and_tags(root, fam, vs[:1])


def test_each_question_is_its_variants_alone():
    """A question's text is its own variant's whatever the other variants exported with it."""
    fam = load_family(Path(__file__).parent.parent / "examples" / "exam_circuit_family.toml")
    vs = variants(fam, 4, seed=2024)
    together = ET.fromstring(moodle_xml(fam, vs))
    alone = [q for v in vs for q in ET.fromstring(moodle_xml(fam, [v])).findall("question") if q.get("type") != "category"]
    by_name = {text_of(q, "name"): q for q in alone}
    together = [q for q in together.findall("question") if q.get("type") != "category"]
    assert len(together) == len(alone)
    for q in together:
        for tag in ("questiontext", "generalfeedback"):
            assert text_of(q, tag) == text_of(by_name[text_of(q, "name")], tag)
