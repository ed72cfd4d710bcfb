"""Hostile and extreme input (issue 11): every case ends in a right result, or in exit status
2 with one line naming the file and the key, node or argument; never a traceback, never a
hang, never Infinity or NaN in JSON."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symprop import limits
from symprop.cli import main
from example_files import EXAMPLES_DIR

SYMPROP = Path(sys.executable).parent / "symprop"


def spec_text(nodes, params=("w",), inputs=("x",), targets=(), values=None, extra="", functions=None):
    lines = ["[network]", f"inputs = {json.dumps(list(inputs))}", f"targets = {json.dumps(list(targets))}",
             f"params = {json.dumps(list(params))}", 'loss = "E"']
    if functions:
        lines.append(f"functions = {json.dumps(functions)}")
    lines.append("[nodes]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in nodes.items()]
    if values:
        lines.append("[values]")
        lines += [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n" + extra


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} in JSON")
    return json.loads(text, parse_constant=refuse)


def assert_one_line(status, err, *fragments):
    """Exit 2, and one line (warnings aside) on stderr that holds every fragment."""
    lines = [l for l in err.splitlines() if l and not l.startswith("symprop: warning:")]
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def write(tmp_path):
    def write_spec(name, text):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write_spec


# -- silent wrong numbers -------------------------------------------------------------------

def test_a_generic_function_named_like_a_derivative_is_refused(write, capsys):
    spec = write("g.toml", spec_text({"E": "g(w*x)"}, functions=["g_prime", "g"], values={"x": 1.0, "w": 0.5},
                                      extra='[bind]\ng = "tanh"\ng_prime = "relu"\n'))
    status, _, err = run(["grad", spec], capsys)
    assert_one_line(status, err, "g.toml", "[network] functions", "g_prime")


def test_a_generic_function_named_like_an_internal_one_is_refused(write, capsys):
    spec = write("m.toml", spec_text({"E": "maximum(w*x)"}, functions=["maximum"], values={"x": 1.0, "w": 1.0}))
    assert_one_line(*run(["grad", spec], capsys)[::2], "[network] functions", "maximum")


@pytest.mark.parametrize("name", ["maximum", "log_softmax", "where", "exp_", "sigmoid_"])
def test_parameters_named_like_internal_functions_work(name, write, capsys):
    """max(...) and the compiled code's own names meet a parameter of the same name."""
    spec = write("p.toml", spec_text({"E": f"max({name}*x, 0.5*x) + {name}**2"}, params=[name],
                                      values={"x": 2.0, name: 3.0}))
    status, out, _ = run(["grad", spec, "--format", "json"], capsys)
    assert status == 0
    assert strict_json(out)["gradient"][name] == pytest.approx(2.0 + 6.0)


def test_identifiers_that_python_would_fold_are_refused(write, capsys):
    spec = write("n.toml", spec_text({"E": "\uff58*w"}, values={"x": 1.0, "w": 2.0}))
    assert_one_line(*run(["grad", spec], capsys)[::2], "n.toml", "[nodes] E", "U+FF58")
    spec = write("n2.toml", spec_text({"E": "w*x"}, params=["w\u2460"]).replace("w\u2460", "\u2460w"))
    status, _, err = run(["derive", spec], capsys)
    assert status == 2 and "Traceback" not in err


@pytest.mark.parametrize("expr", ["(-1)**0.5*w*x", "sqrt(-1)*w*x"])
def test_non_real_constants_are_refused(expr, write, capsys):
    spec = write("c.toml", spec_text({"E": expr}, values={"x": 1.0, "w": 1.0}))
    assert_one_line(*run(["grad", spec], capsys)[::2], "[nodes] E", "not real")


@pytest.mark.parametrize("expr, w", [("w**w*x", -0.5), ("(-1)**w*x", 0.5)])
def test_a_non_real_value_names_the_node(expr, w, write, capsys):
    spec = write("c.toml", spec_text({"E": expr}, values={"x": 1.0, "w": w}))
    assert_one_line(*run(["grad", spec], capsys)[::2], "node E", "not a number")


# -- tracebacks ------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["grad", "check", "flow"])
def test_division_by_zero_names_the_node(verb, write, capsys):
    spec = write("d.toml", spec_text({"E": "x/w"}, values={"x": 1.0, "w": 0.0}))
    assert_one_line(*run([verb, spec], capsys)[::2], "d.toml", "node E", "infinite")


def test_a_solution_at_an_undefined_point_leaves_the_numbers_out(write, capsys):
    spec = write("d.toml", spec_text({"E": "x/w"}, values={"x": 1.0, "w": 0.0}))
    status, out, err = run(["solve", spec], capsys)
    assert status == 0 and "numbers left out" in out and "Traceback" not in err


@pytest.mark.parametrize("expr", ["1e309*w*x", "10**400*w*x"])
def test_numbers_beyond_floats_are_refused(expr, write, capsys):
    spec = write("b.toml", spec_text({"E": expr}, values={"x": 1.0, "w": 1.0}))
    assert_one_line(*run(["step", spec, "--lr", 0.1], capsys)[::2], "[nodes] E", "larger than any float")


def test_an_overflow_during_descent_names_the_node(write, capsys):
    spec = write("p.toml", spec_text({"E": "w**1000*x"}, values={"x": 1.0, "w": 2.0}))
    assert_one_line(*run(["step", spec, "--lr", 0.1, "--steps", 5], capsys)[::2], "node E", "infinite")


@pytest.mark.parametrize("verb", ["grad", "solve", "derive"])
def test_zero_to_a_variable_power_has_no_derivative(verb, write, capsys):
    spec = write("z.toml", spec_text({"E": "0**w*x"}, values={"x": 1.0, "w": 0.0}))
    assert_one_line(*run([verb, spec], capsys)[::2], "0**w has no derivative", "log(0)")


@pytest.mark.parametrize("against, problem", [
    ("w=sqrt(-1)", "not real"), ("w=1e309", "larger than any float"), ("w=(-1)**w", None),
])
def test_check_against_hostile_expressions(against, problem, write, capsys):
    spec = write("ok.toml", spec_text({"E": "(w*x)**2/2"}, values={"x": 1.0, "w": 1.0}))
    status, out, err = run(["check", spec, "--against", against, "--format", "json"], capsys)
    if problem:
        assert_one_line(status, err, "--against w", problem)
    else:  # (-1)**w at w = 1 is -1: a wrong formula, reported as such
        assert status == 1 and strict_json(out)["against"]["w"]["verdict"] == "wrong"


def test_deep_nesting_in_a_node_works(write, capsys):
    spec = write("s.toml", spec_text({"E": "sigmoid(" * 99 + "w*x" + ")" * 99}, values={"x": 1.0, "w": 0.5}))
    status, out, err = run(["solve", spec], capsys)
    assert status == 0 and out.endswith("\\end{document}\n"), err


def chain(n, shared=False):
    nodes = {f"z_{i}": f"tanh({'w' if shared else f'w_{i}'}*z_{i - 1})" for i in range(1, n + 1)}
    nodes["E"] = f"z_{n}**2"
    params = ["w"] if shared else [f"w_{i}" for i in range(1, n + 1)]
    values = {"z_0": 1.0, **{p: 0.9 for p in params}}
    return spec_text(nodes, params=params, inputs=["z_0"], values=values)


@pytest.mark.parametrize("argv", [["derive", "--wrt", "w_1"], ["solve", "--wrt", "w_1"], ["grad"]])
def test_a_deep_chain_works(argv, write, capsys):
    spec = write("chain.toml", chain(500))
    start = time.monotonic()
    status, out, err = run([argv[0], spec, *argv[1:]], capsys)
    assert status == 0, err
    assert time.monotonic() - start < 30


def test_a_deep_chain_with_a_shared_weight_leaves_out_the_path_forms(write, capsys):
    spec = write("chain.toml", chain(500, shared=True))
    status, out, _ = run(["derive", spec], capsys)
    assert status == 0 and "the path forms are left out" in out


def test_every_weight_of_a_deep_chain_is_refused_with_the_way_out(write, capsys):
    spec = write("chain.toml", chain(500))
    assert_one_line(*run(["derive", spec], capsys)[::2], "more steps than allowed (MAX_STEPS = 50,000", "--wrt")


@pytest.mark.parametrize("where", ["spec", "values"])
def test_arrays_nested_2000_deep(where, write, capsys):
    deep = "[" * 2000 + "1" + "]" * 2000
    ok = write("ok.toml", spec_text({"E": "w*x"}, values={"x": 1.0, "w": 1.0}))
    if where == "spec":
        spec = write("deep.toml", spec_text({"E": "w*x"}) + f"[values]\nx = {deep}\n")
        assert_one_line(*run(["grad", spec], capsys)[::2], "deep.toml")
    else:
        values = write("vals.toml", f"x = {deep}\n")
        assert_one_line(*run(["grad", ok, "--values", values], capsys)[::2], "vals.toml")


@pytest.mark.parametrize("text, key", [
    ('[layers]\nsizes = [2, 2]\noutput = {a = 1}\n', "[layers] output"),
    ('[layers]\nsizes = [2, 2]\nloss = [1]\n', "[layers] loss"),
    ('[layers]\nsizes = [2, 2]\nhidden = [[1]]\n', "[layers] hidden"),
])
def test_wrong_types_in_layers(text, key, write, capsys):
    spec = write("l.toml", text)
    assert_one_line(*run(["derive", spec], capsys)[::2], "l.toml", key)


@pytest.mark.parametrize("argv, fragment", [
    (["step", "{spec}", "--lr", "0.1", "--seed", "-1", "--batch-size", "1"], "--seed"),
    (["step", "{spec}", "--lr", "0.1", "--steps", str(2**70)], "--steps"),
    (["exam", str(EXAMPLES_DIR / "exam_family.toml"), "--variants", str(2**70)], "--variants"),
    (["derive", "{spec}", "--max-paths", "-3"], "--max-paths"),
    (["step", "{spec}", "--lr", "nan"], "learning rate"),
    (["grad", "{spec}", "--bind", "g_prime=tanh"], "--bind g_prime=tanh"),
    (["nosuchverb"], "invalid choice"),
])
def test_bad_arguments_are_one_line(argv, fragment, write, capsys):
    spec = write("ok.toml", spec_text({"E": "(w*x)**2"}, values={"x": "[1.0, 2.0]", "w": 1.0}))
    status, _, err = run([a.replace("{spec}", str(spec)) for a in argv], capsys)
    assert_one_line(status, err, fragment)



def test_sign_has_derivative_zero_everywhere_it_is_used(write, capsys):
    spec = write("s.toml", spec_text({"E": "sign(x)*w"}, values={"x": 0.5, "w": 2.0}))
    for verb in ("grad", "check", "flow"):
        status, out, _ = run([verb, spec, "--format", "json"], capsys)
        assert status == 0 and strict_json(out)
    status, out, _ = run(["step", spec, "--lr", 0.1, "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["gradient"]["w"] == 1.0
    status, out, _ = run(["circuit", "sign(x)*y", "--at", "x=0.5,y=2", "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["gradient"] == {"x": 0.0, "y": 1.0}


def test_ctrl_c_at_any_moment_is_one_line(tmp_path):
    spec = tmp_path / "chain.toml"
    spec.write_text(chain(400))
    for delay in (0.2, 0.6, 1.2, 2.5):
        proc = subprocess.Popen([str(SYMPROP), "grad", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err)
        assert proc.returncode in (0, 130), (delay, proc.returncode, err)
        if proc.returncode == 130:
            assert err.strip() == "symprop: interrupted"


# -- JSON --------------------------------------------------------------------------------------

def test_an_overflowing_user_gradient_is_null_with_a_note(write, capsys):
    spec = write("ok.toml", spec_text({"E": "(w*x)**2/2"}, values={"x": 1.0, "w": 1.0}))
    status, out, _ = run(["check", spec, "--against", "w=exp(710)*w", "--format", "json"], capsys)
    row = strict_json(out)["against"]["w"]
    assert status == 1 and row["yours"] is None and row["relative_error"] is None and "infinite" in row["note"]


def test_flow_of_a_saturated_cross_entropy_is_strict_json(write, capsys):
    spec = write("bce.toml", spec_text({"p": "sigmoid(w*x)", "E": "binary_cross_entropy(p, t)"}, targets=["t"],
                                       values={"x": 1.0, "w": -1000.0, "t": 1.0}))
    for verb in ("flow", "grad", "check"):
        status, out, err = run([verb, spec, "--format", "json"], capsys)
        assert status in (0, 1), err
        strict_json(out)


@pytest.mark.parametrize("output, loss, values, expected", [
    ("sigmoid", "cross_entropy", "x_1 = 1.0\nt_1 = 1.0\nw_1_1_1 = -1000.0\nb_1_1 = 0.0\n", 1000.0),
    ("softmax", "binary_cross_entropy",
     "x_1 = 1.0\nt_1 = 0.0\nt_2 = 1.0\nw_1_1_1 = 1000.0\nw_1_2_1 = -1000.0\nb_1_1 = 0.0\nb_1_2 = 0.0\n", 4000.0),
])
def test_the_matrix_form_at_1000_is_strict_json(output, loss, values, expected, write, capsys):
    sizes = "[1, 1]" if output == "sigmoid" else "[1, 2]"
    spec = write("l.toml", f'[layers]\nsizes = {sizes}\noutput = "{output}"\nloss = "{loss}"\n[values]\n{values}')
    status, out, _ = run(["grad", spec, "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["loss"] == pytest.approx(expected)


# -- unbounded work ------------------------------------------------------------------------------

def softmax_spec(n):
    logits = ", ".join(f"w_{i}*x" for i in range(n))
    targets = ", ".join(f"t_{i}" for i in range(n))
    values = {"x": 1.0, **{f"w_{i}": round(0.001 * i, 6) for i in range(n)},
              **{f"t_{i}": 1.0 if i == 0 else 0.0 for i in range(n)}}
    return spec_text({"E": f"softmax_cross_entropy([{logits}], [{targets}])"}, params=[f"w_{i}" for i in range(n)],
                     targets=[f"t_{i}" for i in range(n)], values=values)


@pytest.mark.parametrize("argv", [["grad", "--format", "json"], ["derive", "--wrt", "w_1"]])
def test_a_two_thousand_class_softmax(argv, write, capsys):
    spec = write("sm.toml", softmax_spec(2000))
    start = time.monotonic()
    status, out, err = run([argv[0], spec, *argv[1:]], capsys)
    assert status == 0, err
    assert time.monotonic() - start < 60
    if argv[0] == "grad":
        g = strict_json(out)["gradient"]
        z = [0.001 * i for i in range(2000)]
        top = max(z)
        total = sum(math.exp(v - top) for v in z)
        assert g["w_1"] == pytest.approx(math.exp(z[1] - top) / total, rel=1e-9)
        assert g["w_0"] == pytest.approx(math.exp(z[0] - top) / total - 1, rel=1e-9)


def test_a_power_tower_is_refused(write, capsys):
    spec = write("t.toml", spec_text({"E": "**".join(["w"] * 150) + "*x"}, values={"x": 1.0, "w": 1.1}))
    assert_one_line(*run(["derive", spec], capsys)[::2], "[nodes] E", "power tower 150 levels high")


def test_the_scalar_form_of_mnist_is_refused_with_a_pointer(capsys):
    status, _, err = run(["derive", EXAMPLES_DIR / "mnist_layers.toml", "--form", "scalar"], capsys)
    assert_one_line(status, err, "more steps than allowed (MAX_STEPS = 50,000", "matrix form")


@pytest.mark.parametrize("answer", [
    "exp(exp(exp(exp(exp(w_6)))))", "exp(exp(exp(exp(10))))", "exp(exp(exp(exp(exp(1)))))",
])
def test_grading_huge_answers_ends_at_once(answer, capsys):
    start = time.monotonic()
    status, out, err = run(["grade", EXAMPLES_DIR / "seed002_gradient_flow.toml", "--wrt", "w_1_2",
                            f"--answer={answer}"], capsys)
    assert status == 1 and out.startswith("wrong"), err
    assert time.monotonic() - start < 10


def test_grading_sees_a_right_answer_in_disguise_and_a_tiny_error(capsys):
    spec = EXAMPLES_DIR / "seed002_gradient_flow.toml"
    disguise = "(z_1 - t)*(1 - z_1**2)*z_2 + (z_1+z_2)**500*(z_1-z_2)**500 - (z_1**2-z_2**2)**500"
    status, out, _ = run(["grade", spec, "--wrt", "w_1_2", f"--answer={disguise}"], capsys)
    assert status == 0, out
    status, out, _ = run(["grade", spec, "--wrt", "w_1_2", "--answer=(z_1 - t)*(1 - z_1**2)*z_2 + 1e-12*z_3"], capsys)
    assert status == 1
    status, out, _ = run(["grade", spec, "--wrt", "w_1_2",
                          "--answer=(z_1 - t)*sech(w_1_2*z_2 + w_1_3*z_3 + b)**2*z_2"], capsys)
    assert status == 0, out


def test_an_unreachable_family_stops_with_its_limit(write, capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_VARIANT_SECONDS", 2.0)
    # every draw is rejected (no gradient is that large), so only the time limit ends the search
    family = write("f.toml", "[family]\nmax_tries = 100000\noptions = 0\nmin_gradient = 1e9\n"
                             "[family.layered]\nsizes = [[1, 1, 1]]\n")
    start = time.monotonic()
    assert_one_line(*run(["exam", family, "-o", family.parent / "out"], capsys)[::2], "f.toml", "variant 1",
                    "no acceptable variant in 2 s")
    assert time.monotonic() - start < 20
    # a family whose options no question can have is named before any drawing
    family = write("g.toml", "[family]\noptions = 20\n[family.layered]\nsizes = [[1, 1, 1]]\n")
    assert_one_line(*run(["exam", family, "-o", family.parent / "out2"], capsys)[::2], "g.toml", "options")


# -- messages ----------------------------------------------------------------------------------

def test_a_bad_values_file_is_named(write, capsys):
    spec = write("ok.toml", spec_text({"E": "(w*x)**2"}, values={"x": 1.0, "w": 1.0}))
    values = write("bad-values.toml", "y = 1.0\n")
    assert_one_line(*run(["grad", spec, "--values", values], capsys)[::2], "bad-values.toml", "y")


def test_a_three_thousand_term_sum_parses(write, capsys):
    spec = write("s.toml", spec_text({"E": " + ".join(f"{i}*w*x" for i in range(3000))}, values={"x": 1.0, "w": 1.0}))
    status, out, _ = run(["grad", spec, "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["gradient"]["w"] == sum(range(3000))


def test_grad_of_a_layers_spec_takes_a_values_file(write, capsys):
    spec = write("l.toml", '[layers]\nsizes = [1, 1]\n[values]\nx_1 = 1.0\nt_1 = 0.0\nw_1_1_1 = 2.0\nb_1_1 = 0.0\n')
    values = write("v.toml", "w_1_1_1 = 3.0\n")
    status, out, _ = run(["grad", spec, "--values", values, "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["gradient"]["W^1"] == [[3.0]]
