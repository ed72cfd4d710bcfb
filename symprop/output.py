r"""Output files: atomic writes, pdflatex and the exam's files (the quiz formats are in
:mod:`symprop.quiz`).

Every file symprop writes goes through :func:`write_atomic`, so a failure leaves the old
file (or none), never half of a new one. A new file gets the umask's mode, an existing one
keeps its mode, a symlink is followed to the file it names, and a path that is not a
regular file (a directory, a FIFO, a device) is refused with :class:`OutputError`, as is
a missing directory. :func:`compile_pdf` runs latexmk or pdflatex with shell escape off
and reports any failure in one line (a :class:`LatexError`) with the path of its log.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from .documents.variants import answer_key_tex, render_variants
from .exam import variants
from .quiz import answer_key_csv, moodle_xml
from .spec import Family

__all__ = ["write_atomic", "writable_target", "pdf_path", "OutputError", "compile_pdf", "LatexError", "write_exam"]


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


def write_atomic(path, text: str | Iterable[str]) -> Path:
    """Write ``text`` (a string or chunks) to ``path`` all at once: into a temporary file in
    the same directory, then ``os.replace``. After a failure the old file (or none) remains.

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
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for chunk in [text] if isinstance(text, str) else text:
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


def compile_pdf(tex_path, *, latexmk: bool = True, timeout: float = 300) -> Path:
    """Compile ``tex_path`` next to it with latexmk (or, without it or with
    ``latexmk=False``, pdflatex, rerun while the log asks); returns the PDF's path.

    Shell escape is off. On any LaTeX error, raises :class:`LatexError` with the first
    error line and the path of the log.
    """
    tex = Path(tex_path).resolve()
    log = tex.with_suffix(".log")
    flags = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "-no-shell-escape"]
    if latexmk and shutil.which("latexmk"):
        _run_tex(["latexmk", "-pdf", "-silent", f"-pdflatex=pdflatex {' '.join(flags)} %O %S", tex.name], tex, log, timeout)
    elif shutil.which("pdflatex"):
        for _ in range(3):
            _run_tex(["pdflatex", *flags, tex.name], tex, log, timeout)
            if "Rerun to get" not in _read_log(log):
                break
    else:
        raise LatexError("neither latexmk nor pdflatex is installed; install TeX Live to get a PDF")
    return tex.with_suffix(".pdf")


def _run_tex(cmd, tex, log, timeout):
    try:
        done = subprocess.run(
            cmd, cwd=tex.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise LatexError(f"pdflatex took longer than {timeout:.0f} s on {tex}; the log is {log}") from None
    except OSError as err:  # not executable, no such directory, too many processes...
        raise LatexError(f"cannot run {cmd[0]} on {tex}: {err.strerror or err}") from None
    if done.returncode != 0:
        raise LatexError(f"pdflatex failed on {tex}: {_first_error(log)}; the log is {log}")


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
    pdf: bool = False, moodle=None, check: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``n`` variants, the answer key (CSV and LaTeX) and optionally a Moodle XML file;
    every file atomically. Returns the paths written (PDFs included with ``pdf``).

    Every path is checked before anything is written, and a bad one raises
    :class:`OutputError` naming it: ``directory`` is made if need be, the Moodle file's
    directory must exist (or be ``directory``), no path may be anything but a regular
    file. ``check``, if given, is called with every path to be written (the PDFs too) and
    may raise to refuse one. The files are written to temporary files first and renamed
    into place only when all of them are written.
    """
    directory = Path(directory)
    _check_directory(directory, f"cannot write to {directory}", create=True)
    new = not directory.is_dir()
    if moodle is not None:
        moodle = Path(moodle)
        if check is not None:
            check(moodle)
        writable_target(moodle, directory=not (new and _same_place(moodle.parent, directory)))
    vs = variants(family, n, seed)
    documents = render_variants(family, vs, combined=combined, answers=answers)
    documents[f"{family.name}-key.tex"] = answer_key_tex(family, vs)
    files = [(directory / name, text) for name, text in documents.items()]
    files.append((directory / f"{family.name}-key.csv", answer_key_csv(family, vs)))
    if moodle is not None:
        files.append((moodle, moodle_xml(family, vs)))
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
    return [*(path for path, _ in files), *(compile_pdf(tex) for tex in texs)]


def _same_place(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()
