"""The files ``-o``, ``--moodle`` and ``--pdf`` write: modes, inputs, symlinks, special
files, long names, missing directories, bad paths among several outputs, and pdflatex that
cannot run. Every refusal is exit status 2 and one line naming the path; every write is
atomic (the old file, or none, after a failure)."""

import argparse
import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from symprop import cli, output
from symprop.cli import main
from symprop.output import LatexError, OutputError, compile_pdf, write_atomic, write_exam

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "seed002_gradient_flow.toml"
FAMILY = ROOT / "examples" / "exam_family.toml"
FAMILY_NAME = "mlp-backprop"
EXAM_FILES = sorted(["variant-0001.tex", "variant-0002.tex", f"{FAMILY_NAME}-key.tex", f"{FAMILY_NAME}-key.csv"])


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.toml"
    shutil.copyfile(SPEC, path)
    return path


@pytest.fixture
def family(tmp_path):
    path = tmp_path / "family.toml"
    shutil.copyfile(FAMILY, path)
    return path


@pytest.fixture
def umask():
    """Set the umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def run(capsys, *argv):
    """The exit status and stderr of ``symprop ARGV``."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def refused(capsys, *argv):
    """Run a command that must be refused: exit status 2 and one line on stderr."""
    status, err = run(capsys, *argv)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("symprop: ")
    return lines[0]


def solve(spec, *more):
    return ["solve", spec, "--wrt", "w_6", *more]


def family_exam(family, *more):
    return ["exam", family, "--variants", "2", *more]


def temporaries(*directories):
    return [p for d in directories for p in Path(d).iterdir() if p.name.endswith(".tmp")]


def snapshot(directory):
    """Every path under ``directory`` with its bytes (None for anything but a file)."""
    return {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(Path(directory).rglob("*"))}


# -- 1. modes ---------------------------------------------------------------------------

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_0666_less_the_umask(tmp_path, capsys, spec, umask, mask, mode):
    umask(mask)
    out = tmp_path / "new.tex"
    assert run(capsys, *solve(spec, "-o", out))[0] == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert out.read_text().startswith("\\documentclass")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o664, 0o444])
def test_an_existing_file_keeps_its_mode(tmp_path, capsys, spec, umask, mode):
    umask(0o022)
    out = tmp_path / "old.tex"
    out.write_text("old")
    os.chmod(out, mode)
    assert run(capsys, *solve(spec, "-o", out))[0] == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert out.read_text().startswith("\\documentclass")
    assert temporaries(tmp_path) == []


def test_the_exam_files_get_0666_less_the_umask(tmp_path, capsys, family, umask):
    umask(0o027)
    out = tmp_path / "exam"
    keep = tmp_path / "quiz.xml"
    keep.write_text("old")
    os.chmod(keep, 0o604)
    assert run(capsys, *family_exam(family, "-o", out, "--moodle", keep))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == EXAM_FILES
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in out.iterdir()} == {0o640}
    assert stat.S_IMODE(os.stat(keep).st_mode) == 0o604 and keep.read_text().startswith("<?xml")


def test_write_atomic_modes_directly(tmp_path, umask):
    umask(0o002)
    assert stat.S_IMODE(os.stat(write_atomic(tmp_path / "a.txt", "a")).st_mode) == 0o664
    os.chmod(tmp_path / "a.txt", 0o600)
    assert stat.S_IMODE(os.stat(write_atomic(tmp_path / "a.txt", ["b", "c"])).st_mode) == 0o600
    assert (tmp_path / "a.txt").read_text() == "bc"


# -- 2. an input is never an output ----------------------------------------------------------

def test_solve_refuses_to_overwrite_its_spec(tmp_path, capsys, spec):
    before = spec.read_bytes()
    line = refused(capsys, *solve(spec, "-o", spec))
    assert line == f"symprop: -o {spec}: this is the input spec; choose another file"
    assert spec.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [spec]


def test_the_spec_is_recognised_by_another_name(tmp_path, capsys, spec, monkeypatch):
    before = spec.read_bytes()
    link = tmp_path / "link.toml"
    link.symlink_to(spec.name)
    hard = tmp_path / "hard.toml"
    os.link(spec, hard)
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    for other in (link, hard, "../spec.toml", f"{tmp_path}/./sub/../spec.toml"):
        line = refused(capsys, *solve(spec, "-o", other))
        assert f"-o {other}: this is the input spec" in line
    assert spec.read_bytes() == before and link.is_symlink()
    # exam (a single question) checks the same way
    line = refused(capsys, "exam", spec, "--wrt", "w_6", "-o", spec)
    assert f"-o {spec}: this is the input spec" in line
    assert spec.read_bytes() == before


def test_the_pdf_may_not_overwrite_the_spec_either(tmp_path, capsys):
    spec = tmp_path / "spec.pdf"  # an odd name, but the PDF of spec.tex would be it
    shutil.copyfile(SPEC, spec)
    before = spec.read_bytes()
    line = refused(capsys, *solve(spec, "-o", tmp_path / "spec.tex", "--pdf"))
    assert "spec.pdf would overwrite the input spec" in line
    assert spec.read_bytes() == before and not (tmp_path / "spec.tex").exists()


def test_an_exam_family_refuses_to_overwrite_its_spec(tmp_path, capsys, family):
    before = family.read_bytes()
    line = refused(capsys, *family_exam(family, "-o", tmp_path / "exam", "--moodle", family))
    assert line == f"symprop: --moodle {family}: this is the input spec; choose another file"
    line = refused(capsys, *family_exam(family, "-o", family))
    assert f"-o {family}: this is the input spec" in line
    assert family.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [family]


def test_an_exam_family_refuses_to_overwrite_its_spec_among_its_files(tmp_path, capsys):
    family = tmp_path / "variant-0002.tex"  # the family file has the name of a variant
    shutil.copyfile(FAMILY, family)
    before = family.read_bytes()
    line = refused(capsys, *family_exam(family, "-o", tmp_path))
    assert f"the exam would overwrite the input spec, {family}" in line
    assert family.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [family]


def test_the_values_file_is_an_input_too(tmp_path, spec):
    values = tmp_path / "values.toml"
    values.write_text("w_6 = 0.1\n")
    args = argparse.Namespace(spec=str(spec), values=str(values))
    assert cli._input_file(args, values) == "the --values file"
    assert cli._input_file(args, spec) == "the input spec"
    assert cli._input_file(args, tmp_path / "out.tex") is None
    # a verb without a spec or --values (circuit) has no inputs to protect
    assert cli._input_file(argparse.Namespace(), spec) is None


# -- 3. symlinks and special files ------------------------------------------------------------

def test_a_symlink_is_followed_and_stays_a_symlink(tmp_path, capsys, spec, umask):
    umask(0o022)
    real = tmp_path / "real"
    real.mkdir()
    target = real / "solution.tex"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.tex"
    link.symlink_to(Path("real") / "solution.tex")
    assert run(capsys, *solve(spec, "-o", link))[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "solution.tex")
    assert target.read_text().startswith("\\documentclass")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert temporaries(tmp_path, real) == []


def test_a_chain_of_symlinks_and_a_dangling_one(tmp_path, capsys, spec):
    target = tmp_path / "target.tex"
    first = tmp_path / "first.tex"
    second = tmp_path / "second.tex"
    first.symlink_to(second)
    second.symlink_to(target)  # dangling until written
    assert run(capsys, *solve(spec, "-o", first))[0] == 0
    assert first.is_symlink() and second.is_symlink()
    assert target.read_text().startswith("\\documentclass")


def test_a_symlink_into_a_missing_directory_is_refused(tmp_path, capsys, spec):
    link = tmp_path / "link.tex"
    link.symlink_to(tmp_path / "gone" / "x.tex")
    line = refused(capsys, *solve(spec, "-o", link))
    assert f"cannot write {link}" in line and "gone" in line and "does not exist" in line
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_a_symlink_loop_is_refused(tmp_path, capsys, spec):
    a, b = tmp_path / "a.tex", tmp_path / "b.tex"
    a.symlink_to(b)
    b.symlink_to(a)
    line = refused(capsys, *solve(spec, "-o", a))
    assert f"cannot write {a}" in line
    assert a.is_symlink() and b.is_symlink()


def test_a_fifo_is_refused_and_stays_a_fifo(tmp_path, capsys, spec):
    fifo = tmp_path / "pipe.tex"
    os.mkfifo(fifo)
    line = refused(capsys, *solve(spec, "-o", fifo))
    assert line == f"symprop: cannot write {fifo}: it is a FIFO, not a regular file"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    # circuit writes through the same path, without a spec
    line = refused(capsys, "circuit", "(x + y)*z", "--at", "x=1,y=2,z=3", "-o", fifo)
    assert f"cannot write {fifo}: it is a FIFO" in line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and temporaries(tmp_path) == []


def test_a_directory_is_refused(tmp_path, capsys, spec):
    directory = tmp_path / "dir.tex"
    directory.mkdir()
    line = refused(capsys, *solve(spec, "-o", directory))
    assert line == f"symprop: cannot write {directory}: it is a directory, not a regular file"
    assert directory.is_dir() and list(directory.iterdir()) == []


def test_a_symlink_to_a_fifo_is_refused(tmp_path, capsys, spec):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.tex"
    link.symlink_to(fifo)
    line = refused(capsys, *solve(spec, "-o", link))
    assert f"cannot write {link}: it is a FIFO" in line
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_is_refused(capsys, spec):
    line = refused(capsys, *solve(spec, "-o", "/dev/null"))
    assert line == "symprop: cannot write /dev/null: it is a character device, not a regular file"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_the_pdf_next_to_the_tex_may_not_be_a_fifo(tmp_path, capsys, spec):
    os.mkfifo(tmp_path / "s.pdf")
    line = refused(capsys, *solve(spec, "-o", tmp_path / "s.tex", "--pdf"))
    assert f"cannot write {tmp_path / 's.pdf'}: it is a FIFO" in line
    assert not (tmp_path / "s.tex").exists()


def test_write_atomic_refuses_special_files(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="it is a FIFO"):
        write_atomic(fifo, "x")
    with pytest.raises(OutputError, match="it is a directory"):
        write_atomic(tmp_path, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(tmp_path.iterdir()) == [fifo]


# -- 4. long names ------------------------------------------------------------------------

@pytest.mark.parametrize("length", [250, 255])
def test_a_long_file_name_works(tmp_path, capsys, spec, length):
    out = tmp_path / ("a" * (length - 4) + ".tex")
    assert len(out.name) == length
    status, err = run(capsys, *solve(spec, "-o", out))
    assert status == 0, err
    assert out.read_text().startswith("\\documentclass")
    assert temporaries(tmp_path) == []


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys, spec):
    out = tmp_path / ("a" * 300 + ".tex")
    line = refused(capsys, *solve(spec, "-o", out))
    assert f"cannot write {out}" in line
    assert sorted(tmp_path.iterdir()) == [spec]


# -- 5. every output path is checked before any is written ------------------------------------

def test_a_bad_moodle_path_writes_nothing(tmp_path, capsys, family):
    before = snapshot(tmp_path)
    bad = tmp_path / "nodir" / "quiz.xml"
    line = refused(capsys, *family_exam(family, "-o", tmp_path / "exam", "--moodle", bad))
    assert line == f"symprop: cannot write {bad}: the directory {bad.parent} does not exist"
    assert ".tmp" not in line
    assert snapshot(tmp_path) == before  # not even the directory for -o


def test_a_bad_moodle_path_leaves_an_existing_exam_as_it_was(tmp_path, capsys, family, monkeypatch):
    exam = tmp_path / "exam"
    exam.mkdir()
    (exam / "variant-0001.tex").write_text("old")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, *family_exam(family, "-o", "exam", "--moodle", "nodir/quiz.xml"))
    assert line == "symprop: cannot write nodir/quiz.xml: the directory nodir does not exist"  # as given
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["fifo", "directory", "a variant"])
def test_a_moodle_path_that_is_not_a_new_file_writes_nothing(tmp_path, capsys, family, kind):
    exam = tmp_path / "exam"
    if kind == "fifo":
        moodle = tmp_path / "quiz.xml"
        os.mkfifo(moodle)
        message = f"cannot write {moodle}: it is a FIFO, not a regular file"
    elif kind == "directory":
        moodle = tmp_path / "quiz.xml"
        moodle.mkdir()
        message = f"cannot write {moodle}: it is a directory, not a regular file"
    else:
        moodle = exam / "variant-0001.tex"
        message = f"cannot write {moodle}: the exam writes a file of that name already"
    before = snapshot(tmp_path)
    assert refused(capsys, *family_exam(family, "-o", exam, "--moodle", moodle)) == f"symprop: {message}"
    assert snapshot(tmp_path) == before


def test_a_special_file_among_the_exam_files_writes_nothing(tmp_path, capsys, family):
    exam = tmp_path / "exam"
    exam.mkdir()
    os.mkfifo(exam / "variant-0002.tex")
    before = snapshot(tmp_path)
    line = refused(capsys, *family_exam(family, "-o", exam, "--moodle", tmp_path / "quiz.xml"))
    assert line == f"symprop: cannot write {exam / 'variant-0002.tex'}: it is a FIFO, not a regular file"
    assert snapshot(tmp_path) == before


def test_an_exam_directory_that_is_a_file_is_one_line(tmp_path, capsys, family):
    (tmp_path / "exam").write_text("a file")
    before = snapshot(tmp_path)
    line = refused(capsys, *family_exam(family, "-o", tmp_path / "exam"))
    assert f"cannot write to {tmp_path / 'exam'}" in line and "not a directory" in line
    line = refused(capsys, *family_exam(family, "-o", tmp_path / "exam" / "sub"))
    assert f"cannot write to {tmp_path / 'exam' / 'sub'}" in line and "not a directory" in line
    assert snapshot(tmp_path) == before


def test_the_moodle_file_may_go_into_the_new_exam_directory(tmp_path, capsys, family):
    exam = tmp_path / "a" / "b"  # made, parents too
    status, err = run(capsys, *family_exam(family, "-o", exam, "--moodle", exam / "quiz.xml"))
    assert status == 0, err
    assert sorted(p.name for p in exam.iterdir()) == sorted(EXAM_FILES + ["quiz.xml"])
    assert temporaries(exam) == []


def test_a_failed_write_names_the_given_path_and_places_nothing(tmp_path, capsys, family, monkeypatch):
    exam = tmp_path / "exam"
    exam.mkdir()
    (exam / "variant-0001.tex").write_text("old")

    def full(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src, dst)

    monkeypatch.setattr(output.os, "replace", full)
    line = refused(capsys, *family_exam(family, "-o", exam))
    monkeypatch.undo()
    assert line == f"symprop: cannot write to {exam / 'variant-0001.tex'}: {os.strerror(errno.ENOSPC)}"
    assert sorted(p.name for p in exam.iterdir()) == ["variant-0001.tex"]  # no temporary files
    assert (exam / "variant-0001.tex").read_text() == "old"


def test_a_failed_write_into_a_new_directory_leaves_no_directory(tmp_path, capsys, family, monkeypatch):
    def full(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src, dst)

    monkeypatch.setattr(output.os, "replace", full)
    refused(capsys, *family_exam(family, "-o", tmp_path / "exam"))
    monkeypatch.undo()
    assert sorted(tmp_path.iterdir()) == [tmp_path / "family.toml"]


def test_write_exam_calls_check_before_writing(tmp_path, family):
    from symprop.spec import load

    seen = []

    def check(path):
        seen.append(Path(path))
        if path.name == f"{FAMILY_NAME}-key.csv":
            raise ValueError("no")

    with pytest.raises(ValueError):
        write_exam(load(family), 2, 0, tmp_path / "exam", moodle=tmp_path / "quiz.xml", check=check)
    assert seen[0] == tmp_path / "quiz.xml" and seen[-1].name == f"{FAMILY_NAME}-key.csv"
    assert sorted(tmp_path.iterdir()) == [family]


# -- 6. missing directories ---------------------------------------------------------------

def test_a_missing_output_directory_is_one_line(tmp_path, capsys, spec, monkeypatch):
    out = tmp_path / "missing" / "x.tex"
    line = refused(capsys, *solve(spec, "-o", out))
    assert line == f"symprop: cannot write {out}: the directory {out.parent} does not exist"
    assert not out.parent.exists()
    monkeypatch.chdir(tmp_path)  # named as given, relative
    line = refused(capsys, "exam", spec, "--wrt", "w_6", "-o", "missing/deeper/x.tex")
    assert line == "symprop: cannot write missing/deeper/x.tex: the directory missing/deeper does not exist"
    assert sorted(tmp_path.iterdir()) == [spec]


def test_a_file_in_place_of_the_directory_is_one_line(tmp_path, capsys, spec):
    out = spec / "x.tex"
    line = refused(capsys, *solve(spec, "-o", out))
    assert line == f"symprop: cannot write {out}: {spec} is a file, not a directory"


@pytest.mark.skipif(getattr(os, "geteuid", lambda: -1)() == 0, reason="root may write into any directory")
def test_a_read_only_directory_is_one_line(tmp_path, capsys, spec):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = refused(capsys, *solve(spec, "-o", locked / "x.tex"))
        assert line == f"symprop: cannot write {locked / 'x.tex'}: the directory {locked} is not writable"
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


# -- 7. --pdf: pdflatex that cannot run ---------------------------------------------------

@pytest.fixture
def tex_installed(monkeypatch):
    """pdflatex looks installed, whether it is or not."""
    monkeypatch.setattr(output.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")


@pytest.mark.parametrize("error", [
    PermissionError(errno.EACCES, "Permission denied", "pdflatex"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "pdflatex"),
    OSError(errno.EAGAIN, "Resource temporarily unavailable"),
], ids=["permission", "vanished", "no processes"])
def test_pdflatex_that_cannot_run_is_a_latex_error(tmp_path, capsys, spec, monkeypatch, tex_installed, error):
    def cannot(*args, **kwargs):
        raise error

    monkeypatch.setattr(output.subprocess, "run", cannot)
    tex = write_atomic(tmp_path / "x.tex", "\\documentclass{article}\\begin{document}x\\end{document}\n")
    with pytest.raises(LatexError, match="cannot run pdflatex on .*x.tex: "):
        compile_pdf(tex)
    status, err = run(capsys, *solve(spec, "-o", tmp_path / "s.tex", "--pdf"))
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("symprop: cannot run pdflatex on ") and error.strerror in err
    assert (tmp_path / "s.tex").read_text().startswith("\\documentclass")


def test_a_latex_timeout_and_no_tex_are_one_line(tmp_path, capsys, spec, monkeypatch, tex_installed):
    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(output.subprocess, "run", slow)
    status, err = run(capsys, *solve(spec, "-o", tmp_path / "s.tex", "--pdf"))
    assert status == 1 and len(err.strip().splitlines()) == 1 and "took longer than" in err
    monkeypatch.setattr(output.shutil, "which", lambda cmd: None)
    status, err = run(capsys, *solve(spec, "-o", tmp_path / "s.tex", "--pdf"))
    assert status == 1 and len(err.strip().splitlines()) == 1 and "install TeX Live" in err


def test_an_exam_family_pdf_that_cannot_run_is_one_line(tmp_path, capsys, family, monkeypatch, tex_installed):
    def cannot(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "latexmk")

    monkeypatch.setattr(output.subprocess, "run", cannot)
    status, err = run(capsys, *family_exam(family, "-o", tmp_path / "exam", "--pdf"))
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "cannot run pdflatex" in err and "Permission denied" in err
    assert sorted(p.name for p in (tmp_path / "exam").iterdir()) == EXAM_FILES  # the LaTeX is written


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_pdf_through_a_symlink_lands_next_to_the_file(tmp_path, capsys, spec):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "s.tex"
    link.symlink_to(real / "s.tex")
    status, err = run(capsys, *solve(spec, "-o", link, "--pdf"))
    assert status == 0, err
    assert link.is_symlink() and (real / "s.pdf").stat().st_size > 1000
