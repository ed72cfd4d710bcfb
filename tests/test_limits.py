"""Every bound of symprop.limits: listed in README with its default, changeable from the
environment and from Python, and named by the message of the run that reaches it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from symprop import limits
from symprop.cli import main
from symprop.derive import derive
from symprop.spec import from_text

ROOT = Path(__file__).resolve().parent.parent
SYMPROP = Path(sys.executable).parent / "symprop"
SETTINGS = sorted(n for n in vars(limits) if n.isupper() and n != "INVALID")


def _shown(value):
    return f"{value:,}" if isinstance(value, int) else f"{value:g}".replace("e+", "e")


def test_readme_lists_every_limit_with_its_default():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Limits"):readme.index("## Examples")]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M))
    assert sorted(rows) == SETTINGS
    for name in SETTINGS:
        assert rows[name].strip() == _shown(getattr(limits, name)), name


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


NETWORK = """
[network]
inputs = ["x"]
params = ["w_1", "w_2", "w_3"]
loss = "E"
[nodes]
h_1 = "tanh(w_1*x)"
h_2 = "tanh(w_2*h_1)"
E = "(w_3*h_2 + h_1)**2"
[values]
x = 0.5
w_1 = 0.1
w_2 = 0.2
w_3 = 0.3
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(NETWORK)
    return path


@pytest.mark.parametrize("name, value, argv", [
    ("MAX_EXPRESSION_LENGTH", 10, ["circuit", "x*y + x*y + x*y", "--at", "x=1,y=2"]),
    ("MAX_NESTING", 2, ["circuit", "sigmoid(sigmoid(sigmoid(sigmoid(x))))", "--at", "x=1"]),
    ("MAX_LITERAL_DIGITS", 3, ["circuit", "1234*x", "--at", "x=1"]),
    ("MAX_EXPONENT", 3, ["circuit", "x**4", "--at", "x=1"]),
    ("MAX_NUMBER_BITS", 8, ["circuit", "x*2**20", "--at", "x=1"]),
    ("MAX_TOWER", 2, ["circuit", "x**x**x", "--at", "x=1"]),
    ("MAX_GATES", 3, ["circuit", "x*y + x*y*x + y", "--at", "x=1,y=2"]),
    ("MAX_STEPS", 5, ["derive", "{spec}"]),
    ("MAX_CHECKED_PARAMS", 2, ["check", "{spec}"]),
    ("MAX_DESCENT_STEPS", 5, ["step", "{spec}", "--lr", "0.1", "--steps", "6"]),
    ("MAX_VARIANTS", 1, ["exam", ROOT / "examples" / "exam_family.toml", "--variants", "2", "-o", "{tmp}"]),
    ("MAX_LAYERS_SCALAR_NUMBERS", 10, ["check", ROOT / "examples" / "swish_layers.toml"]),
    ("MAX_SCALAR_PARAMS", 10, ["derive", ROOT / "examples" / "swish_layers.toml", "--form", "scalar"]),
])
def test_a_limit_reached_is_one_line_naming_it(name, value, argv, spec, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(limits, name, value)
    argv = [str(a).replace("{spec}", str(spec)).replace("{tmp}", str(tmp_path / "exam")) for a in argv]
    status, _, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert f"{name} = {_shown(value)}; set SYMPROP_{name} to change it" in lines[0], lines[0]


@pytest.mark.parametrize("name, value, form", [
    ("MAX_PATHS", 1, "paths"), ("MAX_PATH_FACTORS", 3, "paths"), ("MAX_SUBSTITUTED_SIZE", 5, "substituted"),
])
def test_a_form_past_its_limit_is_left_out_with_a_note(name, value, form, spec, monkeypatch):
    net = from_text(NETWORK).network
    assert getattr(derive(net, "w_1"), form) is not None  # within the defaults: there
    monkeypatch.setattr(limits, name, value)
    d = derive(net, "w_1")
    assert getattr(d, form) is None
    assert any(name in note or "max_paths" in note for note in d.notes), d.notes


def test_a_document_past_its_limit_notes_the_steps_left_out(spec, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(limits, "MAX_DOCUMENT_STEPS", 2)
    status, out, _ = _run(["solve", spec, "--wrt", "w_1"], capsys)
    assert status == 0
    assert (r"The individual steps are left out: its 9 steps are too many to print (MAX\_DOCUMENT\_STEPS = 2; "
            r"set SYMPROP\_MAX\_DOCUMENT\_STEPS to change it)") in out


def test_printing_past_its_limit_says_so(monkeypatch):
    from symprop.printing import text
    import sympy as sp

    x = sp.Symbol("x")
    monkeypatch.setattr(limits, "MAX_PRINTED", 5)
    assert text(sp.sin(x) + x**2 + x).startswith("<an expression of ")


def test_environment_settings_change_a_limit_and_bad_ones_are_refused(tmp_path):
    env = dict(os.environ, SYMPROP_MAX_NESTING="3")
    done = subprocess.run([str(SYMPROP), "circuit", "tanh(tanh(tanh(x)))", "--at", "x=1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "MAX_NESTING = 3; set SYMPROP_MAX_NESTING" in done.stderr
    env = dict(os.environ, SYMPROP_MAX_NESTING="lots")
    done = subprocess.run([str(SYMPROP), "circuit", "x", "--at", "x=1"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "symprop: SYMPROP_MAX_NESTING='lots': a limit is a positive number"


def test_check_only_checks_the_matching_parameters_within_the_limit(spec, monkeypatch, capsys):
    import json
    monkeypatch.setattr(limits, "MAX_CHECKED_PARAMS", 2)
    status, out, err = _run(["check", spec, "--only", "w_[12]", "--format", "json"], capsys)
    assert status == 0, err
    assert sorted(json.loads(out)["parameters"]) == ["w_1", "w_2"]
    status, _, err = _run(["check", spec, "--only", "v_*"], capsys)
    assert status == 2 and "--only 'v_*' matches no parameter (parameters: w_1, w_2, w_3)" in err, err
