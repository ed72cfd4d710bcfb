"""Every registered primitive, one record each: its derivative rule equals sympy.diff of
its explicit form, its NumPy form equals its explicit form (at random points and at
+-50), and it has a LaTeX head and a rule in words. A record without a NumPy form is
refused when it is registered."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

from symprop import functions as F
from symprop.documents.prose import rule_sentence
from symprop.printing import LatexPrinter, rule_text

x = sp.Symbol("x")
# Defined functions are primitives too (and their derivatives, one more record each).
DEFINED = {
    "swish": F.define_function("swish", x * F.sigmoid(x), x),
    "softsign": F.define_function("softsign", x / (1 + sp.Abs(x)), x),
    "gelu_tanh": F.define_function(
        "gelu_tanh", x / 2 * (1 + sp.tanh(sp.Rational(7978845608, 10**10) * (x + sp.Rational(44715, 10**6) * x**3))), x),
}
RECORDS = list(F.BUILTINS.values()) + [F.record_of(c) for c in DEFINED.values()] + [
    F.record_of(c(x).fdiff().func) for c in DEFINED.values()]
# Where a primitive is defined: log and sqrt on the positive reals.
POSITIVE = {"log", "sqrt"}


def _call(p, rng, scale=1.0):
    """A call of ``p`` by its first shape, in real symbols, and a point for them away from
    kinks: ``(expr, {symbol: number})``."""
    shape = p.shapes[0].rstrip("+")
    args, point = [], {}

    def number():
        sign = 1 if p.name in POSITIVE or rng.random() < 0.5 else -1
        return sp.Float(sign * rng.uniform(0.1, 2.0) * scale, 30)

    for i, letter in enumerate(shape):
        if letter == "s":
            v = sp.Symbol(f"a{i}", real=True)
            point[v] = number()
            args.append(v)
        elif letter == "L":
            vs = [sp.Symbol(f"a{i}_{j}", real=True) for j in range(3)]
            point.update({v: number() for v in vs})
            args.append(vs)
        elif letter == "k":
            args.append(2)
    return p.build(*args), point


def _close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


@pytest.mark.parametrize("p", RECORDS, ids=lambda p: p.name)
def test_the_record_is_complete(p):
    assert p.numpy is not None
    assert rule_text(p)
    assert rule_sentence(p, LatexPrinter())
    assert p.head or LatexPrinter().head(p)
    if p.activation:
        assert F.activation(p.name if p.kind == "builtin" else p) is p.build


@pytest.mark.parametrize("p", [p for p in RECORDS if p.loss is None and p.cls is not None], ids=lambda p: p.name)
def test_the_derivative_rule_is_sympy_diff_of_the_explicit_form(p):
    rng = np.random.default_rng(sum(map(ord, p.name)))
    expr, point = _call(p, rng)
    for argindex, arg in enumerate(expr.args, 1):
        if not arg.is_Symbol:
            continue  # a constant argument (softmax's index, leaky_relu's default slope)
        rule = F.explicit(p.differentiate(expr, argindex))
        reference = sp.diff(F.explicit(expr), arg)
        a, b = (complex(sp.N(e.xreplace(point), 25)) for e in (rule, reference))
        assert abs(a.imag) < 1e-12 and abs(b.imag) < 1e-12
        assert _close(a.real, b.real), (p.name, argindex, a, b)


@pytest.mark.parametrize("p", [p for p in RECORDS if p.loss is None], ids=lambda p: p.name)
@pytest.mark.parametrize("scale", [1.0, 25.0])
def test_the_numpy_form_is_the_explicit_form(p, scale):
    """At random points, and at large arguments (+-50 for the activations) where a naive
    form would overflow: the stable form agrees with the explicit one evaluated exactly."""
    rng = np.random.default_rng(sum(map(ord, p.name)) + int(scale))
    for _ in range(5):
        expr, point = _call(p, rng, scale)
        if scale > 1 and len(point) == 1:
            point = {v: sp.Float(50 if p.name in POSITIVE or rng.random() < 0.5 else -50, 30) for v in point}
        exact = complex(sp.N(F.explicit(expr).xreplace(point), 30))
        if p.cls is None:  # a builder of other primitives (identity, sqrt): called as in a spec
            numeric = p.numpy(*[float(v) for v in point.values()])
        else:  # called as the class is, its arguments in the class's order (a tuple: the logits)
            numeric = p.numpy(*[tuple(float(x.xreplace(point)) for x in a.args) if isinstance(a, sp.Tuple)
                                else float(a.xreplace(point)) for a in expr.args])
        assert math.isfinite(float(numeric))
        assert _close(float(numeric), exact.real, 1e-12), (p.name, point, numeric, exact)


@pytest.mark.parametrize("p", [p for p in RECORDS if p.loss is not None], ids=lambda p: p.name)
def test_a_loss_record_states_its_derivative_and_numbers(p):
    rule = p.loss
    assert sp.simplify(sp.diff(rule.entry, F.U) - rule.gradient) == 0
    rng = np.random.default_rng(7)
    for _ in range(5):
        u, v = rng.uniform(0.05, 0.95), rng.choice([0.0, 1.0, rng.uniform(0, 1)])
        exact = float(rule.entry.subs({F.U: u, F.V: v}))
        assert _close(float(rule.numpy(u, v)), exact, 1e-12)
    if not rule.logits:  # the builder is scale(n) * sum of entries
        o, t = sp.symbols("o_1 o_2", real=True), sp.symbols("t_1 t_2", real=True)
        built = p.build(list(o), list(t)) if p.shapes == ("LL",) else p.build(o[0], t[0])
        n = 2 if p.shapes == ("LL",) else 1
        expected = rule.scale(n) * sum(rule.entry.subs({F.U: oi, F.V: ti}) for oi, ti in zip(o[:n], t[:n]))
        assert sp.expand(built - expected) == 0


def test_a_record_without_a_numpy_form_is_refused():
    class cube(sp.Function):
        pass

    with pytest.raises(ValueError, match="cube: no NumPy form"):
        F.register(F.Primitive(name="cube", cls=cube, build=cube))


def test_defined_functions_refuse_what_they_cannot_evaluate():
    g = F.generic("g")
    with pytest.raises(ValueError, match="no NumPy form"):
        F.define_function("wrapped", g(x) * 2, x)
    with pytest.raises(ValueError, match="built-in"):
        F.define_function("tanh", x, x)
    with pytest.raises(ValueError, match="may use only its variable"):
        F.define_function("shifted", x + sp.Symbol("y"), x)


def test_a_defined_function_has_the_stable_forms_of_what_it_uses():
    swish = F.record_of(DEFINED["swish"])
    assert float(swish.numpy(-1000.0)) == 0.0 and float(swish.numpy(1000.0)) == 1000.0
    assert mpmath.almosteq(float(swish.numpy(0.5)), 0.5 / (1 + math.exp(-0.5)), 1e-15)
