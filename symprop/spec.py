"""Spec files, the one place where symprop reads text: networks, layered networks and
question families written as TOML, with expressions read by a safe parser.

:func:`load` reads a file and returns what it holds: a :class:`Spec` (a ``[network]``
graph), a :class:`Layers` (a ``[layers]`` shorthand) or a :class:`Family` (a question
family). Expressions are never executed: :func:`parse_expression` walks Python's syntax
tree with an allow-list (numbers, declared names, + - * / **, calls of known functions)
and builds the SymPy expression itself. Every problem is a one-line :class:`SpecError`
that names the file, the key and the problem.

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
import fnmatch
import io
import keyword
import math
import re
import sys
import tokenize
import tomllib
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import sympy as sp

from . import functions as fn
from . import limits
from .derive import METHODS
from .gates import stage
from .graph import Network, NetworkError
from .jacobian import VectorNetwork
from .layered import mlp

__all__ = [
    "SpecError", "Spec", "VectorSpec", "Layers", "Family", "load", "from_text", "parse_expression", "load_spec", "spec_from_text",
    "FUNCTIONS", "read_text", "parse_toml", "read_values", "read_values_file", "value_rule", "read_direction",
    "parameter_named",
]


class SpecError(ValueError):
    """A problem in a spec; ``str(err)`` is the one line ``"{file}: {key}: {problem}"``."""

    def __init__(self, file: str | None, key: str | None, problem: str):
        self.file, self.key, self.problem = file, key, problem.replace("\n", " ")
        super().__init__(": ".join(p for p in (file, key, self.problem) if p is not None))


# -- the function table ----------------------------------------------------------------
# The built-in primitives by spec name (symprop.functions.BUILTINS): each record gives its
# call shapes, one letter per argument (s = scalar, L = list of scalars, k = integer
# literal; a trailing "+" repeats the last), and the builder of its expression.

FUNCTIONS = fn.BUILTINS
_VECTOR = sorted(name for name, p in FUNCTIONS.items() if "L" in p.shapes[0])

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

    ``symbols`` maps the allowed names to their Symbols; ``functions`` adds the spec's own
    functions (generic activations, defined functions: their classes or records) to
    :data:`FUNCTIONS`. Errors are :class:`SpecError` with ``key=where``. Decimal numbers
    are read exactly: ``0.05`` is ``1/20``.

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
    if len(text) > limits.MAX_EXPRESSION_LENGTH:
        raise SpecError(None, where, f"the expression has {len(text):,} characters, more than allowed "
                                     f"({limits.says('MAX_EXPRESSION_LENGTH')})")
    text = text.strip()
    folded = _folded(text)
    if folded:
        raise SpecError(None, where, folded)
    table = dict(FUNCTIONS)
    table.update({name: f if isinstance(f, fn.Primitive) else fn.record_of(f) for name, f in (functions or {}).items()})
    chunks = _terms(text) if len(text) > MAX_CHUNK else [text]
    parts = []
    for chunk in chunks:
        try:
            with warnings.catch_warnings():  # e.g. "invalid escape sequence": the text is rejected anyway
                warnings.simplefilter("ignore")
                tree = ast.parse(chunk, mode="eval")
        except SyntaxError as err:
            place = f" (line {err.lineno}, column {err.offset})" if "\n" in chunk else f" (column {err.offset})"
            if len(chunks) > 1:
                place = f" in the term {chunk.strip()[:40]!r}"
            raise SpecError(None, where, f"syntax error: {err.msg}{place if err.offset else ''}") from None
        except (RecursionError, MemoryError):
            raise SpecError(None, where, "the expression is too deeply nested to parse") from None
        except ValueError as err:  # e.g. a null byte
            raise SpecError(None, where, f"cannot parse: {err}") from None
        try:
            parts.append(_Parser(chunk, symbols, table, where).expr(tree.body, 1))
        except RecursionError:
            raise SpecError(None, where, "the expression is too deeply nested") from None
    expr = parts[0] if len(parts) == 1 else sp.Add(*parts)
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise SpecError(None, where, f"the expression is undefined or infinite: {expr}")
    if expr.has(sp.I):
        raise SpecError(None, where, f"the expression is not real: {expr} (symprop works with real numbers)")
    for number in expr.atoms(sp.Rational):
        if abs(number) > _FLOAT_MAX:
            raise SpecError(None, where, f"the number {str(number)[:20]}... is larger than any float (1.8e308)")
    return expr


_FLOAT_MAX = sp.Rational(sys.float_info.max)
# A longer expression is split into its top-level terms, parsed a few hundred at a time:
# Python's parser gives up on sums of a few thousand terms (they nest to the left).
MAX_CHUNK = 2000
_TERMS_PER_CHUNK = 200


def _folded(text: str) -> str | None:
    """Why ``text`` is refused if it holds a character that Python's parser would read as
    another (NFKC: a fullwidth x is x), merging names that look different; else None."""
    if text.isascii() or unicodedata.normalize("NFKC", text) == text:
        return None
    for ch in text:
        if unicodedata.normalize("NFKC", ch) != ch:
            return (f"{ch!r} (U+{ord(ch):04X}) would be read as {unicodedata.normalize('NFKC', ch)!r}; "
                    "write that instead")
    return "the text changes under Unicode normalisation (NFKC); write it in plain characters"


def _terms(text: str) -> list[str]:
    """``text`` cut at its top-level binary + and - into chunks of a few hundred terms (each
    chunk keeps its sign), or ``[text]`` when it has no such cuts or cannot be tokenized."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [text]
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    cuts, depth, previous = [], 0, None
    for tok in tokens:
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif (tok.type == tokenize.OP and tok.string in "+-" and depth == 0 and previous is not None
              and (previous.type in (tokenize.NAME, tokenize.NUMBER) or previous.string in ")]")):
            cuts.append(starts[tok.start[0] - 1] + tok.start[1])
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER):
            previous = tok
    cuts = cuts[_TERMS_PER_CHUNK - 1::_TERMS_PER_CHUNK]
    bounds = [0] + cuts + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


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
        if depth > limits.MAX_NESTING:
            self.fail(f"the expression is nested too deeply ({limits.says('MAX_NESTING')})")
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
        if bits > limits.MAX_NUMBER_BITS:
            self.fail(f"the numbers in {self.source(spine[0])[:40]}... are too large ({limits.says('MAX_NUMBER_BITS')})")
        return sp.Add(*operands) if family is _ADD else sp.Mul(*operands)

    def power(self, node, depth):
        # the exponent is checked before any Pow is built, so 9**9**9 is refused, not computed
        tower, inner = 1, node.right
        while isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Pow):
            tower, inner = tower + 1, inner.right
        if tower + 1 > limits.MAX_TOWER:
            self.fail(f"a power tower {tower + 1} levels high (a**b**c...), whose derivative grows as the cube of "
                      f"the height ({limits.says('MAX_TOWER')})")
        exponent = self.expr(node.right, depth + 1)
        if exponent.is_Rational and abs(exponent) > limits.MAX_EXPONENT:
            self.fail(f"exponent {self.source(node.right)} is too large ({limits.says('MAX_EXPONENT')})")
        base = self.expr(node.left, depth + 1)
        if base.is_Rational and exponent.is_Rational:
            bits = max(base.p.bit_length(), base.q.bit_length())
            if bits * abs(exponent) > limits.MAX_NUMBER_BITS or (bits > 1000 and not exponent.is_Integer):
                self.fail(f"{self.source(node)} is too large a number ({limits.says('MAX_NUMBER_BITS')})")
        return base**exponent

    def number(self, node):
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            self.fail(f"{value!r} is not a number")
        if isinstance(value, int):
            if abs(value) >= 10**limits.MAX_LITERAL_DIGITS:
                self.fail(f"the integer {self.literal(node)[:20]}... has too many digits ({limits.says('MAX_LITERAL_DIGITS')})")
            return sp.Integer(value)
        if isinstance(value, float):
            text = self.literal(node).replace("_", "")
            match = re.fullmatch(_FLOAT, text)
            exp = (match[3] or "0") if match else ""
            digits = (match[1] + match[2]).lstrip("0") if match else ""
            if not match or len(digits) > limits.MAX_LITERAL_DIGITS or len(exp.lstrip("+-0")) > 3:
                self.fail(f"the number {text[:40]} is too long or too large ({limits.says('MAX_LITERAL_DIGITS')})")
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
        record = self.table[name]
        shapes, takes, build = record.shapes, record.takes, record.build
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
    """A loaded network spec: the :class:`~symprop.graph.Network` and everything around it.

    ``functions`` is the spec's own function table beyond the built-ins (its generic
    functions g, g_prime and its defined ones, as records); ``bind`` maps each generic
    function to the record of the activation it is bound to for numbers.
    """

    file: str
    network: Network
    symbols: dict[str, sp.Symbol]
    functions: dict[str, fn.Primitive]
    values: dict[sp.Symbol, float | tuple[float, ...]]
    bind: dict[str, fn.Primitive]
    display: dict
    raw: dict
    layers: Layers | None = None  # the [layers] table, when the network is its scalar form
    direction: dict = field(default_factory=dict)  # [direction]: hvp's v, parameter -> number

    @property
    def generics(self) -> list[str]:
        """The names of the generic functions declared in ``[network] functions``."""
        return [name for name, p in self.functions.items() if p.kind == "generic" and p.cls.order == 0]


@dataclass(frozen=True)
class VectorSpec:
    """A loaded vector-valued spec (``[network] outputs`` instead of ``loss``): the
    :class:`~symprop.jacobian.VectorNetwork` in ``function`` and everything around it, as
    in a :class:`Spec`. Only ``derive``, ``grad`` and ``solve`` take it (its Jacobian)."""

    file: str
    function: VectorNetwork
    symbols: dict[str, sp.Symbol]
    functions: dict[str, fn.Primitive]
    values: dict[sp.Symbol, float | tuple[float, ...]]
    bind: dict[str, fn.Primitive]
    display: dict
    raw: dict

    generics = Spec.generics


_TABLES = ("network", "nodes", "values", "display", "bind", "layers", "functions", "direction")
_NETWORK_KEYS = ("inputs", "targets", "params", "functions", "loss", "reduction", "outputs")
_ROLES = {"inputs": "input", "targets": "target", "params": "param"}


def load(path) -> Spec | VectorSpec | Layers | Family:
    """Read the TOML file at ``path``: a network spec, a ``[layers]`` spec or a question
    family, whichever it holds; any problem is a one-line :class:`SpecError`."""
    return from_text(read_text(path), str(path))


def from_text(text: str, file: str = "<string>") -> Spec | VectorSpec | Layers | Family:
    """:func:`load` for TOML text; ``file`` names it in error messages."""
    raw = parse_toml(text, file)
    if "family" in raw:
        return _family(raw, file)
    if "layers" in raw:
        return _read_layers(raw, file)
    return _network_spec(raw, file)


def load_spec(path) -> Spec:
    """The network spec at ``path``; a ``[layers]`` spec gives its scalar form (every weight
    a symbol; small networks only), a question family is refused."""
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
    except RecursionError:
        raise SpecError(file, "TOML", "arrays or tables nested too deeply") from None


def spec_from_text(text: str, file: str = "<string>") -> Spec:
    """Build a :class:`Spec` from TOML text; ``file`` names it in error messages."""
    raw = parse_toml(text, file)
    if "family" in raw:
        raise SpecError(file, "[family]", "this file is a question family: `symprop exam FILE --variants N` writes its variants")
    if "layers" in raw:
        return _read_layers(raw, file).scalar_spec()
    spec = _network_spec(raw, file)
    if isinstance(spec, VectorSpec):
        raise SpecError(file, "[network] outputs", "this spec is a vector-valued function; a scalar loss is needed "
                                                    "here (symprop.spec.load reads it, symprop.jacobian derives it)")
    return spec


def _network_spec(raw: dict, file: str) -> Spec:
    def fail(key, problem):
        raise SpecError(file, key, problem)

    for name, table in raw.items():
        if name not in _TABLES or name == "layers":
            fail(f"[{name}]", "unknown table; known: " + ", ".join(f"[{t}]" for t in _TABLES if t != "layers"))
        if not isinstance(table, dict):
            fail(f"[{name}]", "must be a table")
    for name in ("network", "nodes"):
        if name not in raw:
            fail(f"[{name}]", "missing table")
    net, node_texts = raw["network"], raw["nodes"]
    for key in net:
        if key not in _NETWORK_KEYS:
            fail(f"[network] {key}", "unknown key; known: " + ", ".join(_NETWORK_KEYS))
    vector = "outputs" in net  # a vector-valued function: its Jacobian, not a loss's gradient
    # without loss nor outputs, say so first: a vector spec that forgot its outputs has no params either
    for key in () if vector else ("params", "loss") if "loss" in net else ("loss", "params"):
        if key not in net:
            fail(f"[network] {key}", "missing key" + ("; or outputs = [...] for a vector-valued function (its Jacobian)"
                                                      if key == "loss" else ""))
    groups = {}
    for key in ("inputs", "targets", "params", "functions"):
        names = net.get(key, [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            fail(f"[network] {key}", "must be a list of names")
        groups[key] = names
    if vector:
        _check_outputs(fail, net, node_texts, groups)
    loss, reduction = net.get("loss"), net.get("reduction", "sum")
    if not vector and not isinstance(loss, str):
        fail("[network] loss", "must be the name of a node")
    if reduction not in ("sum", "mean"):
        fail("[network] reduction", "must be 'sum' or 'mean'")
    if not node_texts:
        fail("[nodes]", "no nodes defined (the loss at least must be a node)")

    table = defined_functions(raw.get("functions", {}), file)
    generics = {}
    for g in groups["functions"]:
        _check_name(fail, "[network] functions", g)
        if g in FUNCTIONS or g in table:
            problem = "a built-in function" if g in FUNCTIONS else "declared twice"
            fail("[network] functions", f"{g} is {problem}")
        _check_function_name(fail, "[network] functions", g)
        generics[g] = fn.generic(g)
        table[g] = fn.record_of(generics[g])
        table[g + "_prime"] = fn.record_of(fn.generic(g, 1))

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
        if name not in symbols and name not in table:
            fail(f"[display] {name}", f"unknown symbol {name!r}")
        if not isinstance(latex, str):
            fail(f"[display] {name}", "must be a string (a LaTeX name)")
        key = symbols[name] if name in symbols else table[name].cls
        if name not in symbols and table[name].kind != "defined":
            fail(f"[display] {name}", "only symbols and defined functions have display names")
        _check_display(fail, name, latex, function=name not in symbols)
        display[key] = latex

    bind = {}
    for name, activation in raw.get("bind", {}).items():
        if name not in generics:
            fail(f"[bind] {name}", f"{name} is not a function declared in [network] functions")
        bind[name] = bound_activation(activation, table, lambda problem: fail(f"[bind] {name}", problem))

    def pick(key):
        return [symbols[n] for n in groups[key]]

    if vector:
        try:
            function = VectorNetwork(nodes, outputs=[symbols[o] for o in net["outputs"]], params=pick("params"),
                                     inputs=pick("inputs"), targets=pick("targets"), display=display)
        except NetworkError as err:
            key = _network_key(err.symbol, node_texts, None, groups)
            fail("[network] outputs" if err.symbol is not None and err.symbol.name in net["outputs"] and
                 key == "[network]" else key, str(err))
        if "direction" in raw:
            fail("[direction]", "a direction v is for the Hessian of a loss; this spec is a vector-valued function")
        return VectorSpec(file, function, symbols, table, values, bind, display, raw)
    try:
        network = Network(
            nodes, loss=sp.Symbol(loss), params=pick("params"), inputs=pick("inputs"),
            targets=pick("targets"), reduction=reduction, display=display,
        )
    except NetworkError as err:
        fail(_network_key(err.symbol, node_texts, loss, groups), str(err))
    direction = read_direction(raw.get("direction", {}), file, parameter_named(network.params))
    return Spec(file, network, symbols, table, values, bind, display, raw, direction=direction)


def read_direction(table: Mapping, file: str, parameter: Callable, prefix: str = "[direction] ") -> dict:
    """A ``[direction]`` table (``symprop hvp``'s v): one number per parameter, by name;
    parameters it leaves out are 0. ``parameter(name)`` gives the key of a parameter's name
    (:func:`parameter_named` for a network's symbols) or raises ValueError saying why the
    name is none. Anything else is a :class:`SpecError` naming the key.

    >>> import sympy as sp
    >>> w, b = sp.symbols("w b")
    >>> read_direction({"w": 1, "b": -0.5}, "d.toml", parameter_named([w, b]))
    {w: 1.0, b: -0.5}
    """
    def value_of(name, key, batch):
        try:
            found = parameter(name)
        except ValueError as err:
            raise SpecError(file, key, str(err)) from None
        if batch:
            raise SpecError(file, key, "one number: the direction v is not a batch")
        return found

    return read_values(table, file, value_of, prefix)


def parameter_named(params) -> Callable:
    """The parameter of a name among the symbols ``params``, for :func:`read_direction`."""
    by_name = {p.name: p for p in params}

    def parameter(name):
        if name not in by_name:
            raise ValueError(f"{name!r} is not a parameter; the direction v has one number per parameter")
        return by_name[name]

    return parameter


def _check_outputs(fail, net: dict, node_texts: dict, groups: dict) -> None:
    """``[network] outputs``: a non-empty list of distinct node names, instead of a loss."""
    key = "[network] outputs"
    if "loss" in net:
        fail(key, "give either loss (a scalar loss) or outputs (a vector-valued function), not both")
    if "reduction" in net:
        fail("[network] reduction", "a vector-valued function (outputs) has no loss to reduce over a batch")
    outputs = net["outputs"]
    if not (isinstance(outputs, list) and outputs and all(isinstance(o, str) for o in outputs)):
        fail(key, "must be a non-empty list of node names")
    for o in outputs:
        if outputs.count(o) > 1:
            fail(key, f"{o} is listed twice")
        if o not in node_texts:
            declared = next((k for k in _ROLES if o in groups[k]), None)
            role = {"inputs": "an input", "targets": "a target", "params": "a parameter"}.get(declared)
            fail(key, f"{o} is {role}, not a node" if role else f"{o} is not a node defined in [nodes]")


def _check_display(fail: Callable, name: str, latex: str, function: bool) -> None:
    """Refuse a ``[display]`` name that pdflatex would stop at (``x^2'``, ``\\hat`` with
    nothing after it, ``x_\\hat{y}``, ``{x``), one line naming its key; ``function``: the
    name of a defined function, which its derivative prints with a prime after. What
    LaTeX accepts is :func:`symprop.printing.check_display_name`'s to say; a name with
    characters plain math does not use (``&``, ``\\input``) prints literally and passes."""
    from .printing import check_display_name

    problem = check_display_name(latex, function=function)
    if problem is not None:
        fail(f"[display] {name}", f'"{latex}": {problem}')


def bound_activation(name, table: Mapping[str, fn.Primitive], fail: Callable) -> fn.Primitive:
    """The record of the activation ``name`` (a built-in or one of ``table``'s defined
    functions) that a generic function is bound to; ``fail(problem)`` otherwise."""
    record = table.get(name) if isinstance(name, str) else None
    record = record or (fn.record_of(name) if isinstance(name, str) else None)
    if record is None or not record.activation or record.kind == "generic":
        known = sorted(fn.ACTIVATIONS) + sorted(n for n, p in table.items() if p.kind == "defined" and p.activation)
        fail(f"unknown activation {name!r}; known: {', '.join(known)}")
    return record


def defined_functions(table, file: str) -> dict[str, fn.Primitive]:
    """A ``[functions]`` table: each a formula in ``u`` (``swish = "u*sigmoid(u)"``), which
    may use built-ins and the table's other functions in any order; returns the records
    of the defined functions and of their first derivatives (``swish_prime``), by name."""
    def fail(key, problem):
        raise SpecError(file, key, problem)

    if not isinstance(table, dict):
        fail("[functions]", 'must be a table of name = "formula in u"')
    calls = {}
    for name, text in table.items():
        key = f"[functions] {name}"
        _check_name(fail, key, name)
        if name in FUNCTIONS:
            fail(key, f"{name} is a built-in function and cannot be redefined")
        if name == "u":
            fail(key, "'u' cannot name a function (it is the variable of the formulas)")
        _check_function_name(fail, key, name)
        if not isinstance(text, str):
            fail(key, 'must be a formula in u, written as a string: swish = "u*sigmoid(u)"')
        calls[name] = _called_names(text) & set(table)
    records: dict[str, fn.Primitive] = {}
    for name in _dependency_order(calls, fail):
        where = f"[functions] {name}"
        try:
            expr = parse_expression(table[name], {"u": fn.U}, records, where=where)
            cls = fn.define_function(name, expr, fn.U)
        except SpecError as err:
            raise SpecError(file, err.key, err.problem) from None
        except ValueError as err:
            fail(where, str(err).removeprefix(f"{name}: "))
        records[name] = fn.record_of(cls)
        records[name + "_prime"] = fn.record_of(cls(fn.U).fdiff().func)
    return records


def _called_names(text: str) -> set[str]:
    """The names a formula calls (read from its syntax tree; a syntax error is reported
    when the formula itself is parsed)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _dependency_order(calls: dict[str, set[str]], fail) -> list[str]:
    """The names with each after the ones it calls; a cycle is reported at its first name."""
    order, state = [], {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name):] + [name]
            fail(f"[functions] {cycle[0]}", "a cycle: " + " -> ".join(cycle))
        state[name] = "visiting"
        for other in sorted(calls[name]):
            visit(other, trail + [name])
        state[name] = "done"
        order.append(name)

    for name in calls:
        visit(name, [])
    return order


def _check_function_name(fail, key, name):
    """A function a spec declares or defines must not end in _prime (g_prime is g's
    derivative) nor take the name symprop's own functions go by in compiled code."""
    if name.endswith("_prime"):
        fail(key, f"{name!r} cannot name a function: names ending in _prime are the derivatives "
                  f"({name} would be {name[:-6]}'s)")
    if name in _RESERVED:
        fail(key, f"{name!r} is the internal name of a built-in function; choose another name")


# The class names of the built-ins (maximum for max, Abs for abs) and the compiled programs'
# own functions: a spec's function of one of these names would be taken for it.
_RESERVED = frozenset({p.cls.__name__ for p in fn.BUILTINS.values() if p.cls is not None} | {"log_softmax"})


def _check_name(fail, key, name):
    if not isinstance(name, str) or not name.isidentifier():
        fail(key, f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)")
    folded = _folded(name)
    if folded:
        fail(key, f"{name!r}: {folded}")
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


def read_values_file(path, value_of: Callable) -> dict:
    """The numbers of a ``--values`` file (a ``[values]`` table, or top-level keys), read as
    :func:`read_values` reads them; every problem names this file.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write("w = 0.5\\n")
    >>> read_values_file(f.name, lambda name, key, batch: name)
    {'w': 0.5}
    >>> os.unlink(f.name)
    """
    path = str(path)
    raw = parse_toml(read_text(path), path)
    table, prefix = raw, ""
    if "values" in raw:
        if len(raw) > 1 or not isinstance(raw["values"], dict):
            raise SpecError(path, "[values]", "give the values either in a [values] table or as top-level keys, not both")
        table, prefix = raw["values"], "[values] "
    return read_values(table, path, value_of, prefix)


def _number(fail, key, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
        fail(key, f"{value!r} is not a finite number")
    shown = repr(value)
    fail(key, f"must be a number or a list of numbers, not {shown if len(shown) <= 40 else shown[:40] + '...'}")


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

_LAYERS_KEYS = ("sizes", "hidden", "output", "loss", "reduction", "seed", "batch", "functions")
_LAYERS_TABLES = ("layers", "values", "functions", "bind", "direction")  # [direction]: hvp's v (symprop.matrix_hvp)
_LAYERS_NAME = r"(x|t)_(\d+)|(w)_(\d+)_(\d+)_(\d+)|(b)_(\d+)_(\d+)"


@dataclass(frozen=True)
class Layers:
    """A ``[layers]`` table: a fully connected network given by its layer widths.

    ``hidden`` is one activation name or one per hidden layer; ``values`` maps mlp's
    names to numbers (a tuple is a batch); ``seed`` and ``batch`` draw random weights and
    data (:func:`symprop.matrix.random_layered`) when ``values`` is empty; ``functions``
    holds the records of a ``[functions]`` table's defined activations.
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
    functions: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)
    generics: tuple[str, ...] = ()  # [layers] functions = ["f"]: generic activations (Diag(f'(z^l)))
    bind: dict = field(default_factory=dict)  # [bind] f = "sigmoid": the record each generic stands for in numbers

    @property
    def param_count(self) -> int:
        return sum(n * (m + 1) for m, n in zip(self.sizes, self.sizes[1:]))

    @property
    def activations(self) -> tuple[str, ...]:
        """The hidden activations' names and the output's, one per layer."""
        hidden = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,) * (len(self.sizes) - 2)
        return (*hidden, self.output)

    @property
    def unbound(self) -> list[str]:
        """The generic activations the layers use that [bind] (or --bind) leaves unbound."""
        return [g for g in self.generics if g in self.activations and g not in self.bind]

    def with_bind(self, items) -> Layers:
        """These layers with ``--bind`` items (``"f=sigmoid"``) over their [bind] table."""
        bind = dict(self.bind)
        for item in items or ():
            name, sep, activation = (part.strip() for part in str(item).partition("="))
            key = f"--bind {item}"
            if not (sep and name and activation):
                raise SpecError(self.file, key, "write NAME=ACTIVATION, e.g. f=sigmoid")
            if name not in self.generics:
                raise SpecError(self.file, key, f"{name} is not a generic function declared in [layers] functions")
            bind[name] = bound_activation(activation, self.functions, lambda problem: _fail(self.file, key, problem))
        return replace(self, bind=bind)

    def bound(self) -> Layers:
        """These layers with every generic activation replaced by the one it is bound to, for
        numbers; a :class:`SpecError` naming the first unbound one otherwise."""
        if self.unbound:
            g = self.unbound[0]
            raise SpecError(self.file, "[layers]", (
                f"the generic activation {g} has no numbers: bind it to an activation, "
                f'e.g. --bind {g}=sigmoid or a [bind] table with {g} = "sigmoid"'))
        names = {g: self.bind[g].name for g in self.generics if g in self.bind}
        if not names:
            return self
        hidden = (tuple(names.get(h, h) for h in self.hidden) if isinstance(self.hidden, tuple)
                  else names.get(self.hidden, self.hidden))
        return replace(self, hidden=hidden, output=names.get(self.output, self.output), generics=(), bind={})

    def activation(self, name):
        """The activation called ``name`` here (a built-in or a defined one)."""
        return fn.activation(name, self.functions)

    def with_values_file(self, path) -> Layers:
        """These layers with the numbers of a ``--values`` file over their own."""
        values = read_values_file(path, _layers_value_of(str(path), self.sizes))
        return replace(self, values={**self.values, **values})

    def scalar_spec(self) -> Spec:
        """The scalar form (:func:`symprop.layered.mlp`, layer form): one symbol per weight,
        for the verbs that need one; refused past ``limits.MAX_SCALAR_PARAMS`` parameters."""
        return _layers_spec(self)


def _read_layers(raw, file) -> Layers:
    def fail(key, problem):
        raise SpecError(file, key, problem)

    for name in raw:
        if name not in _LAYERS_TABLES:
            fail(f"[{name}]", "a [layers] spec defines its network itself: only [values], [functions], [bind] and [direction] may go with it")
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
    functions = defined_functions(raw.get("functions", {}), file)
    generics = _layers_generics(table.get("functions", []), functions, fail)
    names = hidden if isinstance(hidden, tuple) else (hidden,)
    for name in names:
        if not isinstance(name, str):
            fail("[layers] hidden", f"must be an activation name, not {name!r}")
        if name not in generics:
            bound_activation(name, functions, lambda problem: fail("[layers] hidden", _or_generic(problem, generics)))
    output = table.get("output", "identity")
    if output != "softmax" and output not in generics:
        if not isinstance(output, str):
            fail("[layers] output", f"must be an activation name or softmax, not {output!r}")
        bound_activation(output, functions,
                         lambda problem: fail("[layers] output", _or_generic(problem, generics) + ", softmax"))
    loss = table.get("loss", "half_sse")
    if not isinstance(loss, str) or loss not in fn.LOSSES:
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
    values = read_values(raw.get("values", {}), file, _layers_value_of(file, sizes))
    bind = raw.get("bind", {})
    if not isinstance(bind, dict):
        fail("[bind]", "must be a table of generic = \"activation\"")
    bound = {}
    for name, activation in bind.items():
        if name not in generics:
            fail(f"[bind] {name}", f"{name} is not a generic function declared in [layers] functions")
        bound[name] = bound_activation(activation, functions, lambda problem: fail(f"[bind] {name}", problem))
    return Layers(file, tuple(sizes), hidden, output, loss, reduction, numbers["seed"], numbers["batch"], values,
                  functions, raw, tuple(generics), bound)


def _fail(file, key, problem):
    raise SpecError(file, key, problem)


def _or_generic(problem: str, generics) -> str:
    """An unknown-activation problem that also names the declared generic ones."""
    return problem + "".join(f", {g}" for g in generics)


def _layers_generics(names, functions: dict, fail) -> list[str]:
    """``[layers] functions = ["f"]``: generic activations, as ``[network] functions``
    declares them; their records (f and f_prime) join ``functions``."""
    key = "[layers] functions"
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        fail(key, "must be a list of names")
    for g in names:
        _check_name(fail, key, g)
        if g in FUNCTIONS or g in functions:
            fail(key, f"{g} is {'a built-in function' if g in FUNCTIONS else 'declared twice'}")
        _check_function_name(fail, key, g)
        functions[g] = fn.record_of(fn.generic(g))
        functions[g + "_prime"] = fn.record_of(fn.generic(g, 1))
    return list(names)


def _layers_value_of(file, sizes):
    """What a [values] entry of a layered network names (mlp's names), or a SpecError."""
    def value_of(name, key, batch):
        if not _layers_name(name, sizes):
            raise SpecError(file, key, f"unknown symbol {name!r} (a [layers] network has x_i, t_j, w_l_j_i and b_l_j)")
        if batch and name[0] in "wb":
            raise SpecError(file, key, "a parameter takes one value, not a batch")
        return name
    return value_of


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


def _layers_spec(layers: Layers) -> Spec:
    """The scalar form of a [layers] spec: :func:`symprop.layered.mlp` (layer form)."""
    file = layers.file
    if layers.param_count > limits.MAX_SCALAR_PARAMS:
        raise SpecError(file, "[layers] sizes", (
            f"{layers.param_count:,} parameters are too many for the scalar form ({limits.says('MAX_SCALAR_PARAMS')}); "
            "use the matrix form (symprop derive --form matrix)"))
    if isinstance(layers.hidden, tuple):
        raise SpecError(file, "[layers] hidden", "the scalar form takes one hidden activation for every layer")
    try:
        hidden = layers.activation(layers.hidden)
        output = layers.output if layers.output == "softmax" else layers.activation(layers.output)
        network = mlp(layers.sizes, hidden, output, layers.loss, form="layer", reduction=layers.reduction)
    except (NetworkError, ValueError) as err:
        raise SpecError(file, "[layers]", str(err)) from None
    symbols = {s.name: s for s in network.symbols}
    values = {symbols[name]: v for name, v in layers.values.items()}
    return Spec(file, network, symbols, dict(layers.functions), values, dict(layers.bind), dict(network.display),
                layers.raw, layers)

# -- question families ----------------------------------------------------------------------

_CIRCUIT_KEYS = {
    "kind", "name", "title", "expressions", "variables", "wrt", "decimals", "digits", "options", "min_options",
    "tolerance", "distinct", "allow", "saturation", "min_gradient", "max_tries", "values",
}
_FAMILY_KEYS = {
    "kind", "name", "title", "method", "wrt", "decimals", "digits", "options", "tolerance", "distinct", "batch",
    "allow", "saturation", "min_gradient", "max_tries", "layered", "activations", "values",
}
_LAYERED_KEYS = ("sizes", "hidden", "output", "loss", "form", "reduction")
_ALLOW = ("saturated", "zero-gradient", "kink", "tie")
_ROLES = {"inputs": "input", "targets": "target", "params": "param"}
_SPEC_TABLES = ("network", "nodes", "display", "functions")


@dataclass(frozen=True)
class Family:
    """A parsed question family; see :func:`family_from_text` for the file format."""

    file: str
    name: str
    title: str
    method: str
    wrt: tuple[str, ...]
    decimals: int
    digits: int
    options: int
    tolerance: float
    distinct: float
    batch: int
    allow: frozenset
    saturation: float
    min_gradient: float
    max_tries: int
    layered: dict | None  # key -> tuple of choices
    graph: object | None  # the Spec of a fixed graph
    activations: dict  # generic name -> tuple of activation records
    values: tuple  # (key, rule) pairs in file order
    kind: str = "network"  # or "circuit"
    circuits: tuple = ()  # circuit families: (expression text, Circuit) per template
    all_gradients: bool = False  # circuit families: wrt = "all", every wire's gradient asked
    min_options: int | None = None  # circuit families: fewest wrong options per question
    functions: dict = field(default_factory=dict)  # the [functions] table's defined functions


def load_family(path) -> Family:
    """Read the question family at ``path``; see :func:`family_from_text`."""
    return family_from_text(read_text(path), str(path))


def family_from_text(text: str, file: str = "<string>") -> Family:
    """Parse a question family (TOML). Errors are :class:`~symprop.spec.SpecError` lines.

    ``[family]`` keys (all optional): ``name``, ``title``, ``method`` (of the worked
    solution), ``wrt`` (name patterns of the weights to ask about, ``fnmatch`` style),
    ``decimals`` (given numbers are multiples of 10^-decimals), ``digits`` (significant
    digits of answers and options), ``options`` (wrong options per question, 0 for
    numerical only; default 4; with fewer than 3 an item has fewer than 4 options and
    the answer's ± pair is guessable), ``tolerance`` and ``distinct`` (below), ``batch``
    (samples per variant), ``allow`` (degenerate cases to accept: saturated, zero-gradient, kink, tie), ``saturation``
    (a unit with |f'(u)| below this is saturated), ``min_gradient``, ``max_tries``.

    One notion of "the same number" grades paper and Moodle alike. ``tolerance`` (default
    1 %) is what Moodle's numerical question accepts: ``|answer - x| <= tolerance * |answer|``.
    ``distinct`` (default 2 %, and it must be larger than ``tolerance``) is the distance, relative
    to the larger of two values, by which every option differs from every other *and every
    listed typical mistake differs from the answer*: numbers that bring a mistake within
    ``distinct`` of the answer are redrawn, so no typical mistake is accepted as right by
    Moodle or on paper. A mistake that equals the answer structurally (relu' = 1 on an
    active unit: no numbers could move it) is left out and listed as such on the answer
    sheet.

    The network is ``[family.layered]`` (``sizes``, ``hidden``, ``output``, ``loss``,
    ``form``, ``reduction``: each a value or a list of choices) or a fixed graph in
    ``[network]`` and ``[nodes]`` (as in a spec file), whose generic functions take an
    activation from ``[family.activations]`` (``g = ["sigmoid", "tanh"]``).
    ``[family.values]`` says how numbers are drawn: keys are ``inputs``, ``targets``,
    ``params`` or name patterns (a name pattern wins over a role); a rule is a number
    (fixed), ``[low, high]`` (a range, 0 left out), ``{range = [low, high], zero = true}``,
    ``{choices = [...]}`` or ``"one-hot"`` (targets).

    A circuit family has ``kind = "circuit"``, ``expressions`` (templates in the spec
    syntax, one drawn per variant and staged into gates), ``variables`` (the names they
    may use), ``wrt`` (name patterns of the variable asked about, or ``"all"``: every
    variable, a "fill in the gradients" question) and ``min_options`` (the fewest wrong
    options a question may have, default 3 or ``options`` if fewer: ``options`` is then a
    maximum, since a short path has few typical mistakes). Its ``[family.values]`` keys are ``variables`` (every
    variable; default ``[-1, 1]``) or name patterns; ``allow`` and ``min_gradient`` apply
    to every wire asked about, where a zero behind a max, min or relu switch is not
    degenerate. No other tables.

    >>> f = family_from_text('''
    ... [family]
    ... wrt = ["w_1_*"]
    ... [family.layered]
    ... sizes = [[2, 2, 1], [2, 3, 1]]
    ... hidden = ["sigmoid", "tanh"]
    ... ''', "demo.toml")
    >>> f.layered["sizes"], f.wrt, f.options
    (((2, 2, 1), (2, 3, 1)), ('w_1_*',), 4)
    """
    return _family(parse_toml(text, file), file)


def _family(raw: dict, file: str) -> Family:
    def fail(key, problem):
        raise SpecError(file, key, problem)

    fam = raw.get("family")
    if not isinstance(fam, dict):
        fail("[family]", "missing table (a question family needs one)")
    kind = fam.get("kind", "network")
    if kind not in ("network", "circuit"):
        fail("[family] kind", 'must be "network" (the default) or "circuit"')
    known = _CIRCUIT_KEYS if kind == "circuit" else _FAMILY_KEYS
    for key in fam:
        if key not in known:
            what = f"not a key of a {kind} family" if key in _FAMILY_KEYS | _CIRCUIT_KEYS else "unknown key"
            fail(f"[family] {key}", f"{what}; known: " + ", ".join(sorted(known)))
    tables = ("functions",) if kind == "circuit" else _SPEC_TABLES
    for name in raw:
        if name != "family" and name not in tables:
            hint = " (a family draws its numbers: use [family.values])" if name == "values" else ""
            fail(f"[{name}]", f"not allowed in a {kind} question family{hint}; allowed: "
                 + ", ".join(f"[{t}]" for t in ("family",) + tables))

    def get(key, kind, default, check=None, problem=""):
        value = fam.get(key, default)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if not ok or (check and not check(value)):
            fail(f"[family] {key}", problem or f"must be {kind.__name__}")
        return value

    stem = Path(file).stem if file != "<string>" else "family"
    name = get("name", str, stem, lambda s: re.fullmatch(r"[A-Za-z0-9_.-]+", s) is not None,
               "must be a name of letters, digits, '_', '.' and '-' (it names files and Moodle questions)")
    title = get("title", str, "Backpropagation")
    method = get("method", str, "bottom-up", lambda m: m in METHODS, f"must be one of {', '.join(METHODS)}")
    wrt = fam.get("wrt", ["*"])
    all_gradients = kind == "circuit" and wrt == "all"
    if isinstance(wrt, str):
        wrt = [wrt]
    if not (isinstance(wrt, list) and wrt and all(isinstance(p, str) for p in wrt)):
        fail("[family] wrt", "must be a list of name patterns such as \"w_1_*\"")
    decimals = get("decimals", int, 1, lambda n: 0 <= n <= 6, "must be an integer from 0 to 6")
    digits = get("digits", int, 4, lambda n: 2 <= n <= 10, "must be an integer from 2 to 10")
    options = get("options", int, 4, lambda n: 0 <= n <= 8, "must be an integer from 0 to 8")
    tolerance = float(get("tolerance", (int, float), 0.01, lambda x: 0 < x < 0.5, "must be a number between 0 and 0.5"))
    distinct = float(get("distinct", (int, float), 0.02, lambda x: 0 < x < 1, "must be a number between 0 and 1"))
    if distinct <= tolerance:
        fail("[family] distinct", f"must be larger than tolerance ({tolerance}), or Moodle would accept a wrong option")
    batch = get("batch", int, 1, lambda n: 1 <= n <= 8, "must be an integer from 1 to 8")
    allow = fam.get("allow", [])
    if not (isinstance(allow, list) and all(a in _ALLOW for a in allow)):
        fail("[family] allow", "must be a list of: " + ", ".join(_ALLOW))
    saturation = float(get("saturation", (int, float), 0.01, lambda x: 0 <= x < 1, "must be a number from 0 to 1"))
    min_gradient = float(get("min_gradient", (int, float), 1e-3, lambda x: x >= 0, "must be a number >= 0"))
    max_tries = get("max_tries", int, 500, lambda n: 1 <= n <= 100_000, "must be a positive integer")
    common = dict(
        file=file, name=name, title=title, method=method, wrt=tuple(wrt), decimals=decimals, digits=digits,
        options=options, tolerance=tolerance, distinct=distinct, batch=batch, allow=frozenset(allow),
        saturation=saturation, min_gradient=min_gradient, max_tries=max_tries,
    )
    functions = defined_functions(raw.get("functions", {}), file)
    common["functions"] = functions
    if kind == "circuit":
        min_options = get("min_options", int, min(3, options), lambda n: min(1, options) <= n <= options,
                          f"must be an integer from {min(1, options)} to options ({options})")
        circuits, variables = _circuit_templates(fam, fail, () if all_gradients else tuple(wrt), functions)
        values = fam.get("values", {})
        if not isinstance(values, dict):
            fail("[family.values]", "must be a table")
        rules = []
        for key, rule in values.items():
            if key != "variables" and not any(fnmatch.fnmatchcase(v, key) for v in variables):
                fail(f"[family.values] {key}", "matches no variable; keys are \"variables\" or name patterns of "
                     + ", ".join(variables))
            rule = value_rule(key, rule, decimals, fail)
            if rule[0] == "one-hot":
                fail(f"[family.values] {key}", "\"one-hot\" is for the targets of a network family")
            rules.append((key, rule))
        return Family(**common, layered=None, graph=None, activations={}, values=tuple(rules), kind="circuit",
                      circuits=circuits, all_gradients=all_gradients, min_options=min_options)

    layered, graph, activations = None, None, {}
    if "layered" in fam:
        if "network" in raw or "nodes" in raw:
            fail("[family.layered]", "a family has either [family.layered] or a [network] graph, not both")
        layered = _layered_choices(fam["layered"], fail, functions)
    elif "network" in raw:
        graph = _network_spec({k: raw[k] for k in _SPEC_TABLES if k in raw}, file)
        activations = _activation_choices(fam.get("activations", {}), graph, fail)
    else:
        fail("[family]", "no network: give [family.layered] or a [network] and [nodes] graph")
    if "activations" in fam and graph is None:
        fail("[family.activations]", "only for a [network] graph with generic functions")

    values = fam.get("values", {})
    if not isinstance(values, dict):
        fail("[family.values]", "must be a table")
    rules = tuple((key, value_rule(key, rule, decimals, fail)) for key, rule in values.items())
    return Family(**common, layered=layered, graph=graph, activations=activations, values=rules)


def _choices(value, single):
    """A key's choices: a list of them, or one value (``single(value)`` says which)."""
    return (value,) if single(value) else tuple(value) if isinstance(value, list) else (value,)


def _layered_choices(table, fail, functions) -> dict:
    if not isinstance(table, dict):
        fail("[family.layered]", "must be a table")
    for key in table:
        if key not in _LAYERED_KEYS:
            fail(f"[family.layered] {key}", "unknown key; known: " + ", ".join(_LAYERED_KEYS))
    if "sizes" not in table:
        fail("[family.layered] sizes", "missing key (layer widths such as [2, 2, 1], or a list of them)")
    sizes = _choices(table["sizes"], lambda v: isinstance(v, list) and bool(v) and isinstance(v[0], int))
    for s in sizes:
        if not (isinstance(s, list) and len(s) >= 2 and all(type(n) is int and 1 <= n <= 8 for n in s)) or len(s) > 6:
            fail("[family.layered] sizes", f"{s!r} is not a list of 2 to 6 layer widths from 1 to 8")
    choices = {"sizes": tuple(tuple(s) for s in sizes)}
    defined = {n for n, p in functions.items() if p.kind == "defined" and p.activation}
    known = {
        "hidden": (set(fn.ACTIVATIONS) | defined, "sigmoid"),
        "output": (set(fn.ACTIVATIONS) | defined | {"softmax"}, "identity"),
        "loss": (set(fn.LOSSES), "half_sse"), "form": ({"neuron", "layer"}, "neuron"),
        "reduction": ({"sum", "mean"}, "sum"),
    }
    for key, (allowed, default) in known.items():
        values = _choices(table.get(key, default), lambda v: isinstance(v, str))
        for v in values:
            if v not in allowed:
                fail(f"[family.layered] {key}", f"unknown {key} {v!r}; known: {', '.join(sorted(allowed))}")
        if not values:
            fail(f"[family.layered] {key}", "an empty list of choices")
        choices[key] = values
    # every combination must build: find the bad one now rather than in variant 137
    for sizes in choices["sizes"]:
        for output in choices["output"]:
            for loss in choices["loss"]:
                try:
                    mlp([1] * (len(sizes) - 1) + [sizes[-1]], "identity", output, loss)
                except NetworkError as err:
                    fail("[family.layered]", f"output {output!r} with loss {loss!r}: {err}")
    return choices


def _activation_choices(table, spec, fail) -> dict:
    if not isinstance(table, dict):
        fail("[family.activations]", "must be a table")
    result = {}
    for g in spec.generics:
        key = f"[family.activations] {g}"
        if g not in table:
            fail(key, f"missing: the generic function {g} needs activations to choose from, such as [\"sigmoid\", \"tanh\"]")
        values = _choices(table[g], lambda v: isinstance(v, str))
        if not values:
            fail(key, "must be a list of activation names")
        result[g] = tuple(bound_activation(v, spec.functions, lambda problem: fail(key, problem)) for v in values)
    for g in table:
        if g not in result:
            fail(f"[family.activations] {g}", f"{g} is not a generic function declared in [network] functions")
    return result


_LARGEST_DRAWN = 10**6  # exam numbers are read and worked by hand
_LARGEST_GRID = 100_000


def _decimal(value) -> Fraction:
    """A TOML number as the exact decimal it was written as (0.1 is 1/10)."""
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def value_rule(key, rule, decimals, fail):
    """A ``[family.values]`` rule: ``("fixed", x)``, ``("grid", numbers)``, ``("choices",
    numbers)`` or ``("one-hot",)``; numbers are exact decimals (Fractions)."""
    where = f"[family.values] {key}"
    shape = "must be a number, a range [low, high], a table or \"one-hot\""

    def number(v) -> Fraction:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(where, shape)
        if not (math.isfinite(v) and abs(v) <= _LARGEST_DRAWN):
            fail(where, f"{v} is not a number between -{_LARGEST_DRAWN:,} and {_LARGEST_DRAWN:,}")
        return _decimal(v)

    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        return ("fixed", number(rule))
    if rule == "one-hot":
        return ("one-hot",)
    zero = False
    if isinstance(rule, dict):
        extra = set(rule) - {"range", "zero", "choices"}
        if extra or ("range" in rule) == ("choices" in rule):
            fail(where, "a table needs exactly one of range = [low, high] or choices = [...] (and optionally zero = true)")
        if "choices" in rule:
            choices = rule["choices"]
            if not (isinstance(choices, list) and choices):
                fail(where, "choices must be a non-empty list of numbers")
            return ("choices", tuple(number(c) for c in choices))
        zero = rule.get("zero", False)
        if not isinstance(zero, bool):
            fail(where, "zero must be true or false")
        rule = rule["range"]
    if not (isinstance(rule, list) and len(rule) == 2):
        fail(where, shape)
    low, high = (number(v) for v in rule)
    scale = 10**decimals
    first, last = math.ceil(low * scale), math.floor(high * scale)
    if last - first >= _LARGEST_GRID:  # the grid is listed, so its size is bounded
        fail(where, f"the range [{rule[0]}, {rule[1]}] holds more than {_LARGEST_GRID:,} numbers with "
             f"{decimals} decimals; narrow it or use fewer decimals")
    grid = [n for n in range(first, last + 1) if zero or n != 0]
    if low > high or not grid:
        fail(where, f"the range [{rule[0]}, {rule[1]}] holds no number with {decimals} decimals")
    return ("grid", tuple(Fraction(n, scale) for n in grid))


def _circuit_templates(fam, fail, patterns, functions) -> tuple[tuple, tuple[str, ...]]:
    """The staged circuit of every ``[family] expressions`` template, and the variable names."""
    names = fam.get("variables")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        fail("[family] variables", 'missing or not a list of names such as ["x", "y", "z"]')
    for n in names:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) or keyword.iskeyword(n) or n in FUNCTIONS or n in functions:
            fail("[family] variables", f"{n!r} is not a variable name (letters, digits and '_', not a function)")
    if len(set(names)) != len(names):
        fail("[family] variables", "a name is listed twice")
    symbols = {n: sp.Symbol(n) for n in names}
    texts = fam.get("expressions")
    if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
        fail("[family] expressions", 'missing or not a list of expressions such as ["(x + y)*z"]')
    circuits = []
    for i, text in enumerate(texts, 1):
        key = f"[family] expressions (item {i})"
        try:
            expr = parse_expression(text, symbols, functions, where=key)
            used = [s for s in symbols.values() if s in expr.free_symbols]
            circuit = stage(expr, used)
        except SpecError as err:
            fail(key, f"{text!r}: {err.problem}")
        except NetworkError as err:
            fail(key, f"{text!r}: {err}")
        if patterns and not any(fnmatch.fnmatchcase(s.name, p) for s in used for p in patterns):
            fail("[family] wrt", f"no variable of expression {i} ({text!r}) matches {', '.join(patterns)}")
        circuits.append((text, circuit))
    return tuple(circuits), tuple(names)
