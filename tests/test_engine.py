"""The chain-rule engine against sympy.diff, on random DAGs and on the seeds' examples."""

import math

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings

from symprop import Network, NetworkError, Partial, Total, derive, functions as F, mlp
from symprop.derive import local_partial

from dags import dag_networks, evaluate, forward, random_point, reference_gradient
from seeds import seed002


def close(a, b, tol=1e-9):
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def run_steps(steps, values):
    """Evaluate a derivation's steps as a program: each lhs from its rhs, once known.

    Bottom-up derivations state dE/dz_k before the deltas above it are known, so the
    steps are run to a fixed point rather than in order. A later step with the same lhs
    (a substitution) must agree with the first.
    """
    known, pending = {}, list(steps)
    while pending:
        ready = [s for s in pending if all(x in known for x in s.rhs.free_symbols if isinstance(x, (Partial, Total)))]
        assert ready, f"steps cannot be completed: {[str(s.lhs) for s in pending]}"
        for s in ready:
            value = evaluate(s.rhs.xreplace(known), values)
            if s.lhs in known:
                assert close(known[s.lhs], value), f"{s.rule}: {s.lhs} = {value}, earlier {known[s.lhs]}"
            known[s.lhs] = sp.Float(value, 30)
            pending.remove(s)
    return known


def check_all_methods(net, point, in_outputs=True):
    values = forward(net, point)
    for w in net.params:
        if w not in net.ancestors_of_loss:
            continue
        expected = reference_gradient(net, w, point)
        for method in ("top-down", "bottom-up", "paths"):
            d = derive(net, w, method=method, in_outputs=in_outputs)
            known = run_steps(d.steps, values)
            assert close(float(known[Total(net.loss, w)]), expected), (method, w)
            assert close(evaluate(d.in_local_partials, values), expected)
            if method != "paths":  # the paths method states no deltas
                assert close(evaluate(d.in_deltas.xreplace(known), values), expected)
        assert close(evaluate(d.substituted, point), expected)
        assert close(evaluate(d.expr, values), expected)
        assert d.path_count == len(d.paths)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag_networks())
def test_random_dags_agree_with_sympy_diff(net):
    check_all_methods(net, random_point(net, seed=len(net.nodes)))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag_networks(max_hidden=3))
def test_random_dags_pre_activation_form(net):
    check_all_methods(net, random_point(net, seed=7), in_outputs=False)


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "softplus"])
def test_symbolic_equality_where_simplify_decides(hidden):
    net = mlp([2, 2, 1], hidden=hidden, output="sigmoid", loss="half_sse")
    for w, d in derive(net).items():
        full = net.nodes[net.loss]
        for k in reversed(net.order):
            full = full.xreplace({k: net.nodes[k]})
        difference = F.explicit(d.substituted) - sp.diff(F.explicit(full), w)
        assert sp.simplify(difference.rewrite(sp.exp)) == 0, w


# -- seed 002: the 7-neuron network -----------------------------------------------------

def test_seed002_dE_dw25_factors_at_the_bottom():
    net, g, z, w, E = seed002()
    d = derive(net, w(2, 5), method="bottom-up")
    first = d.steps[0]
    assert first.rule == "factor at the bottom"
    assert first.lhs == Total(E, w(2, 5))
    assert sp.Mul.make_args(first.rhs) == (Total(E, z[2]), Partial(z[2], w(2, 5)))  # in chain order
    u = w(2, 4) * z[4] + w(2, 5) * z[5]
    # dz_2/dw_{2,5} = g'(w_{2,4} z_4 + w_{2,5} z_5) z_5, exactly as the notes write it
    assert local_partial(net, z[2], w(2, 5)).expr == F.generic("g", 1)(u) * z[5]
    assert local_partial(net, z[2], z[5]).expr == F.generic("g", 1)(u) * w(2, 5)
    # dE/dz_2 = -(y_2 - softmax_2(z)) (the notes' equation, per sample)
    assert local_partial(net, E, z[2]).expr == -(sp.Symbol("y_2") - F.softmax(2, z[1], z[2], z[3]))


def test_seed002_dE_dw57_is_a_sum_over_z1_z2_z3():
    net, g, z, w, E = seed002()
    d = derive(net, w(5, 7), method="bottom-up")
    assert d.path_count == 3
    assert d.paths == [(w(5, 7), z[5], z[k], E) for k in (1, 2, 3)]
    # the final result of the notes, term for term and factor for factor, in chain order
    terms = sp.Add.make_args(d.as_paths)
    assert [sp.Mul.make_args(t) for t in terms] == [
        (Partial(E, z[k]), Partial(z[k], z[5]), Partial(z[5], w(5, 7))) for k in (1, 2, 3)
    ]
    # dE/dz_5 = sum over the consumers z_1, z_2, z_3 of z_5
    sums = [s for s in d.steps if s.rule == "sum over consumers"]
    assert [s.lhs for s in sums] == [Total(E, z[5])]
    assert [sp.Mul.make_args(t) for t in sp.Add.make_args(sums[0].rhs)] == [
        (Total(E, z[k]), Partial(z[k], z[5])) for k in (1, 2, 3)
    ]
    # the walk touches only nodes on a path from w_{5,7} to E: never z_4
    touched = {x for s in d.steps for x in s.lhs.free_symbols | s.rhs.free_symbols if isinstance(x, (Partial, Total))}
    assert not any(z[4] in (x.of, x.wrt) for x in touched)


def test_seed002_top_down_computes_deltas_from_E_downward():
    net, g, z, w, E = seed002()
    d = derive(net, w(5, 7), method="top-down")
    deltas = [s.lhs for s in d.steps if s.rule in ("loss directly", "sum over consumers")]
    assert deltas == [Total(E, z[1]), Total(E, z[2]), Total(E, z[3]), Total(E, z[5])]
    finish = [s for s in d.steps if s.rule == "finish at the bottom"]
    assert len(finish) == 1 and d.steps.index(finish[0]) > max(
        i for i, s in enumerate(d.steps) if s.rule in ("loss directly", "sum over consumers")
    )


def test_seed002_chain_with_two_branches():
    """Seed 002 §1.9: dL/dz_4 = sum of two chains, each one factor longer per level."""
    z = {i: sp.Symbol(f"z_{i}") for i in range(1, 8)}
    w = {i: sp.Symbol(f"w_{i}") for i in range(1, 8)}
    L = sp.Symbol("L")
    nodes = {  # declared from the top, as the notes number them; ties keep this order
        L: z[1] ** 2 / 2,
        z[1]: sp.tanh(w[1] * z[2] + w[7] * z[3]),
        z[2]: sp.tanh(w[2] * z[4]),
        z[3]: sp.tanh(w[3] * z[4]),
        z[4]: sp.tanh(w[4] * z[5]),
        z[5]: sp.tanh(w[5] * z[6]),
        z[6]: sp.tanh(w[6] * z[7]),
    }
    net = Network(nodes, loss=L, params=list(w.values()), inputs=[z[7]])
    d = derive(net, w[6])
    assert d.path_count == 2
    chains = [sp.Mul.make_args(t) for t in sp.Add.make_args(d.as_paths)]
    assert chains == [
        (Partial(L, z[1]), Partial(z[1], z[2]), Partial(z[2], z[4]), Partial(z[4], z[5]), Partial(z[5], z[6]), Partial(z[6], w[6])),
        (Partial(L, z[1]), Partial(z[1], z[3]), Partial(z[3], z[4]), Partial(z[4], z[5]), Partial(z[5], z[6]), Partial(z[6], w[6])),
    ]
    # dz_1/dz_2 = (1 - tanh^2(...)) w_1, written with the node output z_1 as the texts do
    assert local_partial(net, z[1], z[2]).expr == (1 - z[1] ** 2) * w[1]


def test_sigmoid_partial_in_output_form():
    x, w, h, E = sp.symbols("x w h E")
    net = Network({h: F.sigmoid(w * x), E: h}, loss=E, params=[w], inputs=[x])
    assert local_partial(net, h, w).expr == h * (1 - h) * x


def test_shared_parameter_sums_its_uses():
    x, w, a, b, E = sp.symbols("x w a b E")
    net = Network({a: sp.tanh(w * x), b: F.sigmoid(w * a), E: b}, loss=E, params=[w], inputs=[x])
    d = derive(net, w)
    assert d.users == (a, b) and d.path_count == 2
    finish = next(s for s in d.steps if s.rule == "finish at the bottom")
    assert [sp.Mul.make_args(t) for t in sp.Add.make_args(finish.rhs)] == [
        (Total(E, a), Partial(a, w)), (Total(E, b), Partial(b, w))
    ]


def test_fan_out_within_one_expression():
    x, w, h, E = sp.symbols("x w h E")
    net = Network({h: w * x * x + sp.sin(x) * 0 + w ** 2, E: h}, loss=E, params=[w], inputs=[x])
    lp = local_partial(net, h, w)
    assert lp.expr == x ** 2 + 2 * w
    assert local_partial(net, h, x).expr == 2 * w * x
    assert "fan-out" in [r.name for r in lp.because] and len(lp.products) == 2  # w*x**2 and w**2


def test_paths_past_the_bound_are_refused_with_a_clear_error():
    # a ladder of n diamonds has 2**n paths
    x, E = sp.symbols("x E")
    nodes, prev, params = {}, x, []
    for i in range(12):
        a, b, m, v = sp.symbols(f"a_{i} b_{i} m_{i} v_{i}")
        params.append(v)
        nodes[a], nodes[b], nodes[m] = sp.tanh(v * prev), sp.sin(prev), a + b
        prev = m
    nodes[E] = prev ** 2
    net = Network(nodes, loss=E, params=params, inputs=[x])
    assert net.path_count(params[0]) == 2 ** 11
    with pytest.raises(NetworkError, match="2048 paths .* max_paths=1000"):
        net.paths(params[0])
    d = derive(net, params[0], max_paths=1000)
    assert d.as_paths is None and "2048 paths" in " ".join(d.notes)
    assert d.in_deltas is not None and d.steps  # the delta forms are always there


def test_deep_chain_does_not_recurse():
    x, E = sp.symbols("x E")
    nodes, prev = {}, x
    w = sp.Symbol("w")
    for i in range(1500):
        h = sp.Symbol(f"h_{i}")
        nodes[h] = prev + w
        prev = h
    nodes[E] = prev
    net = Network(nodes, loss=E, params=[w], inputs=[x])
    assert derive(net, w).expr == 1500


# -- validation --------------------------------------------------------------------------

def test_cycle_is_named():
    a, b, c, E, w = sp.symbols("a b c E w")
    with pytest.raises(NetworkError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        Network({a: w * c, b: sp.tanh(a), c: b ** 2, E: c}, loss=E, params=[w])


def test_undeclared_symbol_is_named():
    h, E, w, q = sp.symbols("h E w q")
    with pytest.raises(NetworkError, match="node h uses q") as err:
        Network({h: w * q, E: h}, loss=E, params=[w])
    assert err.value.symbol == q


def test_node_defined_twice():
    h, E, w = sp.symbols("h E w")
    with pytest.raises(NetworkError, match="node h is defined twice"):
        Network([(h, w), (h, 2 * w), (E, h)], loss=E, params=[w])
    with pytest.raises(NetworkError, match="w is declared as parameter and also defined as a node"):
        Network({w: h, h: E, E: w}, loss=E, params=[w])


def test_loss_must_be_a_node():
    h, E, w = sp.symbols("h E w")
    with pytest.raises(NetworkError, match="the loss E is not a defined node"):
        Network({h: w}, loss=E, params=[w])


def test_unused_parameter_warns():
    h, E, w, v = sp.symbols("h E w v")
    with pytest.warns(UserWarning, match="does not depend on parameter v"):
        Network({h: w, E: h}, loss=E, params=[w, v])


def test_text_is_never_parsed_by_the_python_api():
    h, E, w = sp.symbols("h E w")
    with pytest.raises(NetworkError, match="not a SymPy expression"):
        Network({h: "__import__('os')", E: h}, loss=E, params=[w])


def test_derive_names_a_bad_wrt():
    net, *_ = seed002()
    with pytest.raises(NetworkError, match="no symbol named 'w_9_9'"):
        derive(net, "w_9_9")
    with pytest.raises(NetworkError, match="not y_1"):  # a target; a node such as z_1 gives its delta
        derive(net, sp.Symbol("y_1"))
    with pytest.raises(NetworkError, match="the loss itself"):
        derive(net, sp.Symbol("E"))


def test_mlp_both_granularities_agree():
    point_net = mlp([2, 3, 2], hidden="sigmoid", output="softmax", loss="cross_entropy", form="neuron")
    layer_net = mlp([2, 3, 2], hidden="sigmoid", output="softmax", loss="cross_entropy", form="layer")
    point = random_point(point_net, seed=3)
    for w in point_net.params:
        a = evaluate(derive(point_net, w).substituted, point)
        b = evaluate(derive(layer_net, w).substituted, point)
        assert close(a, b) and close(a, reference_gradient(point_net, w, point))


@pytest.mark.parametrize("text", ["x + 1", "__import__('os')"])
def test_text_is_refused_wherever_an_expression_is_taken(text):
    from symprop.gates import stage

    for take in (F.as_expr, F.explicit, F.identity, stage):
        with pytest.raises(TypeError, match="not str"):
            take(text)
