r"""Issue 14, items 2 and 3: a generic activation f in a [layers] spec (seed 003's
δ^l = Diag(f'(z^l)) (W^(l+1))^T δ^(l+1)), bound for numbers with --bind or [bind]; the entry
view ∂c/∂w^l_ij = δ^l_i a^(l-1)_j in the matrix solution; and `exam` on a [layers] spec: a
question with the given matrices and a worked solution whose numbers are grad's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from symprop.cli import main
from symprop.matrix import from_layers
from symprop.spec import SpecError, from_text, load

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "generic_layers.toml"


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def variant(tmp_path, old, new, name="variant.toml"):
    """The example with ``old`` replaced by ``new`` (each once)."""
    text = EXAMPLE.read_text()
    for o, n in zip(old if isinstance(old, list) else [old], new if isinstance(new, list) else [new]):
        assert text.count(o) == 1, o
        text = text.replace(o, n)
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def unbound(tmp_path):
    return variant(tmp_path, '[bind]\nf = "sigmoid"\n', "", "unbound.toml")


@pytest.fixture
def sigmoid(tmp_path):
    return variant(tmp_path, ['functions = ["f"]\n', 'hidden = "f"', '[bind]\nf = "sigmoid"\n'],
                   ["", 'hidden = "sigmoid"', ""], "sigmoid.toml")


# -- 1. the derivation prints Diag(f'(z^l)) -------------------------------------------------

def test_derive_text_prints_diag_f_prime(capsys):
    status, out, _ = run(capsys, "derive", EXAMPLE)
    assert status == 0
    assert "Matrix form: 2-3-2, f hidden, identity output, half squared error loss (sum over a batch)" in out
    assert "  ∂a^1/∂z^1 = Diag(f'(z^1))    [elementwise f: f]    (∂a^1/∂z^1: n_1×n_1, z^1: n_1×1)" in out
    assert ("  δ^1 = Diag(f'(z^1)) (W^2)^T δ^2    [substitute]    "
            "(δ^1: n_1×1, z^1: n_1×1, W^2: n_2×n_1, δ^2: n_2×1)") in out
    assert "  Δ^1 = f'(Z^1) ⊙ ((W^2)^T Δ^2)    [chain rule: z = Wx; elementwise f; f]" in out
    assert "sigmoid" not in out  # the binding is for numbers only


def test_derive_json_prints_diag_f_prime(capsys):
    status, out, _ = run(capsys, "derive", EXAMPLE, "--format", "json")
    assert status == 0
    record = json.loads(out)
    equations = [s["equation"] for s in record["steps"]]
    assert "∂a^1/∂z^1 = Diag(f'(z^1))" in equations
    assert "δ^1 = Diag(f'(z^1)) (W^2)^T δ^2" in equations
    assert "Δ^1 = f'(Z^1) ⊙ ((W^2)^T Δ^2)" in [s["equation"] for s in record["batch_steps"]]
    assert record["network"].startswith("2-3-2, f hidden")


def test_solve_latex_prints_diag_f_prime_and_the_entry_view(capsys):
    status, tex, _ = run(capsys, "solve", EXAMPLE)
    assert status == 0
    assert (r"\boldsymbol{\delta}^{(1)} &= \operatorname{Diag}\left(f'\left(\mathbf{z}^{(1)}\right)\right) "
            r"\left(\mathbf{W}^{(2)}\right)^{T} \boldsymbol{\delta}^{(2)}") in tex
    assert (r"\frac{\partial \mathbf{a}^{(1)}}{\partial \mathbf{z}^{(1)}} &= "
            r"\operatorname{Diag}\left(f'\left(\mathbf{z}^{(1)}\right)\right)") in tex
    assert r"\textbf{The network} (2-3-2, $f$ hidden, identity output" in tex
    assert r"\small elementwise $f$}" in tex
    assert "The activation $f$ is left generic: its derivative stays $f'$" in tex
    # item 2: the entry view, once per layer, with the row and the column it comes from
    assert (r"\frac{\partial \mathcal{L}}{\partial w^{(1)}_{ij}} = \delta^{(1)}_{i}\, x_{j} \qquad "
            r"\text{(row $i$ of $\boldsymbol{\delta}^{(1)}$, column $j$ of $\mathbf{x}^{T}$)}") in tex
    assert (r"\frac{\partial \mathcal{L}}{\partial w^{(2)}_{ij}} = \delta^{(2)}_{i}\, a^{(1)}_{j} \qquad "
            r"\text{(row $i$ of $\boldsymbol{\delta}^{(2)}$, column $j$ of $\bigl(\mathbf{a}^{(1)}\bigr)^{T}$)}") in tex
    assert tex.count(r"\textbf{Entry by entry.}") == 1


def test_a_named_activation_still_names_itself(capsys):
    status, tex, _ = run(capsys, "solve", EXAMPLE.parent / "swish_layers.toml")
    assert status == 0
    assert "left generic" not in tex
    assert r"\delta^{(2)}_{i}\, a^{(1)}_{j}" in tex


# -- numbers: --bind f=sigmoid or [bind] ------------------------------------------------------

def grad_json(capsys, *argv):
    status, out, err = run(capsys, "grad", *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def test_grad_bound_equals_the_sigmoid_spec(capsys, unbound, sigmoid):
    expected = grad_json(capsys, sigmoid)
    by_flag = grad_json(capsys, unbound, "--bind", "f=sigmoid")
    by_table = grad_json(capsys, EXAMPLE)
    assert by_flag == expected and by_table == expected
    assert expected["loss"] == pytest.approx(0.10479029445864159, rel=1e-12)


def test_bind_on_the_command_line_overrides_the_table(capsys, tmp_path):
    tanh = variant(tmp_path, ['functions = ["f"]\n', 'hidden = "f"', '[bind]\nf = "sigmoid"\n'],
                   ["", 'hidden = "tanh"', ""], "tanh.toml")
    assert grad_json(capsys, EXAMPLE, "--bind", "f=tanh") == grad_json(capsys, tanh)


def test_generic_bound_grad_matches_central_differences():
    layers = load(EXAMPLE).bound()
    d, values = from_layers(layers)
    g = d.gradient(values)
    h = 1e-6
    for l, W in enumerate(values.weights):
        for index in np.ndindex(W.shape):
            saved = W[index]
            W[index] = saved + h
            up = d.loss_value(values)
            W[index] = saved - h
            down = d.loss_value(values)
            W[index] = saved
            assert g.dW[l][index] == pytest.approx((up - down) / (2 * h), abs=1e-8)
    for l, b in enumerate(values.biases):
        for index in np.ndindex(b.shape):
            saved = b[index]
            b[index] = saved + h
            up = d.loss_value(values)
            b[index] = saved - h
            down = d.loss_value(values)
            b[index] = saved
            assert g.db[l][index] == pytest.approx((up - down) / (2 * h), abs=1e-8)


def test_grad_of_an_unbound_generic_is_one_line_naming_it(capsys, unbound):
    status, out, err = run(capsys, "grad", unbound)
    assert status == 2 and out == ""
    assert err == (f"symprop: {unbound}: [layers]: the generic activation f has no numbers: bind it to an "
                   'activation, e.g. --bind f=sigmoid or a [bind] table with f = "sigmoid"\n')


@pytest.mark.parametrize("item, problem", [
    ("g=tanh", "g is not a generic function declared in [layers] functions"),
    ("f=nothing", "unknown activation 'nothing'"),
    ("f", "write NAME=ACTIVATION"),
])
def test_bad_bind_items_are_one_line(capsys, unbound, item, problem):
    status, _, err = run(capsys, "grad", unbound, "--bind", item)
    assert status == 2 and err.count("\n") == 1
    assert f"--bind {item}: {problem}" in err


@pytest.mark.parametrize("text, key", [
    ('[layers]\nfunctions = ["sigmoid"]\nsizes = [2, 2]\n', "[layers] functions: sigmoid is a built-in function"),
    ('[layers]\nfunctions = ["f_prime"]\nsizes = [2, 2]\n', "[layers] functions: 'f_prime' cannot name a function"),
    ('[layers]\nfunctions = "f"\nsizes = [2, 2]\n', "[layers] functions: must be a list of names"),
    ('[layers]\nsizes = [2, 3, 2]\nhidden = "f"\n', "[layers] hidden: unknown activation 'f'"),
    ('[layers]\nfunctions = ["f"]\nsizes = [2, 3, 2]\nhidden = "f"\n[bind]\ng = "tanh"\n',
     "[bind] g: g is not a generic function declared in [layers] functions"),
    ('[layers]\nfunctions = ["f"]\nsizes = [2, 3, 2]\nhidden = "f"\n[bind]\nf = "f"\n', "[bind] f: unknown activation 'f'"),
])
def test_bad_generic_specs_name_their_key(text, key):
    with pytest.raises(SpecError) as err:
        from_text(text, "x.toml")
    assert f"x.toml: {key}" in str(err.value)


def test_a_generic_output_layer_derives_and_binds(capsys, tmp_path):
    path = tmp_path / "out.toml"
    path.write_text('[layers]\nfunctions = ["g"]\nsizes = [2, 2]\noutput = "g"\nseed = 3\n')
    status, out, _ = run(capsys, "derive", path)
    assert status == 0 and "δ^1 = Diag(g'(z^1)) (a^1 - y)" in out
    tanh = tmp_path / "tanh.toml"
    tanh.write_text('[layers]\nsizes = [2, 2]\noutput = "tanh"\nseed = 3\n')
    assert grad_json(capsys, path, "--bind", "g=tanh") == grad_json(capsys, tanh)


def test_the_scalar_form_takes_the_binding_too(capsys):
    status, out, err = run(capsys, "check", EXAMPLE)
    assert status == 0, err
    assert "passed" in out


# -- 3. exam on a [layers] spec -----------------------------------------------------------------

NUMBER = r"-?\d+(?:\.\d+)?(?: \\cdot 10\^\{-?\d+\})?"


def matrices(line: str) -> list[np.ndarray]:
    """The ``numbers`` matrices of a LaTeX line, in order."""
    out = []
    for body in re.findall(r"\\begin\{numbers\}(.*?)\\end\{numbers\}", line):
        rows = [[_number(x) for x in row.split("&")] for row in body.split(r"\\")]
        out.append(np.array(rows))
    return out


def _number(text):
    text = text.strip()
    assert re.fullmatch(NUMBER, text), text
    if r"\cdot" in text:
        mantissa, exponent = text.split(r" \cdot 10^")
        return float(mantissa) * 10.0 ** int(exponent.strip("{}"))
    return float(text)


def equation(tex: str, lhs: str) -> str:
    """The align lines of the equation whose left side is ``lhs`` (up to the next one)."""
    start = tex.index(lhs + " &= ")
    end = tex.find(r"\\[1ex]", start)
    block_end = tex.find(r"\end{align*}", start)
    return tex[start:min(e for e in (end, block_end) if e != -1)]


def close4(a, b):
    """Equal to the 4 significant digits the document prints."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.allclose(a, b, rtol=6e-4, atol=1e-12), (a, b)


def test_exam_numbers_equal_grad(capsys):
    status, tex, err = run(capsys, "exam", EXAMPLE, "--answers")
    assert status == 0, err
    expected = grad_json(capsys, EXAMPLE)["gradient"]
    for l in (1, 2):
        dW = equation(tex, rf"\frac{{\partial \mathcal{{L}}}}{{\partial \mathbf{{W}}^{{({l})}}}}")
        close4(matrices(dW)[-1], expected[f"W^{l}"])
        db = equation(tex, rf"\frac{{\partial \mathcal{{L}}}}{{\partial \mathbf{{b}}^{{({l})}}}}")
        close4(matrices(db)[-1], expected[f"b^{l}"])
        # dE/dW^l = δ^l (a^(l-1))^T: the printed column times the printed row
        delta, row = matrices(dW)[:2]
        close4(delta @ row, expected[f"W^{l}"])
    assert r"\mathcal{L} &= \frac{1}{2} \left(\mathbf{a}^{(2)} - \mathbf{y}\right)^{T} \left(\mathbf{a}^{(2)} - " \
           r"\mathbf{y}\right) = 0.1048" in tex
    assert "the activation $f$ is the sigmoid here" in tex
    assert r"\documentclass[11pt,a4paper]{exam}" in tex and "\n\\printanswers\n" in tex
    assert r"\question[10]" in tex and tex.count(r"\part[") == 3
    assert tex.count(r"\ifprintanswers\par\needspace{0.3\textheight}\fi") == 3


def test_exam_forward_pass_and_deltas_are_the_networks(capsys):
    status, tex, _ = run(capsys, "exam", EXAMPLE, "--answers")
    assert status == 0
    layers = load(EXAMPLE).bound()
    d, values = from_layers(layers)
    w = d.worked_numbers(values)
    close4(matrices(equation(tex, r"\mathbf{z}^{(1)}"))[-1], w.z[0])
    close4(matrices(equation(tex, r"\mathbf{a}^{(1)}"))[-1], 1 / (1 + np.exp(-w.z[0])))
    close4(matrices(equation(tex, r"\boldsymbol{\delta}^{(2)}"))[-1], w.a[2] - values.y)
    fprime = matrices(equation(tex, r"\sigma'\left(\mathbf{z}^{(1)}\right)"))[-1]
    close4(fprime, w.a[1] * (1 - w.a[1]))
    delta1 = matrices(equation(tex, r"\boldsymbol{\delta}^{(1)}"))
    close4(delta1[-1], (w.a[1] * (1 - w.a[1])) * (values.weights[1].T @ w.deltas[1]))
    close4(delta1[0] * delta1[1], delta1[-1])  # f'(z^1) ⊙ (W^2)^T δ^2, as printed


def test_exam_named_entries(capsys):
    status, tex, _ = run(capsys, "exam", EXAMPLE, "--answers", "--wrt", "w_1_2_1", "--wrt", "b_2_1")
    assert status == 0
    g = grad_json(capsys, EXAMPLE)["gradient"]
    assert (r"\frac{\partial \mathcal{L}}{\partial w^{(1)}_{21}} &= \delta^{(1)}_{2}\, x_{1} = (0.05342)(0.5) = "
            f"{g['W^1'][1][0]:.4g}") in tex
    assert rf"\frac{{\partial \mathcal{{L}}}}{{\partial b^{{(2)}}_{{1}}}} &= \delta^{{(2)}}_{{1}} = {g['b^2'][0][0]:.4g}" in tex
    assert r"\partial \mathbf{W}^{(1)}} &=" not in tex


@pytest.mark.parametrize("argv, problem", [
    (["examples/mnist_layers.toml"], "at most 4 layers of at most 6 units, not 784-128-10"),
    (["examples/swish_layers.toml"], "an exam question takes one sample, not a batch of 4"),
    (["examples/generic_layers.toml", "--wrt", "w_3_1_1"], "w_3_1_1: no such weight in a 2-3-2 network"),
    (["examples/generic_layers.toml", "--method", "top-down"], "leave out --method"),
])
def test_exam_refusals_are_one_line(capsys, argv, problem):
    root = Path(__file__).resolve().parent.parent
    status, out, err = run(capsys, "exam", root / argv[0], *argv[1:])
    assert status == 2 and out == "" and err.count("\n") == 1
    assert problem in err


def test_exam_of_an_unbound_generic_names_it(capsys, unbound):
    status, _, err = run(capsys, "exam", unbound)
    assert status == 2 and "the generic activation f has no numbers" in err


def _overfull(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]


OTHER_LAYERS = {  # output rules the 2-3-2 example does not reach, one sample each
    "softmax": '[layers]\nsizes = [2, 3, 3]\nhidden = "tanh"\noutput = "softmax"\nloss = "cross_entropy"\nseed = 2\n',
    "deep": '[layers]\nsizes = [3, 2, 2, 1]\nhidden = ["relu", "leaky_relu"]\noutput = "sigmoid"\n'
            'loss = "binary_cross_entropy"\nseed = 5\n',
    "softmax-bce": '[layers]\nfunctions = ["g"]\nsizes = [2, 4, 3]\nhidden = "g"\noutput = "softmax"\n'
                   'loss = "binary_cross_entropy"\nseed = 7\n[bind]\ng = "softplus"\n',
    "mse": '[layers]\nsizes = [2, 2, 2]\nhidden = "identity"\noutput = "tanh"\nloss = "mse"\nseed = 1\n',
}


@pytest.mark.parametrize("name", ["example", *OTHER_LAYERS])
def test_exam_numbers_equal_grad_for_other_networks(capsys, tmp_path, name):
    path = EXAMPLE if name.startswith("example") else tmp_path / f"{name}.toml"
    if not name.startswith("example"):
        path.write_text(OTHER_LAYERS[name])
    status, tex, err = run(capsys, "exam", path, "--answers")
    assert status == 0, err
    expected = grad_json(capsys, path)["gradient"]
    depth = len(expected) // 2
    for l in range(1, depth + 1):
        close4(matrices(equation(tex, rf"\frac{{\partial \mathcal{{L}}}}{{\partial \mathbf{{W}}^{{({l})}}}}"))[-1],
               expected[f"W^{l}"])


@needs_tex
@pytest.mark.parametrize("name, answers", [("example", True), ("example", False), *((n, True) for n in OTHER_LAYERS)])
def test_exam_compiles_without_overfull_boxes(capsys, tmp_path, name, answers):
    path = EXAMPLE
    if name != "example":
        path = tmp_path / f"{name}.toml"
        path.write_text(OTHER_LAYERS[name])
    tex = tmp_path / "exam.tex"
    status, _, err = run(capsys, "exam", path, "-o", tex, "--pdf", *(["--answers"] if answers else []))
    assert status == 0, err
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert [x for x in _overfull(log) if x > 1] == []
    assert tex.with_suffix(".pdf").stat().st_size > 0


@needs_tex
def test_generic_solution_compiles_without_overfull_boxes(capsys, tmp_path):
    tex = tmp_path / "solution.tex"
    status, _, err = run(capsys, "solve", EXAMPLE, "-o", tex, "--pdf")
    assert status == 0, err
    assert [x for x in _overfull(tex.with_suffix(".log").read_text(errors="replace")) if x > 1] == []


# -- the matrix solve with numbers (issue 14: "the matrix solve shows numbers too") ---------

def numbers_section(tex: str) -> str:
    start = tex.index(r"\subsection*{With numbers}")
    return tex[start:tex.index(r"\subsection*{Over a batch}", start)]


@pytest.mark.parametrize("name", ["example", *OTHER_LAYERS])
def test_solve_numbers_equal_grad(capsys, tmp_path, name):
    path = EXAMPLE
    if name != "example":
        path = tmp_path / f"{name}.toml"
        path.write_text(OTHER_LAYERS[name])
    status, tex, err = run(capsys, "solve", path)
    assert status == 0, err
    section = numbers_section(tex)
    expected = grad_json(capsys, path)
    for l in range(1, len(expected["gradient"]) // 2 + 1):
        dW = equation(section, rf"\frac{{\partial \mathcal{{L}}}}{{\partial \mathbf{{W}}^{{({l})}}}}")
        close4(matrices(dW)[-1], expected["gradient"][f"W^{l}"])
        delta, row = matrices(dW)[:2]
        close4(delta @ row, expected["gradient"][f"W^{l}"])  # the printed column times the printed row
        close4(matrices(equation(section, rf"\frac{{\partial \mathcal{{L}}}}{{\partial \mathbf{{b}}^{{({l})}}}}"))[-1],
               expected["gradient"][f"b^{l}"])
    assert f"= {expected['loss']:.4g}" in section


def test_solve_numbers_take_the_binding(capsys, tmp_path):
    status, tex, _ = run(capsys, "solve", EXAMPLE, "--bind", "f=tanh")
    assert status == 0
    section = numbers_section(tex)
    assert "with $f$ the tanh" in section
    tanh = grad_json(capsys, EXAMPLE, "--bind", "f=tanh")["gradient"]
    close4(matrices(equation(section, r"\frac{\partial \mathcal{L}}{\partial \mathbf{W}^{(1)}}"))[-1], tanh["W^1"])
    # the derivation above the numbers stays generic
    assert r"\operatorname{Diag}\left(f'\left(\mathbf{z}^{(1)}\right)\right)" in tex[:tex.index("With numbers")]


@pytest.mark.parametrize("spec", ["mnist_layers.toml", "swish_layers.toml"])
def test_solve_has_no_numbers_for_a_batch_or_a_large_network(capsys, spec):
    status, tex, _ = run(capsys, "solve", Path(__file__).resolve().parent.parent / "examples" / spec)
    assert status == 0 and "With numbers" not in tex


def test_solve_without_values_has_no_numbers(capsys, tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text('[layers]\nsizes = [2, 3, 2]\nhidden = "tanh"\noutput = "identity"\nloss = "half_sse"\n')
    status, tex, _ = run(capsys, "solve", path)
    assert status == 0 and "With numbers" not in tex
    status, _, err = run(capsys, "solve", EXAMPLE.with_name("mnist_layers.toml"), "--bind", "f=tanh")
    assert status == 2 and "--bind" in err
