"""Tests of symprop.spec: the safe expression parser and TOML spec files."""

import builtins
import tempfile
import uuid
import warnings
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from symprop import functions as fn
from symprop.spec import FUNCTIONS, Spec, SpecError, load_spec, parse_expression, spec_from_text

a, b, c, x, y, z, t1, t2 = (sp.Symbol(n) for n in "a b c x y z t1 t2".split())
SYMBOLS = {s.name: s for s in (a, b, c, x, y, z, t1, t2)}
g, g1 = fn.generic("g"), fn.generic("g", 1)
GENERIC = {"g": g, "g_prime": g1}
MARKER = Path(tempfile.gettempdir()) / f"pwned-{uuid.uuid4().hex}"


def parse(text, **kw):
    return parse_expression(text, SYMBOLS, GENERIC, **kw)


# -- round trips -----------------------------------------------------------------------

ROUND_TRIPS = [
    ("0.05", sp.Rational(1, 20)),
    ("1e-3", sp.Rational(1, 1000)),
    ("2.5e2 + 1_000", sp.Integer(1250)),
    ("0.1 + 0.2", sp.Rational(3, 10)),
    ("-x", -x),
    ("+x", x),
    ("- -x", x),
    ("-2**2", sp.Integer(-4)),
    ("x**2", x**2),
    ("x**-1.5", x ** sp.Rational(-3, 2)),
    ("x**(1/3)", x ** sp.Rational(1, 3)),
    ("2**0.5", sp.sqrt(2)),
    ("2**-1", sp.Rational(1, 2)),
    ("x**y**2", x ** (y**2)),
    ("2**1000", sp.Integer(2) ** 1000),
    ("a - b - c", a - b - c),
    ("a/b/c", a / b / c),
    ("a/b*c - 3*a + b/2", a / b * c - 3 * a + b / 2),
    ("(t1 - a)**2/2", (t1 - a) ** 2 / 2),
    ("sigmoid(0.5*a*x + b)", fn.sigmoid(a * x / 2 + b)),
    ("tanh(a) + relu(b) + softplus(c)", sp.tanh(a) + fn.relu(b) + fn.softplus(c)),
    ("exp(a) + log(b) - sqrt(c)", sp.exp(a) + sp.log(b) - sp.sqrt(c)),
    ("abs(a) * sign(b) * step(c)", sp.Abs(a) * fn.sign(b) * fn.step(c)),
    ("identity(a + 1)", a + 1),
    ("leaky_relu(a)", fn.leaky_relu(a, sp.Rational(1, 100))),
    ("leaky_relu(a, 0.2)", fn.leaky_relu(a, sp.Rational(1, 5))),
    ("max(a, b)", fn.maximum(a, b)),
    ("max(a, b, c)", fn.maximum(fn.maximum(a, b), c)),
    ("min(a, b, c, x)", fn.minimum(fn.minimum(fn.minimum(a, b), c), x)),
    ("softmax([a, b, c], 2)", fn.softmax(2, a, b, c)),
    ("softmax_cross_entropy([a, b], [t1, t2])", fn.softmax_cross_entropy(2, a, b, t1, t2)),
    ("cross_entropy([a, b], [t1, t2])", -(t1 * sp.log(a) + t2 * sp.log(b))),
    ("half_sse([a, b], [t1, t2])", ((t1 - a) ** 2 + (t2 - b) ** 2) / 2),
    ("mse([a, b], [t1, t2])", fn.mse([a, b], [t1, t2])),
    ("binary_cross_entropy(a, t1)", -(t1 * sp.log(a) + (1 - t1) * sp.log(1 - a))),
    ("g(a*x) * g_prime(b)", g(a * x) * g1(b)),
    ("(a +\n 0.25)", a + sp.Rational(1, 4)),
    ("  \n sigmoid(a)\n", fn.sigmoid(a)),
]


@pytest.mark.parametrize("text, expected", ROUND_TRIPS)
def test_round_trip(text, expected):
    result = parse(text)
    assert result == expected
    assert isinstance(result, sp.Expr)


def test_decimals_are_exact_not_floats():
    result = parse("0.1*a")
    assert result == a / 10 and not result.has(sp.Float)


def test_unicode_names_keep_literal_offsets():
    alpha, beta = sp.Symbol("α"), sp.Symbol("β")
    result = parse_expression("α*0.5 + β*1.25 + 0.75", {"α": alpha, "β": beta})
    assert result == alpha / 2 + beta * sp.Rational(5, 4) + sp.Rational(3, 4)


def test_long_sums_are_not_deep():
    assert parse("+".join(["a"] * 900)) == 900 * a
    assert parse("*".join(["a"] * 300)) == a**300


def test_derivative_of_parsed_generic_reads_back():
    assert sp.diff(parse("g(2*a)"), a) == parse("2*g_prime(2*a)")


_LEAVES = st.one_of(
    st.sampled_from([a, b, c, x]).map(lambda s: (s.name, s)),
    st.integers(0, 10**6).map(lambda n: (str(n), sp.Integer(n))),
    st.decimals(0, 1000, places=3).map(lambda d: (str(d), sp.Rational(*Fraction(d).as_integer_ratio()))),
)
_UNARY = {"sigmoid": fn.sigmoid, "tanh": sp.tanh, "exp": sp.exp, "relu": fn.relu, "abs": sp.Abs, "g": g}
_BINARY = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q}


def _extend(kids):
    return st.one_of(
        st.tuples(kids, st.sampled_from(sorted(_BINARY)), kids).map(
            lambda t: (f"({t[0][0]}) {t[1]} ({t[2][0]})", _BINARY[t[1]](t[0][1], t[2][1]))
        ),
        st.tuples(kids, st.sampled_from([a, b, c])).map(lambda t: (f"({t[0][0]}) / {t[1]}", t[0][1] / t[1])),
        st.tuples(kids, st.integers(0, 3)).map(lambda t: (f"({t[0][0]})**{t[1]}", t[0][1] ** t[1])),
        st.tuples(st.sampled_from(sorted(_UNARY)), kids).map(lambda t: (f"{t[0]}({t[1][0]})", _UNARY[t[0]](t[1][1]))),
        kids.map(lambda k: (f"-({k[0]})", -k[1])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(_LEAVES, _extend, max_leaves=10))
def test_generated_round_trips(pair):
    text, expected = pair
    assume(not any(n.is_Rational and n.p.bit_length() > 5000 for n in sp.preorder_traversal(expected)))
    parsed = parse(text)
    # the parser builds a chain of * and / as one flat product, where Python's operators
    # may first distribute a number over a sum: 2*(a + b)/a against (2*a + 2*b)/a
    assert parsed == expected or sp.expand(parsed - expected) == 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcxyz0123456789.+-*/()[], eE_jgilmoprst'\"", max_size=40) | st.text(max_size=40))
def test_any_text_gives_an_expression_or_a_spec_error(text):
    try:
        result = parse(text)
    except SpecError as err:
        assert "\n" not in str(err) and str(err).startswith("expression: ")
    else:
        assert isinstance(result, sp.Expr)


# -- hostile strings ---------------------------------------------------------------------

HOSTILE = [
    f"__import__('os').system('touch {MARKER}')",
    f"open('{MARKER}', 'w')",
    f"exec(\"open('{MARKER}', 'w')\")",
    f"eval(\"open('{MARKER}', 'w')\")",
    f"(lambda: open('{MARKER}', 'w'))()",
    f"[open('{MARKER}', 'w') for i in [1]]",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__",
    "lambda: 1",
    "[i for i in x]",
    "{1: 2}",
    "{1, 2}",
    "(x, y)",
    "x if y else z",
    "x < y",
    "x and y",
    "not x",
    "(y := 2)",
    'f"{x}"',
    "'abc'",
    "b'abc'",
    "9**9**9",
    "2**100000",
    "10**10**10",
    "x**1000000",
    "x**-10000",
    "(2**1000)**1000",
    "*".join(["9**999"] * 500),
    "1" * 40,
    "1e999999999",
    "x" * 200_000,
    "(" * 1000 + "x" + ")" * 1000,
    "-" * 5000 + "x",
    "sigmoid(" * 300 + "x" + ")" * 300,
    "getattr(x, 'y')",
    "open('/etc/passwd')",
    "print(1)",
    "exec('1')",
    "eval('1')",
    "__import__",
    "__builtins__",
    "x.real",
    "x[0]",
    "sigmoid(x=1)",
    "sigmoid(*x)",
    "sigmoid(**x)",
    "sigmoid.__call__(x)",
    "True",
    "None",
    "...",
    "1j",
    "x // 2",
    "x % 2",
    "x ^ 2",
    "x @ y",
    "~x",
    "1/0",
    "log(0)",
    "x\0",
    "x = 1",
    "import os",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda s: repr(s[:30]))
def test_hostile_strings_are_rejected_without_running(text, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the parser must not execute text")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(SpecError) as info:
        parse(text, where="[nodes] h")
    message = str(info.value)
    assert message.startswith("[nodes] h: ") and "\n" not in message and len(message) < 600
    assert not MARKER.exists()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("x.real", "attribute access is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("q + 1", "unknown symbol 'q'"),
        ("foo(x)", "unknown function 'foo'; known: abs, binary_cross_entropy"),
        ("half_sse([x])", "half_sse takes 2 lists, got 1 argument"),
        ("half_sse(x, y)", "half_sse: argument 1 must be a list"),
        ("sigmoid([x])", "sigmoid: argument 1 must be a scalar, not a list"),
        ("sigmoid(x, y)", "sigmoid takes 1 argument, got 2 arguments"),
        ("half_sse([x], [y, z])", "half_sse: 1 outputs but 2 targets"),
        ("softmax([x, y], 3)", "softmax index 3 is not between 1 and 2"),
        ("softmax([x, y], x)", "softmax: argument 2 must be an integer index"),
        ("softmax([], 1)", "softmax: argument 1 is an empty list"),
        ("[x]", "a list [...] is only allowed as an argument of"),
        ("max(x)", "max takes 2 or more arguments, got 1 argument"),
        ("sigmoid + 1", "sigmoid is a function; call it as sigmoid(...)"),
        ("g(x, y)", "g"),
        ("9**9**9", "exponent 9**9 is too large"),
        ("x**1000000", "exponent 1000000 is too large"),
        ("x ^ 2", "write powers as **"),
        ("__builtins__", "names starting with __ are reserved"),
        ("True", "True is not a number"),
        ("1j", "a complex number is not allowed"),
        ("x +", "syntax error"),
        ("1" * 31, "too many digits (MAX_LITERAL_DIGITS = 30; set SYMPROP_MAX_LITERAL_DIGITS"),
    ],
)
def test_error_messages(text, problem):
    with pytest.raises(SpecError) as info:
        parse(text)
    assert info.value.key == "expression" and info.value.file is None
    assert problem in info.value.problem


def test_spec_error_format():
    assert str(SpecError("f.toml", "[nodes] h", "bad")) == "f.toml: [nodes] h: bad"
    assert str(SpecError("f.toml", None, "no such file")) == "f.toml: no such file"
    assert str(SpecError(None, "k", "two\nlines")) == "k: two lines"
    assert isinstance(SpecError(None, None, "p"), ValueError)


def test_source_has_no_dynamic_execution():
    source = (Path(__file__).parents[1] / "symprop" / "spec.py").read_text()
    for word in ("eval(", "exec(", "sympify", "parse_expr(", "compile("):
        assert word not in source


# -- spec files ----------------------------------------------------------------------------

VALID = """
[network]
inputs = ["x_1", "x_2"]
targets = ["t_1"]
params = ["w_1", "w_2", "b_1", "v"]
functions = ["g"]
loss = "E"
reduction = "mean"

[nodes]
E = "(t_1 - o)**2/2"
o = "g(v*h_1)"
h_1 = "sigmoid(w_1*x_1 + w_2*x_2 + b_1)"

[values]
x_1 = [0.05, 0.1]
x_2 = [0.1, 0.2]
t_1 = [0.01, 0.99]
w_1 = 0.15
w_2 = 0.2
b_1 = 0.35
v = 1

[display]
w_1 = "w^{(1)}_{1}"

[bind]
g = "tanh"
"""


def test_valid_spec_loads(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(VALID)
    spec = load_spec(path)
    assert isinstance(spec, Spec) and spec.file == str(path)
    s = spec.symbols
    assert set(s) == {"x_1", "x_2", "t_1", "w_1", "w_2", "b_1", "v", "E", "o", "h_1"}
    assert all(sym == sp.Symbol(name) for name, sym in s.items())
    net = spec.network
    assert net.order == (s["h_1"], s["o"], s["E"])
    assert [net.role(s[n]) for n in ("x_1", "t_1", "w_1", "h_1", "E")] == ["input", "target", "param", "hidden", "loss"]
    assert net.params == (s["w_1"], s["w_2"], s["b_1"], s["v"]) and net.reduction == "mean"
    assert net.nodes[s["o"]] == g(s["v"] * s["h_1"])
    assert net.nodes[s["h_1"]] == fn.sigmoid(s["w_1"] * s["x_1"] + s["w_2"] * s["x_2"] + s["b_1"])
    assert spec.values[s["x_1"]] == (0.05, 0.1) and spec.values[s["w_1"]] == 0.15
    assert spec.values[s["v"]] == 1.0 and isinstance(spec.values[s["v"]], float)
    assert spec.display == {s["w_1"]: "w^{(1)}_{1}"} and net.display_name(s["w_1"]) == "w^{(1)}_{1}"
    assert {name: p.cls for name, p in spec.functions.items()} == {"g": g, "g_prime": g1}
    assert {name: p.name for name, p in spec.bind.items()} == {"g": "tanh"} and spec.generics == ["g"]
    assert spec.raw["network"]["loss"] == "E"


def test_minimal_spec_defaults():
    spec = spec_from_text('[network]\nparams = ["w"]\nloss = "E"\n[nodes]\nE = "w**2"')
    assert spec.file == "<string>" and spec.network.reduction == "sum"
    assert spec.values == {} and spec.display == {} and spec.bind == {} and spec.functions == {}


def test_network_warnings_pass_through():
    text = '[network]\nparams = ["w", "u"]\nloss = "E"\n[nodes]\nE = "w**2"'
    with pytest.warns(UserWarning, match="does not depend on parameter u"):
        spec_from_text(text)


BASE = """
[network]
inputs = ["x"]
targets = ["t"]
params = ["w"]
loss = "E"

[nodes]
h = "sigmoid(w*x)"
E = "(t - h)**2/2"
"""

BAD = [
    ("syntax", BASE + "oops = = 1\n", "TOML", "line 11"),
    ("unknown function", BASE.replace("sigmoid(", "sigmod("), "[nodes] h", "unknown function 'sigmod'"),
    ("undeclared symbol", BASE.replace("w*x", "w*q"), "[nodes] h", "unknown symbol 'q'"),
    ("hostile node", BASE.replace("sigmoid(w*x)", "__import__('os').getcwd()"), "[nodes] h", "not allowed"),
    ("cycle", BASE.replace("w*x)", "w*x + u)") + 'u = "tanh(h)"\n', "[nodes] ", "cycle: "),
    ("node is a param", BASE.replace('["w"]', '["w", "h"]'), "[nodes] h", "h is declared twice (as param and as node)"),
    ("declared twice", BASE.replace('inputs = ["x"]', 'inputs = ["x", "x"]'), "[network] inputs", "x is declared twice"),
    ("loss not a node", BASE.replace('loss = "E"', 'loss = "w"'), "[network] loss", "the loss w is not a defined node"),
    ("loss undefined", BASE.replace('loss = "E"', 'loss = "F"'), "[network] loss", "not a defined node"),
    ("loss not a name", BASE.replace('loss = "E"', "loss = 3"), "[network] loss", "must be the name of a node"),
    ("unequal batches", BASE + "[values]\nx = [1, 2]\nt = [1]\n", "[values] t", "batch of 1 values, but x has 2"),
    ("bool value", BASE + "[values]\nw = true\n", "[values] w", "must be a number or a list of numbers, not True"),
    ("bool in batch", BASE + "[values]\nx = [1.0, false]\n", "[values] x", "not False"),
    ("nan value", BASE + "[values]\nw = nan\n", "[values] w", "not a finite number"),
    ("string value", BASE + '[values]\nw = "0.5"\n', "[values] w", "must be a number"),
    ("empty batch", BASE + "[values]\nx = []\n", "[values] x", "empty batch"),
    ("value for node", BASE + "[values]\nh = 1\n", "[values] h", "h is a node"),
    ("value for unknown", BASE + "[values]\nq = 1\n", "[values] q", "unknown symbol 'q'"),
    ("unknown table", BASE + "[extra]\nk = 1\n", "[extra]", "unknown table; known: [network], [nodes]"),
    ("table not a table", "extra = 1\n" + BASE, "[extra]", "unknown table"),
    ("missing nodes", BASE.split("[nodes]")[0], "[nodes]", "missing table"),
    ("missing network", '[nodes]\nE = "1"\n', "[network]", "missing table"),
    ("empty nodes", BASE.split("[nodes]")[0] + "[nodes]\n", "[nodes]", "no nodes defined"),
    ("missing params", BASE.replace('params = ["w"]', ""), "[network] params", "missing key"),
    ("params not a list", BASE.replace('["w"]', '"w"'), "[network] params", "must be a list of names"),
    ("params not names", BASE.replace('["w"]', "[1]"), "[network] params", "must be a list of names"),
    ("unknown key", BASE.replace('loss = "E"', 'loss = "E"\nlayers = 3'),
     "[network] layers", "unknown key; known: inputs, targets, params"),
    ("bad reduction", BASE.replace('loss = "E"', 'loss = "E"\nreduction = "max"'), "[network] reduction", "'sum' or 'mean'"),
    ("keyword name", BASE.replace('["w"]', '["lambda"]'), "[network] params", "'lambda' is a Python keyword"),
    ("dunder name", BASE.replace('["w"]', '["__w"]'), "[network] params", "names starting with __ are reserved"),
    ("bad name", BASE.replace('["w"]', '["w 1"]'), "[network] params", "'w 1' is not a valid name"),
    ("function name", BASE.replace('["w"]', '["exp"]'), "[network] params", "exp is the name of a function"),
    ("generic prime name", BASE.replace('["w"]', '["g_prime"]').replace('loss = "E"', 'loss = "E"\nfunctions = ["g"]'), "[network] params", "is the name of a function"),
    ("generic is builtin", BASE.replace('loss = "E"', 'loss = "E"\nfunctions = ["tanh"]'), "[network] functions",
     "tanh is a built-in function"),
    ("node not a string", BASE + "k = 3\n", "[nodes] k", "must be a string expression"),
    ("dotted node", BASE + 'k.j = "x"\n', "[nodes] k", "must be a string expression"),
    ("display unknown", BASE + '[display]\nq = "q"\n', "[display] q", "unknown symbol 'q'"),
    ("display not str", BASE + "[display]\nw = 1\n", "[display] w", "must be a string"),
    ("bind unknown activation", BASE.replace('loss = "E"', 'loss = "E"\nfunctions = ["g"]') + '[bind]\ng = "swish"\n',
     "[bind] g", "unknown activation 'swish'; known: identity, leaky_relu"),
    ("bind undeclared", BASE + '[bind]\ng = "tanh"\n', "[bind] g", "g is not a function declared in [network] functions"),
    ("list length mismatch", BASE.replace('"(t - h)**2/2"', '"half_sse([h, x], [t])"'), "[nodes] E", "2 outputs but 1 targets"),
]


@pytest.mark.parametrize("name, text, key, problem", BAD, ids=[case[0] for case in BAD])
def test_bad_spec(tmp_path, name, text, key, problem):
    path = tmp_path / "bad_spec.toml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SpecError) as info:
            load_spec(path)
    err, message = info.value, str(info.value)
    assert err.file == str(path) and message.startswith(f"{path}: {err.key}: ")
    assert err.key.startswith(key) and problem in err.problem, message
    assert "\n" not in message


def test_cycle_names_the_cycle():
    text = BASE.replace("w*x)", "w*x + u)") + 'u = "tanh(h)"\n'
    with pytest.raises(SpecError) as info:
        spec_from_text(text, "cyc.toml")
    assert info.value.key in ("[nodes] h", "[nodes] u")
    assert info.value.problem in ("cycle: h -> u -> h", "cycle: u -> h -> u")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory_and_binary_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not a UTF-8 text file"):
        load_spec(binary)


def test_function_table_lists_the_brief():
    expected = {
        "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "exp", "log", "sqrt", "abs", "sign", "sinh", "cosh", "sech",
        "step", "max", "min", "identity", "softmax", "softmax_cross_entropy", "cross_entropy",
        "half_sse", "mse", "binary_cross_entropy",
    }
    assert set(FUNCTIONS) == expected


def test_parser_warnings_are_silenced():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for text in ('"\\d"', "1if x else 2", "x is 1"):
            with pytest.raises(SpecError):
                parse(text)


@pytest.mark.parametrize("text, problem", [
    ("-" * 250 + "x", r"nested too deeply \(MAX_NESTING = 200"),
    ("x**" * 250 + "x", "a power tower 251 levels high"),
    ("(-(-" * 100 + "x" + "))" * 100, r"nested too deeply \(MAX_NESTING = 200"),
])
def test_deep_nesting_is_a_clear_error(text, problem):
    with pytest.raises(SpecError, match=problem):
        parse(text)


def test_nesting_up_to_the_limit_is_fine():
    assert parse("-" * 198 + "x") == x
    assert parse("exp(" * 150 + "x" + ")" * 150).has(sp.exp)


def test_parse_expression_rejects_non_strings():
    with pytest.raises(SpecError, match="must be a string"):
        parse(3)


def test_a_question_family_is_pointed_to_exam():
    with pytest.raises(SpecError) as err:
        spec_from_text('[family]\nname = "x"\n', "fam.toml")
    assert err.value.key == "[family]" and "symprop exam" in str(err.value)
