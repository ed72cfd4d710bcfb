"""Networks as directed acyclic graphs of SymPy expressions.

A :class:`Network` maps every defined symbol (a hidden node or the loss) to its SymPy
expression in other symbols; inputs, targets and parameters are the leaves. Any DAG is
allowed: skip connections, fan-out, parameters shared by several nodes. A network is
plain data: :func:`symprop.derive` derives it, :mod:`symprop.numeric` evaluates it.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, b, h, E = sp.symbols("x t w b h E")
>>> net = Network({h: sigmoid(w*x + b), E: (t - h)**2/2}, loss=E, params=[w, b],
...               inputs=[x], targets=[t])
>>> net.order
(h, E)
>>> net.consumers[h]
(E,)
>>> net.path_count(w)
1
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping

import sympy as sp

from .functions import as_expr

__all__ = ["Network", "NetworkError", "display_name", "ROLES"]

ROLES = ("input", "target", "param", "hidden", "loss")


class NetworkError(ValueError):
    """A network that cannot be derived; ``symbol`` names the offending symbol."""

    def __init__(self, message: str, symbol: sp.Symbol | None = None):
        super().__init__(message)
        self.symbol = symbol


class Network:
    """A network: node definitions, the loss node and the roles of the leaf symbols.

    ``nodes`` maps each defined Symbol to its expression (a mapping, or pairs; a symbol
    defined twice is an error). ``reduction`` says how the loss of a batch is formed from
    per-sample losses: ``"sum"`` or ``"mean"`` (seed 004: L = 1/M sum_m L(m)).
    ``display`` optionally maps symbols to display names (LaTeX) for printers.
    """

    def __init__(
        self,
        nodes: Mapping[sp.Symbol, sp.Expr] | Iterable[tuple[sp.Symbol, sp.Expr]],
        *,
        loss: sp.Symbol,
        params: Iterable[sp.Symbol],
        inputs: Iterable[sp.Symbol] = (),
        targets: Iterable[sp.Symbol] = (),
        reduction: str = "sum",
        display: Mapping[sp.Symbol, str] | None = None,
    ):
        self.nodes = _node_dict(nodes)
        self.params = _symbol_tuple(params, "parameter")
        self.inputs = _symbol_tuple(inputs, "input")
        self.targets = _symbol_tuple(targets, "target")
        self.loss = loss
        if reduction not in ("sum", "mean"):
            raise NetworkError(f"reduction must be 'sum' or 'mean', not {reduction!r}")
        self.reduction = reduction
        self.display = dict(display or {})

        reads = {k: expr.free_symbols for k, expr in self.nodes.items()}  # computed once: big sums are slow
        self._check_roles(reads)
        # producers: what each node reads, in a fixed order (leaves by role, then nodes)
        rank = {s: i for i, s in enumerate(self.inputs + self.targets + self.params + tuple(self.nodes))}
        self.producers = {k: tuple(sorted(reads[k], key=rank.__getitem__)) for k in self.nodes}
        self.order = _topological_order(self.nodes, self.producers)
        consumers: dict[sp.Symbol, list[sp.Symbol]] = {s: [] for s in rank}
        for k in self.order:
            for s in self.producers[k]:
                consumers[s].append(k)
        self.consumers = {s: tuple(ls) for s, ls in consumers.items()}
        self.ancestors_of_loss = self._ancestors(self.loss)
        for p in self.params:
            if p not in self.ancestors_of_loss:
                warnings.warn(f"the loss {self.loss} does not depend on parameter {p}", stacklevel=2)

    # -- structure -------------------------------------------------------------------

    @property
    def leaves(self) -> tuple[sp.Symbol, ...]:
        """Inputs, targets and parameters, in that order."""
        return self.inputs + self.targets + self.params

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        """Every symbol of the network: leaves, then nodes in topological order."""
        return self.leaves + self.order

    def role(self, symbol: sp.Symbol) -> str:
        """One of ``ROLES`` for ``symbol``."""
        if symbol == self.loss:
            return "loss"
        if symbol in self.nodes:
            return "hidden"
        for role, group in (("input", self.inputs), ("target", self.targets), ("param", self.params)):
            if symbol in group:
                return role
        raise NetworkError(f"{symbol} is not a symbol of this network", symbol)

    def symbol(self, name: str) -> sp.Symbol:
        """The network's symbol called ``name``; a clear error if there is none."""
        for s in self.symbols:
            if s.name == name:
                return s
        raise NetworkError(f"no symbol named {name!r} in this network", None)

    def on_paths(self, wrt: sp.Symbol) -> tuple[sp.Symbol, ...]:
        """The nodes on some path from ``wrt`` to the loss, in topological order."""
        below = self._descendants(wrt)
        return tuple(k for k in self.order if k in below and k in self.ancestors_of_loss)

    def path_count(self, wrt: sp.Symbol) -> int:
        """How many paths lead from ``wrt`` to the loss (counted without listing them)."""
        count = {self.loss: 1}
        for k in reversed(self.order):
            if k != self.loss:
                count[k] = sum(count.get(l, 0) for l in self.consumers[k])
        return sum(count.get(l, 0) for l in self.consumers[wrt])

    def path_edges(self, wrt: sp.Symbol) -> int:
        """How many edges all paths from ``wrt`` to the loss have together (the factors of
        the path forms), counted without listing the paths."""
        count, edges = {self.loss: 1}, {self.loss: 0}
        for k in reversed(self.order):
            if k != self.loss:
                count[k] = sum(count.get(l, 0) for l in self.consumers[k])
                edges[k] = sum(edges.get(l, 0) + count.get(l, 0) for l in self.consumers[k])
        return sum(edges.get(l, 0) + count.get(l, 0) for l in self.consumers[wrt])

    def paths(self, wrt: sp.Symbol, max_paths: int = 1000) -> list[tuple[sp.Symbol, ...]]:
        """Every path from ``wrt`` up to the loss, as tuples ``(wrt, z_k, ..., loss)``.

        More than ``max_paths`` paths raise ``NetworkError`` instead of hanging.
        """
        n = self.path_count(wrt)
        if n > max_paths:
            raise NetworkError(
                f"{n} paths lead from {wrt} to {self.loss}, more than max_paths={max_paths}; "
                "use the top-down or bottom-up method, or raise max_paths",
                wrt,
            )
        found: list[tuple[sp.Symbol, ...]] = []
        stack = [(wrt,)]  # depth first, each path in the order a recursive walk finds it
        while stack:
            path = stack.pop()
            if path[-1] == self.loss:
                found.append(path)
                continue
            ahead = [l for l in self.consumers[path[-1]] if l in self.ancestors_of_loss]
            stack += [path + (l,) for l in reversed(ahead)]
        return found

    def display_name(self, symbol: sp.Symbol) -> str:
        """The LaTeX name of ``symbol``: the ``display`` override or the naming rule."""
        return self.display.get(symbol) or display_name(symbol.name)

    def __repr__(self):
        return (
            f"Network({len(self.nodes)} nodes, loss={self.loss}, {len(self.params)} params, "
            f"{len(self.inputs)} inputs, {len(self.targets)} targets)"
        )

    # -- helpers -----------------------------------------------------------------------

    def _check_roles(self, reads):
        seen: dict[sp.Symbol, str] = {}
        for role, group in (("input", self.inputs), ("target", self.targets), ("parameter", self.params)):
            for s in group:
                if s in seen:
                    raise NetworkError(f"{s} is declared twice (as {seen[s]} and as {role})", s)
                seen[s] = role
        for k in self.nodes:
            if k in seen:
                raise NetworkError(f"{k} is declared as {seen[k]} and also defined as a node", k)
        if self.loss not in self.nodes:
            raise NetworkError(f"the loss {self.loss} is not a defined node", self.loss)
        for k, symbols in reads.items():
            unknown = [s for s in symbols if s not in seen and s not in self.nodes]
            for s in sorted(unknown, key=str)[:1]:
                raise NetworkError(
                        f"node {k} uses {s}, which is neither declared (input, target, parameter) "
                        "nor defined as a node",
                        s,
                    )

    def _ancestors(self, node: sp.Symbol) -> frozenset:
        found, stack = {node}, [node]
        while stack:
            for s in self.producers.get(stack.pop(), ()):
                if s not in found:
                    found.add(s)
                    stack.append(s)
        return frozenset(found)

    def _descendants(self, symbol: sp.Symbol) -> frozenset:
        found, stack = set(), [symbol]
        while stack:
            for l in self.consumers[stack.pop()]:
                if l not in found:
                    found.add(l)
                    stack.append(l)
        return frozenset(found)


def _node_dict(nodes) -> dict[sp.Symbol, sp.Expr]:
    pairs = nodes.items() if isinstance(nodes, Mapping) else nodes
    result: dict[sp.Symbol, sp.Expr] = {}
    for key, expr in pairs:
        if not isinstance(key, sp.Symbol):
            raise NetworkError(f"node keys must be SymPy Symbols, got {key!r}")
        if key in result:
            raise NetworkError(f"node {key} is defined twice", key)
        try:
            expr = as_expr(expr)
        except TypeError:
            raise NetworkError(f"node {key} is defined by {expr!r}, which is not a SymPy expression", key) from None
        result[key] = expr
    if not result:
        raise NetworkError("a network needs at least one node (the loss)")
    return result


def _symbol_tuple(symbols, role) -> tuple[sp.Symbol, ...]:
    symbols = tuple(symbols)
    for s in symbols:
        if not isinstance(s, sp.Symbol):
            raise NetworkError(f"each {role} must be a SymPy Symbol, got {s!r}")
    return symbols


def _topological_order(nodes, producers) -> tuple[sp.Symbol, ...]:
    """Kahn's algorithm; ties keep the declaration order so output is deterministic."""
    pending = {k: sum(1 for s in producers[k] if s in nodes) for k in nodes}
    readers: dict[sp.Symbol, list[sp.Symbol]] = {k: [] for k in nodes}
    for k in nodes:
        for s in producers[k]:
            if s in nodes:
                readers[s].append(k)
    position = {k: i for i, k in enumerate(nodes)}
    ready = sorted((k for k, n in pending.items() if n == 0), key=position.__getitem__)
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for l in readers[k]:
            pending[l] -= 1
            if pending[l] == 0:
                ready.append(l)
                ready.sort(key=position.__getitem__)
    if len(order) < len(nodes):
        cycle = _find_cycle([k for k in nodes if k not in set(order)], producers, nodes)
        raise NetworkError("cycle: " + " -> ".join(map(str, cycle)), cycle[0])
    return tuple(order)


def _find_cycle(candidates, producers, nodes):
    """A cycle among ``candidates``, as a list that starts and ends with the same node."""
    colour: dict[sp.Symbol, int] = {}
    stack: list[sp.Symbol] = []

    def visit(k):
        colour[k] = 1
        stack.append(k)
        for s in producers[k]:
            if s not in nodes:
                continue
            if colour.get(s) == 1:
                # the cycle runs from s along the stack back to s; print it in forward flow
                cycle = stack[stack.index(s):] + [s]
                return list(reversed(cycle))
            if s not in colour:
                found = visit(s)
                if found:
                    return found
        stack.pop()
        colour[k] = 2
        return None

    for k in candidates:
        if k not in colour:
            found = visit(k)
            if found:
                return found
    raise AssertionError("no cycle found among nodes left by the topological sort")


_SUFFIX = re.compile(r"^(?P<base>[A-Za-z]+)_(?P<rest>[A-Za-z0-9_]+)$")
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega",
}


def display_name(name: str) -> str:
    """The LaTeX display name of an identifier, by symprop's naming rule.

    The part after the first underscore becomes the subscript, further underscores
    become commas; a Greek letter name becomes its letter.

    >>> display_name("w_5_7"), display_name("z_5"), display_name("net_h1"), display_name("E")
    ('w_{5,7}', 'z_{5}', 'net_{h1}', 'E')
    >>> display_name("eta"), display_name("b_out")
    ('\\\\eta', 'b_{out}')
    """
    match = _SUFFIX.match(name)
    if not match:
        return _letter(name)
    return f"{_letter(match['base'])}_{{{match['rest'].replace('_', ',')}}}"


def _letter(base: str) -> str:
    return "\\" + base if base in _GREEK else base
