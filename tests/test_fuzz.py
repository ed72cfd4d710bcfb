"""Property-based fuzzing of the command line (issue 11): mutated bundled specs and hostile
arguments through every verb. Each run ends in exit 0 or 1 with output a strict JSON parser
accepts, or exit 2 with one line; never a traceback, never an internal error, never a file
left half-written, and always within a time bound.

The runs are in-process (``main``), so a hundred of them fit in about a minute."""

import contextlib
import io
import json
import os
import re
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from symprop.cli import main
from example_files import EXAMPLES_DIR

SECONDS_PER_RUN = 40  # the longest any one run may take (the slowest legitimate runs take ~5 s)
SPECS = {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES_DIR.glob("*.toml"))}

HOSTILE_NUMBERS = [
    "1e309", "-1e309", "nan", "inf", "-inf", "0", "-0.0", "1e-320", "1e300", "-1000", "1000",
    "123456789012345678901234567890", "[]", "[1.0, 2.0, 3.0]", "[[1.0]]", '"x"', "{a = 1}", "true",
    "0.1", "-1", "2",
]
HOSTILE_EXPRESSIONS = [
    "x/w", "w/0", "sqrt(-1)", "(-1)**0.5*w", "w**w", "0**w", "exp(exp(exp(exp(w))))", "exp(710)*w",
    "1e309*w", "10**400", "w**1000", "I*w", "log(0)", "sign(w)*w", "max(w)", "relu(w, w, w)",
    "softmax(w)", "g_prime(w)", "maximum(w, w)", "log_softmax(w)", "Derivative(w, w)", "oo", "zoo",
    "nan", "pi*E", "__import__('os')", "lambda: 1", "w.__class__", "ｘ", "φ", "", " ", "\x00",
    "x^2'", r"\hat", "{", "(", "w*" * 300 + "w", "+".join(["w"] * 3000), "sigmoid(" * 120 + "w" + ")" * 120,
    "w" + "**w" * 40, "1" * 400, "w_1_1_1 + w_1_1_1", "Σ", "a\u200bb",
]
HOSTILE_NAMES = ["maximum", "g_prime", "ｘ", "_x", "x y", "1x", "log_softmax", "I", "pi", "E", "u", "sigmoid", "Ω",
                 "x", "w", "t", "h_1", "z_1_1"]


def _mutate(text: str, data) -> str:
    """One to three edits of a spec's text, each chosen by hypothesis."""
    for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 3]), label="edits")):
        lines = text.splitlines()
        # mostly edits that keep the TOML valid, so that most runs reach the verbs' work
        kind = data.draw(_often("number", "number", "string", "string", "name",
                                rare=["delete", "duplicate", "swap", "truncate", "insert"]), label="edit")
        if kind == "number":
            spots = list(re.finditer(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text))
            if spots:
                m = data.draw(st.sampled_from(spots), label="number at")
                text = text[:m.start()] + data.draw(st.sampled_from(HOSTILE_NUMBERS)) + text[m.end():]
        elif kind == "string":
            spots = list(re.finditer(r'"([^"\n]*)"', text))
            if spots:
                m = data.draw(st.sampled_from(spots), label="string at")
                text = text[:m.start()] + json.dumps(data.draw(st.sampled_from(HOSTILE_EXPRESSIONS))) + text[m.end():]
        elif kind == "name":
            names = sorted(set(re.findall(r"\b[a-zA-Z]\w*\b", text)))
            if names:
                old = data.draw(st.sampled_from(names), label="name")
                new = data.draw(st.sampled_from(HOSTILE_NAMES), label="as")
                text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        elif kind in ("delete", "duplicate", "swap") and lines:
            i = data.draw(st.integers(0, len(lines) - 1), label="line")
            j = data.draw(st.integers(0, len(lines) - 1), label="other line")
            if kind == "delete":
                del lines[i]
            elif kind == "duplicate":
                lines.insert(i, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines) + "\n"
        elif kind == "truncate":
            text = text[:data.draw(st.integers(0, len(text)), label="cut at")]
        elif kind == "insert":
            i = data.draw(st.integers(0, len(lines)), label="line")
            lines.insert(i, data.draw(st.text(max_size=20), label="inserted"))
            text = "\n".join(lines) + "\n"
    return text


def _often(*choices, rare=()):
    """A choice among ``choices``, or now and then one of the ``rare`` (hostile) ones."""
    return st.sampled_from(list(choices) * 3 + list(rare))


VERBS = {
    "nodes": ["derive", "solve", "grade", "grad", "check", "step", "flow", "exam", "hvp", "hessian"],
    "layers": ["derive", "solve", "grad", "check", "step", "flow", "hvp"],
    "family": ["exam"],
}


def _kind(text: str) -> str:
    for kind in ("family", "layers"):
        if f"[{kind}" in text:
            return kind
    return "nodes"


def _verb_arguments(data, spec: Path, text: str, out: Path) -> list[str]:
    """A verb that reads this kind of spec, and options for it, some of them hostile."""
    verb = data.draw(st.sampled_from(VERBS[_kind(text)]), label="verb")
    argv = [verb, str(spec)]
    params = sorted(set(re.findall(r"\b[wvbc](?:_\d+)*\b", text))) or ["w"]
    wrt = _often(*params, rare=["nosuch", "ｘ", "E", "w_*", ""])
    if verb == "grade" or (verb in ("derive", "solve") and data.draw(st.booleans(), label="--wrt")):
        argv += ["--wrt", data.draw(wrt, label="wrt")]
    if verb == "derive":
        argv += data.draw(_often([], ["--method", "bottom-up"], ["--method", "paths"], ["--format", "json"],
                                 rare=[["--form", "scalar"], ["--max-paths", "1"], ["--max-paths", "0"]]), label="derive options")
    if verb == "solve":
        argv += data.draw(_often([], ["-o", str(out / "s.tex")], ["--method", "bottom-up"],
                                 rare=[["--fragment"], ["--title", "Ω & -- `x` \\input{/etc/passwd}"],
                                       ["-o", str(spec)], ["-o", str(out)]]), label="solve options")
    if verb == "grade":
        argv += ["--answer", data.draw(st.sampled_from(HOSTILE_EXPRESSIONS + ["0", "x_1*w_2_1_1", "(y - t)*h_1"]),
                                       label="answer"), "--format", "json"]
    if verb in ("grad", "check", "step", "flow"):
        argv += ["--format", "json"]
        argv += data.draw(_often([], rare=[["--bind", "g=tanh"], ["--bind", "g=nosuch"], ["--bind", "g_prime=relu"],
                                           ["--bind", "="], ["--values", str(spec)], ["--values", "/nonexistent"]]),
                          label="numeric options")
    if verb == "check":
        argv += data.draw(_often([], rare=[["--against", f"{params[0]}=exp(710)*{params[0]}"],
                                           ["--against", f"{params[0]}=1e309"], ["--against", f"{params[0]}=sqrt(-1)"],
                                           ["--against", "nosuch=1"]]), label="check options")
    if verb == "step":
        argv += ["--lr", data.draw(_often("0.1", "0.5", rare=["nan", "1e400", "-1", "0", "x"]), label="lr"),
                 "--steps", data.draw(_often("1", "3", rare=["0", "-2", str(2**70)]), label="steps")]
        argv += data.draw(_often([], rare=[["--batch-size", "1"], ["--seed", "-1"], ["--only", "nosuch*"]]), label="step options")
    if verb in ("hvp", "hessian"):
        argv += ["--format", "json"]
    if verb == "hvp":
        pairs = f"{params[0]}=1" + (f",{params[-1]}=-0.5" if len(params) > 1 else "")
        argv += data.draw(_often([], ["--v", "random"], ["--v", pairs],
                                 rare=[["--v", "nosuch=1"], ["--v", f"{params[0]}=1e400"], ["--v", f"{params[0]}=nan"],
                                       ["--v", "/nonexistent"], ["--v", str(spec)], ["--v", "random", "--seed", "-1"]]),
                          label="hvp options")
    if verb == "exam":
        argv += ["-o", str(out / "exam")]
        if _kind(text) == "family":
            argv += ["--variants", data.draw(_often("1", "2", rare=["0", str(2**70)]), label="variants"),
                     "--seed", data.draw(_often("1", "7", rare=["-1", str(2**64)]), label="seed")]
        else:
            argv += ["--wrt", data.draw(wrt, label="wrt")]
    return argv


class RunTooLong(Exception):
    pass


def _run(argv) -> tuple[int, str, str]:
    """``main(argv)`` with its output captured and a hard time bound."""
    def too_long(signum, frame):
        raise RunTooLong(f"{argv} ran past {SECONDS_PER_RUN} s")

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(SECONDS_PER_RUN)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return status, out.getvalue(), err.getvalue()


def _refuse_constant(name):
    raise ValueError(f"{name} in JSON output")


def _assert_clean_ending(argv, status, out, err, out_dir: Path):
    problems = [l for l in err.splitlines() if l and not l.startswith(("symprop: warning:", "symprop: wrote"))]
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    assert status in (0, 1, 2), (argv, status, err)
    if status == 2:
        assert len(problems) == 1 and problems[0].startswith("symprop"), (argv, err)
        # nothing half-written: a failed run leaves no file behind (exam: no temporary file)
        left = [p.name for p in out_dir.rglob("*") if p.is_file()]
        assert not [n for n in left if n.startswith(".") or "tmp" in n], (argv, left)
        if argv[0] == "solve":
            assert not left, (argv, left)
    else:
        assert all(l.startswith("symprop:") for l in problems), (argv, err)
        if "json" in argv:
            json.loads(out, parse_constant=_refuse_constant)


# about a minute in all; SYMPROP_FUZZ_EXAMPLES=2000 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("SYMPROP_FUZZ_EXAMPLES", 600)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(data=st.data())
def test_mutated_specs_through_every_verb(data):
    name = data.draw(st.sampled_from(sorted(SPECS)), label="spec")
    text = _mutate(SPECS[name], data)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = tmp / name
        spec.write_text(text, encoding="utf-8", errors="surrogatepass")
        out = tmp / "out"
        out.mkdir()
        argv = _verb_arguments(data, spec, text, out)
        status, stdout, stderr = _run(argv)
        event(f"{argv[0]} exit {status}")
        _assert_clean_ending(argv, status, stdout, stderr, out)


@FUZZ
@given(data=st.data())
def test_hostile_arguments_through_every_verb(data):
    name = data.draw(st.sampled_from(sorted(SPECS)), label="spec")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        argv = _verb_arguments(data, EXAMPLES_DIR / name, SPECS[name], out)
        # a stray option or value anywhere
        if data.draw(st.booleans(), label="stray"):
            at = data.draw(st.integers(1, len(argv)), label="stray at")
            argv.insert(at, data.draw(st.sampled_from(["--wrt", "--format", "xml", "-o", "--pdf", "--values",
                                                       "--", "-", "\x00", "ｘ", "--lr=1e999"]), label="stray option"))
        status, stdout, stderr = _run(argv)
        event(f"{argv[0]} exit {status}")
        _assert_clean_ending(argv, status, stdout, stderr, out)


@FUZZ
@given(expr=st.sampled_from(HOSTILE_EXPRESSIONS), at=st.sampled_from(["w=0.5", "w=0", "w=-2", "w=1e309", "w=nan", "x=1,w=2", "", "w"]),
       fmt=st.sampled_from(["text", "json"]))
def test_hostile_circuits(expr, at, fmt):
    argv = ["circuit", expr, "--format", fmt] + (["--at", at] if at else [])
    with tempfile.TemporaryDirectory() as tmp:
        status, stdout, stderr = _run(argv)
        event(f"circuit exit {status}")
        _assert_clean_ending(argv, status, stdout, stderr, Path(tmp))


@pytest.mark.parametrize("argv", [["derive"], ["grad", "--format", "json"], ["check", "--format", "json"]])
def test_the_fuzzer_accepts_the_bundled_examples(argv):
    """The fuzz harness itself: each unmutated network example passes it with exit 0."""
    for name in ("seed002_seven_neurons.toml", "custom_functions.toml"):
        full = [argv[0], str(EXAMPLES_DIR / name), *argv[1:]]
        status, stdout, stderr = _run(full)
        assert status == 0, stderr
        _assert_clean_ending(full, status, stdout, stderr, EXAMPLES_DIR)
