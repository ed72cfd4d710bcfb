r"""Hessian-vector products derived symbolically: Pearlmutter's R-operator on the network's DAG.

For a direction ``v`` over the parameters, ``R{f} = d/dr f(w + r v)`` at ``r = 0`` is the
directional derivative of any quantity ``f`` of the network. Applied to the backward pass it
gives ``Hv`` (the Hessian of the loss times ``v``) at about the cost of one more gradient,
without ever forming the Hessian (Pearlmutter 1994; seed 003's "next step"):

- R-forward, in topological order: ``R{z_k} = Σ_j ∂z_k/∂z_j R{z_j} + Σ_w ∂z_k/∂w v_w``
  (``R{w} = v_w`` for a parameter, ``R{x} = 0`` for an input or a target);
- the deltas of the first-order pass, ``δ_k = dE/dz_k = Σ_l δ_l ∂z_l/∂z_k``;
- R-backward, from the loss down: ``R{δ_k} = Σ_l [R{δ_l} ∂z_l/∂z_k + δ_l R{∂z_l/∂z_k}]``
  (the product rule on each term of the delta recursion; ``δ_E = 1``, ``R{δ_E} = 0``), where
  ``R{∂z_l/∂z_k} = Σ_s ∂²z_l/∂z_k∂s R{s}`` over the producers ``s`` of ``z_l``;
- ``(Hv)_w = Σ_k [R{δ_k} ∂z_k/∂w + δ_k R{∂z_k/∂w}]`` over the nodes ``k`` that use ``w``.

Every step is a :class:`~symprop.derive.Step` justified like the first-order derivation; the
first local partials are :func:`symprop.derive.local_partial`'s, and each second local partial
``∂²z_l/∂z_k∂s`` is the local partial of the first one (the same sweep, the same rules), so a
primitive's second derivative comes from differentiating its own derivative rule.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> d = derive_hvp(net)
>>> print(d)  # doctest: +ELLIPSIS
Hv  (R-operator, direction v_w)
  R{h} = ∂h/∂w*v_w    [R forward]
  ∂h/∂w = h*(1 - h)*x    [local partial: σ'(u) = σ(u)(1 - σ(u)); multiply: the other factor]
  dE/dh = ∂E/∂h    [loss directly]
  ∂E/∂h = h - t    [local partial: multiply by a constant: scale; power rule]
  R{dE/dh} = R{∂E/∂h}    [R backward]
  R{∂E/∂h} = ∂²E/∂h²*R{h}    [R of a local partial]
  ∂²E/∂h² = 1    [second local partial]
  (Hv)_w = R{dE/dh}*∂h/∂w + dE/dh*R{∂h/∂w}    [Hessian-vector product]
  R{∂h/∂w} = ∂²h/∂w²*v_w    [R of a local partial]
  ∂²h/∂w² = h*x**2*(1 - h)*(1 - 2*h)    [second local partial: multiply: the other factor; ...]
>>> r = hvp(net, {"x": 1.0, "t": 1.0, "w": 0.0}, {"w": 1.0})
>>> round(r.hvp[w], 6)
0.0625
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from . import functions as F
from . import limits
from .derive import Partial, Step, Total, local_partial
from .graph import Network, NetworkError
from .numeric import NumericError, gradient
from .printing import SpecPrinter, latex_number, rule_text, text, text_chain

__all__ = [
    "R", "Direction", "SecondPartial", "HvEntry", "HvpDerivation", "HvpResult", "Hessian",
    "derive_hvp", "hvp", "hessian", "second_partial", "reads_first", "RULES",
]

# The rules of the steps, in the words the documents and the JSON use.
RULES = {
    "R forward": "R{z_k} = Σ_j ∂z_k/∂z_j R{z_j} + Σ_w ∂z_k/∂w v_w",
    "R backward": "R{δ_k} = Σ_l [R{δ_l} ∂z_l/∂z_k + δ_l R{∂z_l/∂z_k}]",
    "R of a local partial": "R{∂z_l/∂z_k} = Σ_s ∂²z_l/∂z_k∂s R{s}",
    "Hessian-vector product": "(Hv)_w = Σ_k [R{δ_k} ∂z_k/∂w + δ_k R{∂z_k/∂w}]",
}


# -- the symbols of the R-operator -------------------------------------------------------
# Each prints itself (SymPy's printers call _sympystr / _latex when a class has them), so
# printing.py's printers show them without knowing of them.

def _is_spec(printer) -> bool:
    return isinstance(printer, SpecPrinter)


def _latex_value(self, printer):
    values = printer._settings.get("values") or {}
    if self in values:
        number = latex_number(values[self], printer._settings.get("digits", 4))
        return rf"\left({number}\right)" if number.startswith("-") else number
    return None


class R(sp.Symbol):
    """``R{of}``: the directional derivative along ``v`` of a node value, a delta or a local
    partial. Spelled ``R_<of>`` in JSON (``R_z_1``, ``R_dE_dz_1``, ``R_pz_1_pw``)."""

    def __new__(cls, of: sp.Symbol):
        obj = super().__new__(cls, f"R_{of.name}")
        obj.of = of
        return obj

    def __getnewargs_ex__(self):
        return (self.of,), {}

    def _sympystr(self, printer):
        return self.name if _is_spec(printer) else f"R{{{printer._print(self.of)}}}"

    def _latex(self, printer):
        return _latex_value(self, printer) or rf"\mathcal{{R}}\left\{{{printer._print(self.of)}\right\}}"


class Direction(sp.Symbol):
    """``v_w``: the entry of the direction ``v`` for parameter ``w`` (``R{w} = v_w``)."""

    def __new__(cls, wrt: sp.Symbol):
        obj = super().__new__(cls, f"v_{wrt.name}")
        obj.wrt = wrt
        return obj

    def __getnewargs_ex__(self):
        return (self.wrt,), {}

    def _latex(self, printer):
        return _latex_value(self, printer) or rf"v_{{{printer._print(self.wrt)}}}"


class SecondPartial(sp.Symbol):
    """``∂²of/∂wrt∂by``: the local partial ``∂of/∂wrt`` differentiated in ``by`` (one of
    ``of``'s producers, every other node held as a symbol). JSON: ``p2z_1_pz_2_pw``."""

    def __new__(cls, of: sp.Symbol, wrt: sp.Symbol, by: sp.Symbol):
        obj = super().__new__(cls, f"p2{of.name}_p{wrt.name}_p{by.name}")
        obj.of, obj.wrt, obj.by = of, wrt, by
        return obj

    def __getnewargs_ex__(self):
        return (self.of, self.wrt, self.by), {}

    def _sympystr(self, printer):
        if _is_spec(printer):
            return self.name
        below = f"∂{self.wrt}²" if self.wrt == self.by else f"∂{self.wrt}∂{self.by}"
        return f"∂²{self.of}/{below}"

    def _latex(self, printer):
        value = _latex_value(self, printer)
        if value is not None:
            return value
        of, wrt, by = (printer._print(s) for s in (self.of, self.wrt, self.by))
        below = rf"\partial {{{wrt}}}^{{2}}" if self.wrt == self.by else rf"\partial {wrt} \partial {by}"
        return rf"\frac{{\partial^{{2}} {of}}}{{{below}}}"


class HvEntry(sp.Symbol):
    """``(Hv)_w``: the entry of the Hessian-vector product for parameter ``w`` (``Hv_w``)."""

    def __new__(cls, wrt: sp.Symbol):
        obj = super().__new__(cls, f"Hv_{wrt.name}")
        obj.wrt = wrt
        return obj

    def __getnewargs_ex__(self):
        return (self.wrt,), {}

    def _sympystr(self, printer):
        return self.name if _is_spec(printer) else f"(Hv)_{self.wrt}"

    def _latex(self, printer):
        return _latex_value(self, printer) or rf"(\mathbf{{H}}\mathbf{{v}})_{{{printer._print(self.wrt)}}}"


# -- second local partials ----------------------------------------------------------------

@dataclass(frozen=True)
class _Second:
    """``∂²of/∂wrt∂by``: ``expr`` evaluated (in ``of``'s producers), ``display`` in chain order
    with activation derivatives in node outputs, ``because`` the rules used."""

    expr: sp.Expr
    display: sp.Expr
    because: tuple


_SECONDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def second_partial(net: Network, of: sp.Symbol, wrt: sp.Symbol, by: sp.Symbol) -> sp.Expr:
    """``∂²of/∂wrt∂by`` as an evaluated expression in ``of``'s producers: the local partial
    ``∂of/∂wrt`` (written in producers, not outputs) differentiated in ``by`` by the engine's
    own sweep.

    >>> import sympy as sp
    >>> from symprop import Network, sigmoid
    >>> x, w, h, E = sp.symbols("x w h E")
    >>> net = Network({h: sigmoid(w*x), E: h**2}, loss=E, params=[w], inputs=[x])
    >>> second_partial(net, E, h, h), second_partial(net, h, w, x)
    (2, w*x*(1 - sigmoid(w*x))**2*sigmoid(w*x) - w*x*(1 - sigmoid(w*x))*sigmoid(w*x)**2 + (1 - sigmoid(w*x))*sigmoid(w*x))
    """
    return _second(net, of, wrt, by).expr


def _second(net: Network, of, wrt, by) -> _Second:
    memo = _SECONDS.setdefault(net, {})
    key = (of, wrt, by)
    if key not in memo:
        first = local_partial(net, of, wrt, in_outputs=False).expr
        if by not in first.free_symbols:
            memo[key] = _Second(sp.S.Zero, sp.S.Zero, ())
        else:
            # the first partial as a one-node network: its local partial in `by` is the second
            # partial, by the same sweep and rules as every first-order partial
            top = sp.Dummy("p")
            leaves = sorted(first.free_symbols, key=lambda s: s.name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                aux = Network({top: first}, loss=top, params=leaves)
            lp = local_partial(aux, top, by, in_outputs=False)
            outputs = {e: k for k, e in net.nodes.items() if isinstance(e, sp.Function)}
            memo[key] = _Second(lp.expr, _common_factors_out(_in_outputs(lp.display, outputs, {})), lp.because)
    return memo[key]


def _common_factors_out(expr):
    """A second partial with the factors its terms share taken out, when that is shorter: the
    product rule leaves o(1 - o)w²(1 - o) - o(1 - o)w²o, a hand derivation writes
    o(1 - o)(1 - 2o)w²."""
    factored = sp.factor_terms(expr)
    return factored if sp.count_ops(factored) < sp.count_ops(expr) else expr


def _in_outputs(expr, outputs, memo):
    """``expr`` with every node definition it holds replaced by the node (σ(u) -> z where z =
    σ(u)), keeping the order of unevaluated products and sums (chain order)."""
    if expr in outputs:
        return outputs[expr]
    if not expr.args:
        return expr
    if expr not in memo:
        args = [_in_outputs(a, outputs, memo) for a in expr.args]
        if all(a is b for a, b in zip(args, expr.args)):
            memo[expr] = expr
        elif expr.is_Mul or expr.is_Add:
            memo[expr] = expr.func(*args, evaluate=False)
        else:
            memo[expr] = expr.func(*args)
    return memo[expr]


# -- the derivation ---------------------------------------------------------------------------

def _product(*factors):
    factors = [f for f in factors if f != 1]
    if not factors:
        return sp.S.One
    return factors[0] if len(factors) == 1 else sp.Mul(*factors, evaluate=False)


def _sum(terms):
    terms = [t for t in terms if t != 0]
    if not terms:
        return sp.S.Zero
    return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)


class HvpDerivation:
    """The R-operator's steps for a network, symbolic in the direction ``v_w`` (see the module
    docstring). ``steps`` in the order a hand computation goes, split in ``sections``:
    ``"R forward"``, ``"deltas"``, ``"R backward"``, ``"Hv"``; ``entries`` maps each parameter
    to its ``(Hv)_w`` symbol; ``live`` are the nodes that both depend on a parameter and lie on
    a path to the loss (every other node has ``R{z} = 0`` and is left out)."""

    def __init__(self, net: Network):
        self.network = net
        self.params = net.params
        self.directions = {w: Direction(w) for w in net.params}
        below = set()
        for w in net.params:
            below |= set(net.on_paths(w))
        self.live = tuple(k for k in net.order if k in below and k != net.loss)
        self.sections: dict[str, list[Step]] = {"R forward": [], "deltas": [], "R backward": [], "Hv": []}
        self._shown: set = set()
        self._build()

    @property
    def steps(self) -> list[Step]:
        return [s for section in self.sections.values() for s in section]

    @property
    def entries(self) -> dict:
        return {w: HvEntry(w) for w in self.params}

    # -- building

    def _r_of(self, s):
        """``R{s}`` for a producer: ``v_w`` for a parameter, ``R{z}`` for a live node, else 0."""
        if s in self.directions:
            return self.directions[s]
        return R(s) if s in self.live else sp.S.Zero

    def _delta(self, k):
        return sp.S.One if k == self.network.loss else Total(self.network.loss, k)

    def _uses(self, k):
        """The consumers of ``k`` whose deltas matter: live nodes and the loss."""
        net = self.network
        return [l for l in net.consumers[k] if l in self.live or l == net.loss]

    def _local_step(self, of, wrt, out):
        if (of, wrt) in self._shown:
            return
        self._shown.add((of, wrt))
        lp = local_partial(self.network, of, wrt)
        out.append(Step("local partial", Partial(of, wrt), lp.display, node=of, because=lp.because, partial=lp))

    def _r_partial(self, of, wrt, out) -> sp.Expr:
        """Add the steps of ``R{∂of/∂wrt}`` (once) and return it, or 0 when the partial does
        not change along ``v``."""
        net = self.network
        terms, seconds = [], []
        for s in net.producers[of]:
            rs = self._r_of(s)
            if rs == 0:
                continue
            second = _second(net, of, wrt, s)
            if second.expr == 0:
                continue
            symbol = SecondPartial(of, wrt, s)
            terms.append(_product(symbol, rs))
            seconds.append((symbol, second))
        if not terms:
            return sp.S.Zero
        target = R(Partial(of, wrt))
        if target not in self._shown:
            self._shown.add(target)
            out.append(Step("R of a local partial", target, _sum(terms), node=of))
            for symbol, second in seconds:
                if symbol not in self._shown:
                    self._shown.add(symbol)
                    out.append(Step("second local partial", symbol, second.display, node=of, because=second.because))
        return target

    def _build(self):
        net, E = self.network, self.network.loss
        forward = self.sections["R forward"]
        for k in self.live:
            producers = [s for s in net.producers[k] if self._r_of(s) != 0]
            rhs = _sum([_product(Partial(k, s), self._r_of(s)) for s in producers])
            forward.append(Step("R forward", R(k), rhs, node=k))
            for s in producers:
                self._local_step(k, s, forward)
        down = _top_down(net, self.live)
        deltas = self.sections["deltas"]
        for k in down:
            uses = self._uses(k)
            rule = "loss directly" if uses == [E] else "sum over consumers"
            deltas.append(Step(rule, Total(E, k), _sum([_product(self._delta(l), Partial(l, k)) for l in uses]), node=k))
            for l in uses:
                self._local_step(l, k, deltas)
        backward = self.sections["R backward"]
        for k in down:
            terms, after = [], []
            for l in self._uses(k):
                if l != E:
                    terms.append(_product(R(Total(E, l)), Partial(l, k)))
                r = self._r_partial(l, k, after)
                if r != 0:
                    terms.append(_product(self._delta(l), r))
            backward.append(Step("R backward", R(Total(E, k)), _sum(terms), node=k))
            backward += after
        hv = self.sections["Hv"]
        for w in self.params:
            terms, after = [], []
            for k in self._uses(w):
                self._local_step(k, w, after)
                if k != E:
                    terms.append(_product(R(Total(E, k)), Partial(k, w)))
                r = self._r_partial(k, w, after)
                if r != 0:
                    terms.append(_product(self._delta(k), r))
            hv.append(Step("Hessian-vector product", HvEntry(w), _sum(terms), node=None))
            hv += after

    # -- forms

    @functools.cached_property
    def definitions(self) -> dict:
        """Every symbol a step defines -> its evaluated right-hand side (local partials in node
        outputs as the steps show them, second partials in producers)."""
        out = {}
        for step in self.steps:
            if step.rule == "local partial":
                out[step.lhs] = step.partial.expr
            elif step.rule == "second local partial":
                out[step.lhs] = _second(self.network, step.lhs.of, step.lhs.wrt, step.lhs.by).expr
            else:
                out[step.lhs] = step.rhs.doit() if step.rhs.has(sp.Derivative) else step.rhs
        return out

    def resolved(self, expr) -> sp.Expr:
        """``expr`` with every symbol a step defines replaced by its definition, recursively:
        an expression in node values, deltas dE/dz_k, leaves and the direction ``v_w``."""
        definitions, memo = self.definitions, {}

        def go(e):
            if e in memo:
                return memo[e]
            if e in definitions:
                r = go(definitions[e])
            elif not e.args:
                r = e
            else:
                args = [go(a) for a in e.args]
                r = e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)
            memo[e] = r
            return r

        if not isinstance(expr, sp.Basic):  # text is never parsed here (spec.parse_expression reads text)
            raise TypeError(f"resolved takes a SymPy expression, not {type(expr).__name__}")
        return go(expr)

    def along(self, v=None) -> dict:
        """Each ``(Hv)_w`` resolved (in node values, leaves and ``v``), with ``v`` (parameter
        names or symbols -> numbers or SymPy expressions; missing entries 0) put in for the
        ``v_w``; without ``v`` the ``v_w`` stay symbols.

        >>> import sympy as sp
        >>> from symprop import Network
        >>> x, w, b, E = sp.symbols("x w b E")
        >>> d = derive_hvp(Network({E: (w*x + b)**2/2}, loss=E, params=[w, b], inputs=[x]))
        >>> d.along({"w": 1})
        {w: x**2, b: x}
        """
        entries = {w: self.resolved(HvEntry(w)) for w in self.params}
        if v is None:
            return entries
        given = dict.fromkeys(self.params, sp.S.Zero)
        for key, value in dict(v).items():
            s = key if isinstance(key, sp.Symbol) else next((p for p in self.params if p.name == key), None)
            if s not in given:
                raise NetworkError(f"the direction v has an entry for {key}, which is not a parameter", s)
            given[s] = F.as_expr(value)
        put = {self.directions[w]: x for w, x in given.items()}
        return {w: e.xreplace(put) for w, e in entries.items()}

    def __str__(self) -> str:
        lines = [f"Hv  (R-operator, direction {', '.join(str(v) for v in self.directions.values())})"]
        for step in self.steps:
            why = step.rule
            if step.because:
                why += ": " + "; ".join(rule_text(r) for r in step.because)
            lines.append(f"  {text(step.lhs)} = {text_chain(step.rhs)}    [{why}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<HvpDerivation of {self.network.loss}: {len(self.steps)} steps, {len(self.params)} params>"


def _top_down(net: Network, nodes):
    """``nodes`` from the loss downward (reverse topological order)."""
    wanted = set(nodes)
    return [k for k in reversed(net.order) if k in wanted]


_DERIVATIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def derive_hvp(net: Network, v=None) -> HvpDerivation:
    """The R-operator's derivation of ``Hv`` for ``net``, symbolic in the direction ``v_w``
    (memoized per network). The steps stay symbolic in ``v_w`` whatever ``v`` is; a given ``v``
    (names or symbols of parameters -> numbers) is checked here, and ``d.along(v)`` puts it into
    the resolved entries. Numbers at a point come from :func:`hvp`.

    >>> import sympy as sp
    >>> from symprop import Network
    >>> x, w, E = sp.symbols("x w E")
    >>> d = derive_hvp(Network({E: (w*x)**2}, loss=E, params=[w], inputs=[x]))
    >>> sp.expand(d.resolved(d.entries[w]))
    2*v_w*x**2
    """
    if v is not None:
        _direction(net, v)
    if net not in _DERIVATIONS:
        _DERIVATIONS[net] = HvpDerivation(net)
    return _DERIVATIONS[net]


def _direction(net: Network, v) -> dict:
    """``v`` (parameter names or symbols -> numbers) as {parameter: float}; missing
    parameters are 0. A name that is not a parameter is a :class:`NetworkError` naming it."""
    out = dict.fromkeys(net.params, 0.0)
    params = set(net.params)
    for key, value in dict(v).items():
        s = key if isinstance(key, sp.Symbol) else None
        if s is None:
            s = next((p for p in net.params if p.name == key), None)
        if s not in params:
            raise NetworkError(f"the direction v has an entry for {key}, which is not a parameter", s)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NetworkError(f"the direction's entry for {key} is not a number: {value!r}", s) from None
        if not math.isfinite(number):
            raise NetworkError(f"the direction's entry for {key} is not finite: {value!r}", s)
        out[s] = number
    return out


# -- numbers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class HvpResult:
    """``Hv`` at a point (or batch) along ``direction``, with everything on the way.

    ``numbers`` maps every symbol a step defines (and every node value, delta and ``v_w``) to
    its per-sample array; ``hvp`` maps each parameter to the reduced ``(Hv)_w`` (summed or
    averaged over the batch as the gradient is); ``gradient`` is :func:`symprop.gradient`'s.
    """

    network: Network = field(repr=False)
    derivation: HvpDerivation = field(repr=False)
    loss: float
    gradient: dict
    direction: dict
    hvp: dict
    numbers: dict = field(repr=False)
    batched: bool = False
    bind: dict = field(default_factory=dict, repr=False)  # the generic functions' activations


class _Compiled:
    """The steps of a derivation compiled once per binding into ONE NumPy function: an
    assignment per step in dependency order (lambdify's ``cse`` hook is handed the steps as
    its common subexpressions), from the node values, deltas, leaves and ``v`` to every
    defined symbol's per-sample array. One call instead of one per step keeps Hv a small
    multiple of a gradient."""

    def __init__(self, d: HvpDerivation, bind):
        self.derivation = d
        exprs = []
        for step in d.steps:
            e = d.definitions[step.lhs]
            if bind:
                e = F.bind_generics(e, bind)
            exprs.append((step.lhs, e))
        if any(isinstance(f, F.GenericFunction) for _, e in exprs for f in F.subexpressions([e])):
            raise NumericError("a generic function has no numbers until it is bound to an activation "
                               "(--bind g=tanh, or [bind] g = \"tanh\" in the spec)")
        defined_as = dict(exprs)
        order = [(symbol, defined_as[symbol]) for symbol in reads_first([symbol for symbol, _ in exprs], defined_as)]
        self.defined = tuple(symbol for symbol, _ in order)
        defined = set(self.defined)
        self.args = tuple(sorted({a for _, e in order for a in e.free_symbols if a not in defined},
                                 key=lambda s: s.name))
        # plain names in the generated code, so that no spec name meets a function's name
        plain = {a: sp.Symbol(f"_a{i}") for i, a in enumerate(self.args)}
        plain.update({s: sp.Symbol(f"_s{i}") for i, s in enumerate(self.defined)})
        assignments = [(plain[s], e.xreplace(plain)) for s, e in order]
        outputs = [plain[s] for s in self.defined]
        namespace = F.numpy_namespace([e for _, e in order]) if order else {}
        self.function = sp.lambdify([plain[a] for a in self.args], outputs, modules=[namespace, "numpy"],
                                    cse=lambda _: (assignments, outputs))

    def run(self, numbers: dict, m: int):
        with np.errstate(all="ignore"):
            try:
                values = self.function(*[numbers[a] for a in self.args])
            except (ArithmeticError, ValueError, TypeError) as err:
                raise NumericError(f"the R-operator's steps cannot be evaluated at these values: {err}") from None
        for symbol, value in zip(self.defined, values):
            value = np.asarray(value)
            if np.iscomplexobj(value):
                if np.any(value.imag != 0):
                    raise NumericError(f"{text(symbol)} is not a real number at these values")
                value = value.real
            value = np.broadcast_to(np.asarray(value, dtype=float), (m,))
            if not np.isfinite(value).all():
                raise NumericError(f"{text(symbol)} is not finite at these values (an overflow, or a division "
                                   "by zero)")
            numbers[symbol] = value
        return numbers


def reads_first(symbols, definitions) -> list:
    """``symbols`` reordered so that each comes after those among them its definition (in
    ``definitions``) reads: the steps state a sum first and its parts after it, as a hand
    computation does; numbers, and a document's rows, go the other way."""
    wanted = set(symbols)
    done, order = set(), []
    for symbol in symbols:
        stack = [(symbol, False)]
        while stack:
            s, expanded = stack.pop()
            if s in done:
                continue
            if expanded:
                done.add(s)
                order.append(s)
                continue
            stack.append((s, True))
            reads = [a for a in definitions[s].free_symbols if a in wanted and a not in done]
            stack += [(a, False) for a in sorted(reads, key=symbols.index, reverse=True)]
    return order


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(d: HvpDerivation, bind) -> _Compiled:
    key = tuple(sorted((name, getattr(act, "name", str(act))) for name, act in (bind or {}).items()))
    cache = _COMPILED.setdefault(d.network, {})
    if key not in cache:
        cache[key] = _Compiled(d, bind)
    return cache[key]


def _bound(bind) -> dict:
    """``bind`` (generic name -> activation name, record or class) as name -> activation."""
    out = {}
    for name, act in dict(bind or {}).items():
        try:
            out[name] = F.activation(act.name if isinstance(act, F.Primitive) and act.kind == "builtin" else
                                     act.cls if isinstance(act, F.Primitive) else act)
        except ValueError as err:
            raise NumericError(f"cannot bind {name}: {err}") from None
    return out


def _numbers(net: Network, values, bind):
    """The first-order pass (symprop.numeric's) and the leaves as per-sample arrays."""
    g = gradient(net, values, bind=bind)
    m = len(next(iter(g.values.values())))
    numbers = {}
    names = {s.name: s for s in net.leaves}
    for key, value in dict(values).items():
        s = names.get(key) if isinstance(key, str) else key
        numbers[s] = np.broadcast_to(np.asarray(value, dtype=float), (m,)).astype(float)
    numbers.update({k: np.asarray(v, dtype=float) for k, v in g.values.items()})
    numbers.update({Total(net.loss, k): np.asarray(v, dtype=float) for k, v in g.deltas.items()})
    return g, numbers, m


def _reduce(net: Network, array, m) -> float:
    total = math.fsum(float(x) for x in array)
    return total / m if net.reduction == "mean" else total


def hvp(net: Network, values, v, bind=None) -> HvpResult:
    """``Hv`` at ``values`` along ``v`` (parameter names or symbols -> numbers; a missing
    parameter is 0), by the R-operator's steps evaluated with NumPy.

    ``values`` and ``bind`` are as for :func:`symprop.gradient`; a batch gives the batch
    reduction (sum or mean) of the per-sample ``Hv``, as the gradient is reduced.

    >>> import sympy as sp
    >>> from symprop import Network
    >>> x, w, b, E = sp.symbols("x w b E")
    >>> net = Network({E: (w*x + b)**2/2}, loss=E, params=[w, b], inputs=[x])
    >>> r = hvp(net, {"x": 2.0, "w": 0.5, "b": 0.0}, {"w": 1.0})
    >>> r.hvp[w], r.hvp[b]   # H = [[x², x], [x, 1]]
    (4.0, 2.0)
    """
    direction = _direction(net, v)
    d = derive_hvp(net)
    g, numbers, m = _numbers(net, values, bind)
    numbers.update({d.directions[w]: np.full(m, x) for w, x in direction.items()})
    _compiled(d, _bound(bind)).run(numbers, m)
    result = {w: _reduce(net, numbers[HvEntry(w)], m) for w in net.params}
    for w, x in result.items():
        if not math.isfinite(x):
            raise NumericError(f"(Hv)_{w} is not finite at these values", w)
    return HvpResult(net, d, g.loss, dict(g.gradient), direction, result, numbers, g.batched, dict(bind or {}))


# -- the full Hessian of a small network --------------------------------------------------------

@dataclass(frozen=True)
class Hessian:
    """The full Hessian of a small network at a point: ``matrix[i][j] = ∂²E/∂w_i∂w_j`` (one
    ``Hv`` per parameter, ``v = e_j``), its ``eigenvalues`` (ascending, of the symmetric
    matrix), ``entries`` the symbolic ``H_ij`` (in node values and leaves), and the
    Gauss-Newton matrix ``J^T H_L J`` when the loss node reads network outputs only:
    ``outputs`` are the nodes the loss reads, ``J = d outputs / d params`` (the R-forward
    pass along each ``e_j``), ``H_L = ∂²E/∂o_a∂o_b`` (the loss node's second partials);
    otherwise ``gauss_newton`` is None and ``note`` says why."""

    network: Network = field(repr=False)
    params: tuple
    loss: float
    matrix: np.ndarray
    eigenvalues: np.ndarray
    entries: tuple
    outputs: tuple
    gauss_newton: np.ndarray | None
    gauss_newton_eigenvalues: np.ndarray | None
    note: str | None = None


def hessian(net: Network, values, bind=None, symbolic: bool = True) -> Hessian:
    """The full Hessian (and the Gauss-Newton matrix) of a small network at ``values``; more
    than ``limits.MAX_HESSIAN_PARAMS`` parameters are refused (use :func:`hvp`).

    >>> import sympy as sp
    >>> from symprop import Network
    >>> x, w, b, o, E = sp.symbols("x w b o E")
    >>> net = Network({o: w*x + b, E: o**2/2}, loss=E, params=[w, b], inputs=[x])
    >>> h = hessian(net, {"x": 2.0, "w": 0.5, "b": 0.0})
    >>> h.matrix.tolist(), h.gauss_newton.tolist()
    ([[4.0, 2.0], [2.0, 1.0]], [[4.0, 2.0], [2.0, 1.0]])
    """
    P = len(net.params)
    if P > limits.MAX_HESSIAN_PARAMS:
        raise NetworkError(f"the Hessian of {P:,} parameters has {P * P:,} entries, more than a small network's "
                           f"({limits.says('MAX_HESSIAN_PARAMS')}); `symprop hvp` gives Hv for any size")
    d = derive_hvp(net)
    g, base, m = _numbers(net, values, bind)
    program = _compiled(d, _bound(bind))
    outputs, note = _outputs(net)
    columns, jacobian = [], []
    for j, wj in enumerate(net.params):
        numbers = dict(base)
        numbers.update({d.directions[w]: np.full(m, 1.0 if i == j else 0.0) for i, w in enumerate(net.params)})
        program.run(numbers, m)
        columns.append([_reduce(net, numbers[HvEntry(w)], m) for w in net.params])
        jacobian.append([numbers.get(R(o), np.zeros(m)) for o in outputs])  # ∂o/∂w_j per sample
    matrix = np.array(columns, dtype=float).T.reshape(P, P)
    eigenvalues = np.linalg.eigvalsh((matrix + matrix.T) / 2) if P else np.zeros(0)
    gn = gn_eigen = None
    if outputs:
        J = np.array(jacobian, dtype=float).reshape(P, len(outputs), m)  # [param, output, sample]
        HL = np.zeros((len(outputs), len(outputs), m))
        for a, oa in enumerate(outputs):
            for b, ob in enumerate(outputs):
                HL[a, b] = _sample_value(net, second_partial(net, net.loss, oa, ob), base, bind, m)
        total = np.einsum("pas,abs,qbs->pq", J, HL, J)
        gn = total / m if net.reduction == "mean" else total
        gn_eigen = np.linalg.eigvalsh((gn + gn.T) / 2)
    entries = ()
    if symbolic:
        entries = tuple(tuple(_entry(d, wi, wj) for wj in net.params) for wi in net.params)
    return Hessian(net, net.params, g.loss, matrix, eigenvalues, entries, outputs, gn, gn_eigen, note)


def _entry(d: HvpDerivation, wi, wj) -> sp.Expr:
    """``H_ij = ∂(Hv)_i/∂v_j``: the resolved ``(Hv)_i`` is linear in ``v``."""
    resolved = d.resolved(HvEntry(wi))
    outputs = {e: k for k, e in d.network.nodes.items() if isinstance(e, sp.Function)}
    return F.replace_shared(sp.diff(resolved, d.directions[wj]), outputs)


def _outputs(net: Network):
    """The network outputs the loss node reads, or ``((), note)`` when the loss has no clear
    output/loss split (it reads a parameter or an input itself, or no node)."""
    E = net.loss
    reads = net.producers[E]
    direct = [s for s in reads if s in net.params or s in net.inputs]
    if direct:
        return (), (f"no Gauss-Newton matrix: the loss {E} reads {direct[0]} itself, so it has no clear split "
                    "into network outputs and a loss of the outputs")
    outputs = tuple(s for s in reads if s in net.nodes)
    if not outputs:
        return (), f"no Gauss-Newton matrix: the loss {E} reads no node"
    return outputs, None


def _sample_value(net, expr, numbers, bind, m):
    if expr.is_Number:
        return np.full(m, float(expr))
    if bind:
        expr = F.bind_generics(expr, _bound(bind))
    args = sorted(expr.free_symbols, key=lambda s: s.name)
    plain = [sp.Symbol(f"_a{i}") for i in range(len(args))]
    fn = sp.lambdify(plain, expr.xreplace(dict(zip(args, plain))), modules=[F.numpy_namespace([expr]), "numpy"])
    with np.errstate(all="ignore"):
        return np.broadcast_to(np.asarray(fn(*[numbers[a] for a in args]), dtype=float), (m,))
