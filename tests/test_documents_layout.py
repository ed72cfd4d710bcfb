r"""Issue 12, "Done when": every document the bundled examples and 20 variants of each family
produce has no overfull box over 1 pt in its LaTeX log and no two words of the PDF on top of
each other (from pdftotext word boxes, figures included).

The documents are built once per session with the ``symprop`` command line and ``--pdf``,
two runs at a time (tools/read_documents.py, which also prints the same table by hand:
``.venv/bin/python tools/read_documents.py OUTDIR``); each document is its own test.
SYMPROP_LAYOUT_VARIANTS sets the variants per family (20 by default) for a quicker run.

The unit tests at the end pin the overlap detector on two tiny documents: words printed on
top of each other with \rlap are found; a sentence of subscripts, superscripts and an inline
fraction is not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symprop.exam import variant_number

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import read_documents as rd  # noqa: E402

VARIANTS = int(os.environ.get("SYMPROP_LAYOUT_VARIANTS", rd.FAMILY_VARIANTS))

needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("pdflatex", "pdftotext", "pdfinfo")),
    reason="needs pdflatex and poppler-utils (pdftotext, pdfinfo)",
)

JOBS = rd.jobs(ROOT, variants=VARIANTS)


def _document_ids(job: rd.Job) -> list[str]:
    """The documents a job writes, known before it runs (the test ids)."""
    if not job.family:
        return [job.name]
    if "-combined" in job.name:
        return [f"{job.name}/combined", f"{job.name}/key"]
    return [f"{job.name}/variant-{variant_number(k)}" for k in range(1, VARIANTS + 1)] + [f"{job.name}/key"]


DOCUMENTS = [doc for job in JOBS for doc in _document_ids(job)]


def _pdf_for(doc: str, built: rd.Built) -> Path | None:
    """The PDF of test id ``doc`` among what its job wrote."""
    if not built.job.family:
        return built.pdfs.get(doc)
    part = doc.rsplit("/", 1)[1]
    for key, pdf in built.pdfs.items():
        stem = key.rsplit("/", 1)[1]
        if (part == "key" and stem.endswith("-key")) or stem == part or (
                part == "combined" and not stem.endswith("-key")):
            return pdf
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every job run once (two at a time): job name -> rd.Built."""
    out = tmp_path_factory.mktemp("documents")
    return {b.job.name: b for b in rd.build(out, JOBS, workers=2, root=ROOT)}


@pytest.fixture(scope="module")
def reports():
    return {}  # doc id -> rd.Report, filled as the tests read them


def _report(doc, built, reports) -> rd.Report:
    if doc not in reports:
        job = doc.split("/", 1)[0]
        result = built[job]
        pdf = _pdf_for(doc, result)
        if pdf is None or not pdf.exists():
            pytest.fail(f"{doc}: no PDF; symprop exited {result.status}: {result.stderr[-800:]}")
        reports[doc] = rd.read_document(pdf)
    return reports[doc]


@needs_tools
@pytest.mark.parametrize("doc", DOCUMENTS)
def test_no_overfull_box(doc, built, reports):
    report = _report(doc, built, reports)
    assert not report.overfull, f"{doc} ({report.pdf}):\n" + "\n".join(str(o) for o in report.overfull)


@needs_tools
@pytest.mark.parametrize("doc", DOCUMENTS)
def test_no_overlapping_words(doc, built, reports):
    report = _report(doc, built, reports)
    assert not report.overlaps, f"{doc} ({report.pdf}):\n" + "\n".join(str(o) for o in report.overlaps)


@needs_tools
@pytest.mark.parametrize("doc", DOCUMENTS)
def test_no_page_ends_in_an_empty_solution_frame(doc, built, reports):
    report = _report(doc, built, reports)
    assert not report.stranded, f"{doc} ({report.pdf}): pages {report.stranded}"


# -- the detector itself ----------------------------------------------------------------

_PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage{amsmath}
\begin{document}
"""


def _compile(tmp_path, name, body) -> Path:
    tex = tmp_path / f"{name}.tex"
    tex.write_text(_PREAMBLE + body + "\n\\end{document}\n", encoding="utf-8")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", tex.name],
                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    return tex.with_suffix(".pdf")


@needs_tools
def test_words_on_top_of_each_other_are_found(tmp_path):
    pdf = _compile(tmp_path, "rlap", r"""
Some \rlap{gradient}weight and more text after it.

A label $\rlap{$w^{(2)}_{1,3}$}\hspace{1pt}w^{(2)}_{2,1}$ printed over another.
""")
    found = {(o.a.text, o.b.text) for o in rd.overlapping_words(pdf)}
    assert {("gradient", "weight"), ("weight", "gradient")} & found, found
    assert {("1,3", "2,1"), ("2,1", "1,3")} & found, found  # the two labels' subscripts
    assert rd.page_count(pdf) == 1


@needs_tools
def test_normal_math_is_not_an_overlap(tmp_path):
    pdf = _compile(tmp_path, "math", r"""
The gradient $\frac{\partial E}{\partial w^{(2)}_{1,3}} = \delta^{2}_{1} a^{1}_{3} + W^{1}_{1,1} x_{1}$
flows through $z_{k} = \sum_{j} w_{kj} z_{j} + b_{k}$ and $e^{-(w_0 x_0 + w_1 x_1 + w_2)}$, with
$\sigma'(z^{(1)}_{2}) = a^{(1)}_{2}(1 - a^{(1)}_{2})$ for every unit. Each gate multiplies the
gradient arriving $\frac{df}{d\mathrm{add}_{1}} = 0.04$ by its local gradient and passes it on
to every input: addition broadcasts it, multiplication swaps its inputs, and the maximum
routes it to the larger input $\max(x_{1}, y_{2})$ while the others get none.
\[
  \frac{\partial E}{\partial W^{1}_{1,1}} = \sum_{m=1}^{3} \delta^{(m)}_{1}\, x^{(m)}_{1}
  = \frac{1}{M} \sum_{m} \frac{\partial \mathcal{L}(m)}{\partial z^{2}_{1}}\,
    \frac{\partial z^{2}_{1}}{\partial a^{1}_{1}}
\]
""")
    assert rd.overlapping_words(pdf) == []
    # and the pairs that do touch stay well below the limit
    worst = max((core for page in rd.word_boxes(pdf) for _, _, core, _ in rd.overlap_pairs(page)), default=0)
    assert worst < rd.CORE_OVERLAP


@needs_tools
def test_overfull_boxes_over_one_point(tmp_path):
    pdf = _compile(tmp_path, "overfull", r"""
\noindent\hbox to 2cm{a box far too narrow for what it holds}

\noindent\hbox to 2cm{\hskip 0pt minus 1fil 0.5pt over\kern 2cm\kern 0.5pt}
""")
    found = rd.overfull_boxes(pdf.with_suffix(".log"))
    assert len(found) == 1, [str(o) for o in found]
    assert found[0].box == "hbox" and found[0].amount > 1 and found[0].lines is not None
    assert "narrow" in found[0].source
