"""Jacobians of vector-valued functions by the chain rule, as a product of Jacobians.

Seed 000 opens with f: R -> R^2 and g: R^2 -> R^2 composed into g(x) = g(f(x)), and writes
its derivative as the product of the two Jacobians, dg/dx = ∂g/∂f · ∂f/∂x, each entry a
sum over the ways x reaches g_i of products of local partials. A :class:`VectorNetwork`
is such a function as a graph of SymPy expressions: like a :class:`~symprop.graph.Network`,
but ending in a list of ``outputs`` instead of one scalar loss.

Row i of the Jacobian is the gradient of output i, so every entry is an ordinary
:class:`~symprop.derive.Derivation` of the network whose "loss" is that output: the
backward core, the path forms and the substitution of :mod:`symprop.derive` are reused, not
copied. The factorisation cuts the graph into layers by depth (the longest path from the
variables): layer l holds the nodes at depth l, and a value that a later layer still reads
(a skip connection) is carried through the layers in between with an identity row, so the
product of the layers' local Jacobians is the Jacobian of the whole.

>>> import sympy as sp
>>> x, f_1, f_2, g_1, g_2 = sp.symbols("x f_1 f_2 g_1 g_2")
>>> net = VectorNetwork({f_1: x**2, f_2: sp.sin(x), g_1: f_1*f_2, g_2: f_1 + f_2**2},
...                     outputs=[g_1, g_2], inputs=[x])
>>> J = jacobian(net)
>>> J.matrix
Matrix([
[x**2*cos(x) + 2*x*sin(x)],
[   2*x + 2*sin(x)*cos(x)]])
>>> [layer.name for layer in J.layers]
['x', 'f', 'g']
>>> [factor.name for factor in J.factors]   # dg/dx = ∂g/∂f · ∂f/∂x
['pg_pf', 'pf_px']
>>> J.factors[0].local
Matrix([
[f_2,   f_1],
[  1, 2*f_2]])
>>> (J.factors[0].local * J.factors[1].local).expand() == J.in_nodes.expand()
True
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from . import functions as fn
from .derive import Partial, derive, local_partial
from .graph import Network, NetworkError
from .numeric import NumericError, gradient

__all__ = ["VectorNetwork", "Jacobian", "JacobianFactor", "Layer", "JacobianValues", "jacobian", "jacobian_at"]


class VectorNetwork:
    """A vector-valued function as a DAG of SymPy expressions: ``nodes`` (Symbol ->
    expression), the ``outputs`` (nodes, in order: the rows of the Jacobian) and the leaves
    by role. Validation is the scalar network's (a cycle, an undeclared symbol, a node
    defined twice: :class:`~symprop.graph.NetworkError` naming the symbol), plus the outputs'
    own: at least one, each a node, none twice.

    ``networks[o]`` is the scalar network of output ``o`` (every node, with ``o`` as its
    loss): each row of the Jacobian is derived and evaluated on it.
    """

    def __init__(self, nodes, *, outputs: Iterable[sp.Symbol], params: Iterable[sp.Symbol] = (),
                 inputs: Iterable[sp.Symbol] = (), targets: Iterable[sp.Symbol] = (),
                 display: Mapping[sp.Symbol, str] | None = None):
        outputs = tuple(outputs)
        if not outputs:
            raise NetworkError("a vector-valued function needs at least one output")
        pairs = list(nodes.items()) if isinstance(nodes, Mapping) else list(nodes)
        defined = {k for k, _ in pairs}
        seen = set()
        for o in outputs:
            if not isinstance(o, sp.Symbol):
                raise NetworkError(f"each output must be a SymPy Symbol, got {o!r}")
            if o in seen:
                raise NetworkError(f"the output {o} is listed twice", o)
            seen.add(o)
            if o not in defined:
                raise NetworkError(f"the output {o} is not a defined node", o)
        networks = {}
        with warnings.catch_warnings():  # a parameter off one output's paths is normal here
            warnings.simplefilter("ignore")
            for o in outputs:
                networks[o] = Network(pairs, loss=o, params=params, inputs=inputs, targets=targets, display=display)
        base = networks[outputs[0]]
        self.outputs = outputs
        self.networks = networks
        self.nodes, self.params, self.inputs, self.targets = base.nodes, base.params, base.inputs, base.targets
        self.display = base.display
        self.order, self.producers, self.consumers = base.order, base.producers, base.consumers
        used = frozenset().union(*[n.ancestors_of_loss for n in networks.values()])
        for p in self.params:
            if p not in used:
                warnings.warn(f"no output depends on parameter {p}", stacklevel=2)

    @functools.cached_property
    def seeded(self) -> tuple[Network, tuple[sp.Symbol, ...]]:
        """One scalar network for every row: the loss J = Σ_i λ_i y_i over the outputs y_i,
        with seeds λ_i (extra targets). With λ = e_i, its gradient is row i of the Jacobian
        (the delta of y_i starts at 1, of the others at 0): one compiled program, one
        backward pass a row."""
        seeds = tuple(sp.Dummy(f"λ_{i}") for i in range(1, len(self.outputs) + 1))
        loss = sp.Dummy("J")
        nodes = {**self.nodes, loss: sp.Add(*[l * o for l, o in zip(seeds, self.outputs)])}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = Network(nodes, loss=loss, params=self.params, inputs=self.inputs, targets=self.targets + seeds,
                          display=self.display)
        return net, seeds

    # the leaves, the symbols and names are every output's network's: the first one answers
    @property
    def leaves(self) -> tuple[sp.Symbol, ...]:
        return self.networks[self.outputs[0]].leaves

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        return self.networks[self.outputs[0]].symbols

    def symbol(self, name: str) -> sp.Symbol:
        """The symbol called ``name``; a clear error if there is none."""
        return self.networks[self.outputs[0]].symbol(name)

    def display_name(self, symbol: sp.Symbol) -> str:
        return self.networks[self.outputs[0]].display_name(symbol)

    def default_wrt(self) -> tuple[sp.Symbol, ...]:
        """What the Jacobian is taken with respect to when nobody says: the inputs (seed 000's
        x), or the parameters of a function that declares no inputs."""
        return self.inputs or self.params

    def __repr__(self):
        return (f"VectorNetwork({len(self.nodes)} nodes, outputs={list(self.outputs)}, "
                f"{len(self.params)} params, {len(self.inputs)} inputs)")


@dataclass(frozen=True)
class Layer:
    """One vector of the chain: ``name`` (an identifier: the entries' common stem, ``f`` for
    f_1, f_2, or ``s1``, ``s2`` ... when they have none) and its ``entries``; ``carried``
    are the entries that come unchanged from the layer below (a skip connection)."""

    name: str
    entries: tuple[sp.Symbol, ...]
    carried: tuple[sp.Symbol, ...] = ()
    stem: bool = True  # False: a made-up name (s1), shown as s^(1)


@dataclass(frozen=True)
class JacobianFactor:
    """The local Jacobian ∂``of``/∂``wrt`` of one layer with respect to the layer below: one
    row per entry of ``of``, one column per entry of ``wrt``. ``partials`` holds the local
    partials as symbols (∂f_1/∂x; 1 where an entry is carried, 0 where it does not read the
    other), ``local`` the same written out, ``because`` the derivative rules they used."""

    of: Layer
    wrt: Layer
    partials: sp.Matrix
    local: sp.Matrix
    because: tuple

    @property
    def name(self) -> str:
        """Spelled as the JSON spells local partials: ``pg_pf`` for ∂g/∂f."""
        return f"p{self.of.name}_p{self.wrt.name}"


class Jacobian:
    """The Jacobian d(outputs)/d(wrt) of a :class:`VectorNetwork`, derived by the chain rule.

    - ``entries[i][j]``: the :class:`~symprop.derive.Derivation` of output i with respect to
      variable j (its steps by ``method``; its path form is the entry as a sum of products);
    - ``layers`` (variables first, outputs last) and ``factors`` (outermost first, as in
      dg/dx = ∂g/∂f · ∂f/∂x): the factorisation, or None (with a note) when one variable
      depends on another, so that no layering holds them both;
    - ``in_nodes`` (entries in node symbols) and ``matrix`` (in inputs and parameters only,
      what ``sympy.Matrix.jacobian`` of the composition gives; None past
      ``limits.MAX_SUBSTITUTED_SIZE``), both SymPy matrices.
    """

    def __init__(self, net: VectorNetwork, wrt, method: str, max_paths: int | None):
        self.network = net
        self.outputs = net.outputs
        self.wrt = wrt
        self.method = method
        self.notes: list[str] = []
        self.entries = []
        for o in net.outputs:
            derived = derive(net.networks[o], list(wrt), method=method, max_paths=max_paths)
            self.entries.append([derived[w] for w in wrt])
        self.layers, self.factors = self._factorise()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.outputs), len(self.wrt)

    @functools.cached_property
    def in_nodes(self) -> sp.Matrix:
        return sp.Matrix([[d.expr for d in row] for row in self.entries])

    @functools.cached_property
    def matrix(self) -> sp.Matrix | None:
        rows = [[d.substituted for d in row] for row in self.entries]
        for row in self.entries:
            for d in row:
                self.notes += [n for n in d.notes if n not in self.notes]
        if any(e is None for row in rows for e in row):
            return None
        return sp.Matrix(rows)

    # -- the factorisation

    def _factorise(self):
        net, wrt = self.network, self.wrt
        below = {w: _descendants(net, w) for w in wrt}
        for w in wrt:
            for v in wrt:
                if v != w and v in below[w]:
                    self.notes.append(
                        f"{v} depends on {w}: no layering holds both as free variables, so the Jacobian is "
                        "given entry by entry, without its product of layer Jacobians")
                    return None, None
        reached = frozenset().union(*below.values()) if below else frozenset()
        needed = frozenset().union(*[n.ancestors_of_loss for n in net.networks.values()])
        depth = {w: 0 for w in wrt}  # the longest path from a variable
        for k in net.order:  # topological order: producers first
            if k in reached and k in needed:
                depth[k] = 1 + max((depth[p] for p in net.producers[k] if p in depth), default=0)
        top = max([depth[o] for o in net.outputs if o in depth] + [1])
        for o in net.outputs:
            depth.setdefault(o, top)  # an output no variable reaches: a zero row at the top
        last_use = {o: top for o in net.outputs}  # the deepest layer that reads each value
        for k in depth:
            for p in net.producers.get(k, ()) if k not in wrt else ():
                if p in depth:
                    last_use[p] = max(last_use.get(p, 0), depth[k])
        rank = {s: i for i, s in enumerate(tuple(wrt) + net.order)}
        states = [tuple(wrt)]
        for l in range(1, top):  # the nodes of depth l, and the older values a later layer reads
            states.append(tuple(sorted((s for s in depth if depth[s] == l or depth[s] < l < last_use.get(s, -1)),
                                       key=rank.__getitem__)))
        states.append(net.outputs)
        layers = _name_layers(net, states)
        factors = [self._factor(layers[l], layers[l - 1]) for l in range(top, 0, -1)]
        return layers, factors

    def _factor(self, of: Layer, wrt: Layer) -> JacobianFactor:
        net = self.network.networks[self.outputs[0]]
        partials, local, because = [], [], ()
        for a in of.entries:
            if a in wrt.entries:  # carried unchanged: an identity row
                row = [sp.S.One if b == a else sp.S.Zero for b in wrt.entries]
                partials.append(row)
                local.append(row)
                continue
            p_row, l_row = [], []
            for b in wrt.entries:
                if b in self.network.producers.get(a, ()):
                    lp = local_partial(net, a, b)
                    p_row.append(Partial(a, b))
                    l_row.append(lp.display)
                    because += tuple(r for r in lp.because if r not in because)
                else:
                    p_row += [sp.S.Zero]
                    l_row += [sp.S.Zero]
            partials.append(p_row)
            local.append(l_row)
        return JacobianFactor(of, wrt, sp.Matrix(partials), sp.Matrix(local), because)

    @property
    def name(self) -> str:
        """``dg_dx``: the Jacobian, spelled as the JSON spells a total derivative."""
        if self.layers is None:
            return f"d{_stem_or(self.outputs, 'y')}_d{_stem_or(self.wrt, 'v')}"
        return f"d{self.layers[-1].name}_d{self.layers[0].name}"

    def __str__(self) -> str:
        from .printing import text

        rows = ["[" + ", ".join(text(e) for e in row) + "]" for row in self.in_nodes.tolist()]
        return f"{self.name} = [" + ", ".join(rows) + "]"

    def __repr__(self) -> str:
        return f"<Jacobian {self.name}: {self.shape[0]}x{self.shape[1]}, {len(self.factors or ())} factors>"


def _descendants(net: VectorNetwork, symbol) -> frozenset:
    found, stack = set(), [symbol]
    while stack:
        for l in net.consumers.get(stack.pop(), ()):
            if l not in found:
                found.add(l)
                stack.append(l)
    return frozenset(found)


_STEM = re.compile(r"^([A-Za-z]+)_[A-Za-z0-9_]+$")


def _stem(symbols) -> str | None:
    """The common stem of names like f_1, f_2 (``f``), or None."""
    stems = {m[1] if (m := _STEM.match(s.name)) else None for s in symbols}
    return stems.pop() if len(stems) == 1 and None not in stems else None


def _stem_or(symbols, fallback) -> str:
    if len(symbols) == 1:
        return symbols[0].name
    return _stem(symbols) or fallback


def _name_layers(net: VectorNetwork, states) -> list[Layer]:
    """Each state vector's name: the sole entry's own name, the entries' common stem (f for
    f_1, f_2) when no other layer or symbol has it, else s1, s2, ... (x, y at the ends)."""
    taken = {s.name for s in net.symbols}
    names, used = [], set()
    top = len(states) - 1
    for l, entries in enumerate(states):
        name = entries[0].name if len(entries) == 1 else _stem(entries)
        own = name is not None and (len(entries) == 1 or name not in taken) and name not in used
        if not own:
            name = {0: "v", top: "y"}.get(l, f"s{l}")
            while name in taken or name in used:
                name += "_"
        used.add(name)
        carried = tuple(s for s in entries if l and s in states[l - 1])
        names.append(Layer(name, tuple(entries), carried, own or l in (0, top)))
    return names


def jacobian(net: VectorNetwork, wrt=None, *, method: str = "top-down", max_paths: int | None = None) -> Jacobian:
    """The Jacobian of ``net``'s outputs with respect to ``wrt`` (names or symbols: inputs,
    parameters or inner nodes; by default the inputs, or the parameters when there are
    none), by the chain rule: a SymPy matrix and its factorisation into layer Jacobians.

    >>> import sympy as sp
    >>> x, y, h, o = sp.symbols("x y h o")
    >>> J = jacobian(VectorNetwork({h: x*y, o: sp.exp(h)}, outputs=[o], inputs=[x, y]))
    >>> J.matrix, J.shape
    (Matrix([[y*exp(x*y), x*exp(x*y)]]), (1, 2))
    """
    wrt = resolve_wrt(net, wrt)
    return Jacobian(net, wrt, method, max_paths)


def resolve_wrt(net: VectorNetwork, wrt) -> tuple[sp.Symbol, ...]:
    """The variables of a Jacobian: ``wrt`` (a name, a symbol or a list of them) checked, or
    the default; :class:`~symprop.graph.NetworkError` naming a bad one."""
    if wrt is None:
        chosen = net.default_wrt()
        if not chosen:
            raise NetworkError("the function declares no inputs and no parameters to differentiate with respect to")
        return tuple(chosen)
    items = [wrt] if isinstance(wrt, (str, sp.Symbol)) else list(wrt)
    found = []
    for w in items:
        s = net.symbol(w) if isinstance(w, str) else w
        if s in net.outputs:
            raise NetworkError(f"{s} is an output (d{s}/d{s} = 1): differentiate with respect to an input, "
                               "a parameter or an inner node", s)
        if s not in net.params and s not in net.inputs and s not in net.nodes:
            raise NetworkError(f"can only differentiate with respect to an input, a parameter or a node, not {s}", s)
        if s in found:
            raise NetworkError(f"{s} is asked for twice", s)
        found.append(s)
    return tuple(found)


# -- numbers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class JacobianValues:
    """The Jacobian at one point: ``matrix`` (rows: outputs, columns: ``wrt``), from the
    compiled backward pass of each output's network; ``values`` every node's value;
    ``factors`` each layer Jacobian at the point (or None), whose product is ``matrix``."""

    jacobian: Jacobian
    point: dict
    values: dict
    matrix: np.ndarray
    factors: tuple | None


def jacobian_at(J: Jacobian, values: Mapping, bind=None) -> JacobianValues:
    """``J`` at ``values`` (every input, target and parameter: one number each): each row by
    :func:`symprop.numeric.gradient` on that output's network, each factor's local partials at
    the forward values. ``bind`` maps generic functions to activations, as for ``gradient``.

    >>> import sympy as sp
    >>> x, f_1, f_2, g_1, g_2 = sp.symbols("x f_1 f_2 g_1 g_2")
    >>> net = VectorNetwork({f_1: x**2, f_2: 3*x, g_1: f_1*f_2, g_2: f_1 + f_2},
    ...                     outputs=[g_1, g_2], inputs=[x])
    >>> jacobian_at(jacobian(net), {"x": 1.0}).matrix.tolist()   # (9x^2, 2x + 3) at 1
    [[9.0], [5.0]]
    """
    net = J.network
    first = net.networks[net.outputs[0]]
    for key, value in dict(values).items():
        if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) > 0:
            s = first.symbol(key) if isinstance(key, str) else key
            raise NumericError(f"the values of {s} are a batch: a Jacobian is evaluated at one point, "
                               "give one number for each input", s)
    seeded, seeds = net.seeded
    rows, node_values = [], {}
    for i, o in enumerate(net.outputs):
        try:
            result = gradient(seeded, {**dict(values), **{l: float(j == i) for j, l in enumerate(seeds)}}, bind=bind)
        except NumericError:  # 0 times an infinite partial of another output: that output's own network
            result = gradient(net.networks[o], values, bind=bind)
        node_values = {k: float(v[0]) for k, v in result.values.items() if k in net.nodes}
        row = []
        for w in J.wrt:
            entry = result.gradient[w] if w in result.gradient else float(result.deltas[w][0])
            if not math.isfinite(entry):
                raise NumericError(f"the entry d{o}/d{w} is not finite", w)
            row.append(float(entry))
        rows.append(row)
    names = {s.name: s for s in first.leaves}
    point = {(names[k] if isinstance(k, str) else k): float(v) for k, v in dict(values).items()}
    factors = None
    if J.factors is not None:
        at = {**point, **node_values}
        factors = tuple(_factor_at(f, at, bind or {}) for f in J.factors)
    return JacobianValues(J, point, node_values, np.array(rows, dtype=float).reshape(J.shape), factors)


def _factor_at(factor: JacobianFactor, at: dict, bind) -> np.ndarray:
    """A layer Jacobian's local partials at the point (leaves and forward node values)."""
    numbers = {s: sp.Float(v, 17) for s, v in at.items()}
    out = np.zeros(factor.local.shape)
    for (i, j), e in np.ndenumerate(np.array(factor.local.tolist(), dtype=object)):
        if e == 0:
            continue
        try:
            value = complex(sp.N(fn.explicit(fn.bind_generics(e, bind)).xreplace(numbers), 17))
        except (TypeError, ValueError) as err:
            raise NumericError(f"the local partial ∂{factor.of.entries[i]}/∂{factor.wrt.entries[j]}: {err}") from None
        if value.imag != 0 or not math.isfinite(value.real):
            raise NumericError(f"the local partial ∂{factor.of.entries[i]}/∂{factor.wrt.entries[j]} is not a "
                               "finite real number at the values", factor.of.entries[i])
        out[i, j] = value.real
    return out

