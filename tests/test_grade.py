"""Answer checking: equivalent forms of the right answer are accepted, each typical mistake
is named, nothing a student types is executed."""

import json
import signal
import sys
import time
from pathlib import Path

import pytest
import sympy as sp

from symprop import Network, derive, functions as F, limits, sigmoid
from symprop.cli import main
from symprop.exam import variants
from symprop.grade import grade as grade_expression
from symprop.printing import spec_string
from symprop.spec import SpecError, family_from_text, load_spec, parse_expression

ROOT = Path(__file__).resolve().parent.parent
SEVEN = ROOT / "examples" / "seed002_seven_neurons.toml"

x, t, w, h, E = sp.symbols("x t w h E")
NET = Network({h: sigmoid(w * x), E: (t - h) ** 2 / 2}, loss=E, params=[w], inputs=[x], targets=[t])


def grade(net, wrt, answer, *, functions=None, symbols=None):
    """Grade the text ``answer``: read by the safe parser first, as the CLI does."""
    symbols = symbols if symbols is not None else {s.name: s for s in net.symbols}
    return grade_expression(net, wrt, parse_expression(answer, symbols, functions, where="answer"))


def test_the_reference_is_sympys_derivative():
    result = grade(NET, "w", "0")
    loss = F.explicit(((t - sigmoid(w * x)) ** 2 / 2))
    expected = F.explicit(result.expected.xreplace({h: sigmoid(w * x)}))
    point = {x: 0.3, t: 0.9, w: -1.2}
    assert float(expected.subs(point)) == pytest.approx(float(sp.diff(loss, w).subs(point)), rel=1e-12)


@pytest.mark.parametrize("answer", [
    "(h - t)*h*(1 - h)*x",  # in node outputs, as the texts write it
    "x*sigmoid(w*x)*(1 - sigmoid(w*x))*(sigmoid(w*x) - t)",  # factored, in the weights
    "-x*sigmoid(w*x)**3 + x*sigmoid(w*x)**2 - t*x*sigmoid(w*x) + t*x*sigmoid(w*x)**2",  # expanded
    "x*exp(-w*x)/(1 + exp(-w*x))**2*(1/(1 + exp(-w*x)) - t)",  # sigma' written out
    "-x*h*(h - 1)*(h - t)",
])
def test_equivalent_forms_are_right(answer):
    result = grade(NET, "w", answer)
    assert result.correct and result.mistake is None, result.message()
    assert result.message().startswith("right:")


def test_simple_forms_are_proved_symbolically():
    assert grade(NET, w, "(h - t)*h*(1 - h)*x").how == "symbolic"
    assert grade(NET, w, "-x*h**3 + x*h**2 - t*x*h + t*x*h**2").how == "symbolic"


@pytest.mark.parametrize("answer, kind", [
    ("(t - h)*h*(1 - h)*x", "sign"),
    ("(h - t)*x", "missing-derivative"),
    ("(h - t)*(w*x)*(1 - w*x)*x", "pre-activation"),  # z(1 - z) with z := u = w x
    ("(h - t)*sigmoid(h)*(1 - sigmoid(h))*x", "output-for-input"),  # sigma' at the output
])
def test_each_typical_mistake_is_named(answer, kind):
    result = grade(NET, "w", answer)
    assert not result.correct and result.mistake.kind == kind
    assert result.message().startswith("wrong:") and result.mistake.label in result.message()


def test_an_unknown_mistake_is_wrong_without_a_name():
    result = grade(NET, "w", "(h - t)*h*x")
    assert not result.correct and result.mistake is None and result.matches == ()
    assert "none of the typical mistakes" in result.message()


# -- seed 002's network with a generic g ---------------------------------------------------

def seven_right(k_terms=(1, 2, 3), prime_5="g_prime(w_5_6*z_6 + w_5_7*z_7)"):
    terms = [
        f"(softmax([z_1, z_2, z_3], {k}) - y_{k})*g_prime(w_{k}_4*z_4 + w_{k}_5*z_5)*w_{k}_5" for k in k_terms
    ]
    return f"({' + '.join(terms)})*{prime_5}*z_7"


def grade_seven(answer):
    spec = load_spec(SEVEN)
    return grade(spec.network, "w_5_7", answer, functions=spec.functions, symbols=spec.symbols)


def test_seed002_right_in_node_names_and_expanded():
    assert grade_seven(seven_right()).correct
    spec = load_spec(SEVEN)
    from symprop.spec import parse_expression

    expanded = sp.expand(parse_expression(seven_right(), spec.symbols, spec.functions))
    assert grade_seven(spec_string(expanded)).correct


def test_seed002_mistakes_are_named():
    dropped = grade_seven(seven_right(k_terms=(1, 3)))
    assert dropped.mistake.kind == "dropped-path" and sp.Symbol("z_2") in dropped.mistake.path
    missing = grade_seven(seven_right(prime_5="1"))
    assert missing.mistake.kind == "missing-derivative" and str(missing.mistake.node) == "z_5"
    output = grade_seven(seven_right(prime_5="g_prime(z_5)"))
    assert output.mistake.kind == "output-for-input" and str(output.mistake.node) == "z_5"


# -- every distractor of generated variants is recognised -----------------------------------

def test_grade_names_the_mistake_behind_every_distractor():
    fam = family_from_text("""
[family]
options = 4
wrt = ["w_1_*", "w_2_*"]
[family.layered]
sizes = [[2, 2, 2, 1], [2, 2, 2]]
hidden = ["sigmoid", "tanh", "relu"]
output = ["sigmoid", "identity"]
""", "fam.toml")
    kinds = set()
    for v in variants(fam, 5, seed=3):
        right = grade(v.network, v.wrt, spec_string(derive(v.network, v.wrt).substituted))
        assert right.correct
        for o in v.wrong_options:
            result = grade(v.network, v.wrt, spec_string(o.mistake.expr))
            assert not result.correct and o.mistake in result.matches, (v.index, o.mistake.label)
            kinds.add(o.mistake.kind)
    assert {"sign", "missing-derivative", "transpose", "dropped-path"} <= kinds


# -- safety and errors ---------------------------------------------------------------------

@pytest.mark.parametrize("answer, problem", [
    ("__import__('os').system('true')", "not allowed"),
    ("x.__class__", "attribute access is not allowed"),
    ("q*x", "unknown symbol 'q'"),
    ("(h - t", "syntax error"),
])
def test_answers_are_parsed_safely(answer, problem):
    with pytest.raises(SpecError) as err:
        grade(NET, "w", answer)
    assert str(err.value).startswith("answer: ") and problem in str(err.value)


def test_cli_exit_status_and_json(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[network]\ninputs = ["x"]\ntargets = ["t"]\nparams = ["w"]\nloss = "E"\n'
                    '[nodes]\nh = "sigmoid(w*x)"\nE = "(t - h)**2/2"\n')
    assert main(["grade", str(spec), "--wrt", "w", "--answer", "(h - t)*h*(1 - h)*x"]) == 0
    assert capsys.readouterr().out.startswith("right:")
    assert main(["grade", str(spec), "--wrt", "w", "--answer=-(h - t)*h*(1 - h)*x", "--format", "json"]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["correct"] is False and record["mistake"]["kind"] == "sign"
    assert record["expected"] == "h*x*(1 - h)*(h - t)"
    assert main(["grade", str(spec), "--wrt", "w", "--answer", "(h - t"]) == 2
    assert main(["grade", str(spec), "--wrt", "v", "--answer", "x"]) == 2
    assert "--wrt v" in capsys.readouterr().err


# -- hostile and disguised answers through the command line (issue 13, item 7) --------------


FLOW = ROOT / "examples" / "seed002_gradient_flow.toml"
RIGHT = "(z_1 - t)*(1 - z_1**2)*z_2"  # dL/dw_1_2 of seed002_gradient_flow.toml in node names
WALL = 60  # seconds before a case counts as hung (generous: the cases take about a second)


class _Hung(Exception):
    pass


def _alarm(signum, frame):
    raise _Hung(f"grade ran past {WALL} s")


def cli_grade(answer, capsys, wrt="w_1_2"):
    """``symprop grade FLOW --wrt w_1_2 --answer=ANSWER``: (status, stdout, stderr), failing
    (not hanging) when it runs past WALL seconds."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(WALL)
    try:
        status = main(["grade", str(FLOW), "--wrt", wrt, f"--answer={answer}"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line(err, *parts):
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("symprop: "), err
    for part in parts:
        assert part in err, err


def test_the_flow_example_is_what_the_cases_assume():
    spec = load_spec(FLOW)
    net = spec.network
    assert str(net.nodes[sp.Symbol("z_1")]) == "tanh(b + w_1_2*z_2 + w_1_3*z_3)"
    assert str(net.nodes[sp.Symbol("L")]) == "(t - z_1)**2/2"
    assert grade(net, "w_1_2", RIGHT, symbols=spec.symbols).how == "symbolic"


@pytest.mark.parametrize("answer", [
    "exp(exp(exp(exp(10))))", "exp(exp(exp(exp(exp(1)))))", "exp(exp(exp(exp(exp(w_6)))))",
    f"{RIGHT} + exp(exp(7))*z_3",
])
def test_a_huge_answer_is_wrong_at_once(answer, capsys):
    # its value is known to be past MAX_MAGNITUDE, the gradient's is below 1: surely wrong
    status, out, err = cli_grade(answer, capsys)
    assert status == 1 and out.startswith("wrong:") and err == "", (out, err)


def test_a_right_answer_in_disguise_is_right(capsys):
    disguise = f"{RIGHT} + (z_1+z_2)**500*(z_1-z_2)**500 - (z_1**2-z_2**2)**500"
    status, out, err = cli_grade(disguise, capsys)
    assert status == 0 and out.startswith("right:") and err == "", (out, err)
    assert "random points" in out  # too large to expand: decided by evaluation


def test_a_right_answer_with_cancelling_huge_terms_is_right(capsys):
    # node values are bounded at the precision of the answer, so z_1 and its definition
    # cancel exactly even times exp(600)
    answer = f"{RIGHT} + exp(600)*(z_1 - tanh(w_1_2*z_2 + w_1_3*z_3 + b))"
    status, out, _ = cli_grade(answer, capsys)
    assert status == 0 and out.startswith("right:")
    answer = f"{RIGHT} + exp(600)*((z_1+z_2)**10 - (z_1**2 + 2*z_1*z_2 + z_2**2)**5)"
    status, out, _ = cli_grade(answer, capsys)
    assert status == 0 and "random points" in out


@pytest.mark.parametrize("term", ["1e-12*z_3", "1e-18*z_3", "1e-12", "1e-12*exp(z_3)"])
def test_a_tiny_added_term_is_wrong(term, capsys):
    status, out, err = cli_grade(f"{RIGHT} + {term}", capsys)
    assert status == 1 and out.startswith("wrong:") and err == "", (out, err)


@pytest.mark.parametrize("answer", [
    "(z_1 - t)*sech(w_1_2*z_2 + w_1_3*z_3 + b)**2*z_2",
    "(z_1 - t)*z_2/cosh(w_1_2*z_2 + w_1_3*z_3 + b)**2",
    "(z_1 - t)*(1 - (sinh(w_1_2*z_2 + w_1_3*z_3 + b)/cosh(w_1_2*z_2 + w_1_3*z_3 + b))**2)*z_2",
])
def test_hyperbolic_forms_of_tanh_prime_are_right(answer, capsys):
    status, out, err = cli_grade(answer, capsys)
    assert status == 0 and out.startswith("right:") and err == "", (out, err)


def test_sech_squared_is_proved_symbolically():
    spec = load_spec(FLOW)
    answer = "(z_1 - t)*sech(w_1_2*z_2 + w_1_3*z_3 + b)**2*z_2"
    result = grade(spec.network, "w_1_2", answer, symbols=spec.symbols, functions=spec.functions)
    assert result.correct and result.how == "symbolic"


def test_a_wrong_answer_is_wrong_and_named(capsys):
    status, out, _ = cli_grade("(t - z_1)*(1 - z_1**2)*z_2", capsys)
    assert status == 1 and "sign error" in out
    status, out, _ = cli_grade("log(z_1 - 5)", capsys)  # undefined where the gradient is defined
    assert status == 1 and out.startswith("wrong:")


def test_an_answer_that_cannot_be_decided_is_exit_2_naming_the_limit(capsys):
    # right, but a factor past MAX_MAGNITUDE times a difference that is zero: the bounds
    # cannot tell, and expanding a 10th power is past MAX_EXPANDED_POWER
    answer = f"{RIGHT} + exp(exp(7))*((z_1+z_2)**10 - (z_1**2 + 2*z_1*z_2 + z_2**2)**5)"
    status, out, err = cli_grade(answer, capsys)
    assert status == 2 and out == ""
    assert_one_line(err, "could not decide", "MAX_MAGNITUDE = 1e300", "SYMPROP_MAX_MAGNITUDE")


def test_cancellation_past_the_digits_allowed_is_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_EXACT_DIGITS", 60)
    # right: exp(100) times a zero that needs 45 digits to be seen as (nearly) zero
    disguise = f"{RIGHT} + exp(100)*((z_1+z_2)**10 - (z_1**2 + 2*z_1*z_2 + z_2**2)**5)"
    status, out, err = cli_grade(disguise, capsys)
    assert status == 2 and out == ""
    assert_one_line(err, "could not decide", "MAX_EXACT_DIGITS = 60")
    monkeypatch.setattr(limits, "MAX_EXACT_DIGITS", 700)
    assert cli_grade(disguise, capsys)[0] == 0
    # a wrong answer is still wrong: its difference shows at 40 digits
    status, out, _ = cli_grade(f"{RIGHT} + 1e-12*z_3", capsys)
    assert status == 1


def test_the_evaluation_time_is_bounded(capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_GRADE_SECONDS", 1e-6)
    status, out, err = cli_grade(RIGHT, capsys)
    assert status == 2 and out == ""
    assert_one_line(err, "could not decide", "MAX_GRADE_SECONDS", "SYMPROP_MAX_GRADE_SECONDS")


def test_a_long_answer_ends_within_the_evaluation_budget(capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_GRADE_SECONDS", 2.0)
    answer = RIGHT + "".join(f" + tanh({i}*z_3 + tanh(z_2*{i}))**2*exp(z_4/{i})" for i in range(1, 400))
    start = time.monotonic()
    status, out, err = cli_grade(answer, capsys)
    assert time.monotonic() - start < WALL
    assert status == 1 and out.startswith("wrong:") or status == 2 and "MAX_GRADE_SECONDS" in err, (out, err)


def test_the_symbolic_proof_has_a_budget(capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_PROOF_SECONDS", 1e-6)
    status, out, _ = cli_grade("(z_1 - t)*sech(w_1_2*z_2 + w_1_3*z_3 + b)**2*z_2", capsys)
    assert status == 0 and "random points" in out  # no proof in time: the evaluation decides
    assert sys.gettrace() is None or sys.gettrace().__name__ != "tracer"


def test_exit_status_1_means_only_wrong(capsys):
    for answer in ["exp(exp(exp(exp(10))))", "(h - t", "q*z_1"]:
        status, out, err = cli_grade(answer, capsys)
        assert (status == 1) == out.startswith("wrong:"), (answer, status, out, err)
        if status == 2:
            assert_one_line(err)
