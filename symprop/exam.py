r"""Exam generator: question families, seeded variants, wrong options from typical mistakes.

A *question family* is a TOML file with a ``[family]`` table: a network template (a layered
family of MLPs, or a fixed ``[network]``/``[nodes]`` graph whose generic activations take
turns), the weights that may be asked about and how the numbers are drawn. Every variant
is reproducible from ``(seed, variant index)`` alone: its random generator is
``numpy.random.Generator(PCG64([seed, index]))``, so variant 7 is the same whether 10 or 200
variants are written.

Each variant has one question, "compute dE/dw at the given values", its answer, and
wrong options, each a *real alternative derivation*: the derivation is changed the way a
student typically gets it wrong, then evaluated at the same numbers
(:func:`mistakes`). The kinds:

=====================  ================================================================
``sign``               a sign error in the loss derivative (``t - y`` for ``y - t``)
``missing-derivative`` the activation derivative ``f'`` of one node left out
``pre-activation``     ``f'`` in output form (``z (1 - z)``) evaluated at the input ``u``
``output-for-input``   ``f'(u)`` evaluated at the output ``z`` instead of ``u``
``transpose``          ``w_{j,i}`` used for ``w_{i,j}`` going down (a missing transpose)
``dropped-path``       one path left out of the sum over paths
``batch-sum``          the per-sample gradients summed although the loss is their mean
=====================  ================================================================

A family with ``kind = "circuit"`` asks about a gate circuit instead (:mod:`symprop.gates`):
an expression template is staged into gates, its variables get drawn numbers, and the question
is one variable's gradient or, with ``wrt = "all"``, every wire's ("fill in the gradients").
Its wrong options come from the typical circuit mistakes (:func:`circuit_mistakes`):

=====================  ================================================================
``fan-out``            a value used by several gates given the gradient of one use only
``add-scale``          an add gate scaling the gradient (by its other inputs) instead of
                       passing it through unchanged
``mul-own``            a multiply gate not swapping: each input times its own value
``max-route``          a max gate routing the gradient to the smaller input (min: larger)
``sign``               the minus sign of a gate's local gradient (1/x, scale by -k) dropped;
                       without such a gate, the whole gradient negated
=====================  ================================================================

Options are *distinct*: two values ``a``, ``b`` count as the same when
``|a - b| <= distinct * max(|a|, |b|)`` (``distinct`` defaults to 2 %, well above the
0.05 % that rounding to 4 significant digits can move a value). A mistake that coincides
with the right answer or with an option already chosen is dropped, and the variant says so.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> [(m.kind, str(m.expr)) for m in mistakes(net, w)][:3]
[('sign', 'h*x*(1 - h)*(-h + t)'), ('missing-derivative', 'x*(h - t)'), ('pre-activation', 'w*x**2*(h - t)*(-w*x + 1)')]
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import keyword
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import sympy as sp

from . import functions as fn
from .derive import METHODS, Total, derive, delta_expr, local_partial
from .graph import Network, NetworkError
from .layered import mlp
from .spec import SpecError, parse_toml, read_text, spec_from_text

__all__ = [
    "Mistake", "mistakes", "MISTAKE_KINDS", "Evaluator", "Family", "load_family", "family_from_text",
    "is_family", "Variant", "Option", "variant", "variants", "variant_context", "render_variants",
    "answer_key_csv", "answer_key_tex", "write_exam", "ExamError",
    "CircuitMistake", "circuit_mistakes", "circuit_mistake_gradient", "CIRCUIT_MISTAKE_KINDS",
    "CircuitQuestion", "CircuitVariant", "circuit_variant_context",
]

# The kinds of typical mistakes, in the order they are tried and reported.
MISTAKE_KINDS = (
    "sign", "missing-derivative", "pre-activation", "output-for-input", "transpose", "dropped-path", "batch-sum",
)
# Elementwise activations: a node ``z = f(u)`` with one of these is an "activation node".
_ACTIVATIONS = (fn.sigmoid, sp.tanh, fn.relu, fn.leaky_relu, fn.softplus, fn.GenericFunction)
# Functions whose derivative jumps: an argument this close to the jump is "at a kink".
_KINKED = (fn.relu, fn.leaky_relu, fn.step, sp.Abs, sp.sign)
KINK = 1e-9
# Paths past this count get no dropped-path options (one option per path would be noise).
MAX_DROPPED_PATHS = 64
# Digits of the high-precision evaluation of answers and options.
PRECISION = 30


class ExamError(ValueError):
    """A family that cannot produce what was asked; one line naming the file and the problem."""


# -- typical mistakes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Mistake:
    """A wrong dE/dw from a typical mistake, as an expression to evaluate.

    ``expr`` is in node symbols and leaves, like :attr:`Derivation.expr`, for one sample;
    ``batch-sum`` keeps the right expression and changes how samples are combined.
    ``node`` is the node the mistake is made at, ``path`` the dropped path, ``swapped`` the
    (right, used) weight pairs of a ``transpose``, ``function`` the activation's name and
    ``used`` the wrongly evaluated derivative factor.
    """

    kind: str
    label: str
    expr: sp.Expr
    node: sp.Symbol | None = None
    path: tuple[sp.Symbol, ...] | None = None
    swapped: tuple[tuple[sp.Symbol, sp.Symbol], ...] = ()
    function: str | None = None
    used: sp.Expr | None = None


def _local(net, of, wrt):
    return local_partial(net, of, wrt).expr


def _gradient(net: Network, wrt: sp.Symbol, local: Callable) -> sp.Expr:
    """dE/dw by the delta recursion (seed 002), with ``local(of, wrt)`` for every local
    partial: the right one, or one a mistake has changed."""
    on = net.on_paths(wrt)
    delta = {net.loss: sp.S.One}
    for k in reversed(on):
        if k != net.loss:
            delta[k] = sp.Add(*[delta[l] * local(l, k) for l in net.consumers[k] if l in delta])
    return sp.Add(*[delta[k] * local(k, wrt) for k in net.consumers[wrt] if k in delta])


def _with_chain_head(net, node, head: Callable):
    """Local partials where every product of ``node``'s own partials has its first chain
    factor (the activation derivative ``f'(u)``) replaced by ``head(factor)``."""

    def local(of, wrt):
        if of != node:
            return _local(net, of, wrt)
        terms = []
        for chain, algebra in local_partial(net, of, wrt).products:
            terms.append(sp.Mul(head(chain[0]), *chain[1:], *algebra))
        return sp.Add(*terms)

    return local


def _function_name(f) -> str:
    return f.base_name if isinstance(f, fn.GenericFunction) else type(f).__name__


def _partner(net: Network, p: sp.Symbol):
    """``w_j_i`` for ``w_i_j`` (the last two indices swapped), if that is another parameter."""
    parts = p.name.split("_")
    if len(parts) < 3:
        return None
    other = "_".join(parts[:-2] + [parts[-1], parts[-2]])
    found = next((q for q in net.params if q.name == other), None)
    return None if found is None or found == p else found


def mistakes(net: Network, wrt, *, batch_mean: bool = False) -> list[Mistake]:
    """Every typical mistake that applies to dE/dw, as a :class:`Mistake`, in the order of
    :data:`MISTAKE_KINDS` (nodes from the loss down). ``batch_mean``: the loss is the mean
    over a batch, so forgetting the mean (``batch-sum``) applies.

    Mistakes are not filtered here: one may equal the right gradient (a relu's derivative
    written in its output is still right); :func:`variant` drops those by value.
    """
    if isinstance(wrt, str):
        wrt = net.symbol(wrt)
    found: list[Mistake] = []
    E = net.loss

    def local(of, x):
        return _local(net, of, x)

    # sign: dE/dy computed as (t - y) instead of (y - t): the loss's local partials negated
    found.append(Mistake("sign", "sign error in the derivative of the loss",
                         _gradient(net, wrt, lambda of, x: -local(of, x) if of == E else local(of, x))))

    on = [k for k in reversed(net.on_paths(wrt)) if k != E]
    activation_nodes = [k for k in on if isinstance(net.nodes[k], _ACTIVATIONS)]
    for k in activation_nodes:
        f = net.nodes[k]
        name = _function_name(f)
        found.append(Mistake(
            "missing-derivative", f"missing activation derivative at {k}: {name}' left out",
            _gradient(net, wrt, _with_chain_head(net, k, lambda head: sp.S.One)), node=k, function=name,
        ))
    for k in activation_nodes:
        f, u = net.nodes[k], net.nodes[k].args[0]
        name = _function_name(f)
        # the derivative in output form, z (1 - z), evaluated with z := u
        head = local_partial(net, k, net.producers[k][0]).products[0][0][0]
        used = head.xreplace({k: u})
        found.append(Mistake(
            "pre-activation", f"pre-activation used instead of the output at {k}: {name}' = "
            f"{head} evaluated with {k} := {u}",
            _gradient(net, wrt, _with_chain_head(net, k, lambda h: h.xreplace({k: u}))),
            node=k, function=name, used=used,
        ))
    for k in activation_nodes:
        f = net.nodes[k]
        name = _function_name(f)
        used = f.func(k, *f.args[1:]).fdiff(1)  # f'(z): the derivative rule applied to the output
        found.append(Mistake(
            "output-for-input", f"output used instead of the pre-activation at {k}: {name}'({k}) for {name}'(u)",
            _gradient(net, wrt, _with_chain_head(net, k, lambda h, used=used: used)),
            node=k, function=name, used=used,
        ))

    # transpose: going down through a layer, w_j_i used where w_i_j belongs
    swap = {p: q for p in net.params if (q := _partner(net, p)) is not None}
    used_pairs: dict[sp.Symbol, sp.Symbol] = {}

    def transposed(of, x):
        if x not in net.nodes:
            return local(of, x)
        terms = []
        for chain, algebra in local_partial(net, of, x).products:
            for a in algebra:
                for p in sorted(a.free_symbols & swap.keys(), key=lambda s: s.name):
                    used_pairs[p] = swap[p]
            terms.append(sp.Mul(*chain, *[a.xreplace(swap) for a in algebra]))
        return sp.Add(*terms)

    wrong = _gradient(net, wrt, transposed)
    if used_pairs:
        pairs = tuple(used_pairs.items())
        text = ", ".join(f"{q} for {p}" for p, q in pairs)
        found.append(Mistake("transpose", f"wrong weight index (a missing transpose): {text}", wrong, swapped=pairs))

    count = net.path_count(wrt)
    if 1 < count <= MAX_DROPPED_PATHS:
        paths = net.paths(wrt)
        terms = [sp.Mul(*[local(b, a) for a, b in zip(p, p[1:])]) for p in paths]
        for i, p in enumerate(paths):
            found.append(Mistake(
                "dropped-path", "dropped path " + " -> ".join(map(str, p)),
                sp.Add(*(terms[:i] + terms[i + 1:])), path=p,
            ))

    if batch_mean:
        right = derive(net, wrt).expr
        found.append(Mistake("batch-sum", "forgot the batch mean: per-sample gradients summed, not averaged", right))
    return found


# -- evaluation -----------------------------------------------------------------------------

class Evaluator:
    """Evaluates a network's expressions at a point to :data:`PRECISION` digits.

    ``bind`` maps a generic function's name to a callable ``(order, arg) -> Expr`` giving
    ``g``, ``g'``, ... (the grader binds random polynomials). Expressions are rewritten in
    elementary functions once and cached.

    >>> import sympy as sp
    >>> from symprop import Network, sigmoid
    >>> x, w, h, E = sp.symbols("x w h E")
    >>> net = Network({h: sigmoid(w*x), E: h**2}, loss=E, params=[w], inputs=[x])
    >>> ev = Evaluator(net)
    >>> point = ev.forward({x: 1, w: 0})
    >>> float(point[h]), ev.value(h * (1 - h), point)
    (0.5, 0.25)
    """

    def __init__(self, net: Network, bind: Mapping[str, Callable] | None = None):
        self.net = net
        self.bind = dict(bind or {})
        self._explicit: dict = {}

    def _prepared(self, expr):
        if expr not in self._explicit:
            e = fn.as_expr(expr)
            if self.bind:
                e = e.replace(
                    lambda s: isinstance(s, fn.GenericFunction) and s.base_name in self.bind,
                    lambda s: self.bind[s.base_name](s.order, s.args[0]),
                )
            self._explicit[expr] = fn.explicit(e)
        return self._explicit[expr]

    def number(self, expr, point) -> sp.Expr:
        """``expr`` at ``point`` (Symbol -> number) as a SymPy number."""
        result = self._prepared(expr).xreplace(point)
        if not result.is_Number:
            result = result.evalf(PRECISION)
        return result

    def value(self, expr, point) -> float:
        """``expr`` at ``point`` as a float; NaN when it is not a finite real number."""
        result = self.number(expr, point)
        if not (result.is_Number and result.is_finite and result.is_real):
            return math.nan
        return float(result)

    def forward(self, leaves: Mapping) -> dict:
        """Leaves (Symbol -> number) and every node's value, as :data:`PRECISION`-digit Floats."""
        point = {s: sp.Float(sp.Rational(v) if isinstance(v, Fraction) else v, PRECISION) for s, v in leaves.items()}
        for k in self.net.order:
            value = self.number(self.net.nodes[k], point)
            point[k] = value if value.is_Number else sp.nan
        return point


# -- question families ----------------------------------------------------------------------

_FAMILY_KEYS = {
    "kind", "name", "title", "method", "wrt", "decimals", "digits", "options", "tolerance", "distinct", "batch",
    "allow", "saturation", "min_gradient", "max_tries", "layered", "activations", "values",
}
_LAYERED_KEYS = ("sizes", "hidden", "output", "loss", "form", "reduction")
_ALLOW = ("saturated", "zero-gradient", "kink", "tie")
_ROLES = {"inputs": "input", "targets": "target", "params": "param"}
_SPEC_TABLES = ("network", "nodes", "display")


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
    activations: dict  # generic name -> tuple of activation names
    values: tuple  # (key, rule) pairs in file order
    kind: str = "network"  # or "circuit"
    circuits: tuple = ()  # circuit families: (expression text, Circuit) per template
    all_gradients: bool = False  # circuit families: wrt = "all", every wire's gradient asked
    min_options: int | None = None  # circuit families: fewest wrong options per question


def is_family(path) -> bool:
    """True when the TOML file at ``path`` has a ``[family]`` table (a question family)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # load_spec reports the problem in its own words
    return isinstance(raw.get("family"), dict)


def load_family(path) -> Family:
    """Read the question family at ``path``; see :func:`family_from_text`."""
    return family_from_text(read_text(path), str(path))


def family_from_text(text: str, file: str = "<string>") -> Family:
    """Parse a question family (TOML). Errors are :class:`~symprop.spec.SpecError` lines.

    ``[family]`` keys (all optional): ``name``, ``title``, ``method`` (of the worked
    solution), ``wrt`` (name patterns of the weights to ask about, ``fnmatch`` style),
    ``decimals`` (given numbers are multiples of 10^-decimals), ``digits`` (significant
    digits of answers and options), ``options`` (wrong options per question, 0 for
    numerical only), ``tolerance`` (relative, for Moodle's numerical answer), ``distinct``
    (relative distance between options), ``batch`` (samples per variant), ``allow``
    (degenerate cases to accept: saturated, zero-gradient, kink, tie), ``saturation``
    (a unit with |f'(u)| below this is saturated), ``min_gradient``, ``max_tries``.

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
    options a question may have, default 1: ``options`` is then a maximum, since a short
    path has few typical mistakes). Its ``[family.values]`` keys are ``variables`` (every
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
    raw = parse_toml(text, file)

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
    tables = () if kind == "circuit" else _SPEC_TABLES
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
    if kind == "circuit":
        min_options = get("min_options", int, min(1, options), lambda n: min(1, options) <= n <= options,
                          f"must be an integer from {min(1, options)} to options ({options})")
        circuits, variables = _circuit_templates(fam, fail, () if all_gradients else tuple(wrt))
        values = fam.get("values", {})
        if not isinstance(values, dict):
            fail("[family.values]", "must be a table")
        rules = []
        for key, rule in values.items():
            if key != "variables" and not any(fnmatch.fnmatchcase(v, key) for v in variables):
                fail(f"[family.values] {key}", "matches no variable; keys are \"variables\" or name patterns of "
                     + ", ".join(variables))
            rule = _value_rule(key, rule, decimals, fail)
            if rule[0] == "one-hot":
                fail(f"[family.values] {key}", "\"one-hot\" is for the targets of a network family")
            rules.append((key, rule))
        return Family(**common, layered=None, graph=None, activations={}, values=tuple(rules), kind="circuit",
                      circuits=circuits, all_gradients=all_gradients, min_options=min_options)

    layered, graph, activations = None, None, {}
    if "layered" in fam:
        if "network" in raw or "nodes" in raw:
            fail("[family.layered]", "a family has either [family.layered] or a [network] graph, not both")
        layered = _layered_choices(fam["layered"], fail)
    elif "network" in raw:
        graph = spec_from_text(_toml({k: raw[k] for k in _SPEC_TABLES if k in raw}), file)
        activations = _activation_choices(fam.get("activations", {}), graph, fail)
    else:
        fail("[family]", "no network: give [family.layered] or a [network] and [nodes] graph")
    if "activations" in fam and graph is None:
        fail("[family.activations]", "only for a [network] graph with generic functions")

    values = fam.get("values", {})
    if not isinstance(values, dict):
        fail("[family.values]", "must be a table")
    rules = tuple((key, _value_rule(key, rule, decimals, fail)) for key, rule in values.items())
    return Family(**common, layered=layered, graph=graph, activations=activations, values=rules)


def _choices(value, single):
    """A key's choices: a list of them, or one value (``single(value)`` says which)."""
    return (value,) if single(value) else tuple(value) if isinstance(value, list) else (value,)


def _layered_choices(table, fail) -> dict:
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
    known = {
        "hidden": (set(fn.ACTIVATIONS), "sigmoid"), "output": (set(fn.ACTIVATIONS) | {"softmax"}, "identity"),
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
    for g in spec.functions:
        if g.endswith("_prime"):
            continue
        key = f"[family.activations] {g}"
        if g not in table:
            fail(key, f"missing: the generic function {g} needs activations to choose from, such as [\"sigmoid\", \"tanh\"]")
        values = _choices(table[g], lambda v: isinstance(v, str))
        if not values or any(v not in fn.ACTIVATIONS for v in values):
            fail(key, "must be a list of activation names; known: " + ", ".join(sorted(fn.ACTIVATIONS)))
        result[g] = values
    for g in table:
        if g not in result:
            fail(f"[family.activations] {g}", f"{g} is not a generic function declared in [network] functions")
    return result


def _decimal(value) -> Fraction:
    """A TOML number as the exact decimal it was written as (0.1 is 1/10)."""
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def _value_rule(key, rule, decimals, fail):
    where = f"[family.values] {key}"
    number = (int, float)
    if isinstance(rule, bool):
        fail(where, "must be a number, a range [low, high], a table or \"one-hot\"")
    if isinstance(rule, number):
        return ("fixed", _decimal(rule))
    if rule == "one-hot":
        return ("one-hot",)
    zero = False
    if isinstance(rule, dict):
        extra = set(rule) - {"range", "zero", "choices"}
        if extra or ("range" in rule) == ("choices" in rule):
            fail(where, "a table needs exactly one of range = [low, high] or choices = [...] (and optionally zero = true)")
        if "choices" in rule:
            choices = rule["choices"]
            if not (isinstance(choices, list) and choices and all(isinstance(c, number) and not isinstance(c, bool) for c in choices)):
                fail(where, "choices must be a non-empty list of numbers")
            return ("choices", tuple(_decimal(c) for c in choices))
        zero = rule.get("zero", False)
        if not isinstance(zero, bool):
            fail(where, "zero must be true or false")
        rule = rule["range"]
    if not (isinstance(rule, list) and len(rule) == 2 and all(isinstance(v, number) and not isinstance(v, bool) for v in rule)):
        fail(where, "must be a number, a range [low, high], a table or \"one-hot\"")
    low, high = (_decimal(v) for v in rule)
    scale = 10**decimals
    grid = [n for n in range(math.ceil(low * scale), math.floor(high * scale) + 1) if zero or n != 0]
    if low > high or not grid:
        fail(where, f"the range [{rule[0]}, {rule[1]}] holds no number with {decimals} decimals")
    return ("grid", tuple(Fraction(n, scale) for n in grid))


def _toml(tables: Mapping) -> str:
    """TOML text for tables as tomllib returns them (strings, numbers, lists, inline tables),
    so a family's graph goes through the spec loader and its error messages unchanged."""

    def key(k):
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else value(k)

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(v, (int, float)):
            return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
        return value(str(v))  # dates and times: the spec loader rejects them with its own message

    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        if isinstance(table, dict):
            lines += [f"{key(k)} = {value(v)}" for k, v in table.items()]
        else:
            lines.append(f"# not a table: {value(table)}")
    return "\n".join(lines) + "\n"


# -- variants -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One answer option: its letter, value, and the mistake behind it (None: the right one)."""

    letter: str
    value: float
    mistake: Mistake | None

    @property
    def correct(self) -> bool:
        return self.mistake is None


@dataclass(frozen=True)
class Variant:
    """One question of a family: a network, the weight asked about, the numbers, the answer.

    ``samples`` holds the given values of each sample (one dict for a single sample; the
    parameters repeat in each); ``points`` the forward values at each; ``options`` the
    right answer and the wrong ones, in letter order; ``dropped`` the mistakes left out,
    each as ``(mistake, why, twin)``: why is ``"right"`` (within ``distinct`` of the
    answer), ``"option"`` (of the option from mistake ``twin``) or ``"undefined"``.
    """

    index: int
    seed: int
    network: Network
    wrt: sp.Symbol
    architecture: str
    samples: tuple[dict, ...]
    points: tuple[dict, ...]
    gradients: tuple[float, ...]
    answer: float
    options: tuple[Option, ...]
    dropped: tuple[tuple[Mistake, str, Mistake | None], ...]
    tries: int

    @property
    def batch_mean(self) -> bool:
        return self.network.reduction == "mean"

    @property
    def notes(self) -> tuple[str, ...]:
        """One line of plain text per dropped mistake."""
        why = {"right": "coincides with the right answer", "undefined": "not a finite number"}
        return tuple(
            f"{m.label}: {why.get(reason) or 'coincides with the option from ' + twin.label}, left out"
            for m, reason, twin in self.dropped
        )

    @property
    def question(self) -> str:
        """The question in spec identifiers: ``dE/dw_1_2_1``."""
        return f"d{self.network.loss}/d{self.wrt}"

    @property
    def correct_letter(self) -> str | None:
        return next((o.letter for o in self.options if o.correct), None)

    @property
    def wrong_options(self) -> tuple[Option, ...]:
        return tuple(o for o in self.options if not o.correct)

    @property
    def questions(self) -> tuple[Variant, ...]:
        """The questions of the variant: one, the variant itself (a circuit variant may have several)."""
        return (self,)


class _Rejected(Exception):
    """A drawn variant is degenerate; the message says why."""


class _Generator:
    """Draws the variants of one family; networks and mistakes are cached by architecture."""

    def __init__(self, family: Family):
        self.family = family
        self._networks: dict = {}
        self._analysis: dict = {}

    # -- architecture

    def network(self, rng) -> tuple[Network, str]:
        fam = self.family
        if fam.layered is not None:
            pick = {k: v[int(rng.integers(len(v)))] for k, v in fam.layered.items()}
            key = tuple(pick[k] for k in _LAYERED_KEYS)
            if key not in self._networks:
                net = mlp(list(pick["sizes"]), pick["hidden"], pick["output"], pick["loss"],
                          form=pick["form"], reduction=pick["reduction"])
                self._networks[key] = net
            text = "-".join(map(str, pick["sizes"])) + f", hidden {pick['hidden']}, output {pick['output']}, loss {pick['loss']}"
            return self._networks[key], text
        pick = {g: v[int(rng.integers(len(v)))] for g, v in fam.activations.items()}
        key = tuple(sorted(pick.items()))
        if key not in self._networks:
            self._networks[key] = _bind_network(fam.graph.network, pick)
        text = ", ".join(f"{g} = {a}" for g, a in key) or "fixed graph"
        return self._networks[key], text

    def analysis(self, net, wrt):
        """Per (network, weight): the right gradient, the mistakes and the checks to run."""
        key = (id(net), wrt)
        if key not in self._analysis:
            right = derive(net, wrt).expr
            wrong = mistakes(net, wrt, batch_mean=net.reduction == "mean" and self.family.batch > 1)
            checks = []
            for k in net.on_paths(wrt):
                for f in sorted(net.nodes[k].atoms(sp.Function), key=sp.default_sort_key):
                    checks.append((k, f))
            self._analysis[key] = (right, wrong, checks, Evaluator(net))
        return self._analysis[key]

    # -- numbers

    def rule(self, net, symbol):
        role = net.role(symbol)
        for key, rule in self.family.values:  # a name or pattern wins over a role
            if key not in _ROLES and fnmatch.fnmatchcase(symbol.name, key):
                return rule
        for key, rule in self.family.values:
            if _ROLES.get(key) == role:
                return rule
        if role == "target":
            loss = net.nodes[net.loss]
            if loss.has(fn.softmax_cross_entropy) or any(isinstance(a, sp.log) for a in loss.atoms(sp.Function)):
                return ("one-hot",) if loss.has(fn.softmax_cross_entropy) or len(net.targets) > 1 else ("choices", (Fraction(0), Fraction(1)))
            return _value_rule("targets", [0.0, 1.0], self.family.decimals, None)
        return _value_rule(role, [-1.0, 1.0], self.family.decimals, None)

    def sample(self, net, rng, per_sample: bool) -> dict:
        """Values for the leaves of one sample (inputs and targets) or of the parameters."""
        values: dict = {}
        leaves = net.inputs + net.targets if per_sample else net.params
        hot = [t for t in net.targets if self.rule(net, t) == ("one-hot",)]
        if per_sample and hot:
            chosen = hot[int(rng.integers(len(hot)))]
        for s in leaves:
            rule = self.rule(net, s)
            kind = rule[0]
            if kind == "fixed":
                values[s] = rule[1]
            elif kind == "one-hot":
                if net.role(s) != "target":
                    raise ExamError(f"{self.family.file}: [family.values]: \"one-hot\" is for targets, not {s}")
                values[s] = Fraction(int(s == chosen))
            else:
                values[s] = rule[1][int(rng.integers(len(rule[1])))]
        return values

    # -- one variant

    def variant(self, seed: int, index: int) -> Variant:
        fam = self.family
        rng = np.random.Generator(np.random.PCG64([seed, index]))
        reason = ""
        for tries in range(1, fam.max_tries + 1):
            net, architecture = self.network(rng)
            candidates = [p for p in net.params if any(fnmatch.fnmatchcase(p.name, pat) for pat in fam.wrt)]
            if not candidates:
                raise ExamError(f"{fam.file}: [family] wrt: no parameter of the network ({architecture}) "
                                f"matches {', '.join(fam.wrt)}")
            wrt = candidates[int(rng.integers(len(candidates)))]
            params = self.sample(net, rng, per_sample=False)
            samples = tuple({**self.sample(net, rng, per_sample=True), **params} for _ in range(fam.batch))
            try:
                return self._finish(rng, seed, index, net, wrt, architecture, samples, tries)
            except _Rejected as why:
                reason = str(why)
        raise ExamError(
            f"{fam.file}: variant {index}: no acceptable variant in {fam.max_tries} tries (last: {reason}); "
            "widen the ranges, allow the case in [family] allow, lower [family] options or raise max_tries"
        )

    def _finish(self, rng, seed, index, net, wrt, architecture, samples, tries) -> Variant:
        fam = self.family
        right, wrong, checks, ev = self.analysis(net, wrt)
        points = tuple(ev.forward(s) for s in samples)
        for point in points:
            self._check(net, checks, ev, point)
        reduce = _reducer(net.reduction)
        gradients = tuple(ev.value(right, p) for p in points)
        answer = reduce(gradients)
        if not math.isfinite(answer):
            raise _Rejected("the gradient is not a finite number")
        if abs(answer) < fam.min_gradient and "zero-gradient" not in fam.allow:
            raise _Rejected(f"zero gradient ({answer:.3g})")

        valued = []
        for m in wrong:
            combine = _reducer("sum") if m.kind == "batch-sum" else reduce
            valued.append((m, combine([ev.value(m.expr, p) for p in points])))
        chosen, dropped = self._choose(rng, answer, valued)
        if len(chosen) < fam.options:
            raise _Rejected(f"only {len(chosen)} distinct wrong options, [family] options = {fam.options}")
        order = rng.permutation(len(chosen) + 1)
        entries = [(answer, None)] + [(v, m) for m, v in chosen]
        options = tuple(
            Option(_letter(i), entries[j][0], entries[j][1]) for i, j in enumerate(int(o) for o in order)
        )
        return Variant(index, seed, net, wrt, architecture, samples, points, gradients, answer, options, tuple(dropped), tries)

    def _check(self, net, checks, ev, point):
        allow = self.family.allow
        for k, value in point.items():
            if k in net.nodes and not (value.is_Number and value.is_finite):
                raise _Rejected(f"{k} is undefined at the drawn values")
        for k, f in checks:
            args = [ev.value(a, point) for a in f.args]
            if isinstance(f, _KINKED) and "kink" not in allow and abs(args[0]) < KINK:
                raise _Rejected(f"{type(f).__name__} at its kink in {k} (argument 0)")
            if isinstance(f, (fn.maximum, fn.minimum)) and "tie" not in allow and abs(args[0] - args[1]) < KINK:
                raise _Rejected(f"a tie in {type(f).__name__} in {k}")
            if isinstance(f, _ACTIVATIONS) and "saturated" not in allow:
                slope = ev.value(f.fdiff(1), point)
                if not abs(slope) >= self.family.saturation:
                    raise _Rejected(f"{k} is saturated or dead ({_function_name(f)}' = {slope:.3g})")

    def _choose(self, rng, answer, valued):
        return _choose(rng, answer, valued, self.family.options, self.family.distinct)


def _choose(rng, answer, valued, options: int, distinct: float):
    """Up to ``options`` wrong values, distinct from the answer and from each other; one
    per kind first (kinds in a random order, so variants differ), then the rest.
    ``valued`` holds (mistake, value) pairs; returns (chosen pairs, dropped triples)."""
    dropped = []
    usable = []
    for m, v in valued:
        if not math.isfinite(v):
            dropped.append((m, "undefined", None))
        elif _same(v, answer, distinct):
            dropped.append((m, "right", None))
        else:
            usable.append((m, v))
    if not usable or options == 0:
        return [], dropped
    order = [usable[int(i)] for i in rng.permutation(len(usable))]
    kinds = list(dict.fromkeys(m.kind for m, _ in order))
    first = [next(x for x in order if x[0].kind == k) for k in kinds]
    chosen: list = []
    for m, v in first + [x for x in order if x not in first]:
        if len(chosen) == options:
            break
        twin = next((c for c in chosen if _same(v, c[1], distinct)), None)
        if twin is not None:
            dropped.append((m, "option", twin[0]))
            continue
        chosen.append((m, v))
    return chosen, dropped


def _same(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _reducer(reduction):
    if reduction == "mean":
        return lambda values: math.fsum(values) / len(values)
    return lambda values: math.fsum(values)


def _letter(i: int) -> str:
    return "ABCDEFGHIJ"[i]


def _bind_network(net: Network, pick: Mapping[str, str]) -> Network:
    """The network with each generic function replaced by the activation picked for it."""
    def concrete(expr):
        return expr.replace(
            lambda e: isinstance(e, fn.GenericFunction) and e.base_name in pick,
            lambda e: sp.diff(fn.ACTIVATIONS[pick[e.base_name]](_U), _U, e.order).xreplace({_U: e.args[0]}),
        )

    nodes = {k: concrete(e) for k, e in net.nodes.items()}
    return Network(nodes, loss=net.loss, params=net.params, inputs=net.inputs, targets=net.targets,
                   reduction=net.reduction, display=net.display)


_U = sp.Dummy("u")


def variant(family: Family, seed: int, index: int) -> Variant | CircuitVariant:
    """Variant ``index`` (counted from 1) of ``family`` for ``seed``: the same whatever the
    number of variants asked for."""
    _check_seed(seed)
    return _generator(family).variant(seed, index)


def variants(family: Family, n: int, seed: int) -> list[Variant] | list[CircuitVariant]:
    """Variants 1..n of ``family`` for ``seed``."""
    _check_seed(seed)
    if n < 1:
        raise ExamError(f"the number of variants must be at least 1, not {n}")
    gen = _generator(family)
    return [gen.variant(seed, i) for i in range(1, n + 1)]


def _generator(family: Family):
    return _CircuitGenerator(family) if family.kind == "circuit" else _Generator(family)


def _check_seed(seed):
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ExamError(f"the seed must be a non-negative integer, not {seed!r}")


# -- gate circuits ------------------------------------------------------------------------------

_CIRCUIT_KEYS = {
    "kind", "name", "title", "expressions", "variables", "wrt", "decimals", "digits", "options", "min_options",
    "tolerance", "distinct", "allow", "saturation", "min_gradient", "max_tries", "values",
}
# The kinds of typical circuit mistakes, in the order they are tried and reported.
CIRCUIT_MISTAKE_KINDS = ("fan-out", "add-scale", "mul-own", "max-route", "sign")
# Gates whose local gradient is a switch (0 or 1): a zero gradient behind one of them is
# the lesson (max routes, relu blocks), not a degenerate variant.
_SWITCHES = ("max", "min", "relu")


def _circuit_templates(fam, fail, patterns) -> tuple[tuple, tuple[str, ...]]:
    """The staged circuit of every ``[family] expressions`` template, and the variable names."""
    from .gates import stage
    from .spec import FUNCTIONS, parse_expression

    names = fam.get("variables")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        fail("[family] variables", 'missing or not a list of names such as ["x", "y", "z"]')
    for n in names:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) or keyword.iskeyword(n) or n in FUNCTIONS:
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
            expr = parse_expression(text, symbols, where=key)
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


@dataclass(frozen=True)
class CircuitMistake:
    """A wrong gradient of a circuit's output from a typical mistake at one gate or wire.

    ``gate`` is the gate whose local rule is misapplied (None for ``fan-out`` and for a
    ``sign`` error of the whole gradient); for ``fan-out``, ``wire`` is the value used by
    several gates and ``kept`` the one use whose gradient is taken.
    """

    kind: str
    label: str
    gate: sp.Symbol | None = None
    wire: sp.Symbol | None = None
    kept: sp.Symbol | None = None


def _signed(g) -> bool:
    """Whether the gate's local gradient carries a minus sign in its rule: -1/x^2, k < 0, n x^(n-1) with n < 0."""
    return g.op == "recip" or (g.op == "scale" and g.constants["k"] < 0) or (g.op == "pow" and g.constants["n"] < 0)


def circuit_mistakes(circuit, wrt) -> list[CircuitMistake]:
    """Every typical circuit mistake that applies to d(output)/d``wrt`` (a variable), in the
    order of :data:`CIRCUIT_MISTAKE_KINDS`, gates from the output down. Not filtered by
    value: one may give the right number at a point; :func:`variant` drops those.

    >>> import sympy as sp
    >>> from symprop.gates import stage
    >>> x, y = sp.symbols("x y")
    >>> for m in circuit_mistakes(stage(x * (x + y)), x):
    ...     print(m.kind, "|", m.label)
    fan-out | fan-out not summed at x: only the gradient via add1 taken, not the sum over its 2 uses
    fan-out | fan-out not summed at x: only the gradient via f taken, not the sum over its 2 uses
    add-scale | add gate add1 scales the gradient by its other inputs instead of passing it through unchanged
    mul-own | multiply gate f does not swap: each input gets the gradient times its own value
    sign | sign error: the gradient with the wrong sign
    """
    net = circuit.network
    if isinstance(wrt, str):
        wrt = net.symbol(wrt)
    if wrt not in circuit.variables:
        raise NetworkError(f"{wrt} is not a variable of the circuit", wrt)
    gates = [circuit.gate_of[k] for k in reversed(net.on_paths(wrt))]  # from the output down
    found = []
    for s in [wrt] + [g.symbol for g in gates]:
        uses = circuit.uses(s)
        for k in uses if len(uses) > 1 else ():
            found.append(CircuitMistake(
                "fan-out", f"fan-out not summed at {s}: only the gradient via {k} taken, not the sum over its {len(uses)} uses",
                wire=s, kept=k))
    for g in gates:
        if g.op == "add":
            found.append(CircuitMistake(
                "add-scale", f"add gate {g.name} scales the gradient by its other inputs instead of passing it through unchanged",
                gate=g.symbol))
    for g in gates:
        if g.op == "mul":
            found.append(CircuitMistake(
                "mul-own", f"multiply gate {g.name} does not swap: each input gets the gradient times its own value",
                gate=g.symbol))
    for g in gates:
        if g.op in ("max", "min"):
            wrong = "smaller" if g.op == "max" else "larger"
            found.append(CircuitMistake(
                "max-route", f"{g.op} gate {g.name} routes the gradient to the {wrong} input", gate=g.symbol))
    signed = [g for g in gates if _signed(g)]
    for g in signed:
        found.append(CircuitMistake(
            "sign", f"sign error at {g.name}: the minus sign of its local gradient dropped", gate=g.symbol))
    if not signed:
        found.append(CircuitMistake("sign", "sign error: the gradient with the wrong sign"))
    return found


def circuit_mistake_gradient(flow, mistake: CircuitMistake, wrt) -> float:
    """d(output)/d``wrt`` at ``flow``'s point with ``mistake`` made: the backward pass run
    again with the mistaken local gradient, or with one use of a fanned-out wire.

    >>> import sympy as sp
    >>> from symprop.gates import stage
    >>> x, y, z = sp.symbols("x y z")
    >>> flow = stage((x + y) * z).evaluate({x: -2, y: 5, z: -4})
    >>> [(m.kind, circuit_mistake_gradient(flow, m, x)) for m in circuit_mistakes(flow.circuit, x)]
    [('add-scale', -20.0), ('mul-own', 3.0), ('sign', 4.0)]
    """
    from .gates import backward

    c = flow.circuit
    if isinstance(wrt, str):
        wrt = c.network.symbol(wrt)
    if mistake.kind == "sign" and mistake.gate is None:
        return -flow.deltas[wrt]

    def local(k, s):
        right = flow.local[k, s]
        if k != mistake.gate:
            return right
        g = c.gate_of[k]
        if mistake.kind == "add-scale":  # the other inputs' sum, as if the add were a multiply
            return math.fsum([flow.values[u] for u in g.inputs if u != s] + [float(g.constants.get("c", 0))])
        if mistake.kind == "mul-own":
            return flow.values[s]
        if mistake.kind == "max-route":  # the switch the other way: 1 <-> 0
            return 1.0 - right
        return -right  # sign

    def uses(s):  # a fan-out mistake counts one use of the wire only
        return (mistake.kept,) if mistake.kind == "fan-out" and s == mistake.wire else c.uses(s)

    return backward(c, local, uses=uses)[0][wrt]


class _Answered:
    """What a question with options offers: the right letter, the wrong options, the notes."""

    @property
    def notes(self) -> tuple[str, ...]:
        """One line of plain text per dropped mistake."""
        why = {"right": "coincides with the right answer", "undefined": "not a finite number"}
        return tuple(
            f"{m.label}: {why.get(reason) or 'coincides with the option from ' + twin.label}, left out"
            for m, reason, twin in self.dropped
        )

    @property
    def correct_letter(self) -> str | None:
        return next((o.letter for o in self.options if o.correct), None)

    @property
    def wrong_options(self) -> tuple[Option, ...]:
        return tuple(o for o in self.options if not o.correct)


@dataclass(frozen=True)
class CircuitQuestion(_Answered):
    """One question of a circuit variant: d(output)/d``wrt``, its answer, its options (in
    letter order) and the mistakes left out, as in :class:`Variant`."""

    network: Network
    wrt: sp.Symbol
    answer: float
    options: tuple[Option, ...]
    dropped: tuple

    @property
    def question(self) -> str:
        """The question in identifiers: ``df/dx``."""
        return f"d{self.network.loss}/d{self.wrt}"


@dataclass(frozen=True)
class CircuitVariant:
    """One variant of a circuit family: the expression template drawn, its staged circuit,
    the given numbers (exact), the circuit evaluated there (``flow``) and the questions:
    one variable's gradient, or every variable's with ``wrt = "all"``."""

    index: int
    seed: int
    expression: str
    circuit: object
    values: dict
    flow: object
    questions: tuple[CircuitQuestion, ...]
    tries: int

    @property
    def network(self) -> Network:
        return self.circuit.network

    @property
    def architecture(self) -> str:
        return f"{self.circuit.output} = {self.expression}"


class _CircuitGenerator:
    """Draws the variants of a circuit family; mistakes are cached per (circuit, variable)."""

    def __init__(self, family: Family):
        self.family = family
        self._mistakes: dict = {}

    def mistakes(self, circuit, wrt):
        key = (id(circuit), wrt)
        if key not in self._mistakes:
            self._mistakes[key] = circuit_mistakes(circuit, wrt)
        return self._mistakes[key]

    def rule(self, symbol):
        for key, rule in self.family.values:  # a name pattern wins over "variables"
            if key != "variables" and fnmatch.fnmatchcase(symbol.name, key):
                return rule
        for key, rule in self.family.values:
            if key == "variables":
                return rule
        return _value_rule("variables", [-1.0, 1.0], self.family.decimals, None)

    def variant(self, seed: int, index: int) -> CircuitVariant:
        fam = self.family
        rng = np.random.Generator(np.random.PCG64([seed, index]))
        # the template is drawn once, so each is equally likely whatever its rejection rate
        text, circuit = fam.circuits[int(rng.integers(len(fam.circuits)))]
        reason = ""
        for tries in range(1, fam.max_tries + 1):
            if fam.all_gradients:
                asked = circuit.variables
            else:
                candidates = [s for s in circuit.variables if any(fnmatch.fnmatchcase(s.name, p) for p in fam.wrt)]
                asked = (candidates[int(rng.integers(len(candidates)))],)
            values = {}
            for s in circuit.variables:
                rule = self.rule(s)
                values[s] = rule[1] if rule[0] == "fixed" else rule[1][int(rng.integers(len(rule[1])))]
            try:
                return self._finish(rng, seed, index, text, circuit, asked, values, tries)
            except _Rejected as why:
                reason = str(why)
        raise ExamError(
            f"{fam.file}: variant {index}: no acceptable numbers for {text!r} in {fam.max_tries} tries (last: {reason}); "
            "widen the ranges, allow the case in [family] allow, lower [family] min_options or raise max_tries"
        )

    def _finish(self, rng, seed, index, text, circuit, asked, values, tries) -> CircuitVariant:
        fam = self.family
        try:
            flow = circuit.evaluate(values)
        except NetworkError as err:
            raise _Rejected(str(err)) from None
        self._check(circuit, flow, asked)
        questions = []
        for x in asked:
            answer = flow.deltas[x]
            valued = [(m, circuit_mistake_gradient(flow, m, x)) for m in self.mistakes(circuit, x)]
            chosen, dropped = _choose(rng, answer, valued, fam.options, fam.distinct)
            if len(chosen) < fam.min_options:
                raise _Rejected(f"d{circuit.output}/d{x}: only {len(chosen)} distinct wrong options, "
                                f"[family] min_options = {fam.min_options}")
            order = rng.permutation(len(chosen) + 1)
            entries = [(answer, None)] + [(v, m) for m, v in chosen]
            options = tuple(
                Option(_letter(i), entries[j][0], entries[j][1]) for i, j in enumerate(int(o) for o in order)
            )
            questions.append(CircuitQuestion(circuit.network, x, answer, options, tuple(dropped)))
        return CircuitVariant(index, seed, text, circuit, dict(values), flow, tuple(questions), tries)

    def _check(self, circuit, flow, asked):
        """Reject ties of max and min, relu at its kink, saturated sigmoid and tanh gates, and
        a zero gradient on a wire the question asks about, unless [family] allow has it."""
        fam = self.family
        allow = fam.allow
        for g in circuit.gates:
            args = [flow.values[a] if a in flow.values else float(a) for a in g.expr.args]
            if g.op in ("max", "min") and "tie" not in allow and abs(args[0] - args[1]) < KINK:
                raise _Rejected(f"a tie in the {g.op} gate {g.name}")
            if g.op in ("relu", "leaky_relu") and "kink" not in allow and abs(args[0]) < KINK:
                raise _Rejected(f"{g.op} gate {g.name} at its kink (input 0)")
            if g.op in ("sigmoid", "tanh") and "saturated" not in allow:
                slope = flow.local[g.symbol, g.inputs[0]]
                if not abs(slope) >= fam.saturation:
                    raise _Rejected(f"{g.op} gate {g.name} is saturated (local gradient {slope:.3g})")
        if "zero-gradient" in allow:
            return
        net = circuit.network
        if fam.all_gradients:
            wires = circuit.variables + tuple(g.symbol for g in circuit.gates)
        else:
            wires = asked + net.on_paths(asked[0])
        off = _switched_off(circuit, flow)
        for s in wires:
            if abs(flow.deltas[s]) < fam.min_gradient and s not in off:
                raise _Rejected(f"zero gradient at {s} ({flow.deltas[s]:.3g})")


def _switched_off(circuit, flow) -> set:
    """The wires whose gradient is 0 because switches (max, min, relu) send none their way."""
    net = circuit.network
    off: set = set()
    for s in reversed(net.leaves + net.order):
        uses = circuit.uses(s)
        if uses and all(k in off or (circuit.gate_of[k].op in _SWITCHES and flow.local[k, s] == 0) for k in uses):
            off.add(s)
    return off


# -- documents ------------------------------------------------------------------------------

def _decimal_text(value: Fraction, decimals: int) -> str:
    """A given number with at least ``decimals`` decimals, exactly as drawn (no float noise)."""
    value = Fraction(value)
    places = decimals
    while (value * 10**places).denominator != 1 and places < 12:
        places += 1
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}" + (f".{frac:0{places}d}" if places else "")


def _plain_number(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits as plain text (answer keys, Moodle)."""
    return f"{x:.{digits}g}"


def _printer(net, values=None):
    from .printing import LatexPrinter

    settings = {"names": net.display}
    if values:
        settings["values"] = values
    return LatexPrinter(settings)


def _lines(printer, expr, width: int = 60) -> list[str]:
    """A chain sum as display lines: terms joined until a line holds about ``width``
    characters of LaTeX source, the next line starting with its sign."""
    lines, current = [], ""
    for i, (sign, factors) in enumerate(printer.terms(expr)):
        piece = printer.join_factors(factors)
        if i:
            piece = f"{sign} {piece}"
        elif sign == "-":
            piece = "-" + piece
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    lines.append(current)
    return lines


def _mistake_context(m: Mistake | None, net: Network) -> dict | None:
    """The pieces of a mistake's explanation, printed (the prose is in the templates)."""
    if m is None:
        return None
    name = _printer(net).doprint
    record = {"kind": m.kind, "label": m.label, "node": None, "function": None, "path": None,
              "swapped": [], "used": None, "factor": None, "input": None}
    if m.node is not None:
        f = net.nodes[m.node]
        record["node"] = name(m.node)
        record["function"] = _function_head(f)
        record["input"] = name(f.args[0])
        head = local_partial(net, m.node, net.producers[m.node][0]).products[0][0][0]
        record["factor"] = name(head)
    if m.used is not None:
        record["used"] = name(m.used)
    if m.path is not None:
        record["path"] = r" \to ".join(name(s) for s in m.path)
    record["swapped"] = [{"right": name(p), "used": name(q)} for p, q in m.swapped]
    return record


_HEADS = {
    fn.sigmoid: r"\sigma", sp.tanh: r"\tanh", fn.relu: r"\operatorname{relu}",
    fn.leaky_relu: r"\operatorname{leaky\_relu}", fn.softplus: r"\operatorname{softplus}",
}


def _function_head(f) -> str:
    """The LaTeX name of an activation (``sigma`` prints as the Greek letter)."""
    from .printing import latex_name
    from .graph import display_name

    if isinstance(f, fn.GenericFunction):
        return latex_name(display_name(f.base_name))
    return _HEADS.get(type(f), r"\operatorname{" + type(f).__name__.replace("_", r"\_") + "}")


def variant_context(family: Family, v: Variant, number: str | None = None) -> dict:
    """The data a variant's templates receive: printed LaTeX strings, lists and dicts."""
    from .printing import latex_number
    from .render import solution_context

    net, wrt, E = v.network, v.wrt, v.network.loss
    context = solution_context(net, wrt, method=family.method)
    d = context["derivations"][0]
    name = _printer(net).doprint
    derivation = derive(net, wrt, method=family.method)
    on = [k for k in net.order if k in set(net.on_paths(wrt))]
    ev = Evaluator(net)

    def given(sample, leaves):
        return [{"name": name(s), "number": _decimal_text(sample[s], family.decimals)} for s in leaves]

    samples = []
    for m, (sample, point, gradient) in enumerate(zip(v.samples, v.points, v.gradients), 1):
        deltas = {k: ev.value(delta_expr(net, k), point) for k in on}
        values = {s: float(x) for s, x in point.items()}
        values.update({Total(E, k): x for k, x in deltas.items()})
        for f in sorted(derivation.in_deltas.atoms(fn.softmax), key=sp.default_sort_key):
            values[f] = ev.value(f, point)
        samples.append({
            "number": m,
            "given": given(sample, net.inputs + net.targets),
            "nodes": [{"name": name(k), "value": latex_number(point[k], family.digits)} for k in net.order],
            "deltas": [{"name": name(Total(E, k)), "value": latex_number(deltas[k], family.digits)} for k in on if k != E],
            "formula": _lines(_printer(net), derivation.in_deltas),
            "substituted": _lines(_printer(net, values), derivation.in_deltas),
            "gradient": latex_number(gradient, family.digits),
        })
    options = [
        {"letter": o.letter, "value": latex_number(o.value, family.digits), "plain": _plain_number(o.value, family.digits),
         "correct": o.correct, "mistake": _mistake_context(o.mistake, net)}
        for o in v.options
    ] if family.options else []
    network = dict(context["network"], given=[])
    return {
        "number": number or str(v.index),
        "index": v.index,
        "network": network,
        "figure": context["figure"],
        "derivation": d,
        "goal": d["goal"],
        "wrt": d["wrt"],
        "params": given(v.samples[0], net.params),
        "samples": samples,
        "batch": len(v.samples),
        "reduction": net.reduction,
        "answer": latex_number(v.answer, family.digits),
        "answer_plain": _plain_number(v.answer, family.digits),
        "digits": family.digits,
        "options": options,
        "notes": list(context["notes"]),
        "dropped": [
            {"mistake": _mistake_context(m, net), "why": why,
             "letter": None if twin is None else next(o.letter for o in v.options if o.mistake is twin)}
            for m, why, twin in v.dropped
        ] if family.options else [],
        "distinct": f"{family.distinct * 100:g}",
        "batch_sum": _batch_sum([s["gradient"] for s in samples]),
    }


def circuit_variant_context(family: Family, v: CircuitVariant, number: str | None = None) -> dict:
    r"""The data a circuit variant's templates receive: the circuit as :func:`symprop.gates.circuit_context`
    prints it (the given numbers exactly as drawn), and per question the goal, the answer and the options.

    >>> fam = family_from_text('''
    ... [family]
    ... kind = "circuit"
    ... expressions = ["(x + y)*z"]
    ... variables = ["x", "y", "z"]
    ... wrt = "z"
    ... options = 1
    ... ''', "demo.toml")
    >>> q = circuit_variant_context(fam, variant(fam, 1, 1))["questions"][0]
    >>> q["goal"], [o["mistake"]["kind"] for o in q["options"] if not o["correct"]]
    ('\\frac{d f}{d z}', ['sign'])
    """
    from .gates import circuit_context
    from .printing import latex_number

    net = v.circuit.network
    printer = _printer(net)
    name = printer.doprint
    c = circuit_context(v.flow, digits=family.digits)
    exact = {name(s): _decimal_text(x, family.decimals) for s, x in v.values.items()}
    for item in c["given"]:
        item["value"] = exact.get(item["name"], item["value"])
    if c["figure"] is not None:  # the variables' wires show the numbers as given, unrounded
        ids = {n["id"]: exact[n["label"]] for n in c["figure"]["nodes"] if n["kind"] == "variable" and n["label"] in exact}
        for wire in c["figure"]["wires"]:
            wire["value"] = ids.get(wire["source"], wire["value"])

    def mistake(m):
        if m is None:
            return None
        record = {"kind": m.kind, "label": m.label, "gate": None, "op": None, "local": None,
                  "wire": None, "kept": None, "uses": None}
        if m.gate is not None:
            g = v.circuit.gate_of[m.gate]
            record.update(gate=name(m.gate), op=g.op, local=printer.doprint(local_partial(net, g.symbol, g.inputs[0]).expr))
        if m.wire is not None:
            record.update(wire=name(m.wire), kept=name(m.kept), uses=len(v.circuit.uses(m.wire)))
        return record

    questions = []
    for q in v.questions:
        options = [
            {"letter": o.letter, "value": latex_number(o.value, family.digits), "plain": _plain_number(o.value, family.digits),
             "correct": o.correct, "mistake": mistake(o.mistake)}
            for o in q.options
        ] if family.options else []
        dropped = [
            {"mistake": mistake(m), "why": why,
             "letter": None if twin is None else next(o.letter for o in q.options if o.mistake is twin)}
            for m, why, twin in q.dropped
        ] if family.options else []
        questions.append({
            "wrt": name(q.wrt), "goal": name(Total(net.loss, q.wrt)), "question": q.question,
            "answer": latex_number(q.answer, family.digits), "answer_plain": _plain_number(q.answer, family.digits),
            "options": options, "dropped": dropped,
        })
    return {
        "number": number or str(v.index),
        "index": v.index,
        "c": c,
        "all": family.all_gradients,
        "questions": questions,
        "digits": family.digits,
        "distinct": f"{family.distinct * 100:g}",
    }


def _batch_sum(terms: list[str]) -> str:
    """``g_1 + g_2 - g_3`` from printed numbers: a negative term brings its own sign."""
    text = terms[0]
    for t in terms[1:]:
        text += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
    return text


def render_variants(family: Family, vs: Sequence[Variant], *, combined: bool = False, answers: bool = False) -> dict[str, str]:
    """The LaTeX documents of the variants: ``{file name: text}``, one document per
    variant (``variant-01.tex``, ...) or one ``{name}.tex`` with ``combined=True``.
    ``answers`` prints the worked solutions (``\\printanswers``)."""
    from .render import environment

    circuit = family.kind == "circuit"
    template = environment().get_template("exam_variant_circuit.tex.j2" if circuit else "exam_variant.tex.j2")
    context = circuit_variant_context if circuit else variant_context
    width = max(2, len(str(max(v.index for v in vs))))
    contexts = [context(family, v, f"{v.index:0{width}d}") for v in vs]
    common = {"title": family.title, "answers": answers, "family": family.name}
    if combined:
        return {f"{family.name}.tex": template.render(common, variants=contexts)}
    return {f"variant-{c['number']}.tex": template.render(common, variants=[c]) for c in contexts}


def answer_key_csv(family: Family, vs: Sequence[Variant]) -> str:
    """The answer key as CSV: variant, question, value (12 significant digits), the value
    rounded as shown, and the letter of the right option; one row per question."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["variant", "question", "value", "rounded", "option"])
    for v in vs:
        for q in v.questions:
            writer.writerow([v.index, q.question, _plain_number(q.answer, 12), _plain_number(q.answer, family.digits),
                             q.correct_letter if family.options else ""])
    return out.getvalue()


def answer_key_tex(family: Family, vs: Sequence[Variant]) -> str:
    """The answer key as a LaTeX document (a long table)."""
    from .printing import latex_number
    from .render import environment

    circuit = family.kind == "circuit"
    rows = [
        {"variant": v.index, "question": _printer(q.network).doprint(Total(q.network.loss, q.wrt)),
         "value": latex_number(q.answer, family.digits), "option": q.correct_letter if family.options else "",
         "architecture": v.architecture,
         "formula": _circuit_formula(v) if circuit else None}
        for v in vs for q in v.questions
    ]
    template = environment().get_template("exam_variant_key.tex.j2")
    return template.render(title=family.title, family=family.name, rows=rows, options=bool(family.options),
                           circuit=circuit, count=len(vs))


def _circuit_formula(v: CircuitVariant) -> str:
    name = _printer(v.network).doprint
    return f"{name(v.circuit.output)} = {name(v.circuit.source)}"


def write_exam(
    family: Family, n: int, seed: int, directory, *, combined: bool = False, answers: bool = False,
    pdf: bool = False, moodle=None,
) -> list[Path]:
    """Write ``n`` variants, the answer key (CSV and LaTeX) and optionally a Moodle XML file;
    every file atomically. Returns the paths written (PDFs included with ``pdf``)."""
    from .render import compile_pdf, write_atomic

    vs = variants(family, n, seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    documents = render_variants(family, vs, combined=combined, answers=answers)
    documents[f"{family.name}-key.tex"] = answer_key_tex(family, vs)
    written = [write_atomic(directory / name, text) for name, text in documents.items()]
    written.append(write_atomic(directory / f"{family.name}-key.csv", answer_key_csv(family, vs)))
    if moodle is not None:
        from .moodle import moodle_xml

        written.append(write_atomic(Path(moodle), moodle_xml(family, vs)))
    if pdf:
        written += [compile_pdf(directory / name) for name in documents]
    return written
