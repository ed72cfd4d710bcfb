"""Issue 14, the numeric layer as the course texts teach it.

- seed 004: forward differences with a step ε cost P + 1 forward passes, central ones 2P, and
  backprop one forward and one backward pass (``check --difference forward|central``);
- seed 004: the update rules w ← w − (η/M) Σ_m ∂𝓛(m)/∂w, SGD, minibatch (η/B) Σ (``step``);
- seed 003: the three causes of a zero gradient, and seed 002 §1.9's vanishing and exploding
  gradients (``flow``).

Timings are reported, never asserted.
"""

import json
import math

import numpy as np
import pytest
import sympy as sp

from symprop import Network, mlp, report
from symprop import functions as F
from symprop import numeric as N
from symprop.cli import main

EXAMPLES = "examples"


def strict(text):
    """JSON as a strict parser reads it: Infinity or NaN is an error."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# -- check: forward and central differences -----------------------------------------------------

def quadratic():
    x, t, w, b, E = sp.symbols("x t w b E")
    net = Network({E: (w * x + b - t) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t])
    return net, {x: 3.0, t: 1.0, w: 0.5, b: 0.25}


@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])
def test_forward_differences_are_off_by_h_over_2_times_the_curvature(epsilon):
    """E is quadratic in each parameter: (E(w + h) - E(w))/h = E'(w) + h/2·E''(w) exactly."""
    net, values = quadratic()
    x, t, w, b = (net.symbol(n) for n in "xtwb")
    c = N.check(net, values, difference="forward", epsilon=epsilon)
    curvature = {w: values[x] ** 2, b: 1.0}  # E''
    residual = values[w] * values[x] + values[b] - values[t]
    analytic = {w: residual * values[x], b: residual}
    for row in c.rows:
        p = row.name
        h = epsilon * max(1.0, abs(values[p]))
        assert row.engine == pytest.approx(analytic[p], rel=1e-15)
        assert row.other - row.engine == pytest.approx(h / 2 * curvature[p], rel=1e-4)
    central = N.check(net, values, epsilon=epsilon)
    for row in central.rows:  # central differences of a quadratic are exact (up to rounding)
        assert abs(row.other - row.engine) < 1e-9


def test_forward_differences_on_a_network_within_o_epsilon():
    """A tanh/sigmoid network: the forward difference minus the engine's gradient is
    h/2·E''(w) + O(h²), with E'' from SymPy's second derivative of the whole loss."""
    x, t, w, v, b, h, o, E = sp.symbols("x t w v b h o E")
    net = Network({h: sp.tanh(w * x + b), o: F.sigmoid(v * h), E: (o - t) ** 2 / 2},
                  loss=E, params=[w, v, b], inputs=[x], targets=[t])
    values = {x: 0.8, t: 0.3, w: 1.3, v: -0.7, b: 0.2}
    flat = ((1 / (1 + sp.exp(-v * sp.tanh(w * x + b))) - t) ** 2 / 2)
    for eps in (1e-3, 1e-4, 1e-5):
        c = N.check(net, values, difference="forward", epsilon=eps)
        assert c.passed and c.difference == "forward" and c.epsilon == eps
        for row in c.rows:
            p = row.name
            step = eps * max(1.0, abs(values[p]))
            exact = float(sp.diff(flat, p).subs(values))
            second = float(sp.diff(flat, p, 2).subs(values))
            assert row.engine == pytest.approx(exact, rel=1e-12)
            assert abs(row.other - exact - step / 2 * second) <= 2 * step ** 2 + 1e-9


def test_pass_counts_are_p_plus_1_and_2p(monkeypatch):
    """The counts reported are the forward passes the check really made."""
    net = mlp([2, 3, 1], hidden="tanh", output="sigmoid", loss="binary_cross_entropy")
    values = {str(p): 0.3 * (i % 3 - 1) + 0.1 for i, p in enumerate(net.params)}
    values.update(x_1=0.5, x_2=-1.0, t_1=1.0)
    calls = []
    real = N._loss
    monkeypatch.setattr(N, "_loss", lambda *a: calls.append(1) or real(*a))
    P = len(net.params)
    for difference, expected in (("forward", P + 1), ("central", 2 * P)):
        calls.clear()
        c = N.check(net, values, difference=difference, timed=True)
        assert c.forward_passes == expected == len(calls)
        assert c.passed
        assert c.seconds > 0 and c.backprop_seconds > 0  # measured; their ratio is never asserted
        assert N.check(net, values, difference=difference).seconds is None  # untimed: deterministic output
    calls.clear()
    some = N.check(net, values, difference="forward", only="w_1_*")
    assert len(some.rows) == 6 and some.forward_passes == 7 == len(calls)
    calls.clear()
    some = N.check(net, values, only="w_1_*")
    assert some.forward_passes == 12 == len(calls)


def test_thresholds_allow_the_o_epsilon_error_of_forward_differences():
    assert N.thresholds("central") == (N.GOOD, N.OK, N.SUSPICIOUS)  # unchanged: cs231n's
    assert N.thresholds("forward") == (1e-5, 1e-4, 1e-2)
    assert N.thresholds("forward", 1e-3) == (1e-3, 1e-2, 1e-1)
    assert N.thresholds("central", 1e-3) == (1e-6, 1e-4, 1e-2)
    # E = exp(k w): relative truncation k h/2 = 5e-6 for k = 1, "good" for forward differences,
    # where the central thresholds would have called the same numbers only "ok"; 1.5e-5 for k = 3
    w, E = sp.symbols("w E")
    for k, verdict in ((1, "good"), (3, "ok")):
        net = Network({E: sp.exp(k * w)}, loss=E, params=[w])
        c = N.check(net, {w: 0.5}, difference="forward")
        rel = c.rows[0].rel_error
        assert rel == pytest.approx(k * 1e-5 / 2, rel=1e-3) and c.rows[0].verdict == verdict and c.passed
        assert N._verdict(rel) == "ok"


def test_a_broken_backward_pass_fails_under_forward_differences():
    x, w, v, h, E = sp.symbols("x w v h E")
    net = Network({h: sp.tanh(w * x), E: (v * h - 1) ** 2}, loss=E, params=[w, v], inputs=[x])
    point = {x: 0.7, w: 0.3, v: 2.0}
    program = N._program(net)
    broken = next(p for p in program.backward if p.node == h)
    args, fn = broken.common
    broken.common = (args, lambda *a: 2 * fn(*a))  # ∂h/∂w off by a factor 2
    try:
        c = N.check(net, point, difference="forward")
    finally:
        broken.common = (args, fn)
    assert c.failures == ["w"] and c.rows[0].verdict == "wrong"


def test_bad_difference_or_epsilon():
    net, values = quadratic()
    with pytest.raises(N.NumericError, match="difference must be one of central, forward"):
        N.check(net, values, difference="backward")
    for eps in (0, -1e-5, 1.0, math.inf, math.nan):
        with pytest.raises(N.NumericError, match="epsilon"):
            N.check(net, values, epsilon=eps)


def test_cli_check_forward_and_central(capsys):
    spec = f"{EXAMPLES}/seed002_gradient_flow.toml"
    status, out, _ = run(capsys, "check", spec, "--difference", "forward")
    assert status == 0, out
    assert "forward differences (L(w + h) − L(w)) / h, h = ε·max(1, |w|), ε = 1e-05" in out
    assert "cost: P + 1 = 9 forward passes for P = 8 parameters" in out
    assert "backprop: 1 forward + 1 backward pass" in out
    assert "good <= 1e-05 < ok <= 0.0001" in out
    status, out, _ = run(capsys, "check", spec)
    assert status == 0 and "central differences (L(w + h) − L(w − h)) / 2h" in out
    assert out == run(capsys, "check", spec)[1]  # without --timing, the same output every run
    assert "cost: 2P = 16 forward passes for P = 8 parameters" in out
    for difference, passes, rule in (("forward", 9, "P + 1"), ("central", 16, "2P")):
        status, out, _ = run(capsys, "check", spec, "--difference", difference, "--epsilon", "1e-4",
                             "--format", "json", "--timing")
        data = strict(out)
        assert status == 0 and data["passed"] is True
        assert data["difference"] == difference and data["epsilon"] == data["step"] == 1e-4
        cost = data["cost"]
        assert cost["parameters"] == 8 and cost["forward_passes"] == passes and cost["passes_rule"] == rule
        assert cost["seconds"] > 0 and cost["backprop"]["seconds"] > 0
        assert cost["backprop"]["forward_passes"] == cost["backprop"]["backward_passes"] == 1
        assert data["thresholds"] == dict(zip(("good", "ok", "suspicious"), N.thresholds(difference, 1e-4)))
    status, _, err = run(capsys, "check", spec, "--epsilon", "0")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "epsilon" in err
    status, _, err = run(capsys, "check", spec, "--difference", "backward")
    assert status == 2 and "--difference" in err


# -- step: the update rule, named ------------------------------------------------------------

def data(reduction):
    x, t, w, b, E = sp.symbols("x t w b E")
    net = Network({E: (w * x + b - t) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t], reduction=reduction)
    xs, ts = [1.0, 2.0, -1.0, 0.5, 3.0], [1.0, 0.0, 2.0, 1.0, -1.0]
    return net, {x: xs, t: ts, w: 0.5, b: -0.25}, xs, ts


def per_sample(net, values, xs, ts):
    """∂𝓛(m)/∂w and ∂𝓛(m)/∂b of each sample, by hand."""
    w, b = (values[s] for s in net.params)
    r = [w * x + b - t for x, t in zip(xs, ts)]
    return [ri * x for ri, x in zip(r, xs)], r


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_step_names_its_rule_and_follows_its_formula(reduction):
    net, values, xs, ts = data(reduction)
    w, b = net.params
    gw, gb = per_sample(net, values, xs, ts)
    M, eta = len(xs), 0.1
    scale = eta / M if reduction == "mean" else eta

    d = N.step(net, values, lr=eta)
    assert d.rule == "gradient descent" and d.batch_size is None and d.samples == M
    assert d.formula == ("w ← w − η/M Σ_m ∂𝓛(m)/∂w" if reduction == "mean" else "w ← w − η Σ_m ∂𝓛(m)/∂w")
    assert d.params[w] == pytest.approx(values[w] - scale * sum(gw), rel=1e-14)
    assert d.params[b] == pytest.approx(values[b] - scale * sum(gb), rel=1e-14)

    sgd = N.step(net, values, lr=eta, batch_size=1, seed=3)
    assert sgd.rule == "stochastic gradient descent" and sgd.formula == "w ← w − η ∂𝓛(m)/∂w"
    m = np.random.default_rng(3).permutation(M)[0]  # the sample the first step draws
    assert sgd.params[w] == pytest.approx(values[w] - eta * gw[m], rel=1e-14)

    mini = N.step(net, values, lr=eta, batch_size=2, seed=3)
    assert mini.rule == "minibatch SGD (B = 2)" and mini.batch_size == 2
    assert mini.formula == ("w ← w − η/B Σ_{m ∈ batch} ∂𝓛(m)/∂w" if reduction == "mean"
                            else "w ← w − η Σ_{m ∈ batch} ∂𝓛(m)/∂w")
    batch = np.random.default_rng(3).permutation(M)[:2]
    per = eta / 2 if reduction == "mean" else eta
    assert mini.params[w] == pytest.approx(values[w] - per * sum(gw[i] for i in batch), rel=1e-14)

    whole = N.step(net, values, lr=eta, batch_size=M)  # B = M: the whole data, gradient descent
    assert whole.rule == "gradient descent" and whole.params == d.params


def test_one_sample_is_plain_gradient_descent():
    net, values = quadratic()
    d = N.step(net, values, lr=0.1)
    assert (d.rule, d.formula, d.samples) == ("gradient descent", "w ← w − η ∂𝓛/∂w", 1)


def test_cli_step_prints_the_rule_once(tmp_path, capsys):
    spec = tmp_path / "fit.toml"
    spec.write_text("""
[network]
inputs = ["x"]
targets = ["t"]
params = ["w", "b"]
loss = "E"
reduction = "mean"
[nodes]
E = "(w*x + b - t)**2/2"
[values]
x = [1.0, 2.0, 3.0, 4.0]
t = [1.0, 1.0, 2.0, 2.0]
w = 0.5
b = 0.0
""", encoding="utf-8")
    cases = [((), "gradient descent", "w ← w − η/M Σ_m ∂𝓛(m)/∂w", None),
             (("--batch-size", "1"), "stochastic gradient descent", "w ← w − η ∂𝓛(m)/∂w", 1),
             (("--batch-size", "2"), "minibatch SGD (B = 2)", "w ← w − η/B Σ_{m ∈ batch} ∂𝓛(m)/∂w", 2)]
    for extra, name, formula, b in cases:
        status, out, _ = run(capsys, "step", spec, "--lr", "0.1", "--steps", "2", *extra)
        assert status == 0
        assert out.splitlines()[0] == f"2 steps of {name}, learning rate η = 0.1"
        assert out.count(formula) == 1 and out.count("←") == 1
        status, out, _ = run(capsys, "step", spec, "--lr", "0.1", "--steps", "2", *extra, "--format", "json")
        rule = strict(out)["rule"]
        assert rule == {"name": name, "formula": formula, "learning_rate": 0.1, "samples": 4, "batch_size": b,
                        "steps": 2}


# -- flow: the causes of a zero gradient, exploding gradients ------------------------------------

def layered(sizes, hidden, output="identity", **overrides):
    net = mlp(sizes, hidden=hidden, output=output, loss="half_sse")
    values = {str(p): 0.5 for p in net.params}
    values.update({f"x_{i + 1}": 1.0 for i in range(sizes[0])}, **{f"t_{j + 1}": 0.0 for j in range(sizes[-1])})
    values.update(overrides)
    return net, values


def kinds(f, name):
    return [c.kind for c in f.causes[f.network.symbol(name)]]


def test_a_relu_layer_with_all_pre_activations_negative_is_dead():
    """Layer 2's pre-activations are 0.5 + 0.5 - 10 < 0 for both units: f' = 0 there
    (seed 003's cause 2), and layer 1 below has a dead next layer (cause 1)."""
    net, values = layered([1, 2, 2, 1], "relu", b_2_1=-10.0, b_2_2=-10.0)
    f = N.flow(net, values)
    g = N.gradient(net, values)
    assert [str(k) for k in f.dead] == ["a_2_1", "a_2_2"]
    for name in ("a_2_1", "a_2_2"):
        assert f.vanishing[net.symbol(name)] == "zero" and kinds(f, name) == ["flat_activation"]
    for name in ("a_1_1", "a_1_2"):
        assert f.vanishing[net.symbol(name)] == "zero" and kinds(f, name) == ["dead_next_layer"]
        (cause,) = f.causes[net.symbol(name)]
        assert [str(k) for k in cause.nodes] == ["a_2_1", "a_2_2"]
    # the cause is real: every weight into layers 1 and 2 has a zero gradient
    for p in net.params:
        if p.name[2] in "12":
            assert g.gradient[p] == 0.0
    assert net.symbol("a_3_1") not in f.vanishing


@pytest.mark.parametrize("weight, state", [(50.0, "zero"), (8.0, "vanishing")])
def test_a_saturated_sigmoid_has_f_prime_zero(weight, state):
    net, values = layered([1, 1, 1], "sigmoid", w_1_1_1=weight, b_1_1=0.0, w_2_1_1=1.0)
    f = N.flow(net, values)
    a = net.symbol("a_1_1")
    assert f.saturated == (a,) and f.vanishing == {a: state} and kinds(f, "a_1_1") == ["flat_activation"]
    s = 1 / (1 + math.exp(-weight))
    g = N.gradient(net, values)
    # the input gradient is dE/da·σ'(u), at most 1e-3 of the gradient from the loss
    expected = float(g.deltas[a][0]) * s * (1 - s)
    assert f.input_gradient[a] == pytest.approx(abs(expected), rel=1e-6, abs=1e-300)
    assert f.input_gradient[a] <= N.VANISHING * abs(float(g.deltas[net.symbol("a_2_1")][0]))


def test_a_unit_sympy_writes_negated_is_still_a_unit():
    # tanh is odd: SymPy writes tanh(-w x - b) as -tanh(b + w x); it is the same saturated unit
    x, t, w, b, h, E = sp.symbols("x t w b h E")
    net = Network({h: sp.tanh(-w * x - b), E: (t - h) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t])
    assert isinstance(net.nodes[h], sp.Mul)
    f = N.flow(net, {"x": 1.0, "t": 0.0, "w": 10.0, "b": 0.0})
    assert f.saturated == (h,) and kinds(f, "h") == ["flat_activation"]


def test_a_zero_column_of_the_next_weights():
    """a_1_1's outgoing weights (column 1 of W^2) are zero: its gradient is zero (cause 3)."""
    net, values = layered([1, 2, 2, 1], "tanh", w_2_1_1=0.0, w_2_2_1=0.0)
    f = N.flow(net, values)
    a11 = net.symbol("a_1_1")
    assert f.vanishing == {a11: "zero"} and kinds(f, "a_1_1") == ["zero_column"]
    (cause,) = f.causes[a11]
    assert [str(w) for w in cause.weights] == ["w_2_1_1", "w_2_2_1"]
    assert [str(k) for k in cause.nodes] == ["a_2_1", "a_2_2"]
    g = N.gradient(net, values)
    assert g.gradient[net.symbol("w_1_1_1")] == 0.0 and g.gradient[net.symbol("w_1_2_1")] != 0.0
    # into a linear output layer (no activation): the local partial is the weight itself
    net, values = layered([1, 2, 1], "tanh", w_2_1_2=0.0)
    f = N.flow(net, values)
    assert list(f.vanishing) == [net.symbol("a_1_2")] and kinds(f, "a_1_2") == ["zero_column"]
    assert [str(w) for w in f.causes[net.symbol("a_1_2")][0].weights] == ["w_2_1_2"]


def test_exploding_verdict_on_a_deep_net_with_large_weights():
    """Five linear layers with weights 10: δ^l = 10^(5-l)·δ^5, so the first layer's gradient
    norm is hypot(10^4·δ^5·x, 10^4·δ^5) against the last's hypot(δ^5·a^4, δ^5)."""
    net = mlp([1] * 6, hidden="identity", output="identity", loss="half_sse")
    values = {str(p): 10.0 if p.name.startswith("w") else 0.0 for p in net.params}
    values.update(x_1=1e-3, t_1=0.0)
    f = N.flow(net, values)
    x, delta5, a4 = 1e-3, 100.0, 10.0
    expected = math.hypot(1e4 * delta5 * x, 1e4 * delta5) / math.hypot(delta5 * a4, delta5)
    assert f.ratio == pytest.approx(expected, rel=1e-12) and expected > N.EXPLODING_RATIO
    assert f.verdict == "exploding" and f.vanishing == {}
    values.update({p: 1.0 for p in values if p.startswith("w")}, x_1=1.0)
    assert N.flow(net, values).verdict == "stable"


def test_vanishing_verdict_and_a_chain_of_small_factors():
    """Seed 002 §1.9: seven sigmoid layers, each multiplying by w·σ'(u) <= 0.125."""
    net, values = layered([1] * 8, "sigmoid", **{f"b_{l}_1": 0.0 for l in range(1, 8)})
    f = N.flow(net, values)
    assert f.verdict == "vanishing" and f.ratio < N.VANISHING_RATIO
    deepest = net.symbol("a_1_1")
    assert f.vanishing[deepest] == "vanishing"
    assert {c.kind for k in f.vanishing for c in f.causes[k]} <= {"small_factors", "vanishing_next_layer"}
    assert "small_factors" in [c.kind for k in f.vanishing for c in f.causes[k]]


def test_cli_flow_names_the_causes(tmp_path, capsys):
    spec = f"{EXAMPLES}/seed003_layered.toml"
    status, out, _ = run(capsys, "flow", spec)
    assert status == 0 and "verdict: stable (0.01 <= ratio <= 100)" in out
    assert "zero or vanishing input gradients: none" in out
    # the z^l / a^l form with a zero column of W^2: a_1_1's gradient is cut
    values_file = tmp_path / "v.toml"
    values_file.write_text("w_2_1_1 = 0.0\n", encoding="utf-8")
    status, out, _ = run(capsys, "flow", spec, "--values", values_file)
    assert status == 0
    assert "a_1_1: zero (0)" in out and "zero column: every outgoing weight is zero (w_2_1_1 = 0)" in out
    status, out, _ = run(capsys, "flow", spec, "--values", values_file, "--format", "json")
    data = strict(out)
    assert data["verdict"] == "stable"
    assert data["verdict_thresholds"] == {"exploding_above": N.EXPLODING_RATIO, "vanishing_below": N.VANISHING_RATIO}
    zero = data["zero_gradients"]
    assert set(zero) == {"a_1_1", "z_1_1"}
    assert zero["a_1_1"]["causes"][0]["cause"] == "zero_column"
    assert zero["a_1_1"]["causes"][0]["weights"] == ["w_2_1_1"]
    assert zero["z_1_1"]["causes"][0]["cause"] == "dead_next_layer"  # below a_1_1: nothing arrives


def test_flow_report_text_and_json_of_an_exploding_net():
    net = mlp([1] * 6, hidden="identity", output="identity", loss="half_sse")
    values = {str(p): 10.0 if p.name.startswith("w") else 0.0 for p in net.params}
    values.update(x_1=1e-3, t_1=0.0)
    f = N.flow(net, values)
    assert "verdict: exploding (ratio > 100)" in report.text(f)
    data = report.json(f)
    assert data["verdict"] == "exploding" and data["zero_gradients"] == {}
    strict(json.dumps(data))


def test_each_consumer_dead_or_cut_names_both_causes():
    """a_1_1 feeds a dead unit (a_2_1) and, through a zero weight, a live one (a_2_2)."""
    net, values = layered([1, 2, 2, 1], "relu", b_2_1=-10.0, w_2_2_1=0.0)
    f = N.flow(net, values)
    a11 = net.symbol("a_1_1")
    assert net.symbol("a_1_2") not in f.vanishing and f.vanishing[a11] == "zero"
    dead, column = f.causes[a11]
    assert dead.kind == "dead_next_layer" and [str(k) for k in dead.nodes] == ["a_2_1"]
    assert column.kind == "zero_column" and [str(w) for w in column.weights] == ["w_2_2_1"]
    assert N.gradient(net, values).gradient[net.symbol("w_1_1_1")] == 0.0
