"""Plots of activations and their derivatives (seed 000's σ′, tanh′, relu′): the coordinates
against SymPy's own derivative of each explicit form, the marks against the numeric layer's
forward values, pdflatex compiling them, `flow --plot` and the worked solution's remark."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import sympy as sp

from symprop import functions as F
from symprop.cli import main
from symprop.documents.plots import (
    WINDOWS, activation_plots, curve, gradient_flow_remark, render_plot_document,
)
from symprop.documents.solution import render_solution
from symprop.numeric import SATURATION, flow, gradient
from symprop.output import compile_pdf
from symprop.spec import load

from example_files import EXAMPLES_DIR

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
needs_pdfinfo = pytest.mark.skipif(shutil.which("pdfinfo") is None, reason="pdfinfo is not installed")

U = F.U
SWISH = F.define_function("swish", U * F.sigmoid(U), U)
SOFTSIGN = F.define_function("softsign", U / (1 + sp.Abs(U)), U)

ACTIVATIONS = {
    "sigmoid": F.sigmoid(U),
    "tanh": sp.tanh(U),
    "relu": F.relu(U),
    "leaky_relu": F.leaky_relu(U),
    "leaky_relu 0.2": F.leaky_relu(U, sp.Float(0.2)),
    "softplus": F.softplus(U),
    "identity": F.identity(U),
    "swish": SWISH(U),
    "softsign": SOFTSIGN(U),
}


def _reference(f):
    """f and f′ as NumPy functions by SymPy alone: the explicit form in elementary functions,
    differentiated by sympy.diff (a kink's Dirac delta is 0 away from the kink), lambdified."""
    x = F.explicit(f)
    d = sp.diff(x, U).replace(sp.DiracDelta, lambda *args: sp.S.Zero)
    lam = lambda e: sp.lambdify([U], e, modules="numpy")  # noqa: E731
    return lam(x), lam(d)


def _table(tex: str) -> list[list[np.ndarray]]:
    """The coordinate tables of a rendered document: one (u, f, f′) array triple a plot."""
    tables = []
    for body in re.findall(r"\\pgfplotstableread\[row sep=\\\\\]\{\nu f d\\\\\n(.*?)\n\}\\symprodata", tex, re.S):
        rows = [[float(x) for x in line.rstrip("\\").split()] for line in body.splitlines()]
        tables.append([np.array(c) for c in zip(*rows)])
    return tables


# -- the coordinates ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS)
def test_the_coordinates_are_the_function_and_its_derivative(name):
    f = ACTIVATIONS[name]
    c = curve(f)
    value, slope = _reference(f)
    rows = np.array(c.rows)
    assert rows.shape[0] >= 241 and rows[0, 0] == -6 and rows[-1, 0] == 6
    assert np.all(np.diff(rows[:, 0]) > 0)  # u increases
    u, ys, ds = rows.T
    assert np.allclose(ys, np.broadcast_to(value(u), u.shape), rtol=1e-12, atol=1e-12)
    finite = np.isfinite(ds)
    assert np.allclose(ds[finite], np.broadcast_to(slope(u[finite]), u[finite].shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "identity", "swish", "softsign"])
def test_a_continuous_derivative_is_one_unbroken_line(name):
    # tanh′ is steep near 0 and softsign′ has a kink at 0; neither jumps
    rows = np.array(curve(ACTIVATIONS[name]).rows)
    assert np.isfinite(rows).all() and len(rows) == 241


@pytest.mark.parametrize("name, left", [("relu", 0.0), ("leaky_relu", 0.01), ("leaky_relu 0.2", 0.2)])
def test_relu_derivative_is_its_left_slope_left_of_0_and_1_right_with_a_break(name, left):
    rows = curve(ACTIVATIONS[name]).rows
    assert all(d == pytest.approx(left) for u, _, d in rows if u <= 0)  # relu′(0) = 0, leaky′(0) = a
    assert all(d == 1 for u, _, d in rows if u > 0 and np.isfinite(d))
    breaks = [u for u, _, d in rows if not np.isfinite(d)]
    assert len(breaks) == 1 and 0 < breaks[0] < 1e-9  # the jump, at 0, drawn as a gap


def test_the_rendered_coordinates_are_the_curve(tmp_path):
    net, values = _network()
    tex = render_plot_document(net, values)
    tables = _table(tex)
    plots = activation_plots(net, values)
    assert len(tables) == len(plots) == 6
    for (u, ys, ds), p in zip(tables, plots):
        value, slope = _reference(p.curve.function)
        assert np.array_equal(u, [r[0] for r in p.curve.rows])  # round-trip exact
        assert np.allclose(ys, np.broadcast_to(value(u), u.shape), rtol=1e-12, atol=1e-12)
        finite = np.isfinite(ds)
        assert np.allclose(ds[finite], slope(u[finite]), rtol=1e-12, atol=1e-12)


# -- the marks --------------------------------------------------------------------------------

def _network():
    """One unit of each kind; the relu dead, the sigmoid saturated, tanh's argument negated
    (SymPy writes tanh(a - b) as -tanh(b - a)); a batch of three samples."""
    x, y, t = sp.symbols("x y t")
    ws = sp.symbols("w_1:7")
    h = sp.symbols("h_1:7")
    E = sp.Symbol("E")
    from symprop import Network

    nodes = {
        h[0]: F.sigmoid(ws[0] * x + 3),
        h[1]: sp.tanh(ws[1] * y - ws[2]),
        h[2]: F.relu(ws[2] * x - 1),
        h[3]: F.leaky_relu(ws[3] * x, sp.Float(0.2)),
        h[4]: F.softplus(ws[4] * y),
        h[5]: SWISH(ws[5] * x + h[4]),
        E: (t - sum(h)) ** 2 / 2,
    }
    net = Network(nodes, loss=E, params=list(ws), inputs=[x, y], targets=[t])
    values = {"x": [1.0, 2.0, -0.5], "y": [0.5, -1.0, 2.0], "t": [0.0, 1.0, 0.5],
              "w_1": 9.0, "w_2": 0.7, "w_3": -0.4, "w_4": 1.5, "w_5": -2.0, "w_6": 0.3}
    return net, values


def test_the_marks_are_the_units_pre_activations_from_the_forward_pass():
    net, values = _network()
    result = gradient(net, values)
    point = {net.symbol(k): np.asarray(v, dtype=float) for k, v in values.items()}
    plots = activation_plots(net, values)
    assert [str(p.curve.function) for p in plots] == [
        "sigmoid(u)", "tanh(u)", "relu(u)", "leaky_relu(u, 0.2)", "softplus(u)", "swish(u)"]
    marked = [m for p in plots for m in p.marks]
    assert [(str(m.node), m.sample) for m in marked] == [(f"h_{i}", s) for i in range(1, 7) for s in (1, 2, 3)]
    for p in plots:
        value, slope = _reference(p.curve.function)
        for m in p.marks:
            k, i = m.node, m.sample - 1
            # u is the node's argument at the forward values (sample i)
            expr = net.nodes[k]
            arg = -expr.args[1].args[0] if expr.is_Mul else expr.args[0]
            at = {s: float(np.broadcast_to(point.get(s, result.values.get(s)), (3,))[i]) if s in point
                  else float(result.values[s][i]) for s in arg.free_symbols}
            assert m.u == pytest.approx(float(arg.subs(at)), rel=1e-12, abs=1e-12)
            # f(u) is the node's forward value, f′(u) SymPy's derivative there
            assert m.value == pytest.approx(float(result.values[k][i]), rel=1e-12, abs=1e-12)
            assert m.slope == pytest.approx(float(slope(m.u)), rel=1e-9, abs=1e-15)


def test_the_states_agree_with_flow():
    net, values = _network()
    plots = activation_plots(net, values)
    states = {}
    for p in plots:
        for m in p.marks:
            states.setdefault(str(m.node), []).append(m.state)
    assert states["h_3"] == ["dead", "dead", "dead"]  # -0.4 x - 1 < 0 for x in (1, 2, -0.5)
    assert states["h_1"] == ["saturated", "saturated", None]  # 9 x + 3: 12, 21, -1.5
    assert all(s is None for s in states["h_4"] + states["h_5"] + states["h_6"])
    diagnosis = flow(net, values)
    assert [str(k) for k in diagnosis.dead] == ["h_3"]
    for p in plots:
        saturating = F.record_of(p.curve.function).saturating
        for m in p.marks:
            if saturating:  # sigmoid, tanh: flow's measure, even where f′ rounds to 0
                assert (m.state == "saturated") == (abs(m.slope) < SATURATION)
            else:
                assert (m.state == "dead") == (m.slope == 0)


def test_the_window_holds_every_mark():
    x, t, w, h, E = sp.symbols("x t w h E")
    from symprop import Network

    net = Network({h: F.sigmoid(w * x), E: (t - h) ** 2 / 2}, loss=E, params=[w], inputs=[x], targets=[t])
    for w_value, window in ((1.0, 6.0), (8.0, 10.0), (50.0, 100.0), (400.0, 500.0), (5000.0, WINDOWS[-1])):
        (p,) = activation_plots(net, {"x": 1.0, "t": 0.0, "w": w_value})
        assert p.curve.window == (-window, window)
    tex = render_plot_document(net, {"x": 1.0, "t": 0.0, "w": 5000.0})
    assert "beyond the window" in tex and r"5000" in tex


def test_a_generic_function_plots_as_the_activation_it_is_bound_to():
    spec = load(EXAMPLES_DIR / "seed002_seven_neurons.toml")
    (p,) = activation_plots(spec.network, spec.values, spec.bind)
    assert p.curve.function == sp.tanh(U)
    assert [str(m.node) for m in p.marks] == [str(k) for k in spec.network.order if str(k).startswith("z_")]


# -- LaTeX and PDF ----------------------------------------------------------------------------

@needs_tex
def test_the_document_compiles_without_overfull_boxes(tmp_path):
    net, values = _network()
    tex = tmp_path / "plots.tex"
    tex.write_text(render_plot_document(net, values, title="Units & 100% of $ them"), encoding="utf-8")
    pdf = compile_pdf(tex)
    log = pdf.with_suffix(".log").read_text(errors="replace")
    assert "Overfull" not in log and "Underfull \\vbox" not in log
    if shutil.which("pdfinfo"):
        assert _pages(pdf) == 6


SPEC = """
[functions]
swish = "u*sigmoid(u)"

[network]
inputs = ["x_1", "x_2"]
targets = ["t"]
params = ["w_1", "w_2", "w_3", "w_4", "v_1", "v_2", "v_3", "b"]
loss = "E"

[nodes]
h_1 = "sigmoid(w_1*x_1 + w_2*x_2)"
h_2 = "relu(w_3*x_1 + w_4*x_2 + b)"
h_3 = "swish(w_1*x_2 - b)"
y = "v_1*h_1 + v_2*h_2 + v_3*h_3"
E = "(y - t)**2/2"

[values]
x_1 = [1.0, 0.5, -0.2]
x_2 = [2.0, 1.5, 1.0]
t = [0.3, 0.1, 0.0]
w_1 = 6.0
w_2 = 4.0
w_3 = -1.0
w_4 = -0.5
b = -0.2
v_1 = 0.7
v_2 = 0.9
v_3 = 0.4
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _pages(pdf) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


@needs_tex
@needs_pdfinfo
def test_flow_plot_writes_one_page_per_activation_byte_identical(capsys, spec, tmp_path):
    status, out, err = run(capsys, "flow", spec, "--format", "json", "--plot", tmp_path / "a.pdf")
    assert status == 0, err
    assert json.loads(out)["dead"] == ["h_2"]  # flow's usual output, untouched
    assert err.strip() == f"symprop: wrote {tmp_path / 'a.pdf'}"
    assert _pages(tmp_path / "a.pdf") == 3  # sigmoid, relu, swish
    text = subprocess.run(["pdftotext", tmp_path / "a.pdf", "-"], capture_output=True, text=True).stdout
    assert "dead" in text and "saturated" in text and "swish" in text
    assert run(capsys, "flow", spec, "--plot", tmp_path / "b.pdf")[0] == 0
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "b.pdf", "net.toml"]  # no .tex, .log, .aux


@pytest.mark.parametrize("target, says", [
    ("missing/p.pdf", "does not exist"),
    ("net.toml", "this is the input spec"),
    ("p.png", "the plot is a PDF"),
    (".", "the plot is a PDF"),
])
def test_flow_plot_refuses_a_bad_target_in_one_line(capsys, spec, tmp_path, target, says):
    status, out, err = run(capsys, "flow", spec, "--plot", tmp_path / target)
    assert status == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_flow_plot_refuses_a_directory_named_pdf(capsys, spec, tmp_path):
    (tmp_path / "d.pdf").mkdir()
    status, out, err = run(capsys, "flow", spec, "--plot", tmp_path / "d.pdf")
    assert status == 2 and "not a regular file" in err and len(err.strip().splitlines()) == 1


def test_flow_plot_without_units_is_one_line(capsys, tmp_path):
    path = tmp_path / "linear.toml"
    path.write_text('[network]\ninputs = ["x"]\ntargets = ["t"]\nparams = ["w"]\nloss = "E"\n'
                    '[nodes]\nE = "(t - w*x)**2/2"\n[values]\nx = 1.0\nt = 0.0\nw = 0.5\n', encoding="utf-8")
    status, out, err = run(capsys, "flow", path, "--plot", tmp_path / "p.pdf")
    assert status == 2 and out == "" and "no unit to plot" in err and not (tmp_path / "p.pdf").exists()


# -- the worked solution's remark -----------------------------------------------------------

def test_the_remark_appears_only_with_a_saturated_or_dead_unit(spec):
    loaded = load(spec)
    remark = gradient_flow_remark(loaded.network, loaded.values, loaded.bind)
    assert remark is not None and "Gradient flow" in remark["remark"]
    assert "h_{2}" in remark["remark"] and "dead" in remark["remark"]
    assert remark["remark"].count(r"\begin{tikzpicture}") == 1  # only relu's plot: h_1, h_3 live in a sample
    for example in ("seed002_seven_neurons.toml", "seed002_gradient_flow.toml", "custom_functions.toml"):
        s = load(EXAMPLES_DIR / example)
        assert gradient_flow_remark(s.network, s.values, s.bind) is None
        tex = render_solution(s.network, None, values=s.values, bind=s.bind)
        assert "pgfplots" not in tex and "Gradient flow" not in tex


@needs_tex
def test_the_solution_with_the_remark_compiles(spec, tmp_path):
    loaded = load(spec)
    tex = tmp_path / "solution.tex"
    tex.write_text(render_solution(loaded.network, "w_3", values=loaded.values, bind=loaded.bind), encoding="utf-8")
    assert r"\usepackage{pgfplots}" in tex.read_text() and r"\textbf{Gradient flow.}" in tex.read_text()
    pdf = compile_pdf(tex)
    log = pdf.with_suffix(".log").read_text(errors="replace")
    widths = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]
    assert max(widths, default=0) < 5


def test_flow_plot_without_pdflatex_prints_the_report_and_says_so(capsys, spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    status, out, err = run(capsys, "flow", spec, "--plot", tmp_path / "p.pdf")
    assert status == 1 and "gradient flow at E" in out
    assert err.strip() == (f"symprop: --plot {tmp_path / 'p.pdf'}: "
                           "pdflatex is not installed; install TeX Live to get a PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.toml"]


def test_the_remark_names_the_units_flow_finds_dead():
    # seed 002's network with g bound to relu: flow finds z_5 and z_3 dead at its values
    s = load(EXAMPLES_DIR / "seed002_seven_neurons.toml")
    bind = {"g": F.record_of("relu")}
    diagnosis = flow(s.network, s.values, bind=bind)
    assert [str(k) for k in diagnosis.dead] == ["z_5", "z_3"]
    remark = gradient_flow_remark(s.network, s.values, bind)["remark"]
    assert "the units $z_{5}$ and $z_{3}$ are dead" in remark
    (p,) = activation_plots(s.network, s.values, bind)
    assert {str(m.node) for m in p.marks if m.state == "dead"} == {"z_5", "z_3"}
    assert all(m.u <= 0 for m in p.marks if m.state == "dead") and all(m.u > 0 for m in p.marks if m.state is None)
