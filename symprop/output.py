r"""Output files: atomic writes, pdflatex and the exam's files (the quiz formats are in
:mod:`symprop.quiz`).

Every file symprop writes goes through :func:`write_atomic`, so a failure leaves the old
file (or none), never half of a new one. A new file gets the umask's mode, an existing one
keeps its mode, a symlink is followed to the file it names, and a path that is not a
regular file (a directory, a FIFO, a device) is refused with :class:`OutputError`, as is
a missing directory.

:func:`compile_pdf` and :func:`compile_pdfs` (several documents, in parallel) run pdflatex
with shell escape off, each document in a temporary folder of its own, once unless a
second pass would change the output; only the PDF (and its log) is moved into place, each
atomically. A failure is one line (a :class:`LatexError`) naming the log. The same
document gives the same PDF bytes in every run (no dates, no varying trailer ID).

A class's exam is many documents with one preamble: :func:`compile_pdfs` with
``shared_preamble`` loads each distinct preamble once into a pdflatex format
(``mylatexformat``) and compiles every document on it, which halves the time of a pass.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .documents.variants import answer_key_tex, render_variants
from .exam import variants
from .quiz import answer_key_csv, moodle_xml, qti_package
from .spec import Family

__all__ = ["write_atomic", "writable_target", "pdf_path", "OutputError", "compile_pdf", "compile_pdfs",
           "default_jobs", "LatexError", "write_exam"]


class LatexError(RuntimeError):
    """pdflatex failed, or is not installed; the message says where the log is."""


class OutputError(OSError):
    """A path symprop will not write: not a regular file, or its directory is missing or
    not writable. The message is one line naming the path as given."""


def writable_target(path, *, directory: bool = True) -> Path:
    """The file that writing ``path`` replaces: ``path`` itself or, for a symlink, the file
    it names. Raises :class:`OutputError` naming ``path`` when that exists and is not a
    regular file (a directory, a FIFO, a device...) or, with ``directory``, when its
    directory does not exist or is not writable."""
    target = _follow(path)
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # a new file; the directory check says what is wrong with its directory
    except OSError as err:  # a symlink loop, no permission to look
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"cannot write {path}: it is {_kind(mode)}, not a regular file")
    if directory:
        _check_directory(target.parent, f"cannot write {path}")
    return target


def pdf_path(tex_path) -> Path:
    """Where :func:`compile_pdf` puts the PDF of ``tex_path``: next to the file it names."""
    return _follow(tex_path).with_suffix(".pdf")


def _follow(path) -> Path:
    """``path``, or the file a symlink at ``path`` names (through any chain of links)."""
    path = Path(path)
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:  # no such file, a name too long...: the caller's os.stat says which
        link = False
    return Path(os.path.realpath(path)) if link else path


def _kind(mode) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _check_directory(directory: Path, what: str, *, create: bool = False) -> None:
    """``directory`` exists and can take new files, or, with ``create``, can be made (its
    nearest existing ancestor is a writable directory); else :class:`OutputError`
    starting with ``what``."""
    existing = directory
    while True:
        try:
            mode = os.stat(existing).st_mode
            break
        except (FileNotFoundError, NotADirectoryError):
            if not create:
                raise OutputError(f"{what}: the directory {directory} does not exist") from None
            if existing.parent == existing:
                raise OutputError(f"{what}: the directory {directory} cannot be made") from None
            existing = existing.parent
        except OSError as err:
            raise OutputError(f"{what}: {existing}: {err.strerror or err}") from None
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else _kind(mode)
        raise OutputError(f"{what}: {existing} is {kind}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: the directory {existing} is not writable")


# A short temporary name: the file's own name may already be as long as a name can be.
_TEMPORARY = ".symprop-{}.tmp"


def write_atomic(path, text: str | bytes | Iterable[str]) -> Path:
    """Write ``text`` (a string or chunks, as UTF-8; or bytes) to ``path`` all at once: into
    a temporary file in the same directory, then ``os.replace``. After a failure the old
    file (or none) remains.

    A symlink at ``path`` is followed: the file it names is replaced, the link stays. A
    new file gets the mode ``0o666`` less the umask, an existing file keeps its mode. A
    path that exists and is not a regular file raises :class:`OutputError`; so does a
    missing directory. Returns ``path``.
    """
    path = Path(path)
    target = writable_target(path)
    tmp = _write_temporary(path, target, text)
    _replace(tmp, target, path)
    return path


def _write_temporary(path: Path, target: Path, text) -> Path:
    """``text`` in a new temporary file next to ``target``, with the mode the file will
    have; an OSError names ``path``, and leaves no temporary file."""
    try:
        keep = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        keep = None
    for _ in range(100):
        tmp = target.parent / _TEMPORARY.format(secrets.token_hex(4))
        try:
            # 0o666 less the umask, as for any new file; O_EXCL: never someone else's file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise _naming(err, path) from None
    else:
        raise OutputError(f"cannot write {path}: no free temporary name in {target.parent}")
    try:
        if keep is not None:  # an existing file keeps its mode
            os.chmod(fd if os.chmod in os.supports_fd else tmp, keep)
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8", newline="\n")) as f:
            for chunk in [text] if isinstance(text, (str, bytes)) else text:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from None
        raise
    return tmp


def _replace(tmp: Path, target: Path, path: Path) -> None:
    try:
        os.replace(tmp, target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from None
        raise


def _naming(err: OSError, path) -> OSError:
    """``err`` naming ``path`` (the name given) rather than a temporary file."""
    if err.filename is not None:
        err.filename, err.filename2 = str(path), None
    return err


# -- pdflatex ---------------------------------------------------------------------------

_FLAGS = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "-no-shell-escape"]

# At most this many pdflatex passes per document (a pass is rerun only when it would change
# the output, see _needs_rerun), and at most this many documents at a time by default.
MAX_PASSES = 3
MAX_JOBS = 8

# Files a pass reads back under the document's own name: an empty one in the work folder
# hides a stale one next to the .tex (pdflatex looks in the folder it runs in too, the
# document's: an earlier run may have left its .aux there).
_READ_BACK = (".aux", ".toc", ".lof", ".lot")

# A first pass always "changes" labels and the exam class's point totals (there was no .aux
# before it); that asks for a rerun only when something printed reads them back.
_WEAK_RERUN = re.compile(
    r"Label\(s\) may have changed\.\s+Rerun to get cross-references right\.?"
    r"|Point totals have changed\.\s+Rerun to get point totals right\.?"
)
_RERUN = re.compile(r"\b[Rr]erun (?:to get|LaTeX)|[Pp]lease rerun")  # not "rerunfilecheck ... Rerun checks"
_UNDEFINED = re.compile(r"Reference `[^']*' on page \d+ undefined|There were undefined references|Citation `[^']*'"
                        r"|undefined citations")
# What reads the .aux (or .toc, ...) back: references, citations, the exam class's totals,
# page and continuation tests, tables of contents, TikZ's remembered pictures.
_READS_AUX = re.compile(
    r"\\(?:[A-Za-z]*ref|[A-Za-z]*cite[A-Za-z]*|num(?:pages|coverpages|points|bonuspoints|questions|parts|subparts"
    r"|subsubparts)|totalnumpages|(?:bonus)?pointsofquestion|(?:bonus)?pointsonpage|[A-Za-z]*(?:point|grade)s?table"
    r"|totalpoints|totalbonuspoints|iflastpage|ifcontinuation|ContinuedQuestion|PreviousTotalPages|tableofcontents"
    r"|listoffigures|listoftables)(?![A-Za-z])"
    r"|remember\s+picture|LastPage"
)


def default_jobs() -> int:
    """How many documents :func:`compile_pdfs` compiles at a time by default: the CPUs this
    process may use, at most :data:`MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def compile_pdf(tex_path, *, timeout: float = 300, keep_log: bool = True) -> Path:
    r"""Compile ``tex_path`` with pdflatex; returns the PDF's path, next to the file (the
    file a symlink names).

    The document is compiled where it is (it may ``\input`` files next to it) into a
    temporary folder of its own in the system's temporary directory, one pass unless a
    second would change the output (:func:`_needs_rerun`), at most :data:`MAX_PASSES`;
    only the PDF is written into place (:func:`write_atomic`), and the log next to it
    (``keep_log``; always on failure). Shell escape is off; the PDF carries no dates and no trailer ID
    that vary between runs (``SOURCE_DATE_EPOCH``, 0 unless set, and the preamble's
    ``\pdfinfoomitdate``/``\pdftrailerid``). On any LaTeX error, raises
    :class:`LatexError` with the first error line and the path of the log.
    """
    _need_pdflatex()
    return _compile_one(tex_path, timeout, keep_log)


def compile_pdfs(tex_paths, *, jobs: int | None = None, timeout: float = 300, keep_log: bool = True,
                 progress: Callable[[int, int], None] | None = None, shared_preamble: bool = False) -> list[Path]:
    """Compile every file of ``tex_paths`` as :func:`compile_pdf` does, ``jobs`` at a time
    (default :func:`default_jobs`), the largest first; returns the PDFs' paths in the order
    given. The PDFs are the same bytes whatever ``jobs``.

    With ``shared_preamble``, the documents are compiled on formats made from their
    preambles (:func:`_preamble_formats`): the same pages, in about half the time of a
    pass, and the same bytes in every run on a machine; a document whose preamble cannot
    be made a format is compiled as :func:`compile_pdf` does.

    ``progress(done, total)``, if given, is called in the calling thread after each
    document. When a document fails, no new one is started; the :class:`LatexError` of the
    first failed document (in the order given) is raised once the running ones end, and
    the PDFs already made stay.
    """
    texs = [Path(t) for t in tex_paths]
    if not texs:
        return []
    _need_pdflatex()
    jobs = max(1, min(jobs if jobs is not None else default_jobs(), len(texs)))
    with contextlib.ExitStack() as cleanup:
        formats = _preamble_formats(texs, cleanup, timeout) if shared_preamble else [None] * len(texs)
        return _compile_all(texs, formats, jobs, timeout, keep_log, progress)


def _compile_all(texs, formats, jobs, timeout, keep_log, progress) -> list[Path]:
    order = sorted(range(len(texs)), key=lambda i: -_size(texs[i]))  # long ones first: no straggler at the end
    pdfs: list[Path | None] = [None] * len(texs)
    if jobs == 1:
        for done, i in enumerate(order, 1):
            pdfs[i] = _compile_one(texs[i], timeout, keep_log, formats[i])
            if progress is not None:
                progress(done, len(texs))
        return pdfs

    stop = threading.Event()

    def work(i):
        if stop.is_set():  # a document failed or the caller was interrupted: start nothing more
            return None
        try:
            return _compile_one(texs[i], timeout, keep_log, formats[i])
        except BaseException:
            stop.set()
            raise

    failed: dict[int, BaseException] = {}
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="symprop-pdflatex")
    try:
        futures = {pool.submit(work, i): i for i in order}
        done = 0
        for future in as_completed(futures):
            i = futures[future]
            try:
                pdfs[i] = future.result()
            except LatexError as err:
                failed[i] = err
                continue
            done += 1
            if progress is not None and not stop.is_set():
                progress(done, len(texs))
    except BaseException:  # an interrupt, or an unexpected error in a job: start nothing more
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        raise failed[min(failed)]
    return pdfs


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _need_pdflatex() -> None:
    if not shutil.which("pdflatex"):
        raise LatexError("pdflatex is not installed; install TeX Live to get a PDF")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SOURCE_DATE_EPOCH", "0")  # a fixed date and trailer ID, unless the caller fixed one
    env.pop("FORCE_SOURCE_DATE", None)  # \today stays today's date
    return env


def _compile_one(tex_path, timeout: float, keep_log: bool, fmt: Path | None = None) -> Path:
    """One document in a temporary folder of its own (see :func:`compile_pdf`), on the
    format ``fmt`` if given (see :func:`_preamble_formats`)."""
    tex = Path(tex_path).resolve()
    log, pdf = tex.with_suffix(".log"), tex.with_suffix(".pdf")
    try:
        # in the system's temporary directory: a process killed mid-way (Ctrl-C in the
        # command line ends it at once) leaves nothing in the user's folder
        work = Path(tempfile.mkdtemp(prefix="symprop-pdflatex-"))
    except OSError as err:
        raise LatexError(f"cannot compile {tex}: no temporary folder: {err.strerror or err}") from None
    built_log = work / log.name
    try:
        try:
            source = tex.read_text(encoding="utf-8", errors="replace")
            for suffix in _READ_BACK:
                (work / tex.with_suffix(suffix).name).touch()
        except OSError as err:
            raise LatexError(f"cannot compile {tex}: {err.strerror or err}") from None
        # run where the document is, so that it may \input files next to it
        cmd = ["pdflatex", *_FLAGS, f"-output-directory={work}", tex.name]
        if fmt is not None:
            cmd[-1:] = [f"-fmt={fmt}", tex.name]
        env = _environment()
        for passes in range(1, MAX_PASSES + 1):
            _run_tex(cmd, tex, log, built_log, timeout, env)
            if passes == MAX_PASSES or not _needs_rerun(_read_log(built_log), source):
                break
        try:
            write_atomic(pdf, (work / pdf.name).read_bytes())
            if keep_log:
                write_atomic(log, built_log.read_bytes())
            else:  # a log left by an earlier failure would describe another PDF
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(log)
        except OutputError as err:  # the PDF's place is a directory, a FIFO...
            raise LatexError(str(err)) from None
        except OSError as err:
            raise LatexError(f"cannot write {err.filename or pdf}: {err.strerror or err}") from None
        return pdf
    except BaseException:
        with contextlib.suppress(OSError):  # the log stays on failure: the error names it
            write_atomic(log, built_log.read_bytes())
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# A file name mylatexformat finds its preamble in (it reads the command line's file name)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.tex")


def _preamble_formats(texs: list[Path], cleanup: contextlib.ExitStack, timeout: float) -> list[Path | None]:
    r"""For each document, a pdflatex format with its preamble (everything before
    ``\begin{document}``) already loaded, made once per distinct preamble with
    ``mylatexformat`` in a temporary folder that ``cleanup`` removes; ``None`` for a
    document that cannot have one (no mylatexformat, a preamble that fails, a name that
    needs quoting). Loading the packages (TikZ, fonts) is half of an exam sheet's pass."""
    if not shutil.which("pdftex"):
        return [None] * len(texs)
    folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="symprop-format-")))
    made: dict[str, Path | None] = {}
    formats = []
    for tex in texs:
        try:
            source = tex.read_text(encoding="utf-8", errors="replace")
        except OSError:
            formats.append(None)  # compiling it names the problem
            continue
        preamble, begin, _ = source.partition("\\begin{document}")
        if not begin or not _PLAIN_NAME.fullmatch(tex.name):
            formats.append(None)
            continue
        if preamble not in made:
            made[preamble] = _make_format(preamble, folder / f"preamble-{len(made)}", tex.parent, timeout)
        formats.append(made[preamble])
    return formats


def _make_format(preamble: str, name: Path, where: Path, timeout: float) -> Path | None:
    source = name.with_suffix(".tex")
    try:
        # a format keeps macros but not the trailer ID setting: set it again as a document begins
        source.write_text(preamble + "\\AtBeginDocument{\\pdftrailerid{}}\n\\begin{document}\n\\end{document}\n",
                          encoding="utf-8")
        done = subprocess.run(
            ["pdftex", "-ini", "-interaction=batchmode", "-halt-on-error", "-no-shell-escape",
             f"-output-directory={name.parent}", f"-jobname={name.name}", "&pdflatex", "mylatexformat.ltx", str(source)],
            cwd=where, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=timeout, check=False, env=_environment(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    fmt = name.with_suffix(".fmt")
    return fmt if done.returncode == 0 and fmt.is_file() else None


def _needs_rerun(log: str, source: str) -> bool:
    """Whether another pdflatex pass would change the output, from the ``log`` of this
    pass and the document's ``source``: a rerun asked for (longtable's widths, hyperref's
    outlines...), or labels or point totals changed while something reads them back (an
    undefined reference in the log, or a command in the source that reads the .aux)."""
    if _RERUN.search(_WEAK_RERUN.sub("", log)):
        return True
    return bool(_WEAK_RERUN.search(log)) and bool(_UNDEFINED.search(log) or _READS_AUX.search(source))


def _run_tex(cmd, tex, log, built_log, timeout, env):
    try:
        done = subprocess.run(
            cmd, cwd=tex.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=timeout, check=False, env=env,
        )
    except subprocess.TimeoutExpired:
        raise LatexError(f"pdflatex took longer than {timeout:.0f} s on {tex}; the log is {log}") from None
    except OSError as err:  # not executable, no such directory, too many processes...
        raise LatexError(f"cannot run {cmd[0]} on {tex}: {err.strerror or err}") from None
    if done.returncode != 0:
        raise LatexError(f"pdflatex failed on {tex}: {_first_error(built_log)}; the log is {log}")


def _read_log(log: Path) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _first_error(log: Path) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log was written"
    for line in text.splitlines():
        if line.startswith("!") or re.match(r"^[^:\s]+:\d+: ", line):
            return line.strip()
    return "see the log"


# -- exams ------------------------------------------------------------------------------

def write_exam(
    family: Family, n: int, seed: int, directory, *, combined: bool = False, answers: bool = False,
    pdf: bool = False, moodle=None, qti=None, check: Callable[[Path], None] | None = None, jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``n`` variants, the answer key (CSV and LaTeX) and optionally a Moodle XML file
    and a QTI 2.1 package (``qti``, a .zip); every file atomically. Returns the paths written
    (PDFs included with ``pdf``).

    Every path is checked before anything is written, and a bad one raises
    :class:`OutputError` naming it: ``directory`` is made if need be, a quiz file's
    directory must exist (or be ``directory``), no path may be anything but a regular
    file. ``check``, if given, is called with every path to be written (the PDFs too) and
    may raise to refuse one. The files are written to temporary files first and renamed
    into place only when all of them are written. With ``pdf``, the documents are then
    compiled ``jobs`` at a time (:func:`compile_pdfs`; ``progress(done, total)`` after
    each).
    """
    directory = Path(directory)
    _check_directory(directory, f"cannot write to {directory}", create=True)
    new = not directory.is_dir()
    quizzes = [(Path(path), export) for path, export in ((moodle, moodle_xml), (qti, qti_package)) if path is not None]
    for path, _ in quizzes:
        if check is not None:
            check(path)
        writable_target(path, directory=not (new and _same_place(path.parent, directory)))
    vs = variants(family, n, seed)
    documents = render_variants(family, vs, combined=combined, answers=answers)
    documents[f"{family.name}-key.tex"] = answer_key_tex(family, vs)
    files = [(directory / name, text) for name, text in documents.items()]
    files.append((directory / f"{family.name}-key.csv", answer_key_csv(family, vs)))
    files += [(path, export(family, vs)) for path, export in quizzes]
    texs = [directory / name for name in documents] if pdf else []

    targets, seen = [], {}
    for path in [*(path for path, _ in files), *(pdf_path(tex) for tex in texs)]:
        if check is not None:
            check(path)
        # the directory is checked above; a file in a directory still to be made is new
        target = writable_target(path, directory=not (new and _same_place(path.parent, directory)))
        key = target.resolve()
        if key in seen:
            same = "a file of that name" if path == seen[key] else f"{seen[key]}, the same file,"
            raise OutputError(f"cannot write {path}: the exam writes {same} already")
        targets.append(target)
        seen[key] = path

    if new:
        directory.mkdir(parents=True, exist_ok=True)
    temporaries, placed = [], 0
    try:
        for (path, text), target in zip(files, targets):
            temporaries.append((_write_temporary(path, target, text), target, path))
        for tmp, target, path in temporaries:
            _replace(tmp, target, path)
            placed += 1
    except BaseException:
        for tmp, _, _ in temporaries[placed:]:
            tmp.unlink(missing_ok=True)
        if new and not placed:  # nothing is in place: leave no new directory either
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return [*(path for path, _ in files), *compile_pdfs(texs, jobs=jobs, progress=progress, shared_preamble=True)]


def _same_place(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()
