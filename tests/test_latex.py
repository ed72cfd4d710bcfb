"""The LaTeX printer: golden strings of the texts' key equations, chain order, escaping."""


import pytest
import sympy as sp

from symprop import Network, Partial, Total, derive, functions as F, sigmoid
from symprop.derive import local_partial
from symprop.printing import (
    LatexPrinter, latex, latex_chain, latex_derivation, latex_escape, latex_name, latex_number, text_chain,
)


def seed002():
    """Seed 002's 7-neuron network: z_1..z_3 = g(w_k4 z_4 + w_k5 z_5), z_4, z_5 = g(...)."""
    g = F.generic("g")
    z = {i: sp.Symbol(f"z_{i}") for i in range(1, 8)}
    w = {(a, b): sp.Symbol(f"w_{a}_{b}") for a in range(1, 6) for b in range(4, 8)}
    y = [sp.Symbol(f"y_{c}") for c in (1, 2, 3)]
    E = sp.Symbol("E")
    nodes = {z[k]: g(w[k, 4] * z[4] + w[k, 5] * z[5]) for k in (1, 2, 3)}
    nodes.update({z[k]: g(w[k, 6] * z[6] + w[k, 7] * z[7]) for k in (4, 5)})
    nodes[E] = F.softmax_cross_entropy_of([z[1], z[2], z[3]], y)
    params = [w[k, j] for k in (1, 2, 3) for j in (4, 5)] + [w[k, j] for k in (4, 5) for j in (6, 7)]
    return Network(nodes, loss=E, params=params, inputs=[z[6], z[7]], targets=y), z, w, E


# -- golden equations -------------------------------------------------------------------

def test_seed002_dE_dw57_is_the_sum_over_z1_z2_z3():
    net, z, w, E = seed002()
    d = derive(net, w[5, 7], method="bottom-up")
    equation = f"{latex(Total(E, w[5, 7]))} = {latex_chain(d.as_paths)}"
    assert equation == (
        r"\frac{d E}{d w_{5,7}} = "
        r"\frac{\partial E}{\partial z_{1}} \frac{\partial z_{1}}{\partial z_{5}} \frac{\partial z_{5}}{\partial w_{5,7}}"
        r" + \frac{\partial E}{\partial z_{2}} \frac{\partial z_{2}}{\partial z_{5}} \frac{\partial z_{5}}{\partial w_{5,7}}"
        r" + \frac{\partial E}{\partial z_{3}} \frac{\partial z_{3}}{\partial z_{5}} \frac{\partial z_{5}}{\partial w_{5,7}}"
    )


def test_seed002_delta_of_z5_sums_over_its_consumers():
    net, z, w, E = seed002()
    step = next(s for s in derive(net, w[5, 7]).steps if s.rule == "sum over consumers")
    assert f"{latex(step.lhs)} = {latex_chain(step.rhs)}" == (
        r"\frac{d E}{d z_{5}} = \frac{d E}{d z_{1}} \frac{\partial z_{1}}{\partial z_{5}}"
        r" + \frac{d E}{d z_{2}} \frac{\partial z_{2}}{\partial z_{5}}"
        r" + \frac{d E}{d z_{3}} \frac{\partial z_{3}}{\partial z_{5}}"
    )


def test_g_prime_term_as_the_notes_write_it():
    # seed 002: dz_2/dw_{2,5} = g'(w_{2,4} z_4 + w_{2,5} z_5) . z_5
    net, z, w, E = seed002()
    lp = local_partial(net, z[2], w[2, 5])
    assert latex_chain(lp.display, product=True) == r"g'\left(w_{2,4} z_{4} + w_{2,5} z_{5}\right) z_{5}"
    assert latex(F.generic("g", 2)(z[5])) == r"g''\left(z_{5}\right)"


def test_sigmoid_local_partial_in_the_z_1_minus_z_form():
    x, w, b, h, t, E = sp.symbols("x_1 w_1_1 b_1 z_1 t E")
    net = Network({h: sigmoid(w * x + b), E: (t - h) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t])
    assert latex_chain(local_partial(net, h, w).display, product=True) == r"z_{1} \left(1 - z_{1}\right) x_{1}"
    assert latex_chain(local_partial(net, h, b).display, product=True) == r"z_{1} \left(1 - z_{1}\right)"


def test_sigmoid_local_partial_in_the_pre_activation_form():
    # without output nodes to name, sigma'(u) = sigma(u)(1 - sigma(u)) in the texts' order
    x, w, h, t, E = sp.symbols("x w h t E")
    net = Network({h: sigmoid(w * x), E: (t - h) ** 2 / 2}, loss=E, params=[w], inputs=[x], targets=[t])
    lp = local_partial(net, h, w, in_outputs=False)
    assert latex_chain(lp.display, product=True) == (
        r"\sigma\left(w x\right) \left(1 - \sigma\left(w x\right)\right) x"
    )
    assert text_chain(lp.display) == "σ(w*x)*(1 - σ(w*x))*x"
    assert latex(sigmoid(w * x) * (1 - sigmoid(w * x))) == r"\sigma\left(w x\right) \left(1 - \sigma\left(w x\right)\right)"


def test_loss_partial_reads_prediction_minus_target():
    net, z, w, E = seed002()
    lp = local_partial(net, E, z[2])
    plain = latex_chain(lp.display, product=True)
    assert plain == r"\operatorname{softmax}_{2}\left(z_{1}, z_{2}, z_{3}\right) - y_{2}"
    hat = {(z[1], z[2], z[3]): r"\hat{y}"}
    assert latex_chain(lp.display, product=True, softmax_names=hat) == r"\hat{y}_{2} - y_{2}"
    assert latex(net.nodes[E], softmax_names=hat) == (
        r"- \left(y_{1} \log \hat{y}_{1} + y_{2} \log \hat{y}_{2} + y_{3} \log \hat{y}_{3}\right)"
    )


# -- the notation of each class ----------------------------------------------------------

U = sp.Symbol("u")


@pytest.mark.parametrize("expr, expected", [
    (Partial(sp.Symbol("z_1"), sp.Symbol("w_1_2")), r"\frac{\partial z_{1}}{\partial w_{1,2}}"),
    (Total(sp.Symbol("E"), sp.Symbol("z_5")), r"\frac{d E}{d z_{5}}"),
    (sigmoid(U), r"\sigma\left(u\right)"),
    (F.relu(U), r"\operatorname{relu}\left(u\right)"),
    (F.step(U), r"\operatorname{step}\left(u\right)"),
    (F.softplus(U), r"\operatorname{softplus}\left(u\right)"),
    (F.maximum(U, sp.Symbol("v")), r"\max\left(u, v\right)"),
    (sigmoid(U) ** 2, r"\left(\sigma\left(u\right)\right)^{2}"),
    (F.softmax(1, U, sp.Symbol("v")), r"\operatorname{softmax}_{1}\left(u, v\right)"),
    (sp.Symbol("eta"), r"\eta"),
])
def test_notation(expr, expected):
    assert latex(expr) == expected


def test_display_names_override_the_naming_rule():
    w, z = sp.Symbol("w_1_1_1"), sp.Symbol("a_1")
    names = {w: "W^{1}_{1,1}"}
    assert latex(Partial(z, w), names) == r"\frac{\partial a_{1}}{\partial W^{1}_{1,1}}"


def test_chain_products_keep_their_order():
    a, b, c = sp.symbols("a b c")
    # SymPy would sort to "a b c"; the chain was built c, b, a and must print so
    built = sp.Add(sp.Mul(c, b, a, evaluate=False), sp.Mul(b, a, evaluate=False), evaluate=False)
    assert latex_chain(built) == "c b a + b a"
    assert latex(sp.Mul(c, b, a)) == "a b c"


def test_negative_terms_and_numbers():
    a, b = sp.symbols("a b")
    built = sp.Add(sp.Mul(-1, a, b, evaluate=False), sp.Mul(2, b, evaluate=False), evaluate=False)
    assert latex_chain(built) == "-a b + 2 b"
    assert latex_chain(sp.Mul(a, 3, evaluate=False)) == r"a \cdot 3"  # never "a 3"


def test_numbers_substituted_keep_the_structure():
    net, z, w, E = seed002()
    lp = local_partial(net, z[1], z[5])
    values = {w[1, 4]: 0.1, z[4]: -0.25, w[1, 5]: 2.0, z[5]: 0.5}
    printed = LatexPrinter({"values": values}).chain(lp.display, product=True)
    assert printed == r"g'\left(0.1 \cdot \left(-0.25\right) + 2 \cdot 0.5\right) \cdot 2"


def test_repr_latex_shows_every_step():
    net, z, w, E = seed002()
    d = derive(net, w[2, 5])
    shown = d._repr_latex_()
    assert shown.startswith(r"$\displaystyle \begin{aligned}") and shown.endswith(r"\end{aligned}$")
    assert shown.count(r"\\") == len(d.steps) - 1
    assert r"\frac{d E}{d w_{2,5}} &= \frac{d E}{d z_{2}} \frac{\partial z_{2}}{\partial w_{2,5}}" in shown
    assert r"\operatorname{softmax}_{2}\left(z_{1}, z_{2}, z_{3}\right) - y_{2}" in shown
    assert latex_derivation(d, {w[2, 5]: r"\omega"}).count(r"\omega") >= 2


# -- numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("x, expected", [
    (0.5, "0.5"), (-2.0, "-2"), (0.123456, "0.1235"), (1234567.0, r"1.235 \times 10^{6}"),
    (-1.5e-7, r"-1.5 \times 10^{-7}"), (0.0, "0"), (-0.0, "0"), (float("inf"), r"\infty"),
])
def test_latex_number(x, expected):
    assert latex_number(x) == expected


# -- escaping ---------------------------------------------------------------------------

HOSTILE = r"a & b % c $ d # e _ f { g } h ~ i ^ j \ k \input{/etc/passwd}"


def test_escape_every_special_character():
    assert latex_escape(HOSTILE) == (
        r"a \& b \% c \$ d \# e \_ f \{ g \} h \textasciitilde{} i \textasciicircum{} j "
        r"\textbackslash{} k \textbackslash{}input\{/etc/passwd\}"
    )
    assert latex_escape("two\nlines\n\nand a paragraph") == "two lines and a paragraph"


@pytest.mark.parametrize("name", [
    r"w_{5,7}", r"\hat{y}_{2}", r"W^{1}_{1,1}", r"\eta", r"\mathbf{x}_{i}", "z'", r"\sigma_{k}", "x_1^2",
])
def test_plain_math_names_are_kept(name):
    assert latex_name(name) == name


@pytest.mark.parametrize("name", [
    HOSTILE, r"\input{/etc/passwd}", r"\def\x{1}", "x_1_2", "x^^5cinput", "a}b{", "{a", "x_", "$x$", "a&b",
    r"\catcode", "50%",
])
def test_other_names_print_literally(name):
    assert latex_name(name) == r"\text{" + latex_escape(name) + "}"
