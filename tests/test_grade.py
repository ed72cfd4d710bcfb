"""Answer checking: equivalent forms of the right answer are accepted, each typical mistake
is named, nothing a student types is executed."""

import json
from pathlib import Path

import pytest
import sympy as sp

from symprop import Network, derive, functions as F, sigmoid
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
