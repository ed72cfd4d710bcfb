r"""Read symprop's compiled documents for layout faults (issue 12, "Done when").

    .venv/bin/python tools/read_documents.py OUTDIR [--workers 2] [--only GLOB] [--verbose]

builds every document (the bundled examples' solutions and exams, the README's circuits and
20 variants of each question family, answer keys and combined documents included) into
OUTDIR with the ``symprop`` command line and ``--pdf``, then prints, per document, the page
count and its problems:

* overfull ``\hbox`` / ``\vbox`` messages in the LaTeX log over 1 pt, with the log's box text
  and the source lines they name;
* pairs of words that overlap on a page, from ``pdftotext -bbox-layout`` word boxes (figures
  included: TikZ labels are text too).

Exit status 0 when no document has a problem, 1 otherwise. ``--read PDF...`` reads existing
PDFs (each with the .log next to it) without building anything.

From Python::

    from read_documents import read_document, overfull_boxes, overlapping_words, page_count
    report = read_document("x.pdf")          # the .log next to it
    report.problems                          # [] when clean

Needs poppler-utils (``pdftotext``, ``pdfinfo``; ``apt-get install poppler-utils``) and TeX
Live (latexmk or pdflatex), as ``symprop ... --pdf`` does.
"""

from __future__ import annotations

import argparse
import fnmatch
import html
import re
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# -- the log: overfull boxes ------------------------------------------------------------

OVERFULL_LIMIT_PT = 1.0

_OVERFULL = re.compile(
    r"^Overfull \\(?P<box>[hv]box) \((?P<amount>[\d.]+)pt too (?:wide|high)\) (?P<where>.*)$"
)
_LINES = re.compile(r"lines? (\d+)(?:--(\d+))?")


@dataclass
class Overfull:
    """One overfull box of a LaTeX log."""

    box: str            # "hbox" or "vbox"
    amount: float       # pt too wide (hbox) or too high (vbox)
    message: str        # the log's line, e.g. "Overfull \hbox (3.2pt too wide) in paragraph at lines 80--81"
    lines: tuple | None  # (first, last) source line, when the log names them
    text: str           # the box's contents as the log prints them (the "badness text")
    source: str = ""    # the .tex lines named, trimmed (when the .tex is next to the log)

    def __str__(self):
        out = self.message
        if self.text:
            out += f"\n      box: {_shorten(self.text, 300)}"
        if self.source:
            out += f"\n      tex: {_shorten(self.source, 300)}"
        return out


def overfull_boxes(log, limit: float = OVERFULL_LIMIT_PT, tex=None) -> list[Overfull]:
    r"""The overfull \hbox and \vbox messages of the LaTeX log ``log`` over ``limit`` pt,
    each with the box text the log prints after it (up to the blank line that ends it) and
    the source line numbers. ``tex`` (default: the .tex next to the log) gives the source
    text of those lines."""
    log = Path(log)
    text = log.read_text(encoding="utf-8", errors="replace")
    tex = Path(tex) if tex is not None else log.with_suffix(".tex")
    source = tex.read_text(encoding="utf-8", errors="replace").splitlines() if tex.exists() else []
    rows = text.splitlines()
    found = []
    for i, row in enumerate(rows):
        m = _OVERFULL.match(row)
        if not m:
            continue
        amount = float(m["amount"])
        if amount <= limit:
            continue
        body = []
        for nxt in rows[i + 1:i + 40]:  # the box's contents run to a blank line
            if not nxt.strip() or _OVERFULL.match(nxt):
                break
            body.append(nxt)
        # the log wraps at 79 characters: join the pieces back together
        box_text = "".join(body).strip()
        lm = _LINES.search(m["where"])
        lines = None
        src = ""
        if lm:
            first = int(lm[1])
            last = int(lm[2]) if lm[2] else first
            lines = (first, last)
            if source:
                src = " ".join(s.strip() for s in source[first - 1:min(last, first + 5)])
        found.append(Overfull(m["box"], amount, row.strip(), lines, box_text, src))
    return found


# -- the PDF: word boxes and overlaps ---------------------------------------------------

# When two word boxes count as printed on top of each other.
#
# pdftotext gives each word the box of its font, not of its ink: from the baseline up by
# the font's ascent and down by its descent (for these Latin Modern documents the box is
# 0.88 to 1.3 times the font size, depending on the metrics poppler reads for the font).
# The empty bands at the top and bottom of neighbouring boxes therefore intersect where
# the ink does not: consecutive text lines (about 8 % of the smaller box's area), a sub- or
# superscript next to its letter or stacked with the other, a fraction's numerator and
# denominator, and an inline fraction's denominator subscript against the next text line
# (54 % of the subscript's box, yet about 1 pt of white between the inks). So the plain
# intersection area, even as a fraction of the smaller box, does not separate normal math
# from collisions: two real label collisions in the 2-3-2 figure score only 23-33 %.
#
# The measure used is the *core overlap*: the largest s such that both boxes, each trimmed
# by s times its own height at the top and the bottom and by s times its own width at each
# side, still intersect (0 when they do not touch, 0.5 for the same box). It discounts the
# empty bands in proportion to each box's size, so a small subscript grazing the top band
# of a tall text line scores low while two labels whose centres nearly coincide score high.
#
# Measured on the 126 PDFs tools/read_documents.py builds (HEAD c2f80ba, 17,956
# intersecting word pairs), per pair:
#   normal typesetting, checked by eye on rendered crops:
#     0.146  an inline df/dadd_1's subscript "1" against the next line's "addition" (the
#            highest; every circuit answer sheet has one)
#     0.109  the stacked ∂W and ∂E of a display fraction (mnist_layers, swish_layers)
#     0.094  dE against a subscript digit (exam answer sheets); 0.088 dz over df (circuit key)
#     0.087, 0.076, 0.071  neighbouring but separate edge labels (exam_family variants 01
#            and 02, the seed002 figure); everything else 0.07 or less
#   real collisions, two sloped edge labels of the 2-3-2 family figure crossing (issue 12,
#   item 5; rotated text comes out one glyph per word), the highest pair per document:
#     0.253-0.254 (variants 04-07, 10, 11, 14, 16), 0.240 (08, 18), 0.209 (15)
# 0.18 sits between 0.146 and 0.209. The unit test in tests/test_documents_layout.py pins
# both sides on a tiny article: \rlap'd words and labels score 0.44-0.45; a sentence of
# stacked sub- and superscripts, sums and inline and display fractions at most 0.03.
CORE_OVERLAP = 0.18


@dataclass
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    line: str = ""      # the text of the pdftotext line the word is in (for context)

    @property
    def area(self):
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


@dataclass
class Page:
    number: int
    width: float
    height: float
    words: list[Word] = field(default_factory=list)


@dataclass
class Overlap:
    """Two words of one page whose boxes intersect."""

    page: int
    a: Word
    b: Word
    core: float         # the core overlap (see CORE_OVERLAP)
    area: float         # pt^2 of the plain intersection

    def __str__(self):
        where = f"“{_shorten(self.a.line, 80)}”"
        if self.b.line != self.a.line:
            where += f" / “{_shorten(self.b.line, 80)}”"
        return (f"page {self.page}: “{self.a.text}” at ({self.a.x0:.1f}, {self.a.y0:.1f}) and "
                f"“{self.b.text}” at ({self.b.x0:.1f}, {self.b.y0:.1f}), core overlap {self.core:.2f}"
                f" ({self.area:.1f} pt²), in {where}")


_PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">')
_LINE_OPEN = re.compile(r"<line\b")
_WORD = re.compile(
    r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)">(.*?)</word>', re.S
)


def word_boxes(pdf) -> list[Page]:
    """Every page's words with their boxes (pt, origin top left), from ``pdftotext
    -bbox-layout``; each word knows the text of its line."""
    done = subprocess.run(
        ["pdftotext", "-bbox-layout", str(pdf), "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pdftotext failed on {pdf}: {done.stderr.decode(errors='replace').strip()}")
    out = done.stdout.decode("utf-8", errors="replace")
    pages: list[Page] = []
    # split into pages, then lines, then words
    for number, chunk in enumerate(re.split(r"(?=<page )", out)[1:], start=1):
        m = _PAGE.match(chunk)
        page = Page(number, float(m[1]), float(m[2])) if m else Page(number, 0.0, 0.0)
        for line_chunk in re.split(r"(?=<line\b)", chunk)[1:]:
            words = [
                Word(html.unescape(t), float(a), float(b), float(c), float(d))
                for a, b, c, d, t in _WORD.findall(line_chunk)
            ]
            text = " ".join(w.text for w in words)
            for w in words:
                w.line = text
            page.words.extend(words)
        pages.append(page)
    return pages


def _core(a0, a1, b0, b1) -> float:
    """The largest s for which [a0 + s·ha, a1 − s·ha] and [b0 + s·hb, b1 − s·hb] still
    intersect (ha, hb the lengths); at most 0.5, and 0 or less when they do not."""
    total = (a1 - a0) + (b1 - b0)
    if total <= 0:
        return 0.0
    return min(0.5, (a1 - b0) / total, (b1 - a0) / total)


def core_overlap(a: Word, b: Word) -> float:
    """How deeply two word boxes overlap: the largest s such that both, each trimmed by s of
    its height at top and bottom and s of its width at each side, still intersect; 0 when
    they do not touch (see CORE_OVERLAP)."""
    return max(0.0, min(_core(a.x0, a.x1, b.x0, b.x1), _core(a.y0, a.y1, b.y0, b.y1)))


def _intersection(a: Word, b: Word) -> float:
    dx = min(a.x1, b.x1) - max(a.x0, b.x0)
    dy = min(a.y1, b.y1) - max(a.y0, b.y0)
    return dx * dy if dx > 0 and dy > 0 else 0.0


def overlap_pairs(page: Page):
    """Every pair of words of ``page`` whose boxes intersect, as (a, b, core overlap,
    intersection area in pt²), by a sweep along x."""
    words = sorted((w for w in page.words if w.area > 0), key=lambda w: w.x0)
    for i, a in enumerate(words):
        for b in words[i + 1:]:
            if b.x0 >= a.x1:
                break
            area = _intersection(a, b)
            if area > 0:
                yield a, b, core_overlap(a, b), area


def overlapping_words(pdf, limit: float = CORE_OVERLAP, pages: list[Page] | None = None) -> list[Overlap]:
    """Pairs of words on the same page of ``pdf`` printed on top of each other: a core
    overlap over ``limit`` (see CORE_OVERLAP). ``pages``: word boxes already read."""
    found = []
    for page in pages if pages is not None else word_boxes(pdf):
        for a, b, core, area in overlap_pairs(page):
            if core > limit:
                found.append(Overlap(page.number, a, b, core, area))
    return found


def page_count(pdf) -> int:
    """The number of pages of ``pdf`` (pdfinfo)."""
    done = subprocess.run(["pdfinfo", str(pdf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pdfinfo failed on {pdf}: {done.stderr.decode(errors='replace').strip()}")
    m = re.search(r"^Pages:\s+(\d+)", done.stdout.decode(errors="replace"), re.M)
    return int(m[1]) if m else 0


def stranded_headings(pdf, headings=("Solution:",)) -> list[int]:
    """The pages whose last line of text (the page footer aside) is one of ``headings``: a
    solution frame opened at the foot of a page with nothing in it."""
    n = page_count(pdf)
    found = []
    for page in range(1, n + 1):
        done = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-layout", str(pdf), "-"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
        lines = [line.strip() for line in done.stdout.decode(errors="replace").splitlines() if line.strip()]
        body = [line for line in lines if not re.search(r"(^|\s)(page\s+)?\d+$", line)]  # footers
        if body and body[-1] in headings:
            found.append(page)
    return found


@dataclass
class Report:
    """What :func:`read_document` finds in one PDF."""

    pdf: Path
    pages: int
    overfull: list[Overfull]
    overlaps: list[Overlap]
    stranded: list[int]  # pages ending in an empty "Solution:" frame

    @property
    def problems(self) -> list[str]:
        return ([f"overfull: {o}" for o in self.overfull]
                + [f"overlap: {o}" for o in self.overlaps]
                + [f"page {p} ends in an empty Solution: frame" for p in self.stranded])


def read_document(pdf, log=None) -> Report:
    """The page count, overfull boxes over 1 pt (from ``log``, default the .log next to
    the PDF), overlapping words and pages ending in an empty solution frame of ``pdf``."""
    pdf = Path(pdf)
    log = Path(log) if log is not None else pdf.with_suffix(".log")
    return Report(pdf, page_count(pdf), overfull_boxes(log) if log.exists() else [], overlapping_words(pdf),
                  stranded_headings(pdf))


def _shorten(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# -- every document ---------------------------------------------------------------------

# The weight asked with --wrt for each network example (the one its header or issue 12
# uses); any other spec: its first parameter.
WRT = {
    "seed002_seven_neurons": "w_5_7",
    "seed002_gradient_flow": "w_6",
    "seed003_layered": "w_1_1_1",
    "custom_functions": "w",
}
METHODS = ("top-down", "bottom-up", "paths")

# The README's circuits ("symprop circuit" there), each as a document, an exam question,
# its answer sheet and the figure alone.
CIRCUITS = {
    "add-mul": ("(x + y)*z", "x=-2,y=5,z=-4"),
    "sigmoid-neuron": ("1/(1 + exp(-(w_0*x_0 + w_1*x_1 + w_2)))", "w_0=2,x_0=-1,w_1=-3,x_1=-2,w_2=-3"),
}
FAMILY_VARIANTS = 20
FAMILY_SEED = 7


@dataclass
class Job:
    """One ``symprop`` run that writes documents: its arguments (after ``symprop``) with
    {out} for the output path, and the PDFs it makes (relative to the job's directory)."""

    name: str                 # a directory-safe name, also the documents' id prefix
    args: list[str]
    output: str               # the -o argument, relative to the job's directory
    family: bool = False      # -o is a directory of many PDFs
    cost: float = 1.0         # rough relative time, to start the long ones first


def jobs(root=ROOT, variants: int = FAMILY_VARIANTS, seed: int = FAMILY_SEED) -> list[Job]:
    """Every document of issue 12's "Done when", as symprop runs on the examples of the
    checkout ``root``."""
    out = []
    for spec in sorted((Path(root) / "examples").glob("*.toml")):
        data = tomllib.loads(spec.read_text(encoding="utf-8"))
        stem = spec.stem
        if "family" in data:
            for answers in (False, True):
                flags = ["--answers"] if answers else []
                tag = "-answers" if answers else ""
                out.append(Job(f"{stem}{tag}", ["exam", str(spec), "--variants", str(variants), "--seed", str(seed),
                                                *flags, "-o", "{out}", "--pdf"], "exam", family=True,
                               cost=variants + 1))
                out.append(Job(f"{stem}-combined{tag}", ["exam", str(spec), "--variants", str(variants), "--seed",
                                                         str(seed), "--combined", *flags, "-o", "{out}", "--pdf"],
                               "exam", family=True, cost=4))
        elif "layers" in data:
            out.append(Job(f"{stem}-solve", ["solve", str(spec), "-o", "{out}", "--pdf"], f"{stem}.tex"))
        elif "outputs" in data.get("network", {}):  # a vector-valued function: its Jacobian's worked solution
            out.append(Job(f"{stem}-solve", ["solve", str(spec), "-o", "{out}", "--pdf"], f"{stem}.tex"))
        elif "nodes" in data and "values" in data:
            wrt = WRT.get(stem) or data["network"]["params"][0]
            out.append(Job(f"{stem}-solve", ["solve", str(spec), "-o", "{out}", "--pdf"], f"{stem}.tex", cost=2))
            for method in METHODS:
                out.append(Job(f"{stem}-solve-{wrt}-{method}",
                               ["solve", str(spec), "--wrt", wrt, "--method", method, "-o", "{out}", "--pdf"],
                               f"{stem}.tex"))
            for answers in (False, True):
                flags = ["--answers"] if answers else []
                tag = "-answers" if answers else ""
                out.append(Job(f"{stem}-exam{tag}", ["exam", str(spec), *flags, "-o", "{out}", "--pdf"],
                               f"{stem}.tex", cost=2))
    for name, (expr, at) in CIRCUITS.items():
        for kind, flags in (("latex", []), ("exam", ["--exam"]), ("exam-answers", ["--exam", "--answers"]),
                            ("figure", ["--figure"])):
            out.append(Job(f"circuit-{name}-{kind}", ["circuit", expr, "--at", at, "--format", "latex", *flags,
                                                      "-o", "{out}", "--pdf"], "circuit.tex"))
    return out


@dataclass
class Built:
    """A job's outcome: the PDFs it wrote (document id -> path) or why it failed."""

    job: Job
    pdfs: dict[str, Path]
    status: int
    stderr: str
    seconds: float


def symprop_command(root=ROOT) -> list[str]:
    """How to run the command line of the checkout ``root`` with this interpreter."""
    return [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); import symprop_cli; symprop_cli.main()",
            str(Path(root).resolve())]


def run_job(job: Job, outdir: Path, root=ROOT) -> Built:
    """Run ``job`` in its own directory ``outdir/job.name``; collect its PDFs."""
    where = Path(outdir) / job.name
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    target = where / job.output
    args = [str(target) if a == "{out}" else a for a in job.args]
    start = time.monotonic()
    done = subprocess.run([*symprop_command(root), *args], cwd=where, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.monotonic() - start
    if job.family:
        pdfs = {f"{job.name}/{p.stem}": p for p in sorted(target.glob("*.pdf"))}
    else:
        pdf = target.with_suffix(".pdf")
        pdfs = {job.name: pdf} if pdf.exists() else {}
    return Built(job, pdfs, done.returncode, done.stderr.decode(errors="replace").strip(), seconds)


def build(outdir, selected: list[Job] | None = None, workers: int = 2, progress=None, root=ROOT) -> list[Built]:
    """Run every job (``selected``, default :func:`jobs`) into ``outdir``, ``workers`` at a
    time (each job compiles its PDFs one after the other), the longest first."""
    selected = selected if selected is not None else jobs(root)
    todo = sorted(selected, key=lambda j: -j.cost)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run_job, j, Path(outdir), root) for j in todo]
        results = []
        for f in as_completed(futures):
            r = f.result()
            if progress:
                progress(r)
            results.append(r)
    order = {j.name: i for i, j in enumerate(selected)}
    return sorted(results, key=lambda r: order.get(r.job.name, 0))


def read_built(results: list[Built]) -> dict[str, Report | str]:
    """Each built document's report, by id; a failed job's id maps to its error."""
    reports: dict[str, Report | str] = {}
    for r in results:
        if r.status != 0 or not r.pdfs:
            reports[r.job.name] = f"symprop exited {r.status}: {r.stderr[-500:]}"
        for doc, pdf in r.pdfs.items():
            reports[doc] = read_document(pdf)
    return reports


def print_table(reports: dict[str, Report | str], verbose: bool = True, file=sys.stdout) -> int:
    """A table of problems per document; returns how many documents have one."""
    bad = 0
    width = max((len(k) for k in reports), default=10)
    print(f"{'document':<{width}}  pages  overfull  overlaps", file=file)
    for doc, rep in reports.items():
        if isinstance(rep, str):
            bad += 1
            print(f"{doc:<{width}}  FAILED  {rep}", file=file)
            continue
        if rep.problems:
            bad += 1
        print(f"{doc:<{width}}  {rep.pages:5d}  {len(rep.overfull):8d}  {len(rep.overlaps):8d}", file=file)
        if verbose:
            for p in rep.problems:
                print("    " + p.replace("\n", "\n    "), file=file)
    print(f"{bad} of {len(reports)} documents have problems", file=file)
    return bad


def _check_tools():
    missing = [t for t in ("pdftotext", "pdfinfo") if shutil.which(t) is None]
    if missing:
        sys.exit(f"read_documents: {', '.join(missing)} missing; apt-get install poppler-utils")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", nargs="?", help="build every document here (each job in its own subdirectory)")
    parser.add_argument("--workers", type=int, default=2, help="symprop runs at a time (default 2)")
    parser.add_argument("--only", metavar="GLOB", action="append", help="only the jobs whose name matches (repeatable)")
    parser.add_argument("--variants", type=int, default=FAMILY_VARIANTS, help="variants per family (default 20)")
    parser.add_argument("--read", metavar="PDF", nargs="+", help="read these PDFs instead of building")
    parser.add_argument("--checkout", metavar="DIR", default=str(ROOT),
                        help="run symprop and take the examples from this checkout (default: this one)")
    parser.add_argument("--brief", action="store_true", help="counts only, not each problem")
    args = parser.parse_args(argv)
    _check_tools()
    if args.read:
        reports = {p: read_document(p) for p in args.read}
    else:
        if not args.outdir:
            parser.error("give OUTDIR (or --read PDF...)")
        selected = jobs(args.checkout, variants=args.variants)
        if args.only:
            selected = [j for j in selected if any(fnmatch.fnmatch(j.name, g) for g in args.only)]
        start = time.monotonic()
        results = build(args.outdir, selected, workers=args.workers, root=args.checkout,
                        progress=lambda r: print(f"built {r.job.name} in {r.seconds:.0f} s", file=sys.stderr))
        print(f"built {sum(len(r.pdfs) for r in results)} PDFs in {time.monotonic() - start:.0f} s", file=sys.stderr)
        reports = read_built(results)
    return 1 if print_table(reports, verbose=not args.brief) else 0


if __name__ == "__main__":
    sys.exit(main())
