"""Spec files: networks written as TOML, with node expressions read by a safe parser.

Node expressions are never executed: :func:`parse_expression` walks Python's syntax tree
with an allow-list (numbers, declared names, + - * / **, calls of known functions) and
builds the SymPy expression itself. Every problem is a one-line :class:`SpecError` that
names the file, the key and the problem.

>>> spec = spec_from_text('''
... [network]
... inputs = ["x"]
... targets = ["t"]
... params = ["w"]
... loss = "E"
... [nodes]
... E = "(t - h)**2/2"
... h = "sigmoid(w*x)"
... [values]
... x = 0.5
... ''', "demo.toml")
>>> spec.network.order, spec.values
((h, E), {x: 0.5})
>>> spec_from_text('[network]\\nparams = "w"\\nloss = "E"\\n[nodes]\\nE = "w"', "bad.toml")
Traceback (most recent call last):
...
symprop.spec.SpecError: bad.toml: [network] params: must be a list of names
"""

from __future__ import annotations

import ast
import functools
import keyword
import math
import re
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import sympy as sp

from . import functions as fn
from .graph import Network, NetworkError

__all__ = [
    "SpecError", "Spec", "parse_expression", "load_spec", "spec_from_text", "FUNCTIONS",
    "Layers", "load_layers", "layers_from_text", "read_text", "parse_toml", "read_values",
]

MAX_LENGTH = 100_000  # characters in one expression
MAX_DEPTH = 200  # nesting levels of the syntax tree
MAX_DIGITS = 30  # digits in a number literal
MAX_EXPONENT = 1000  # |n| in x**n when n is a number
MAX_BITS = 20_000  # bits in a number computed from literals (2**1000 has 1001)


class SpecError(ValueError):
    """A problem in a spec; ``str(err)`` is the one line ``"{file}: {key}: {problem}"``."""

    def __init__(self, file: str | None, key: str | None, problem: str):
        self.file, self.key, self.problem = file, key, problem.replace("\n", " ")
        super().__init__(": ".join(p for p in (file, key, self.problem) if p is not None))


# -- the function table ----------------------------------------------------------------
# name -> (call shapes, description, builder). A shape has one letter per argument:
# s = scalar, L = list of scalars, k = integer literal; a trailing "+" repeats the last.


def _fold(f):
    return lambda *args: functools.reduce(f, args)


FUNCTIONS: dict[str, tuple[tuple[str, ...], str, Callable]] = {
    **{
        name: (("s",), "1 argument", f)
        for name, f in [
            ("sigmoid", fn.sigmoid), ("tanh", sp.tanh), ("relu", fn.relu), ("softplus", fn.softplus),
            ("exp", sp.exp), ("log", sp.log), ("sqrt", sp.sqrt), ("abs", sp.Abs), ("sign", sp.sign),
            ("step", fn.step), ("identity", fn.identity),
        ]
    },
    "leaky_relu": (("s", "ss"), "1 or 2 arguments", fn.leaky_relu),
    "max": (("ss+",), "2 or more arguments", _fold(fn.maximum)),
    "min": (("ss+",), "2 or more arguments", _fold(fn.minimum)),
    "binary_cross_entropy": (("ss",), "2 arguments", fn.binary_cross_entropy),
    "softmax": (("Lk",), "a list and an index counted from 1", lambda z, k: fn.softmax(k, *z)),
    "softmax_cross_entropy": (("LL",), "2 lists", fn.softmax_cross_entropy_of),
    "cross_entropy": (("LL",), "2 lists", fn.cross_entropy),
    "half_sse": (("LL",), "2 lists", fn.half_sse),
    "mse": (("LL",), "2 lists", fn.mse),
}
_VECTOR = sorted(name for name, (shapes, _, _) in FUNCTIONS.items() if "L" in shapes[0])

_NOT_ALLOWED = {
    ast.Attribute: "attribute access", ast.Subscript: "indexing with [...]", ast.Slice: "slicing",
    ast.Lambda: "lambda", ast.IfExp: "a conditional expression (... if ... else ...)",
    ast.Compare: "comparison", ast.BoolOp: "and/or", ast.NamedExpr: "assignment with :=",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.Starred: "unpacking with *",
    ast.Tuple: "a tuple", ast.Set: "a set", ast.Dict: "a dict", ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_OPERATORS = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitXor: "^ (write powers as **)", ast.BitAnd: "&", ast.Not: "not",
    ast.Invert: "~",
}
_ADD, _MUL = (ast.Add, ast.Sub), (ast.Mult, ast.Div)
_FLOAT = r"(\d*)\.?(\d*)(?:[eE]([+-]?\d+))?"  # a decimal literal, underscores removed


def parse_expression(
    text: str, symbols: Mapping[str, sp.Symbol], functions: Mapping[str, Callable] | None = None,
    *, where: str = "expression",
) -> sp.Expr:
    """Parse ``text`` into a SymPy expression without executing anything.

    ``symbols`` maps the allowed names to their Symbols; ``functions`` adds callables
    (such as generic activations) to :data:`FUNCTIONS`. Errors are :class:`SpecError`
    with ``key=where``. Decimal numbers are read exactly: ``0.05`` is ``1/20``.

    >>> import sympy as sp
    >>> x, w = sp.Symbol("x"), sp.Symbol("w")
    >>> parse_expression("sigmoid(0.5*w*x) + max(x, w, 1)", {"x": x, "w": w})
    maximum(maximum(x, w), 1) + sigmoid(w*x/2)
    >>> parse_expression("x.__class__", {"x": x})
    Traceback (most recent call last):
    ...
    symprop.spec.SpecError: expression: attribute access is not allowed
    """
    if not isinstance(text, str):
        raise SpecError(None, where, f"must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise SpecError(None, where, f"the expression has {len(text)} characters, more than {MAX_LENGTH}")
    text = text.strip()
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": the text is rejected anyway
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        place = f" (line {err.lineno}, column {err.offset})" if "\n" in text else f" (column {err.offset})"
        raise SpecError(None, where, f"syntax error: {err.msg}{place if err.offset else ''}") from None
    except (RecursionError, MemoryError):
        raise SpecError(None, where, "the expression is too long or too deeply nested to parse") from None
    except ValueError as err:  # e.g. a null byte
        raise SpecError(None, where, f"cannot parse: {err}") from None
    table = dict(FUNCTIONS)
    table.update({name: (("s+",), "1 or more arguments", f) for name, f in (functions or {}).items()})
    try:
        expr = _Parser(text, symbols, table, where).expr(tree.body, 1)
    except RecursionError:
        raise SpecError(None, where, "the expression is too deeply nested") from None
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise SpecError(None, where, f"the expression is undefined or infinite: {expr}")
    return expr


class _Parser:
    """Builds SymPy objects from an allow-listed Python syntax tree."""

    def __init__(self, text, symbols, table, where):
        self.text, self.symbols, self.table, self.where = text, symbols, table, where
        self.lines = text.encode().split(b"\n")  # column offsets are UTF-8 byte offsets

    def fail(self, problem):
        raise SpecError(None, self.where, problem)

    def source(self, node):
        return ast.get_source_segment(self.text, node) or type(node).__name__

    def literal(self, node):
        """The text of a one-line literal, without get_source_segment's re-splitting."""
        if node.lineno == node.end_lineno:
            return self.lines[node.lineno - 1][node.col_offset : node.end_col_offset].decode()
        return self.source(node)

    def expr(self, node, depth):
        if depth > MAX_DEPTH:
            self.fail(f"the expression is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ast.BinOp):
            return self.binop(node, depth)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.expr(node.operand, depth + 1)
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand, depth + 1)
            self.fail(f"the operator {_OPERATORS[type(node.op)]} is not allowed")
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.List):
            self.fail(f"a list [...] is only allowed as an argument of {', '.join(_VECTOR)}")
        self.fail(f"{_NOT_ALLOWED.get(type(node), type(node).__name__)} is not allowed")

    def binop(self, node, depth):
        if isinstance(node.op, ast.Pow):
            return self.power(node, depth)
        family = _ADD if isinstance(node.op, _ADD) else _MUL if isinstance(node.op, _MUL) else None
        if family is None:
            self.fail(f"the operator {_OPERATORS[type(node.op)]} is not allowed")
        # walk the left spine of a + b - c + ... at one depth, so long sums are not "deep"
        spine = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, family):
            spine.append(node)
            node = node.left
        operands = [self.expr(node, depth + 1)]
        for step in reversed(spine):
            right = self.expr(step.right, depth + 1)
            if isinstance(step.op, (ast.Sub, ast.Div)):
                right = -right if isinstance(step.op, ast.Sub) else 1 / right
            operands.append(right)
        # bound the numbers before SymPy computes them: 9**999*9**999*... would take minutes
        terms = [t for o in operands for t in (o.args if o.is_Add else (o,))]
        coeffs = [c for c in (t.as_coeff_Mul()[0] for t in terms) if c.is_Rational]
        if family is _ADD:  # a sum's numerator grows by the size of its distinct denominators
            bits = max((c.p.bit_length() for c in coeffs), default=0)
            bits += sum(q.bit_length() for q in {c.q for c in coeffs})
        else:
            bits = sum(c.p.bit_length() + c.q.bit_length() for c in coeffs)
        if bits > MAX_BITS:
            self.fail(f"the numbers in {self.source(spine[0])[:40]}... are too large")
        return sp.Add(*operands) if family is _ADD else sp.Mul(*operands)

    def power(self, node, depth):
        # the exponent is checked before any Pow is built, so 9**9**9 is refused, not computed
        exponent = self.expr(node.right, depth + 1)
        if exponent.is_Rational and abs(exponent) > MAX_EXPONENT:
            self.fail(f"exponent {self.source(node.right)} is too large (the limit is {MAX_EXPONENT})")
        base = self.expr(node.left, depth + 1)
        if base.is_Rational and exponent.is_Rational:
            bits = max(base.p.bit_length(), base.q.bit_length())
            if bits * abs(exponent) > MAX_BITS or (bits > 1000 and not exponent.is_Integer):
                self.fail(f"{self.source(node)} is too large a number")
        return base**exponent

    def number(self, node):
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            self.fail(f"{value!r} is not a number")
        if isinstance(value, int):
            if abs(value) >= 10**MAX_DIGITS:
                self.fail(f"the integer {self.literal(node)[:20]}... has more than {MAX_DIGITS} digits")
            return sp.Integer(value)
        if isinstance(value, float):
            text = self.literal(node).replace("_", "")
            match = re.fullmatch(_FLOAT, text)
            exp = (match[3] or "0") if match else ""
            digits = (match[1] + match[2]).lstrip("0") if match else ""
            if not match or len(digits) > MAX_DIGITS or len(exp.lstrip("+-0")) > 3:
                self.fail(f"the number {text[:40]} is too long or too large")
            fraction = Fraction(text)
            return sp.Rational(fraction.numerator, fraction.denominator)
        kind = {str: "a string", bytes: "a bytes literal", complex: "a complex number"}
        self.fail(f"{kind.get(type(value), type(value).__name__)} is not allowed")

    def name(self, node):
        if node.id.startswith("__"):
            self.fail(f"the name {node.id} is not allowed (names starting with __ are reserved)")
        if node.id in self.symbols:
            return self.symbols[node.id]
        if node.id in self.table:
            self.fail(f"{node.id} is a function; call it as {node.id}(...)")
        self.fail(f"unknown symbol {node.id!r}")

    def call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            self.expr(node.func, depth + 1)  # raises: attribute access, lambda, ...
            self.fail("only functions called by name are allowed")
        name = node.func.id
        if name.startswith("__"):
            self.fail(f"the name {name} is not allowed (names starting with __ are reserved)")
        if name not in self.table:
            self.fail(f"unknown function {name!r}; known: {', '.join(sorted(self.table))}")
        if node.keywords:
            kw = node.keywords[0].arg
            self.fail(f"keyword arguments ({kw}=...) are not allowed" if kw else "**kwargs is not allowed")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            self.fail("*args is not allowed")
        shapes, takes, build = self.table[name]
        n = len(node.args)
        shape = next((s for s in shapes if (n >= len(s) - 1 if s.endswith("+") else n == len(s))), None)
        if shape is None:
            self.fail(f"{name} takes {takes}, got {n} argument{'' if n == 1 else 's'}")
        kinds = shape.rstrip("+")
        args = [self.argument(name, i, kinds[min(i, len(kinds) - 1)], arg, depth)
                for i, arg in enumerate(node.args)]
        try:
            result = build(*args)
        except SpecError:
            raise
        except (TypeError, ValueError, ArithmeticError) as err:
            self.fail(str(err) if str(err).startswith((f"{name}:", f"{name} ")) else f"{name}: {err}")
        if not isinstance(result, sp.Expr):
            self.fail(f"{name} did not give a SymPy expression")
        return result

    def argument(self, name, i, kind, node, depth):
        if kind == "L":
            if not isinstance(node, ast.List):
                self.fail(f"{name}: argument {i + 1} must be a list [...]")
            if not node.elts:
                self.fail(f"{name}: argument {i + 1} is an empty list")
            return [self.expr(element, depth + 1) for element in node.elts]
        if isinstance(node, ast.List):
            self.fail(f"{name}: argument {i + 1} must be a scalar, not a list")
        if kind == "k":
            if not (isinstance(node, ast.Constant) and type(node.value) is int):
                self.fail(f"{name}: argument {i + 1} must be an integer index counted from 1")
            return node.value
        return self.expr(node, depth + 1)


# -- spec files ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A loaded spec: the :class:`~symprop.graph.Network` and everything around it."""

    file: str
    network: Network
    symbols: dict[str, sp.Symbol]
    functions: dict[str, type]  # the declared generics g and their derivatives g_prime
    values: dict[sp.Symbol, float | tuple[float, ...]]
    bind: dict[str, str]
    display: dict[sp.Symbol, str]
    raw: dict
    layers: Layers | None = None  # the [layers] table, when the spec has one


_TABLES = ("network", "nodes", "values", "display", "bind", "layers")
_NETWORK_KEYS = ("inputs", "targets", "params", "functions", "loss", "reduction")
_ROLES = {"inputs": "input", "targets": "target", "params": "param"}


def load_spec(path) -> Spec:
    """Read the TOML spec file at ``path``; see :func:`spec_from_text`."""
    return spec_from_text(read_text(path), str(path))


def read_text(path) -> str:
    """The text of the file at ``path``; a missing or unreadable file is a :class:`SpecError`."""
    file = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(file, None, "no such file") from None
    except UnicodeDecodeError:
        raise SpecError(file, None, "not a UTF-8 text file") from None
    except OSError as err:
        raise SpecError(file, None, f"cannot read: {err.strerror or err}") from None


def parse_toml(text: str, file: str = "<string>") -> dict:
    """TOML text as tables; a syntax error is a :class:`SpecError` naming ``file``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(file, "TOML", str(err)) from None


def spec_from_text(text: str, file: str = "<string>") -> Spec:
    """Build a :class:`Spec` from TOML text; ``file`` names it in error messages."""
    raw = parse_toml(text, file)

    def fail(key, problem):
        raise SpecError(file, key, problem)

    if "family" in raw:
        fail("[family]", "this file is a question family: `symprop exam FILE --variants N` writes its variants")
    for name, table in raw.items():
        if name not in _TABLES:
            fail(f"[{name}]", "unknown table; known: " + ", ".join(f"[{t}]" for t in _TABLES))
        if not isinstance(table, dict):
            fail(f"[{name}]", "must be a table")
    if "layers" in raw:
        return _layers_spec(raw, file)
    for name in ("network", "nodes"):
        if name not in raw:
            fail(f"[{name}]", "missing table")
    net, node_texts = raw["network"], raw["nodes"]
    for key in net:
        if key not in _NETWORK_KEYS:
            fail(f"[network] {key}", "unknown key; known: " + ", ".join(_NETWORK_KEYS))
    for key in ("params", "loss"):
        if key not in net:
            fail(f"[network] {key}", "missing key")
    groups = {}
    for key in ("inputs", "targets", "params", "functions"):
        names = net.get(key, [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            fail(f"[network] {key}", "must be a list of names")
        groups[key] = names
    loss, reduction = net["loss"], net.get("reduction", "sum")
    if not isinstance(loss, str):
        fail("[network] loss", "must be the name of a node")
    if reduction not in ("sum", "mean"):
        fail("[network] reduction", "must be 'sum' or 'mean'")
    if not node_texts:
        fail("[nodes]", "no nodes defined (the loss at least must be a node)")

    generics, table = {}, {}
    for g in groups["functions"]:
        _check_name(fail, "[network] functions", g)
        if g in FUNCTIONS or g in table:
            problem = "a built-in function" if g in FUNCTIONS else "declared twice"
            fail("[network] functions", f"{g} is {problem}")
        generics[g] = table[g] = fn.generic(g)
        table[g + "_prime"] = fn.generic(g, 1)

    roles: dict[str, str] = {}
    declared = [(f"[network] {key}", _ROLES[key], n) for key in _ROLES for n in groups[key]]
    for key, role, name in declared + [(f"[nodes] {n}", "node", n) for n in node_texts]:
        _check_name(fail, key, name)
        if name in roles:
            fail(key, f"{name} is declared twice (as {roles[name]} and as {role})")
        if name in FUNCTIONS or name in table:
            fail(key, f"{name} is the name of a function")
        roles[name] = role
    symbols = {name: sp.Symbol(name) for name in roles}

    nodes = {}
    for name, text in node_texts.items():
        if not isinstance(text, str):
            fail(f"[nodes] {name}", "must be a string expression")
        try:
            nodes[symbols[name]] = parse_expression(text, symbols, table, where=f"[nodes] {name}")
        except SpecError as err:
            raise SpecError(file, err.key, err.problem) from None

    def value_of(name, key, batch):
        if roles.get(name) == "node":
            fail(key, f"{name} is a node; values are for inputs, targets and parameters")
        if name not in symbols:
            fail(key, f"unknown symbol {name!r}")
        return symbols[name]

    values = read_values(raw.get("values", {}), file, value_of)

    display = {}
    for name, latex in raw.get("display", {}).items():
        if name not in symbols:
            fail(f"[display] {name}", f"unknown symbol {name!r}")
        if not isinstance(latex, str):
            fail(f"[display] {name}", "must be a string (a LaTeX name)")
        display[symbols[name]] = latex

    bind = dict(raw.get("bind", {}))
    for name, activation in bind.items():
        if name not in generics:
            fail(f"[bind] {name}", f"{name} is not a function declared in [network] functions")
        if not isinstance(activation, str) or activation not in fn.ACTIVATIONS:
            known = ", ".join(sorted(fn.ACTIVATIONS))
            fail(f"[bind] {name}", f"unknown activation {activation!r}; known: {known}")

    def pick(key):
        return [symbols[n] for n in groups[key]]

    try:
        network = Network(
            nodes, loss=sp.Symbol(loss), params=pick("params"), inputs=pick("inputs"),
            targets=pick("targets"), reduction=reduction, display=display,
        )
    except NetworkError as err:
        fail(_network_key(err.symbol, node_texts, loss, groups), str(err))
    return Spec(file, network, symbols, table, values, bind, display, raw)


def _check_name(fail, key, name):
    if not name.isidentifier():
        fail(key, f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)")
    if keyword.iskeyword(name):
        fail(key, f"{name!r} is a Python keyword")
    if name.startswith("__"):
        fail(key, f"{name!r} is not allowed (names starting with __ are reserved)")


def read_values(table: Mapping, file: str, value_of: Callable, prefix: str = "[values] ") -> dict:
    """A ``[values]`` table: numbers, or non-empty lists of numbers of one length (a batch).

    ``value_of(name, key, batch)`` says what each entry gives a value to (the key of the
    result), raising :class:`SpecError` for a name that takes none.

    >>> read_values({"x": [1, 2], "w": 0.5}, "v.toml", lambda name, key, batch: name)
    {'x': (1.0, 2.0), 'w': 0.5}
    """
    def fail(key, problem):
        raise SpecError(file, key, problem)

    values, batch = {}, None
    for name, value in table.items():
        key = f"{prefix}{name}"
        target = value_of(name, key, isinstance(value, list))
        if isinstance(value, list):
            if not value:
                fail(key, "an empty batch")
            if batch and len(value) != batch[1]:
                fail(key, f"a batch of {len(value)} values, but {batch[0]} has {batch[1]}")
            batch = batch or (name, len(value))
            values[target] = tuple(_number(fail, key, v) for v in value)
        else:
            values[target] = _number(fail, key, value)
    return values


def _number(fail, key, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
        fail(key, f"{value!r} is not a finite number")
    fail(key, f"must be a number or a list of numbers, not {value!r}")


def _network_key(symbol, node_texts, loss, groups):
    if symbol is None:
        return "[network]"
    if symbol.name in node_texts:
        return f"[nodes] {symbol.name}"
    if symbol.name == loss:
        return "[network] loss"
    return next((f"[network] {key}" for key in _ROLES if symbol.name in groups[key]), "[network]")


# -- [layers]: a layered network in a few lines -------------------------------------------
# [layers] sizes = [784, 128, 10], hidden, output, loss (names as in symprop.layered.mlp),
# reduction, seed and batch (random weights and data for the numbers). It stands in for
# [network] and [nodes]; [values] may give numbers by mlp's names (x_1, t_1, w_1_2_1, b_1_2).

MAX_SCALAR_PARAMS = 200_000  # a bigger [layers] network is refused in the scalar form
_LAYERS_KEYS = ("sizes", "hidden", "output", "loss", "reduction", "seed", "batch")
_LAYERS_NAME = r"(x|t)_(\d+)|(w)_(\d+)_(\d+)_(\d+)|(b)_(\d+)_(\d+)"


@dataclass(frozen=True)
class Layers:
    """A ``[layers]`` table: a fully connected network given by its layer widths.

    ``hidden`` is one activation name or one per hidden layer; ``values`` maps mlp's
    names to numbers (a tuple is a batch); ``seed`` and ``batch`` draw random weights and
    data (:func:`symprop.matrix.random_layered`) when ``values`` is empty.
    """

    file: str
    sizes: tuple[int, ...]
    hidden: str | tuple[str, ...]
    output: str
    loss: str
    reduction: str
    seed: int
    batch: int
    values: dict[str, float | tuple[float, ...]]

    @property
    def param_count(self) -> int:
        return sum(n * (m + 1) for m, n in zip(self.sizes, self.sizes[1:]))


def load_layers(path) -> Layers | None:
    """The ``[layers]`` table of the spec file at ``path``, or None if it has none.

    Cheap at any size: nothing is built, so a 150528-100-10 network loads at once.
    """
    return layers_from_text(read_text(path), str(path))


def layers_from_text(text: str, file: str = "<string>") -> Layers | None:
    """:func:`load_layers` for TOML text.

    >>> layers_from_text('[layers]\\nsizes = [784, 128, 10]\\noutput = "softmax"\\nloss = "cross_entropy"').sizes
    (784, 128, 10)
    """
    raw = parse_toml(text, file)
    if "layers" not in raw:
        return None
    return _read_layers(raw, file)


def _read_layers(raw, file) -> Layers:
    def fail(key, problem):
        raise SpecError(file, key, problem)

    for name in raw:
        if name not in ("layers", "values"):
            fail(f"[{name}]", "a [layers] spec defines its network itself: only [values] may go with it")
    table = raw["layers"]
    if not isinstance(table, dict):
        fail("[layers]", "must be a table")
    for key in table:
        if key not in _LAYERS_KEYS:
            fail(f"[layers] {key}", "unknown key; known: " + ", ".join(_LAYERS_KEYS))
    sizes = table.get("sizes")
    if sizes is None:
        fail("[layers] sizes", "missing key")
    if not (isinstance(sizes, list) and len(sizes) >= 2
            and all(type(n) is int and n >= 1 for n in sizes)):
        fail("[layers] sizes", "must be a list of at least two positive integers (inputs first)")
    hidden = table.get("hidden", "sigmoid")
    if isinstance(hidden, list):
        if len(hidden) != len(sizes) - 2 or not all(isinstance(h, str) for h in hidden):
            fail("[layers] hidden", f"must be one activation name or a list of {len(sizes) - 2}")
        hidden = tuple(hidden)
    names = hidden if isinstance(hidden, tuple) else (hidden,)
    for name in names:
        if name not in fn.ACTIVATIONS:
            fail("[layers] hidden", f"unknown activation {name!r}; known: {', '.join(sorted(fn.ACTIVATIONS))}")
    output = table.get("output", "identity")
    if output not in fn.ACTIVATIONS and output != "softmax":
        fail("[layers] output", f"unknown activation {output!r}; known: {', '.join(sorted(fn.ACTIVATIONS))}, softmax")
    loss = table.get("loss", "half_sse")
    if loss not in fn.LOSSES:
        fail("[layers] loss", f"unknown loss {loss!r}; known: {', '.join(sorted(fn.LOSSES))}")
    reduction = table.get("reduction", "sum")
    if reduction not in ("sum", "mean"):
        fail("[layers] reduction", "must be 'sum' or 'mean'")
    numbers = {}
    for key, low in (("seed", 0), ("batch", 1)):
        value = table.get(key, low)
        if type(value) is not int or value < low:
            fail(f"[layers] {key}", f"must be an integer of at least {low}")
        numbers[key] = value
    def value_of(name, key, batch):
        if not _layers_name(name, sizes):
            fail(key, f"unknown symbol {name!r} (a [layers] network has x_i, t_j, w_l_j_i and b_l_j)")
        if batch and name[0] in "wb":
            fail(key, "a parameter takes one value, not a batch")
        return name

    values = read_values(raw.get("values", {}), file, value_of)
    return Layers(file, tuple(sizes), hidden, output, loss, reduction, numbers["seed"], numbers["batch"], values)


def _layers_name(name, sizes) -> bool:
    """Whether ``name`` is an input, target, weight or bias of the layered network."""
    m = re.fullmatch(_LAYERS_NAME, name)
    if not m:
        return False
    if m[1]:
        i, n = int(m[2]), sizes[0] if m[1] == "x" else sizes[-1]
        return 1 <= i <= n
    l, j, i = (int(m[4]), int(m[5]), int(m[6])) if m[3] else (int(m[8]), int(m[9]), 1)
    return 1 <= l < len(sizes) and 1 <= j <= sizes[l] and 1 <= i <= sizes[l - 1]


def _layers_spec(raw, file) -> Spec:
    """The scalar form of a [layers] spec: :func:`symprop.layered.mlp` (layer form)."""
    from .layered import mlp

    layers = _read_layers(raw, file)
    if layers.param_count > MAX_SCALAR_PARAMS:
        raise SpecError(file, "[layers] sizes", (
            f"{layers.param_count:,} parameters are too many for the scalar form (at most "
            f"{MAX_SCALAR_PARAMS:,}); use the matrix form (symprop derive --form matrix)"))
    if isinstance(layers.hidden, tuple):
        raise SpecError(file, "[layers] hidden", "the scalar form takes one hidden activation for every layer")
    try:
        network = mlp(layers.sizes, layers.hidden, layers.output, layers.loss, form="layer", reduction=layers.reduction)
    except NetworkError as err:
        raise SpecError(file, "[layers]", str(err)) from None
    symbols = {s.name: s for s in network.symbols}
    values = {symbols[name]: v for name, v in layers.values.items()}
    return Spec(file, network, symbols, {}, values, {}, dict(network.display), raw, layers)
