"""The exam's PDFs (issue 13, items 3 and 5): compiled in parallel to the same bytes as one at a
time, the same bytes in every run (no dates, no trailer ID), variant k the same file whatever
the count, one pdflatex pass unless a second changes the output, a failed document named with
its log, and no temporary folder left behind."""

import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from symprop import output
from symprop.cli import main
from symprop.exam import variant_number
from symprop.output import LatexError, compile_pdf, compile_pdfs, default_jobs, write_exam
from symprop.spec import load_family

ROOT = Path(__file__).resolve().parent.parent
NETWORK = ROOT / "examples" / "exam_family.toml"
CIRCUIT = ROOT / "examples" / "exam_circuit_family.toml"
SPEC = ROOT / "examples" / "seed002_gradient_flow.toml"

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed")


def leftovers(*directories):
    """Temporary files and folders symprop left in ``directories``."""
    return sorted(p.name for d in directories for p in Path(d).iterdir() if p.name.startswith(".symprop-"))


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The system's temporary directory for one test, where the documents compile: empty
    again after the test (checked)."""
    where = tmp_path / "scratch"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    yield where
    assert sorted(p.name for p in where.iterdir()) == []


def files(directory, suffixes=(".tex", ".pdf", ".csv")):
    """{name: bytes} of the files in ``directory`` (logs name their folder and the time: left out)."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.suffix in suffixes}


def tex(body, cls="article", preamble=""):
    return f"\\documentclass{{{cls}}}\n{preamble}\\begin{{document}}\n{body}\n\\end{{document}}\n"


def text_of(pdf):
    done = subprocess.run(["pdftotext", str(pdf), "-"], stdout=subprocess.PIPE, check=True)
    return " ".join(done.stdout.decode().split())


@pytest.fixture
def passes(monkeypatch):
    """{document name: how many pdflatex passes} of the documents compiled in the test."""
    counts = {}
    real = subprocess.run
    lock = threading.Lock()

    def counting(cmd, **kwargs):
        if cmd[0] == "pdflatex":
            with lock:
                counts[Path(cmd[-1]).stem] = counts.get(Path(cmd[-1]).stem, 0) + 1
        return real(cmd, **kwargs)

    monkeypatch.setattr(output.subprocess, "run", counting)
    return counts


# -- the network family, three ways ------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The network family's 3 variants with PDFs one at a time and two at a time, and its
    2 variants: {name: directory}."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    family = load_family(NETWORK)
    out = {}
    scratch = tmp_path_factory.mktemp("scratch")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch))
        for name, count, jobs in (("serial", 3, 1), ("parallel", 3, 2), ("two", 2, 2)):
            out[name] = tmp_path_factory.mktemp(name) / "exam"
            write_exam(family, count, 2024, out[name], pdf=True, jobs=jobs)
    out["scratch"] = scratch
    return out


def test_parallel_pdfs_are_the_serial_pdfs_byte_for_byte(built):
    serial, parallel = files(built["serial"]), files(built["parallel"])
    pdfs = sorted(n for n in serial if n.endswith(".pdf"))
    assert pdfs == ["mlp-backprop-key.pdf", "variant-0001.pdf", "variant-0002.pdf", "variant-0003.pdf"]
    assert all(serial[n].startswith(b"%PDF-") and len(serial[n]) > 10_000 for n in pdfs)
    assert serial == parallel  # every .tex, .csv and .pdf, in folders of different names
    assert leftovers(built["serial"], built["parallel"], built["two"]) == []
    assert list(built["scratch"].iterdir()) == []  # every document's temporary folder is gone
    # only the PDF and its log are added: no .aux, .fls, .fdb_latexmk
    assert {p.suffix for p in built["serial"].iterdir()} == {".tex", ".pdf", ".csv", ".log"}


def test_a_variant_pdf_is_the_same_whatever_the_count(built):
    two, three = files(built["two"]), files(built["serial"])
    for k in (1, 2):
        for suffix in (".tex", ".pdf"):
            name = f"variant-{variant_number(k)}{suffix}"
            assert two[name] == three[name], name
    assert two["variant-0001.pdf"] != two["variant-0002.pdf"]


def test_the_pdfs_carry_no_date_and_no_trailer_id(built):
    for pdf in built["serial"].glob("*.pdf"):
        data = pdf.read_bytes()
        assert b"/CreationDate" not in data and b"/ModDate" not in data, pdf.name
        assert not re.search(rb"/ID\s*\[\s*<", data), pdf.name  # the trailer's ID: [<...> <...>]


# -- the same bytes in every run ---------------------------------------------------------------

@needs_tex
def test_two_runs_give_the_same_pdfs_whatever_the_clock(tmp_path, monkeypatch, capsys, scratch):
    """SOURCE_DATE_EPOCH stands in for the clock: two different ones, the same bytes; the
    exam of the circuit family and `solve --pdf` both."""
    runs = []
    for epoch in ("1000000000", "2000000000"):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        where = tmp_path / epoch
        assert main(["exam", str(CIRCUIT), "--variants", "2", "--seed", "5", "-o", str(where / "exam"), "--pdf"]) == 0
        assert main(["solve", str(SPEC), "--wrt", "w_6", "-o", str(where / "s.tex"), "--pdf"]) == 0
        runs.append({**files(where / "exam"), **files(where)})
        assert leftovers(where, where / "exam") == []
    capsys.readouterr()
    assert sorted(n for n in runs[0] if n.endswith(".pdf")) == [
        "gate-circuits-key.pdf", "s.pdf", "variant-0001.pdf", "variant-0002.pdf"]
    assert runs[0] == runs[1]
    # a document without symprop's preamble gets a fixed date from SOURCE_DATE_EPOCH, 0 unless
    # set (its trailer ID still varies: pdfTeX makes it from the temporary folder's name)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    plain = compile_pdf(output.write_atomic(tmp_path / "plain.tex", tex("plain"))).read_bytes()
    assert b"/CreationDate (D:19700101000000Z)" in plain and b"/ModDate (D:19700101000000Z)" in plain


def test_variants_one_to_ten_are_the_same_files_for_ten_and_twelve(tmp_path):
    for path in (NETWORK, CIRCUIT):
        family = load_family(path)
        write_exam(family, 10, 2024, tmp_path / "ten" / family.name)
        write_exam(family, 12, 2024, tmp_path / "twelve" / family.name)
        ten, twelve = files(tmp_path / "ten" / family.name), files(tmp_path / "twelve" / family.name)
        mine = [n for n in ten if n.startswith("variant-")]
        assert mine == [f"variant-{variant_number(k)}.tex" for k in range(1, 11)]
        for name in mine:
            assert ten[name] == twelve[name], f"{family.name} {name}"
            assert not re.search(rb"\bof (10|12)\b", ten[name])  # nothing says how many there are
        assert sorted(set(twelve) - set(ten)) == ["variant-0011.tex", "variant-0012.tex"]
        # the key lists the first ten the same way, then two more
        rows10 = ten[f"{family.name}-key.csv"].decode().splitlines()
        rows12 = twelve[f"{family.name}-key.csv"].decode().splitlines()
        assert rows12[:len(rows10)] == rows10 and len(rows12) > len(rows10)


# -- one pass unless a second changes the output -----------------------------------------------

@needs_tex
@needs_pdftotext
def test_a_second_pass_only_when_it_changes_the_output(tmp_path, passes, scratch):
    docs = {
        "plain": tex("Nothing to look up."),
        # the exam class writes labels and point totals, and asks for a rerun on a first pass
        "questions": tex("\\begin{questions}\\question[2] Why?\\question[3] How?\\end{questions}", cls="exam",
                         preamble="\\pdfinfoomitdate=1 \\pdftrailerid{}\n"),  # as symprop's preamble does
        "refs": tex("\\section{One}\\label{one} See section \\ref{one} on page \\pageref{one}."),
        "pages": tex("\\begin{questions}\\question[2] Why?\\end{questions} Pages: \\numpages.", cls="exam"),
        # longtable with a head row asks for a rerun to set its columns to their widest
        "table": tex("\\begin{longtable}{ll}h & h\\\\ \\endhead a & b\\\\ wider text & c\\\\\\end{longtable}",
                     preamble="\\usepackage{longtable}\n"),
    }
    paths = [output.write_atomic(tmp_path / f"{name}.tex", text) for name, text in docs.items()]
    compile_pdfs(paths, jobs=2)
    assert passes == {"plain": 1, "questions": 1, "refs": 2, "pages": 2, "table": 2}
    assert "See section 1 on page 1." in text_of(tmp_path / "refs.pdf")
    assert "Pages: 1." in text_of(tmp_path / "pages.pdf")
    # one pass is what two would give: the exam document's PDF is that of a second pass
    one = (tmp_path / "questions.pdf").read_bytes()
    for _ in range(2):
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "questions.tex"], cwd=tmp_path, check=True,
                       stdout=subprocess.DEVNULL)
    assert (tmp_path / "questions.pdf").read_bytes() == one


@needs_tex
@needs_pdftotext
def test_a_stale_aux_next_to_the_document_is_not_read(tmp_path, scratch):
    path = output.write_atomic(tmp_path / "stale.tex", tex("Ref: \\ref{gone}."))
    (tmp_path / "stale.aux").write_text("\\relax\n\\newlabel{gone}{{99}{1}}\n")  # an old latexmk run's
    compile_pdf(path)
    assert "Ref: ??." in text_of(tmp_path / "stale.pdf")


@pytest.mark.parametrize("log, source, rerun", [
    ("", "", False),
    ("LaTeX Warning: Label(s) may have changed. Rerun to get cross-references right.", "plain", False),
    ("LaTeX Warning: Label(s) may have changed. Rerun to get cross-references right.", "see \\ref{x}", True),
    ("Class exam Warning: Point totals have changed.\n               Rerun to get point totals right.",
     "\\question[2]", False),
    ("Class exam Warning: Point totals have changed.\n               Rerun to get point totals right.",
     "total \\numpoints", True),
    ("LaTeX Warning: Label(s) may have changed. Rerun to get cross-references right.\n"
     "LaTeX Warning: Reference `x' on page 1 undefined on input line 3.", "\\input{part}", True),
    ("Package longtable Warning: Table widths have changed. Rerun LaTeX.", "", True),
    ("Package rerunfilecheck Warning: File `x.out' has changed.\n(rerunfilecheck) Rerun to get outlines right",
     "", True),
    ("Package rerunfilecheck Info: File `x.out' has not changed.", "", False),
    ("Package: rerunfilecheck 2022-07-10 v1.10 Rerun checks for auxiliary files (HO)", "", False),
    ("Package biblatex Warning: Please rerun LaTeX.", "", True),
])
def test_when_to_rerun(log, source, rerun):
    assert output._needs_rerun(log, source) is rerun


# -- in parallel -------------------------------------------------------------------------------

@needs_tex
def test_two_documents_compile_at_once_and_progress_is_reported_in_the_caller(tmp_path, monkeypatch, scratch):
    together = threading.Barrier(2, timeout=60)  # the first two passes must run at the same time
    real, calls = subprocess.run, []

    def meeting(cmd, **kwargs):
        if len(calls) < 2:
            calls.append(cmd[-1])
            together.wait()
        return real(cmd, **kwargs)

    monkeypatch.setattr(output.subprocess, "run", meeting)
    paths = [output.write_atomic(tmp_path / f"d{i}.tex", tex(f"Document {i}.")) for i in range(3)]
    seen = []
    pdfs = compile_pdfs(paths, jobs=2, progress=lambda done, total: seen.append((done, total, threading.get_ident())))
    assert pdfs == [p.with_suffix(".pdf") for p in paths] and all(p.exists() for p in pdfs)
    assert [(d, t) for d, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert {who for _, _, who in seen} == {threading.get_ident()}
    assert 1 <= default_jobs() <= output.MAX_JOBS


# -- failures ----------------------------------------------------------------------------------

@needs_tex
def test_a_failed_document_is_named_with_its_log_and_its_old_pdf_stays(tmp_path, scratch):
    good = [output.write_atomic(tmp_path / f"good{i}.tex", tex(f"Good {i}.")) for i in range(2)]
    broken = output.write_atomic(tmp_path / "broken.tex", tex("\\nosuchcommand"))
    (tmp_path / "broken.pdf").write_bytes(b"the old PDF")
    with pytest.raises(LatexError, match=r"^pdflatex failed on .*broken\.tex: .*Undefined control sequence.*"
                                         rf"; the log is {re.escape(str(tmp_path / 'broken.log'))}$"):
        compile_pdfs([good[0], broken, good[1]], jobs=2)
    assert "Undefined control sequence" in (tmp_path / "broken.log").read_text()
    assert (tmp_path / "broken.pdf").read_bytes() == b"the old PDF"
    assert leftovers(tmp_path) == []
    # one at a time, the same
    with pytest.raises(LatexError, match=r"broken\.log$"):
        compile_pdfs([broken], jobs=1)
    assert leftovers(tmp_path) == []


@needs_tex
def test_without_keep_log_a_success_leaves_no_log_not_even_an_old_one(tmp_path, scratch):
    (tmp_path / "d").mkdir()
    path = output.write_atomic(tmp_path / "d" / "doc.tex", tex("Fine."))
    (tmp_path / "d" / "doc.log").write_text("an old failure")
    compile_pdf(path, keep_log=False)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["doc.pdf", "doc.tex"]


@needs_tex
def test_an_exam_whose_document_fails_says_which_log_in_one_line(tmp_path, monkeypatch, capsys, scratch):
    real = output.render_variants

    def one_broken(*args, **kwargs):
        documents = real(*args, **kwargs)
        documents["variant-0002.tex"] = documents["variant-0002.tex"].replace(
            "\\begin{document}", "\\begin{document}\\nosuchcommand", 1)
        return documents

    monkeypatch.setattr(output, "render_variants", one_broken)
    out = tmp_path / "exam"
    status = main(["exam", str(NETWORK), "--variants", "2", "-o", str(out), "--pdf"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"symprop: pdflatex failed on {out / 'variant-0002.tex'}: ")
    assert err.strip().endswith(f"the log is {out / 'variant-0002.log'}")
    assert "Undefined control sequence" in (out / "variant-0002.log").read_text()
    assert not (out / "variant-0002.pdf").exists()
    assert leftovers(out) == []


# -- the progress bar (on a terminal only: the command line passes none to a pipe) --------------

def test_the_progress_bar_draws_after_its_delay_and_ends_its_line():
    import io

    from symprop.cli import _count_bar

    drawn = io.StringIO()
    bar = _count_bar(drawn, "PDFs", delay=0)
    for i in (1, 2, 3):
        bar(i, 3)
    assert drawn.getvalue().startswith("\r[" + "#" * 10 + "." * 20 + "] 1/3 PDFs")
    assert drawn.getvalue().endswith("\r[" + "#" * 30 + "] 3/3 PDFs\n")
    quick = io.StringIO()
    bar = _count_bar(quick, "PDFs", delay=60)
    bar(1, 2), bar(2, 2), bar.end()
    assert quick.getvalue() == ""  # a run shorter than the delay draws nothing
    stopped = io.StringIO()
    bar = _count_bar(stopped, "PDFs", delay=0)
    bar(1, 3), bar.end()
    assert stopped.getvalue().endswith("] 1/3 PDFs\n")  # a failure's message starts on a line of its own


# -- one format per preamble -------------------------------------------------------------------

@needs_tex
@needs_pdftotext
def test_documents_sharing_a_preamble_compile_on_one_format_to_the_same_pages(tmp_path, scratch):
    preamble = "\\usepackage{amsmath}\n\\usepackage{tikz}\n\\pdfinfoomitdate=1 \\pdftrailerid{}\n"
    bodies = {f"v{i}": f"Variant {i}: $\\frac{{a}}{{b}}$ \\tikz\\draw (0,0) -- ({i},1);" for i in range(3)}
    bodies["odd name"] = "Quoted name."  # mylatexformat cannot read it: compiled without a format
    plain_dir, shared_dir = tmp_path / "plain", tmp_path / "shared"
    texts = {}
    for folder, shared in ((plain_dir, False), (shared_dir, True)):
        folder.mkdir()
        paths = [output.write_atomic(folder / f"{name}.tex", tex(body, preamble=preamble)) for name, body in bodies.items()]
        pdfs = compile_pdfs(paths, jobs=2, shared_preamble=shared)
        texts[shared] = [text_of(pdf) for pdf in pdfs]
    assert texts[True] == texts[False] and texts[True][1].startswith("Variant 1:")
    logs = {name: (shared_dir / f"{name}.log").read_text() for name in bodies}
    assert all("CUSTOMISED FORMAT" in logs[f"v{i}"] for i in range(3))  # mylatexformat's banner
    assert "CUSTOMISED FORMAT" not in logs["odd name"]
    # the same bytes in another run, and no trailer ID or date although a format does not keep the setting
    first = files(shared_dir, (".pdf",))
    compile_pdfs(sorted(shared_dir.glob("*.tex")), jobs=1, shared_preamble=True)
    assert files(shared_dir, (".pdf",)) == first
    assert not any(re.search(rb"/ID\s*\[|/CreationDate", pdf) for pdf in first.values())
