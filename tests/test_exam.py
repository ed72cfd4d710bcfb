"""Exam generator: reproducible variants, answers against central differences, wrong options
recomputed independently from their labelled mistakes, documents through a real pdflatex."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from symprop import functions as F
from symprop.cli import main
from symprop.documents.variants import answer_key_tex, render_variants
from symprop.exam import ExamError, variant, variants
from symprop.output import compile_pdf, write_exam
from symprop.printing import latex_number
from symprop.spec import SpecError, family_from_text, load_family

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "exam_family.toml"
CIRCUIT_EXAMPLE = ROOT / "examples" / "exam_circuit_family.toml"

BROAD = """
[family]
name = "broad"
title = "Backprop & friends: 100% by hand"
wrt = ["w_*", "b_2_*"]
options = 4
[family.layered]
sizes = [[2, 2, 1], [2, 2, 2], [2, 3, 2], [3, 2, 2], [2, 2, 2, 1]]
hidden = ["sigmoid", "tanh", "relu", "softplus", "leaky_relu"]
output = ["sigmoid", "identity"]
loss = "half_sse"
form = ["neuron", "layer"]
[family.values]
targets = {choices = [0.0, 0.5, 1.0]}
"""

SOFTMAX_BATCH = """
[family]
name = "softmax-batch"
wrt = ["w_*"]
batch = 2
options = 3
[family.layered]
sizes = [[2, 2, 3], [2, 3, 2]]
hidden = ["sigmoid", "tanh"]
output = "softmax"
loss = "cross_entropy"
reduction = "mean"
"""

SEVEN = """
[family]
name = "seven"
wrt = ["w_5_7", "w_4_6", "w_2_5"]
options = 3
[family.activations]
g = ["sigmoid", "tanh"]

[network]
inputs = ["z_6", "z_7"]
targets = ["y_1", "y_2", "y_3"]
params = ["w_1_4", "w_1_5", "w_2_4", "w_2_5", "w_3_4", "w_3_5", "w_4_6", "w_4_7", "w_5_6", "w_5_7"]
functions = ["g"]
loss = "E"
[nodes]
E = "softmax_cross_entropy([z_1, z_2, z_3], [y_1, y_2, y_3])"
z_1 = "g(w_1_4*z_4 + w_1_5*z_5)"
z_2 = "g(w_2_4*z_4 + w_2_5*z_5)"
z_3 = "g(w_3_4*z_4 + w_3_5*z_5)"
z_4 = "g(w_4_6*z_6 + w_4_7*z_7)"
z_5 = "g(w_5_6*z_6 + w_5_7*z_7)"
"""


@pytest.fixture(scope="module")
def broad():
    fam = family_from_text(BROAD, "broad.toml")
    return fam, variants(fam, 50, seed=2024)


@pytest.fixture(scope="module")
def others():
    result = []
    for text, file in ((SOFTMAX_BATCH, "softmax.toml"), (SEVEN, "seven.toml")):
        fam = family_from_text(text, file)
        result.append((fam, variants(fam, 6, seed=11)))
    return result


def every_variant(broad, others):
    for fam, vs in [broad] + others:
        for v in vs:
            yield fam, v


# -- an independent numeric model: explicit SymPy forms, lambdified, central differences ------

def forward(net, sample, nodes=None):
    """Every node's value at the sample, from the explicit node definitions."""
    nodes = nodes or net.nodes
    point = {s: sp.Float(sp.Rational(v), 30) for s, v in sample.items()}
    for k in net.order:
        point[k] = F.explicit(nodes[k]).xreplace(point).evalf(30)
    return point


_LOSS = {}


def loss_function(net, nodes):
    cached = _LOSS.get(id(net))
    if nodes is net.nodes and cached and cached[0] is net:  # the unmodified loss, lambdified once
        return cached[1]
    full = {}
    for k in net.order:
        full[k] = nodes[k].xreplace(full)
    leaves = list(net.leaves)
    result = sp.lambdify(leaves, F.explicit(full[net.loss]), "math"), leaves
    if nodes is net.nodes:
        _LOSS[id(net)] = (net, result)
    return result


def central(net, sample, w, nodes=None, h=1e-6):
    """dE/dw at the sample by central differences of the (possibly modified) network."""
    f, leaves = loss_function(net, nodes or net.nodes)
    args = [float(sample[s]) for s in leaves]
    i = leaves.index(w)
    up, down = list(args), list(args)
    up[i] += h
    down[i] -= h
    return (f(*up) - f(*down)) / (2 * h)


def reduce(net, values):
    return sum(values) / len(values) if net.reduction == "mean" else sum(values)


def close(a, b, rel=1e-5, abs_=1e-8):
    return abs(a - b) <= rel * max(abs(a), abs(b)) + abs_


def with_slope(net, sample, k, slope):
    """The network with node k = f(u) replaced by its tangent of the given slope at the sample:
    same forward values, and dk/du = slope where backprop would use f'(u)."""
    point = forward(net, sample)
    u = net.nodes[k].args[0]
    u0 = F.explicit(u).xreplace(point).evalf(30)
    nodes = dict(net.nodes)
    nodes[k] = point[k] + slope * (u - u0)
    return nodes


def partner(net, p):
    parts = p.name.split("_")
    other = "_".join(parts[:-2] + [parts[-1], parts[-2]]) if len(parts) >= 3 else None
    return next((q for q in net.params if q.name == other and q != p), None)


def transposed(net, sample):
    """Node l gets + sum_k c_lk (z_k - z_k0) so that dz_l/dz_k uses w_k_l for w_l_k."""
    point = forward(net, sample)
    swap = {p: q for p in net.params if (q := partner(net, p)) is not None}
    nodes = dict(net.nodes)
    for l in net.order:
        expr = net.nodes[l]
        outer, inner = sp.S.One, expr
        if isinstance(expr, (F.sigmoid, sp.tanh, F.relu, F.leaky_relu, F.softplus)):
            U = sp.Dummy()
            outer = sp.diff(F.explicit(expr.func(U, *expr.args[1:])), U).subs(U, F.explicit(expr.args[0]).xreplace(point))
            inner = expr.args[0]
        extra = 0
        for k in net.producers[l]:
            if k in net.nodes:
                d = sp.diff(inner, k)
                c = (outer * (d.xreplace(swap) - d)).xreplace(point).evalf(30)
                extra += c * (k - point[k])
        nodes[l] = expr + extra
    return nodes


def path_product(net, sample, path):
    point = forward(net, sample)
    value = sp.S.One
    for a, b in zip(path, path[1:]):
        value *= sp.diff(F.explicit(net.nodes[b]), a).xreplace(point)
    return float(value.evalf(30))


def _linear_argument(net, k):
    """The sum a node's activation is applied to (the node itself when it has none)."""
    expr = F.explicit(net.nodes[k])
    f = net.nodes[k]
    if F.record_of(f) is not None and F.record_of(f).activation and F.record_of(f).cls is not None:
        return F.explicit(f.args[0])
    return expr


def independent(net, v, m, sample):
    """The mistake's dE/dw for one sample, recomputed without symprop's derivation."""
    w = v.wrt
    if m.negated:  # made together with the sign error of the loss derivative
        return -independent(net, v, dataclasses.replace(m, negated=False), sample)
    if m.kind == "loss-factor":  # every path starts at the loss: the whole gradient scaled
        return float(m.factor) * central(net, sample, w)
    if m.kind == "missing-input":  # the input factor d(sum)/dw of the node w enters left out
        (k,) = net.consumers[w]
        point = forward(net, sample)
        return central(net, sample, w) / float(sp.diff(_linear_argument(net, k), w).xreplace(point))
    if m.kind == "missing-weight":  # each path without the weights of its edges below the loss
        point = forward(net, sample)
        total = 0.0
        for path in net.paths(w):
            weights = 1.0
            for a, b in zip(path[1:], path[2:]):
                if b != net.loss:
                    c = sp.diff(_linear_argument(net, b), a)
                    if c in net.params:
                        weights *= float(c.xreplace(point))
            total += path_product(net, sample, path) / weights
        return total
    if m.kind in ("sign", "batch-sum"):
        right = central(net, sample, w)
        return -right if m.kind == "sign" else right
    if m.kind == "dropped-path":
        return central(net, sample, w) - path_product(net, sample, m.path)
    if m.kind == "transpose":
        return central(net, sample, w, transposed(net, sample))
    f = net.nodes[m.node]
    point = forward(net, sample)
    u0 = F.explicit(f.args[0]).xreplace(point).evalf(30)
    z0 = point[m.node]
    if m.kind == "missing-derivative":
        slope = 1
    elif m.kind == "pre-activation":  # the output form z (1 - z) / 1 - z^2 at z := u
        assert isinstance(f, (F.sigmoid, sp.tanh)), f"{m.label}: only sigmoid and tanh have an output form"
        slope = u0 * (1 - u0) if isinstance(f, F.sigmoid) else 1 - u0**2
    else:  # output-for-input: f' evaluated at the output
        U = sp.Dummy()
        slope = sp.diff(F.explicit(f.func(U, *f.args[1:])), U).subs(U, z0)
    return central(net, sample, w, with_slope(net, sample, m.node, slope))


# -- reproducibility -------------------------------------------------------------------------

@pytest.mark.parametrize("family,name,count,seed", [
    (EXAMPLE, "mlp-backprop", 4, 99), (CIRCUIT_EXAMPLE, "gate-circuits", 3, 5),
], ids=["layered", "circuit"])
def test_same_seed_gives_byte_identical_files_across_processes(tmp_path, family, name, count, seed):
    args = ["exam", str(family), "--variants", str(count), "--seed", str(seed), "--answers"]
    assert main(args + ["-o", str(tmp_path / "a"), "--moodle", str(tmp_path / "a" / "q.xml")]) == 0
    # another process with another hash seed: nothing may depend on set or dict hash order
    env = dict(os.environ, PYTHONHASHSEED="12345")
    done = subprocess.run(
        [sys.executable, "-m", "symprop.cli", *args, "-o", str(tmp_path / "b"), "--moodle", str(tmp_path / "b" / "q.xml")],
        env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [f"{name}-key.csv", f"{name}-key.tex", "q.xml"] + [f"variant-{i:04d}.tex" for i in range(1, count + 1)]
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_variant_does_not_depend_on_how_many_are_asked_for():
    fam = load_family(EXAMPLE)
    three = variants(fam, 3, seed=5)
    alone = variant(fam, 5, 3)
    assert (alone.wrt, alone.samples, alone.answer) == (three[2].wrt, three[2].samples, three[2].answer)
    assert [o.value for o in alone.options] == [o.value for o in three[2].options]


def test_different_seeds_give_different_variants():
    fam = load_family(EXAMPLE)
    a, b = variants(fam, 5, seed=1), variants(fam, 5, seed=2)
    assert [v.answer for v in a] != [v.answer for v in b]
    assert render_variants(fam, a, combined=True) != render_variants(fam, b, combined=True)


# -- answers and wrong options ---------------------------------------------------------------

def test_every_answer_agrees_with_central_differences(broad, others):
    count = 0
    for fam, v in every_variant(broad, others):
        net = v.network
        per_sample = [central(net, s, v.wrt) for s in v.samples]
        for mine, fd in zip(v.gradients, per_sample):
            assert close(mine, fd), (fam.name, v.index, v.architecture)
        assert close(v.answer, reduce(net, per_sample))
        count += 1
    assert count == 62


def test_wrong_options_are_distinct_and_each_comes_from_its_mistake(broad, others):
    kinds = set()
    for fam, v in every_variant(broad, others):
        values = [o.value for o in v.options]
        assert len(v.options) == fam.options + 1 and sum(o.correct for o in v.options) == 1
        for i, a in enumerate(values):  # distinct, by the documented relative rule
            for b in values[i + 1:]:
                assert abs(a - b) > fam.distinct * max(abs(a), abs(b)), (fam.name, v.index)
        assert [o.letter for o in v.options] == list("ABCDE"[: len(v.options)])
        net = v.network
        for o in v.wrong_options:
            m = o.mistake
            kinds.add(m.kind)
            per_sample = [independent(net, v, m, s) for s in v.samples]
            expected = sum(per_sample) if m.kind == "batch-sum" else reduce(net, per_sample)
            assert close(o.value, expected), (fam.name, v.index, m.label, o.value, expected)
    assert kinds == {"sign", "loss-factor", "missing-derivative", "pre-activation", "output-for-input", "transpose",
                     "missing-weight", "missing-input", "dropped-path", "batch-sum"}


def test_a_mistake_that_coincides_is_left_out_and_said_so():
    # relu's derivative written in its output is still right: that option cannot exist
    fam = family_from_text("""
[family]
options = 1
[family.layered]
sizes = [1, 1, 1]
hidden = "relu"
""", "relu.toml")
    for v in variants(fam, 5, seed=3):
        assert all(o.mistake is None or o.mistake.kind not in ("pre-activation", "output-for-input")
                   for o in v.options)
        reasons = {(m.kind, why) for m, why, _ in v.dropped}
        if v.wrt.name.startswith(("w_1", "b_1")):
            assert ("pre-activation", "right") in reasons and ("output-for-input", "right") in reasons
            assert any("coincides with the right answer" in n for n in v.notes)


# -- degenerate variants -----------------------------------------------------------------------

def test_no_saturated_or_dead_unit_on_the_paths(broad):
    fam, vs = broad
    for v in vs:
        net = v.network
        for point in v.points:
            for k in net.on_paths(v.wrt):
                f = net.nodes[k]
                if isinstance(f, (F.sigmoid, sp.tanh, F.relu, F.softplus)):
                    U = sp.Dummy()
                    slope = sp.diff(F.explicit(f.func(U)), U).subs(U, F.explicit(f.args[0]).xreplace(point))
                    assert abs(float(slope)) >= fam.saturation
        assert abs(v.answer) >= fam.min_gradient


def test_saturation_is_rejected_unless_allowed():
    text = """
[family]
options = 0
wrt = ["w_1_*"]
{allow}
[family.layered]
sizes = [1, 1, 1]
hidden = "sigmoid"
[family.values]
params = 6.0
inputs = 1.0
"""
    with pytest.raises(ExamError, match="saturated"):
        variants(family_from_text(text.format(allow="max_tries = 20"), "sat.toml"), 1, seed=0)
    with pytest.raises(ExamError, match="zero gradient"):  # asking for saturation alone is not enough
        variants(family_from_text(text.format(allow='allow = ["saturated"]\nmax_tries = 5'), "sat.toml"), 1, seed=0)
    allowed = 'allow = ["saturated", "zero-gradient"]'
    (v,) = variants(family_from_text(text.format(allow=allowed), "sat.toml"), 1, seed=0)
    assert 0 < abs(v.answer) < 1e-3


def test_relu_at_its_kink_and_ties_are_rejected():
    kink = """
[family]
options = 0
max_tries = 5
{allow}
[family.layered]
sizes = [1, 1, 1]
hidden = "relu"
[family.values]
w_1_1_1 = 0.5
x_1 = 0.4
b_1_1 = -0.2
"""
    with pytest.raises(ExamError, match="kink"):
        variants(family_from_text(kink.format(allow='wrt = ["w_2_1_1"]'), "kink.toml"), 1, seed=0)
    tie = """
[family]
options = 0
max_tries = 5
wrt = ["a"]
[network]
inputs = ["x"]
params = ["a", "b"]
loss = "E"
[nodes]
m = "max(a*x, b*x)"
E = "m**2/2"
[family.values]
a = 0.5
b = 0.5
"""
    with pytest.raises(ExamError, match="tie"):
        variants(family_from_text(tie, "tie.toml"), 1, seed=0)


def test_given_numbers_are_nice():
    fam, vs = family_from_text(BROAD, "broad.toml"), None
    vs = variants(fam, 5, seed=8)
    for v in vs:
        for s in v.samples:
            for symbol, value in s.items():
                assert isinstance(value, Fraction) and (value * 10).denominator == 1
                if v.network.role(symbol) in ("param", "input"):
                    assert value != 0 and -1 <= value <= 1
                else:
                    assert value in (0, Fraction(1, 2), 1)


def test_softmax_targets_are_one_hot(others):
    (fam, vs), _ = others
    for v in vs:
        for s in v.samples:
            assert sorted(s[t] for t in v.network.targets) == [0] * (len(v.network.targets) - 1) + [1]


def test_graph_family_binds_its_generic_function(others):
    _, (fam, vs) = others
    for v in vs:
        assert not any(isinstance(f, F.GenericFunction) for e in v.network.nodes.values() for f in e.atoms(sp.Function))
        assert v.wrt.name in ("w_5_7", "w_4_6", "w_2_5")
    assert {v.architecture for v in vs} == {"g = sigmoid", "g = tanh"}


# -- family files ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("[family]\nfoo = 1\n[family.layered]\nsizes = [1, 1]", "[family] foo"),
    ("[family]\n[family.layered]\nsizes = [1, 1]\nhidden = 'swish'", "[family.layered] hidden"),
    ("[family]\n[family.layered]\nsizes = [1, 1]\n[values]\nx_1 = 1", "[values]"),
    ("[family]\ndistinct = 0.005\n[family.layered]\nsizes = [1, 1]", "[family] distinct"),
    ("[family]\n[family.layered]\nsizes = [1, 1]\n[family.values]\nx_1 = [0.01, 0.04]", "[family.values] x_1"),
    ("[family]\nwrt = []\n[family.layered]\nsizes = [1, 1]", "[family] wrt"),
    ("[family]\n", "[family]"),
    ("[family]\n[network]\nparams = ['w']\nloss = 'E'\nfunctions = ['g']\n[nodes]\nE = 'g(w)'", "[family.activations] g"),
    ("[family]\n[network]\nparams = ['w']\nloss = 'E'\n[nodes]\nE = 'w*'", "[nodes] E"),
])
def test_bad_families_name_file_and_key(text, key):
    with pytest.raises(SpecError) as err:
        family_from_text(text, "fam.toml")
    assert str(err.value).startswith(f"fam.toml: {key}: ")


def test_a_weight_pattern_that_matches_nothing_is_an_error():
    fam = family_from_text("[family]\nwrt = ['v_*']\n[family.layered]\nsizes = [1, 1]", "fam.toml")
    with pytest.raises(ExamError, match="matches v_"):
        variants(fam, 1, seed=0)


# -- documents ---------------------------------------------------------------------------------

pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


@pdflatex
def test_fifty_variants_compile_with_pdflatex(broad, others, tmp_path):
    fam, vs = broad
    docs = render_variants(fam, vs, combined=True, answers=True)
    (name, tex), = docs.items()
    assert tex.count(r"\question") == 50 and r"Backprop \& friends: 100\% by hand" in tex
    (tmp_path / name).write_text(tex)
    pdf = compile_pdf(tmp_path / name)
    log = (tmp_path / name).with_suffix(".log").read_text(errors="replace")
    pages = int(re.search(r"Output written on .*?\((\d+) pages?", log, re.S).group(1))
    assert pdf.exists() and pages >= 50
    # the answer key, and the batch and graph families, through pdflatex as well
    key = tmp_path / "key.tex"
    key.write_text(answer_key_tex(fam, vs))
    assert compile_pdf(key).exists()
    for fam, vs in others:
        (name, tex), = render_variants(fam, vs[:2], combined=True, answers=True).items()
        (tmp_path / name).write_text(tex)
        assert compile_pdf(tmp_path / name).exists()


def test_answer_key_lists_every_variant(tmp_path):
    fam = load_family(EXAMPLE)
    written = write_exam(fam, 3, 7, tmp_path)
    vs = variants(fam, 3, seed=7)
    rows = (tmp_path / "mlp-backprop-key.csv").read_text().splitlines()
    assert rows[0] == "variant,question,value,rounded,option"
    for v, row in zip(vs, rows[1:]):
        index, question, value, rounded, option = row.split(",")
        assert (int(index), question, option) == (v.index, f"dE/d{v.wrt}", v.correct_letter)
        assert abs(float(value) - v.answer) <= 1e-11 * abs(v.answer)
    key = (tmp_path / "mlp-backprop-key.tex").read_text()
    for v in vs:  # one row per variant: number, question, value, letter
        printed = latex_number(v.answer, fam.digits)
        assert re.search(rf"\n{v.index} & \$.*\$ & \${re.escape(printed)}\$ & {v.correct_letter} & ", key), printed
    assert sorted(p.name for p in written) == sorted(
        ["variant-0001.tex", "variant-0002.tex", "variant-0003.tex", "mlp-backprop-key.tex", "mlp-backprop-key.csv"])


def test_questions_do_not_give_the_answer_away():
    fam = load_family(EXAMPLE)
    (v,) = variants(fam, 1, seed=4)
    (tex,) = render_variants(fam, [v]).values()
    question = tex.split(r"\begin{solution}")[0]
    assert "% \\printanswers" in tex and "\\printanswers\n" not in tex.replace("% \\printanswers", "")
    node_values = [c for c in question.split("label={[text=green") if "]above:" in c]
    assert not node_values  # the figure shows no forward values in the question


def test_cli_family_options_need_a_family(tmp_path, capsys):
    spec = ROOT / "examples" / "seed002_seven_neurons.toml"
    assert main(["exam", str(spec), "--variants", "3"]) == 2
    assert "need a question family" in capsys.readouterr().err
    assert main(["exam", str(EXAMPLE), "--wrt", "w_1_1_1", "-o", str(tmp_path)]) == 2
    assert main(["exam", str(EXAMPLE), "--variants", "0", "-o", str(tmp_path)]) == 2


# -- circuit families ----------------------------------------------------------------------------

CIRCUITS = """
[family]
kind = "circuit"
name = "circuits"
title = "Gates & wires: 100% by hand"
expressions = ["(x + y)*z", "1/(1 + exp(-(w_0*x_0 + w_1*x_1 + w_2)))", "max(x, y)*z + x", "x*(x*y + exp(x))",
               "min(x, 2)*y - x/z", "relu(x*y) + tanh(x + z)*x"]
variables = ["x", "y", "z", "w_0", "w_1", "w_2", "x_0", "x_1"]
wrt = ["x", "y", "w_*"]
options = 3
[family.values]
variables = [-3.0, 3.0]
"""

CIRCUIT_KINDS = {"fan-out", "add-scale", "mul-own", "max-route", "sign"}


@pytest.fixture(scope="module")
def circuits():
    fam = family_from_text(CIRCUITS, "circuits.toml")
    return fam, variants(fam, 30, seed=7)


@pytest.fixture(scope="module")
def fill_in():
    fam = load_family(CIRCUIT_EXAMPLE)
    return fam, variants(fam, 6, seed=2024)


def every_circuit_question(circuits, fill_in):
    for fam, vs in (circuits, fill_in):
        for v in vs:
            for q in v.questions:
                yield fam, v, q


def wire_values(circuit, values):
    """Every wire's value from the gates' explicit SymPy expressions, to 30 digits."""
    point = {s: sp.Float(sp.Rational(x), 30) for s, x in values.items()}
    for g in circuit.gates:
        point[g.symbol] = F.explicit(g.expr).xreplace(point).evalf(30)
    return point


def composed(circuit, replaced=None):
    """The output as one expression of the variables, built gate by gate; ``replaced``
    maps a gate to the expression (of its wires) used instead of its own."""
    full = {}
    for g in circuit.gates:
        full[g.symbol] = (replaced or {}).get(g.symbol, g.expr).xreplace(full)
    return full[circuit.output]


_CIRCUIT_F = {}


def circuit_central(circuit, expr, values, wrt, h=1e-6):
    """d(expr)/d(wrt) at the given values by central differences."""
    xs = list(circuit.variables)
    key = (id(circuit), expr)
    if key not in _CIRCUIT_F:
        _CIRCUIT_F[key] = (circuit, sp.lambdify(xs, F.explicit(expr), "math"))
    f = _CIRCUIT_F[key][1]
    args = [float(values[s]) for s in xs]
    i = xs.index(wrt)
    up, down = list(args), list(args)
    up[i] += h
    down[i] -= h
    return (f(*up) - f(*down)) / (2 * h)


def circuit_independent(v, q, m):
    """The mistake's d(output)/d(wrt), recomputed without symprop's backward pass: the
    circuit with the mistaken gate replaced by a tangent of the wrong slopes (or the other
    uses of a fanned-out wire frozen at its value), then central differences."""
    c, values = v.circuit, v.values
    if m.negated:  # made together with a sign error of the whole gradient
        return -circuit_independent(v, q, dataclasses.replace(m, negated=False))
    point = wire_values(c, values)
    if m.kind == "sign" and m.gate is None:
        return -circuit_central(c, c.source, values, q.wrt)
    if m.kind == "fan-out":
        frozen = {k: c.gate_of[k].expr.xreplace({m.wire: point[m.wire]})
                  for k in c.network.consumers[m.wire] if k != m.kept}
        return circuit_central(c, composed(c, frozen), values, q.wrt)
    g = c.gate_of[m.gate]

    def value(a):  # a wire's value, or a constant argument
        return point[a] if a in point else a

    if m.kind == "add-scale":  # a multiply's rule: the sum of the other arguments
        slopes = {u: sum(value(a) for a in g.expr.args if a != u) for u in g.inputs}
    elif m.kind == "mul-own":
        slopes = {u: point[u] for u in g.inputs}
    elif m.kind == "max-route":  # all of the gradient to the smaller argument of max (larger of min)
        args = [value(a) for a in g.expr.args]
        wrong = min(args) if g.op == "max" else max(args)
        slopes = {u: 1 if point[u] == wrong else 0 for u in g.inputs}
    else:
        assert m.kind == "sign", m.kind
        slopes = {u: -sp.diff(F.explicit(g.expr), u).xreplace(point) for u in g.inputs}
    tangent = point[g.symbol] + sum(slopes[u] * (u - point[u]) for u in g.inputs)
    return circuit_central(c, composed(c, {g.symbol: tangent}), values, q.wrt)


def test_a_circuit_variant_depends_on_seed_and_index_only(circuits):
    fam, vs = circuits
    alone = variant(fam, 7, 4)
    assert (alone.expression, alone.values) == (vs[3].expression, vs[3].values)
    assert [o.value for q in alone.questions for o in q.options] == [o.value for q in vs[3].questions for o in q.options]
    other = variants(fam, 10, seed=8)
    assert [(v.expression, v.values) for v in other] != [(v.expression, v.values) for v in vs[:10]]
    # every template is drawn, and the given numbers are nice: one decimal, in range, not 0
    assert {v.expression for v in vs} == set(fam_text for fam_text, _ in fam.circuits)
    for v in vs:
        assert all((x * 10).denominator == 1 and x != 0 and -3 <= x <= 3 for x in v.values.values())


def test_every_circuit_answer_agrees_with_central_differences(circuits, fill_in):
    count = 0
    for fam, v, q in every_circuit_question(circuits, fill_in):
        assert close(q.answer, circuit_central(v.circuit, v.circuit.source, v.values, q.wrt)), (fam.name, v.index, q.question)
        count += 1
    assert count > 30 + 6  # the fill-in family asks about every variable
    _, vs = fill_in
    assert all([q.wrt for q in v.questions] == list(v.circuit.variables) for v in vs)


def test_circuit_distractors_are_distinct_and_come_from_their_labelled_mistakes(circuits, fill_in):
    kinds = set()
    for fam, v, q in every_circuit_question(circuits, fill_in):
        values = [o.value for o in q.options]
        assert fam.min_options + 1 <= len(q.options) <= fam.options + 1 and sum(o.correct for o in q.options) == 1
        for i, a in enumerate(values):
            for b in values[i + 1:]:
                assert abs(a - b) > fam.distinct * max(abs(a), abs(b)), (fam.name, v.index, q.question)
        for o in q.wrong_options:
            m = o.mistake
            kinds.add(m.kind)
            expected = circuit_independent(v, q, m)
            assert close(o.value, expected), (v.expression, q.question, m.label, o.value, expected)
            where = m.wire if m.kind == "fan-out" else m.gate
            assert where is None or str(where) in m.label
    assert kinds == CIRCUIT_KINDS
    ops = {v.circuit.gate_of[o.mistake.gate].op for fam, v, q in every_circuit_question(circuits, fill_in)
           for o in q.wrong_options if o.mistake.kind in ("sign", "max-route") and o.mistake.gate is not None}
    # max routing to the smaller input gives 0 (or, asked about the smaller input, the only
    # mistake besides the sign error): no ± pair, so no option of a four-option question
    assert {"min", "recip", "scale"} <= ops


def _circuit_family(expression, values, wrt, extra="", options=0):
    lines = "\n".join(f"{k} = {x}" for k, x in values.items())
    return f"""
[family]
kind = "circuit"
expressions = ["{expression}"]
variables = ["x", "y", "z"]
wrt = {wrt}
options = {options}
max_tries = 5
{extra}
[family.values]
{lines}
"""


@pytest.mark.parametrize("expression, values, wrt, allow, problem", [
    ("max(x, y)*z", {"x": 1.5, "y": 1.5, "z": 2.0}, '"z"', "tie", "a tie in the max gate"),
    ("relu(x - y)*z", {"x": 0.5, "y": 0.5, "z": 2.0}, '"z"', "kink", "at its kink"),
    ("sigmoid(x*y)*z", {"x": 3.0, "y": 3.0, "z": 1.0}, '"x"', "saturated", "saturated"),
    ("(x + y)*z", {"x": 0.5, "y": -0.5, "z": 2.0}, '"z"', "zero-gradient", "zero gradient at z"),
    ("(x + y)*z", {"x": 0.5, "y": -0.5, "z": 2.0}, '"all"', "zero-gradient", "zero gradient at z"),
])
def test_degenerate_circuit_variants_are_rejected_unless_allowed(expression, values, wrt, allow, problem):
    text = _circuit_family(expression, values, wrt)
    with pytest.raises(ExamError, match=problem):
        variants(family_from_text(text, "c.toml"), 1, seed=0)
    extra = f'allow = ["{allow}", "zero-gradient"]' if allow != "zero-gradient" else f'allow = ["{allow}"]'
    (v,) = variants(family_from_text(_circuit_family(expression, values, wrt, extra), "c.toml"), 1, seed=0)
    assert v.tries == 1


def test_undefined_circuit_values_are_rejected():
    text = _circuit_family("log(x)*y + z", {"x": -1.0, "y": 1.0, "z": 1.0}, '"y"')
    with pytest.raises(ExamError, match="undefined"):
        variants(family_from_text(text, "c.toml"), 1, seed=0)


def test_a_zero_gradient_behind_a_switch_is_the_lesson_not_degenerate():
    text = _circuit_family("max(x, y)*z", {"x": 2.0, "y": 1.0, "z": 3.0}, '"all"', options=1)
    (v,) = variants(family_from_text(text, "c.toml"), 1, seed=0)
    answers = {str(q.wrt): q.answer for q in v.questions}
    assert answers == {"x": 3.0, "y": 0.0, "z": 2.0}
    (routed,) = [o for q in v.questions if str(q.wrt) == "y" for o in q.wrong_options]
    assert routed.mistake.kind == "max-route" and routed.value == 3.0


@pytest.mark.parametrize("text, key", [
    ('kind = "graph"', "[family] kind"),
    ('kind = "circuit"\nvariables = ["x"]', "[family] expressions"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x"]', "[family] expressions (item 1)"),
    ('kind = "circuit"\nexpressions = ["x*"]\nvariables = ["x"]', "[family] expressions (item 1)"),
    ('kind = "circuit"\nexpressions = ["x**y"]\nvariables = ["x", "y"]', "[family] expressions (item 1)"),
    ('kind = "circuit"\nexpressions = ["x*y", "y + 1"]\nvariables = ["x", "y"]\nwrt = ["x"]', "[family] wrt"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "exp"]', "[family] variables"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\nbatch = 2', "[family] batch"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\noptions = 2\nmin_options = 3', "[family] min_options"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\n[family.values]\nq = 1', "[family.values] q"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\n[network]\nloss = "E"', "[network]"),
    # numbers that are not finite, or ranges too wide to list, are refused before any drawing
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\n[family.values]\nvariables = [1e309, 4]',
     "[family.values] variables"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\n[family.values]\nx = nan', "[family.values] x"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\n[family.values]\nx = {choices = [1, -inf]}',
     "[family.values] x"),
    ('kind = "circuit"\nexpressions = ["x*y"]\nvariables = ["x", "y"]\n[family.values]\nx = [-1e5, 1e5]', "[family.values] x"),
])
def test_bad_circuit_families_name_file_and_key(text, key):
    with pytest.raises(SpecError) as err:
        family_from_text("[family]\n" + text, "fam.toml")
    assert str(err.value).startswith(f"fam.toml: {key}: ")


def test_circuit_question_leaves_gradients_blank_and_solution_is_render_circuits(fill_in):
    from symprop.documents.circuit import render_circuit

    fam, vs = fill_in
    docs = render_variants(fam, vs[:3])
    for v, tex in zip(vs, docs.values()):
        question, solution = tex.split(r"\begin{solution}")
        # an answer box on every wire into a gate; the output's gradient 1 given
        boxes = re.findall(r"\\node\[cbox\] at \(", question)
        gradients = re.findall(r"\\node\[cgrad\] at \([-\d., ]+\) \{(.*?)\};", question)
        assert len(boxes) == sum(len(g.inputs) for g in v.circuit.gates) and gradients == ["$1$"]
        assert r"\Sigma" not in question and "local gradient" in question  # the blank table to fill in
        # the worked answer is the one render_circuit writes for this circuit and these numbers
        reference = render_circuit(v.flow, exam=True, answers=True)
        expected = reference.split(r"\begin{solution}")[1].split(r"\end{solution}")[0]
        assert solution.startswith(expected.rstrip("\n")), v.index
        assert len(re.findall(r"\\part ", question)) == len(v.questions)


def _pdflatex_once(path):
    """One pdflatex pass (enough to find any error); returns the number of pages."""
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", path.name],
                          cwd=path.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    log = path.with_suffix(".log").read_text(errors="replace")
    assert done.returncode == 0, [line for line in log.splitlines() if line.startswith("!")][:3]
    return int(re.search(r"Output written on .*?\((\d+) pages?", log, re.S).group(1))


@pdflatex
def test_circuit_variants_compile_with_pdflatex(circuits, fill_in, tmp_path):
    # every variant of the fill-in family, and the first of the other (one question each)
    for (fam, vs), count in ((fill_in, len(fill_in[1])), (circuits, 8)):
        (name, tex), = render_variants(fam, vs[:count], combined=True, answers=True).items()
        assert tex.count(r"\question") == count
        (tmp_path / name).write_text(tex)
        assert _pdflatex_once(tmp_path / name) >= count
    fam, vs = circuits
    assert r"Gates \& wires: 100\% by hand" in render_variants(fam, vs[:1])["variant-0001.tex"]
    key = tmp_path / "key.tex"
    key.write_text(answer_key_tex(*fill_in))
    assert _pdflatex_once(key) >= 1


def test_circuit_answer_key_has_one_row_per_question(fill_in, tmp_path):
    fam, _ = fill_in
    written = write_exam(fam, 3, 2024, tmp_path)
    vs = variants(fam, 3, seed=2024)
    rows = (tmp_path / "gate-circuits-key.csv").read_text().splitlines()
    assert rows[0] == "variant,question,value,rounded,option"
    expected = [(v.index, q) for v in vs for q in v.questions]
    assert len(rows) - 1 == len(expected) > 3
    for (index, q), row in zip(expected, rows[1:]):
        number, question, value, rounded, option = row.split(",")
        assert (int(number), question, option) == (index, f"df/d{q.wrt}", q.correct_letter)
        assert abs(float(value) - q.answer) <= 1e-11 * abs(q.answer)
    key = (tmp_path / "gate-circuits-key.tex").read_text()
    assert "3 variants" in key and key.count(r"\frac{d f}") == len(expected)
    assert "gate-circuits-key.tex" in {p.name for p in written}


# what the feedback of each kind of wrong option must say (the LaTeX documents' mistake sentences)
CIRCUIT_PHRASES = {
    "fan-out": "forgetting the fan-out sum", "add-scale": "add gate", "mul-own": "not swapping its inputs",
    "max-route": "routing the gradient", "sign": "a sign error",
}


def test_circuit_moodle_xml_passes_the_structure_checker(circuits, fill_in):
    import xml.etree.ElementTree as ET

    from symprop.quiz import moodle_xml
    from test_moodle import check_quiz, text_of

    for fam, vs in (circuits, fill_in):
        vs = vs[:5]
        found = check_quiz(ET.fromstring(moodle_xml(fam, vs)))
        questions = [q for v in vs for q in v.questions]
        assert len(found["numerical"]) == len(found["multichoice"]) == len(questions)
        for q, num, mc in zip(questions, found["numerical"], found["multichoice"]):
            assert text_of(num, "name").endswith(f"{q.question} (numerical)")
            (a,) = num.findall("answer")
            value, tolerance = float(a.findtext("text")), float(a.findtext("tolerance"))
            assert abs(value - q.answer) <= tolerance / 10 + 1e-12
            assert all(abs(o.value - value) > tolerance for o in q.wrong_options)
            answers = mc.findall("answer")
            assert len(answers) == len(q.options)
            for o, el in zip(q.options, answers):
                assert el.get("fraction") == ("100" if o.correct else "0")
                if not o.correct:
                    assert CIRCUIT_PHRASES[o.mistake.kind] in text_of(el, "feedback")
            assert "\\frac{d f}{d f} = 1" in text_of(num, "questiontext")
