"""The chain-rule engine: local partials, top-down, bottom-up and all paths.

Notation follows seed 002: ``dE/dz_k`` (a :class:`Total`, the delta of node ``z_k``) is
the total derivative of the loss, ``∂z_l/∂z_k`` (a :class:`Partial`) the local partial
of one node's expression with the other nodes held as symbols.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w],
...               inputs=[x], targets=[t])
>>> d = derive(net, w)
>>> from symprop.printing import text_chain
>>> text_chain(d.in_deltas)
'dE/dh*h*(1 - h)*x'
>>> text_chain(d.as_paths)
'∂E/∂h*∂h/∂w'
>>> d.substituted
x*(1 - sigmoid(w*x))*(-t + sigmoid(w*x))*sigmoid(w*x)

Speed: a network's local partials are computed once, by one reverse sweep over each
node's expression (linear in its size), and kept as tuples of factors in chain order;
SymPy products are only built when a form is asked for. So deriving every weight of a
784-128-10 MLP costs tuple work per weight, not a SymPy multiplication.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sympy as sp

from . import limits
from .functions import Rule, record_of, replace_shared, softmax
from .graph import Network, NetworkError
from .printing import tree_size

__all__ = [
    "Partial", "Total", "Step", "Derivation", "LocalPartial", "derive", "local_partial", "delta_expr", "backward",
    "step_estimate", "resolve_wrt", "SoftmaxChain", "softmax_chains",
    "METHODS", "MULTIPLY", "SCALE", "POWER", "EXPONENTIAL", "FAN_OUT",
]

METHODS = ("top-down", "bottom-up", "paths")



class Partial(sp.Symbol):
    """The local partial ``∂of/∂wrt``: one edge of the graph, other nodes held fixed."""

    def __new__(cls, of: sp.Symbol, wrt: sp.Symbol):
        obj = super().__new__(cls, f"p{of.name}_p{wrt.name}")
        obj.of, obj.wrt = of, wrt
        return obj

    def __getnewargs_ex__(self):
        return (self.of, self.wrt), {}


class Total(sp.Symbol):
    """The total derivative ``dof/dwrt`` of the loss with respect to a node: its delta."""

    def __new__(cls, of: sp.Symbol, wrt: sp.Symbol):
        obj = super().__new__(cls, f"d{of.name}_d{wrt.name}")
        obj.of, obj.wrt = of, wrt
        return obj

    def __getnewargs_ex__(self):
        return (self.of, self.wrt), {}


@dataclass(frozen=True)
class Step:
    """One line of a derivation: ``lhs = rhs`` justified by ``rule``.

    Rules: ``"factor at the bottom"`` (``"finish at the bottom"`` top-down), ``"sum over consumers"``, ``"loss directly"``,
    ``"local partial"``, ``"sum over paths"``, ``"substitute"``, and the collapse of softmax
    then cross-entropy to p_j - t_j (:data:`COLLAPSE_RULES`, see :class:`SoftmaxChain`). For local partials,
    ``because`` lists the derivative rules used (:class:`~symprop.functions.Rule` records:
    a primitive's, or :data:`MULTIPLY`, :data:`SCALE`, ...) and ``partial`` is the
    :class:`LocalPartial` itself, so that printers need not ask the engine.
    """

    rule: str
    lhs: sp.Expr
    rhs: sp.Expr
    node: sp.Symbol | None = None
    because: tuple = ()
    partial: LocalPartial | None = None


@dataclass(frozen=True)
class LocalPartial:
    """``∂of/∂wrt`` as a sum of products.

    Each product is a pair ``(chain, algebra)``: the derivatives of the functions met on
    the way down (outermost first) and the factors from sums, products and powers.
    """

    of: sp.Symbol
    wrt: sp.Symbol
    products: tuple[tuple[tuple[sp.Expr, ...], tuple[sp.Expr, ...]], ...]
    because: tuple[Rule, ...]

    @property
    def is_product(self) -> bool:
        """One chain of factors (``softmax_1 - y_1`` included): printed as one product."""
        return len(self.products) == 1

    @functools.cached_property
    def expr(self) -> sp.Expr:
        """The evaluated (canonical) SymPy expression."""
        return sp.Add(*[sp.Mul(*chain, *algebra) for chain, algebra in self.products])

    @functools.cached_property
    def display(self) -> sp.Expr:
        """In chain order, as the texts write it: ``g'(u) * w``, ``z (1 - z) * x``."""
        return _chain_sum([_chain(chain + (sp.Mul(*algebra),)) for chain, algebra in self.products])


def _chain(factors) -> sp.Expr:
    """An unevaluated product that keeps its factors in order (numbers merged in front)."""
    number, rest = sp.S.One, []
    for f in _flat(factors):
        if f.is_Number:
            number *= f
        elif f != 1:
            rest.append(f)
    if number == 0:
        return sp.S.Zero
    if not rest:
        return number
    if number != 1:
        rest.insert(0, number)
    return rest[0] if len(rest) == 1 else sp.Mul(*rest, evaluate=False)


def _flat(factors):
    for f in factors:
        if f.is_Mul:
            yield from _flat(f.args)
        else:
            yield f


def _chain_sum(terms) -> sp.Expr:
    terms = [t for t in terms if t != 0]
    if not terms:
        return sp.S.Zero
    return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)


# -- local partials: one reverse sweep over a node's expression ---------------------------
# The rules of sums, products and powers; a function's rule is its primitive's record.

MULTIPLY = Rule("multiply", "multiply: the other factor",
                "in a product, the derivative with respect to one factor is the other factor")
SCALE = Rule("scale", "multiply by a constant: scale", "multiplying by a constant scales the derivative")
POWER = Rule("power", "power rule", r"the power rule $(u^n)' = n\,u^{n-1}$")
EXPONENTIAL = Rule("exponential", "exponential", r"$(a^u)' = a^u \log a$")
FAN_OUT = Rule("fan-out", "used more than once: sum the contributions",
               "a variable used more than once contributes the sum of its uses")

# The collapse of softmax then cross-entropy to p_j - t_j (seed 000's gate table, seed 004's
# output layer): the rule of each step after the sum over the softmax nodes.
SOFTMAX_CE = "softmax + cross-entropy"
CANCEL = "cancel and collect"
TARGETS_SUM_TO_ONE = "targets sum to 1"
COLLAPSE_RULES = (SOFTMAX_CE, CANCEL, TARGETS_SUM_TO_ONE)
CANCEL_RULE = Rule("cancel",
                   "each probability cancels, (-t_k/p_k)·p_k(δ_kj - p_j) = -t_k(δ_kj - p_j); δ_kj keeps only t_j",
                   r"each probability cancels, $-\frac{t_k}{p_k}\,p_k(\delta_{kj} - p_j) = -t_k(\delta_{kj} - p_j)$, "
                   r"and $\delta_{kj}$ keeps only $t_j$ of $\sum_k t_k \delta_{kj}$")
SUM_TO_ONE_RULE = Rule("sum to one", "Σ_k t_k = 1 (one-hot labels or probabilities)",
                       r"the targets sum to 1, $\sum_k t_k = 1$ (one-hot labels or probabilities)")

def _sweep(expr, chain, algebra, because, wanted, out, outputs, memo=None):
    """Push the adjoint ``chain`` x ``algebra`` down ``expr``; collect it at wanted symbols.

    ``because`` accumulates the names of the rules used, so every local partial can say
    which derivative rules produced it (seed 004's gate rules).
    """
    memo = {} if memo is None else memo
    if expr.is_Symbol:
        if expr in wanted:
            out.setdefault(expr, []).append(((chain, algebra), because))
        return
    if expr.is_Atom:
        return
    if expr.is_Add:
        for arg in expr.args:
            _sweep(arg, chain, algebra, because, wanted, out, outputs, memo)
    elif expr.is_Mul:
        args = expr.args
        for i, arg in enumerate(args):
            if _involves(arg, wanted):
                others = args[:i] + args[i + 1:]
                other = others[0] if len(others) == 1 else sp.Mul(*others)
                rule = SCALE if other.is_Number else MULTIPLY
                _sweep(arg, chain, algebra + (other,), _add_rule(because, rule), wanted, out, outputs, memo)
    elif expr.is_Pow:
        base, exponent = expr.args
        if _involves(base, wanted):
            local = exponent * base ** (exponent - 1)
            _sweep(base, chain, algebra + (local,), _add_rule(because, POWER), wanted, out, outputs, memo)
        if _involves(exponent, wanted):
            local = sp.log(base) * expr
            if local.has(sp.zoo, sp.nan):  # 0**w: log(0) has no value
                raise NetworkError(f"{expr} has no derivative in its exponent: log({base}) is undefined")
            _sweep(exponent, chain, algebra + (local,), _add_rule(because, EXPONENTIAL), wanted, out, outputs, memo)
    elif isinstance(expr, sp.Function):
        record = record_of(expr)
        rule = record or _unknown_rule(expr.func.__name__)
        for index, arg in _arguments(expr):
            if _involves(arg, wanted):
                try:
                    local = record.differentiate(expr, index) if record else expr.fdiff(index)
                except Exception as err:  # SymPy raises several types for "no rule"
                    raise NetworkError(f"no derivative rule for {expr.func.__name__} in {expr}: {err}") from None
                if outputs:
                    local = replace_shared(local, outputs, memo)
                if _unevaluated(local, memo):
                    raise NetworkError(f"no derivative rule for {expr.func.__name__} in {expr}")
                _sweep(arg, chain + (local,), algebra, _add_rule(because, rule), wanted, out, outputs, memo)
    else:
        raise NetworkError(f"no derivative rule for {type(expr).__name__} in {expr}")


def _arguments(expr):
    """``(argindex, argument)`` of a function call; the entries of a tuple argument (the
    logits of a softmax) each on their own, with index ``(i, j)``."""
    for i, arg in enumerate(expr.args, 1):
        if isinstance(arg, sp.Tuple):
            yield from (((i, j), a) for j, a in enumerate(arg.args, 1))
        else:
            yield i, arg


def _involves(expr, wanted) -> bool:
    if expr.is_Symbol:
        return expr in wanted
    return not expr.is_Atom and not wanted.isdisjoint(expr.free_symbols)


def _add_rule(because, rule):
    return because if any(r is rule for r in because) else because + (rule,)


def _unevaluated(expr, memo) -> bool:
    """Whether ``expr`` holds an unevaluated Derivative (a function without a rule); the
    subexpressions already seen clean are in ``memo`` under ``("clean", e)``."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, sp.Derivative):
            return True
        if ("clean", e) not in memo:
            memo[("clean", e)] = True  # marked before its parts: a Derivative below raises anyway
            stack.extend(e.args)
    return False


@functools.cache
def _unknown_rule(name: str) -> Rule:
    """The rule of a SymPy function symprop has no record of (a ``sin`` built in Python)."""
    return Rule(name)


class _Engine:
    """Per-network memo of local partials (and fully substituted node definitions)."""

    def __init__(self, net: Network, in_outputs: bool):
        self.net = net
        # s'(u) -> z (1 - z) where z = s(u) is a node: replace node definitions by the node
        self.outputs = (
            {expr: k for k, expr in net.nodes.items() if isinstance(expr, sp.Function)} if in_outputs else {}
        )
        self._local: dict[sp.Symbol, dict[sp.Symbol, LocalPartial]] = {}
        self._full: dict[sp.Symbol, sp.Expr] = {}
        self._full_size: dict[sp.Symbol, int] = {}
        self._delta: dict[sp.Symbol, sp.Expr] = {}
        # subexpressions already rewritten in outputs or checked for a missing rule: derivatives
        # share parts (a softmax's logits), and walking each again would be quadratic
        self._seen: dict = {}
        self._data_leaves = frozenset(self.net.inputs) | frozenset(self.net.targets)  # built once: local() runs per weight

    @functools.cached_property
    def chains(self) -> dict:
        """The softmax-then-cross-entropy chains (:func:`softmax_chains`), written in node
        outputs only: without them the local partials hold softmax calls, not p_k."""
        return softmax_chains(self.net) if self.outputs else {}

    def local(self, node: sp.Symbol, wrt: sp.Symbol) -> LocalPartial:
        """``∂node/∂wrt``, computed with every other partial of ``node`` in one sweep."""
        known = self._local.setdefault(node, {})
        if wrt not in known:
            # one sweep for everything of this node that derivations ask for: nodes and
            # parameters first; inputs and targets in a second sweep only when asked
            leaves = self._data_leaves
            wanted = {s for s in self.net.producers[node] if s not in known and (s not in leaves) == (wrt not in leaves)}
            wanted.add(wrt)
            out: dict = {}
            _sweep(self.net.nodes[node], (), (), (), wanted, out, self.outputs, self._seen)
            for s in wanted:
                found = out.get(s, [])
                because: tuple[str, ...] = ()
                for _, rules in found:
                    for r in rules:
                        because = _add_rule(because, r)
                if len(found) > 1:
                    because = _add_rule(because, FAN_OUT)
                known[s] = LocalPartial(node, s, tuple(f for f, _ in found), because)
        return known[wrt]

    def full_size(self, node: sp.Symbol) -> int:
        """Tree size of the node's definition with every node substituted by its own."""
        for k in self.net.order:  # topological order: producers first, no recursion
            if k not in self._full_size:
                self._full_size[k] = sum(
                    self._full_size[s] if s in self.net.nodes else 1
                    for s in sp.preorder_traversal(self.net.nodes[k])
                )
        return self._full_size[node]

    def full(self, node: sp.Symbol) -> sp.Expr:
        """The node's definition in inputs, targets and parameters only."""
        for k in self.net.order:
            if k not in self._full:
                inner = {s: self._full[s] for s in self.net.producers[k] if s in self.net.nodes}
                self._full[k] = self.net.nodes[k].xreplace(inner)
            if k == node:
                break
        return self._full[node]

    def substitute(self, expr: sp.Expr) -> sp.Expr:
        return expr.xreplace({s: self.full(s) for s in expr.free_symbols if s in self.net.nodes})


# One engine per (network, in_outputs), kept while the network lives: a Network is plain
# data, and its memo of local partials belongs here, with the code that computes them.
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _engine(net: Network, in_outputs: bool) -> _Engine:
    engines = _ENGINES.setdefault(net, {})
    if in_outputs not in engines:
        engines[in_outputs] = _Engine(net, in_outputs)
    return engines[in_outputs]


# -- derivations ---------------------------------------------------------------------------

class Derivation:
    """dE/dw for one parameter or input, derived by one method, as data; for a node
    ``z_k`` (not the loss), its delta dE/dz_k, by the same steps and in the same forms.

    ``steps`` is the ordered list of :class:`Step` records; the result comes in four
    forms: ``in_deltas`` (deltas times local partials, what backprop stores),
    ``as_paths`` (the sum over paths of products of abstract local partials, seed 002
    §1.9), ``in_local_partials`` (that sum with every partial written out) and
    ``substituted`` (in inputs, targets and parameters only). ``as_paths`` and
    ``in_local_partials`` are None past ``max_paths`` paths, ``substituted`` past
    ``limits.MAX_SUBSTITUTED_SIZE``; ``notes`` says why.
    """

    def __init__(self, net: Network, wrt: sp.Symbol, method: str, engine: _Engine, max_paths: int):
        self.network = net
        self.target = net.loss
        self.wrt = wrt
        self.method = method
        self.max_paths = max_paths
        self._engine = engine
        # the nodes that use w directly and lie on a path to the loss: dE/dw = sum over them
        self.users = tuple(k for k in net.consumers[wrt] if k in net.ancestors_of_loss)
        self.bottom = tuple(engine.local(k, wrt) for k in self.users)
        self.notes: list[str] = []

    @functools.cached_property
    def path_count(self) -> int:
        return self.network.path_count(self.wrt)

    @functools.cached_property
    def paths(self) -> list[tuple[sp.Symbol, ...]] | None:
        if self.path_count > self.max_paths:
            self.notes.append(
                f"{self.path_count} paths lead from {self.wrt} to {self.target}, more than "
                f"max_paths = {self.max_paths:,} (--max-paths, or SYMPROP_MAX_PATHS): the path forms are left out"
            )
            return None
        edges = self.network.path_edges(self.wrt)
        # a deep chain whose weight every node shares has n paths of up to n edges
        if edges > limits.MAX_PATH_FACTORS:
            self.notes.append(
                f"the {self.path_count} paths from {self.wrt} to {self.target} have {edges:,} local partials "
                f"in all, more than allowed ({limits.says('MAX_PATH_FACTORS')}): the path forms are left out"
            )
            return None
        return self.network.paths(self.wrt, self.max_paths)

    # -- the four forms

    @functools.cached_property
    def in_deltas(self) -> sp.Expr:
        """``sum_k dE/dz_k * ∂z_k/∂w`` with each local partial written out."""
        return _chain_sum([_chain((self._delta(lp.of),) + (lp.display,)) for lp in self.bottom])

    @functools.cached_property
    def as_paths(self) -> sp.Expr | None:
        if self.paths is None:
            return None
        return _chain_sum([_chain(Partial(b, a) for a, b in _edges_down(p)) for p in self.paths])

    @functools.cached_property
    def in_local_partials(self) -> sp.Expr | None:
        if self.paths is None:
            return None
        local = self._engine.local
        return _chain_sum([_chain(local(b, a).display for a, b in _edges_down(p)) for p in self.paths])

    @functools.cached_property
    def expr(self) -> sp.Expr:
        """The gradient as one evaluated expression in node symbols (no deltas, no paths)."""
        deltas = {lp.of: self._delta_expr(lp.of) for lp in self.bottom}
        return backward(self.network.loss, [self.wrt], lambda k: self.users, lambda l, k: self._engine.local(l, k).expr,
                        known=deltas)[0][self.wrt]

    @functools.cached_property
    def substituted(self) -> sp.Expr | None:
        engine = self._engine
        size = self.path_count * sum(engine.full_size(k) for k in self.network.on_paths(self.wrt))
        if size > limits.MAX_SUBSTITUTED_SIZE:
            self.notes.append(
                f"the fully substituted gradient would have about {size:,} tree nodes "
                f"({limits.says('MAX_SUBSTITUTED_SIZE')}); use the forms in deltas or local partials"
            )
            return None
        full = engine.substitute(self.expr)
        size = tree_size(full)
        if size > limits.MAX_SUBSTITUTED_SIZE:  # the estimate above counts nodes, not a node's own growth
            self.notes.append(
                f"the fully substituted gradient has {size:,} tree nodes ({limits.says('MAX_SUBSTITUTED_SIZE')}); "
                "use the forms in deltas or local partials"
            )
            return None
        return full

    # -- steps

    @functools.cached_property
    def steps(self) -> list[Step]:
        net, E, w = self.network, self.target, self.wrt
        nodes = [k for k in net.on_paths(w) if k != E]
        steps: list[Step] = []
        bottom = self._factor_at_bottom()
        if self.method == "paths":
            if self.paths is not None:
                steps.append(Step("sum over paths", Total(E, w), self.as_paths))
                edges = dict.fromkeys(e for p in self.paths for e in _edges_down(p))
                steps += [self._local_step(b, a) for a, b in edges]
        else:
            walk = nodes if self.method == "bottom-up" else _top_down_order(net, nodes)
            if self.method == "bottom-up":
                steps += bottom
            for k in walk:
                steps += self._delta_steps(k)
            if self.method == "top-down":
                steps += bottom
            steps = self._with_collapse(steps)
            if self.as_paths is not None:
                steps.append(Step("substitute", Total(E, w), self.as_paths))
        if self.in_local_partials is not None:
            steps.append(Step("substitute", Total(E, w), self.in_local_partials))
        return steps

    def _with_collapse(self, steps) -> list[Step]:
        """``steps`` with the collapse of softmax then cross-entropy, dE/dz_j = p_j - t_j,
        after the sum that gives the delta of each logit z_j of a :class:`SoftmaxChain`,
        once the deltas of its softmax nodes are known too (bottom-up: after the walk)."""
        chains = self._engine.chains
        if not chains:
            return steps
        E = self.target
        done, first, last = {}, {}, None  # lhs -> index of the last (first) step of the group that gives it
        for i, s in enumerate(steps):
            if s.rule != "local partial":
                last = s.lhs
                first.setdefault(last, i)
            if last is not None:
                done[last] = i
        inserts: dict = {}  # index -> the collapses that go after it, in the order of the logits' deltas
        for z in sorted((z for z in chains if Total(E, z) in first), key=lambda z: first[Total(E, z)]):
            chain = chains[z]
            needed = [Total(E, z)] + [Total(E, p) for p in chain.probs]
            if all(n in done for n in needed):
                inserts.setdefault(max(done[n] for n in needed), []).extend(chain.collapse(E, z))
        for at in sorted(inserts, reverse=True):  # from the end: earlier indexes stay valid
            steps[at + 1:at + 1] = inserts[at]
        return steps

    def _factor_at_bottom(self) -> list[Step]:
        E, w = self.target, self.wrt
        rhs = _chain_sum([_chain((self._delta(k), Partial(k, w))) for k in self.users])
        rule = "finish at the bottom" if self.method == "top-down" else "factor at the bottom"
        return [Step(rule, Total(E, w), rhs)] + [self._local_step(k, w) for k in self.users]

    def _delta_steps(self, k) -> list[Step]:
        E, net = self.target, self.network
        consumers = [l for l in net.consumers[k] if l in net.ancestors_of_loss]
        rhs = _chain_sum([_chain((self._delta(l), Partial(l, k))) for l in consumers])
        rule = "loss directly" if consumers == [E] else "sum over consumers"
        return [Step(rule, Total(E, k), rhs, node=k)] + [self._local_step(l, k) for l in consumers]

    def _local_step(self, of, wrt) -> Step:
        lp = self._engine.local(of, wrt)
        return Step("local partial", Partial(of, wrt), lp.display, node=of, because=lp.because, partial=lp)

    def _delta(self, k):
        return sp.S.One if k == self.target else Total(self.target, k)

    def _delta_expr(self, k) -> sp.Expr:
        return _delta_exprs(self._engine, k)

    # -- presentation

    def __str__(self) -> str:
        from .printing import derivation_text

        return derivation_text(self)

    def __repr__(self) -> str:
        return f"<Derivation d{self.target}/d{self.wrt} by {self.method}, {len(self.users)} direct uses>"

    def _repr_latex_(self) -> str:
        """Jupyter shows the steps as rendered LaTeX, in the network's display names."""
        from .printing import latex_derivation

        return "$\\displaystyle " + latex_derivation(self, self.network.display) + "$"


@dataclass(frozen=True)
class SoftmaxChain:
    """Softmax nodes ``p_k = softmax([z_1..z_n], k)`` of one vector of logit nodes, read only
    by a cross-entropy loss ``E = -Σ_k t_k log p_k``: then dE/dz_j = p_j - t_j when the
    targets sum to 1 (seed 000's gate table, the output layer of seed 004).

    >>> import sympy as sp
    >>> from symprop import Network, softmax
    >>> from symprop.functions import cross_entropy
    >>> z1, z2, p1, p2, t1, t2, w, x, E = sp.symbols("z_1 z_2 p_1 p_2 t_1 t_2 w x E")
    >>> net = Network({z1: w*x, z2: -w*x, p1: softmax(1, z1, z2), p2: softmax(2, z1, z2),
    ...                E: cross_entropy([p1, p2], [t1, t2])}, loss=E, params=[w], inputs=[x], targets=[t1, t2])
    >>> from symprop.printing import text_chain
    >>> [text_chain(s.rhs) for s in softmax_chains(net)[z1].collapse(E, z1)]
    ['-(t_1/p_1)*(p_1*(1 - p_1)) - (t_2/p_2)*(-p_2*p_1)', 'p_1*(t_1 + t_2) - t_1', 'p_1 - t_1']
    """

    logits: tuple
    probs: tuple
    targets: tuple

    def collapse(self, loss, z) -> list[Step]:
        """The steps from the sum over the softmax nodes to ``p_j - t_j`` for logit ``z``:
        Σ_k (-t_k/p_k) p_k(δ_kj - p_j), then -t_j + p_j Σ_k t_k, then p_j - t_j."""
        j = self.logits.index(z)
        pj, tj = self.probs[j], self.targets[j]
        terms = []
        for k, (p, t) in enumerate(zip(self.probs, self.targets)):
            softmax_rule = sp.Mul(pj, 1 - pj, evaluate=False) if k == j else sp.Mul(-1, p, pj, evaluate=False)
            terms.append(sp.Mul(-1, sp.Mul(t, sp.Pow(p, -1), evaluate=False), softmax_rule, evaluate=False))
        substituted = sp.Add(*terms, evaluate=False)
        collected = sp.Add(sp.Mul(pj, sp.Add(*self.targets, evaluate=False), evaluate=False), -tj, evaluate=False)
        delta = Total(loss, z)
        return [
            Step(SOFTMAX_CE, delta, substituted, node=z, because=(record_of("cross_entropy"), record_of("softmax"))),
            Step(CANCEL, delta, collected, node=z, because=(CANCEL_RULE,)),
            Step(TARGETS_SUM_TO_ONE, delta, sp.Add(pj, -tj, evaluate=False), node=z, because=(SUM_TO_ONE_RULE,)),
        ]


def softmax_chains(net: Network) -> dict:
    """Each logit node ``z_j`` whose delta collapses to ``p_j - t_j``, with its
    :class:`SoftmaxChain`: softmax nodes ``p_k = softmax([z_1..z_n], k)``, one for each k,
    each read only by the loss; the loss's terms in them exactly ``-t_k log p_k`` with
    ``t_k`` a target; each ``z_j`` a node read only by these softmax nodes."""
    loss = net.nodes[net.loss]
    terms = sp.Add.make_args(loss)
    groups: dict = {}
    for k, expr in net.nodes.items():
        if isinstance(expr, softmax):
            groups.setdefault(tuple(expr.logits), {}).setdefault(expr.index, []).append(k)
    found = {}
    targets = set(net.targets)
    softmax_nodes = {k for by_index in groups.values() for ks in by_index.values() for k in ks}
    terms_of: dict = {}  # softmax node -> the loss's terms that hold it (one pass: n classes cost n, not n²)
    for t in terms:
        for p in t.free_symbols & softmax_nodes:
            terms_of.setdefault(p, []).append(t)
    for logits, by_index in groups.items():
        n = len(logits)
        if sorted(by_index) != list(range(1, n + 1)) or any(len(v) != 1 for v in by_index.values()):
            continue
        probs = tuple(by_index[i][0] for i in range(1, n + 1))
        if len(set(logits)) != n or any(z not in net.nodes or z == net.loss for z in logits):
            continue
        if any(tuple(_uses(net, p)) != (net.loss,) for p in probs):
            continue
        prob_set = set(probs)
        if any(set(_uses(net, z)) != prob_set for z in logits):
            continue
        chosen = []
        for p in probs:
            using = terms_of.get(p, [])
            if len(using) != 1:
                break
            coefficient, rest = using[0].as_independent(p, as_Add=False)
            if rest != sp.log(p) or -coefficient not in targets:
                break
            chosen.append(-coefficient)
        if len(chosen) == n:
            chain = SoftmaxChain(tuple(logits), probs, tuple(chosen))
            found.update(dict.fromkeys(logits, chain))
    return found


def _delta_exprs(engine: _Engine, k) -> sp.Expr:
    """dE/dz_k as an evaluated expression in node symbols, memoized per engine."""
    memo, net = engine._delta, engine.net
    if not memo:  # every node's delta, from the loss down (iterative: deep nets are fine)
        nodes = [n for n in reversed(net.order) if n != net.loss and n in net.ancestors_of_loss]
        memo.update(backward(net.loss, nodes, lambda n: _uses(net, n), lambda l, n: engine.local(l, n).expr)[0])
    if k not in memo:
        memo.update(backward(net.loss, [k], lambda n: _uses(net, n), lambda l, n: engine.local(l, n).expr,
                             known=memo)[0])
    return memo[k]


def _uses(net: Network, k) -> tuple:
    """The nodes that read ``k`` and lie on a path to the loss."""
    return tuple(l for l in net.consumers[k] if l in net.ancestors_of_loss)


def backward(top, below: Iterable, uses: Callable, local: Callable, *, seed=sp.S.One,
             add: Callable = sp.Add, known=None) -> tuple[dict, dict]:
    """The delta recursion of seed 002, the one backward pass every consumer runs.

    ``delta[top] = seed``; then for each ``k`` of ``below`` (each after every node that
    uses it), ``delta[k] = add(*terms[k])`` with one term ``delta[l] * local(l, k)`` per
    ``l`` in ``uses(k)``: the sum over consumers, the fan-out accumulation. ``known``
    holds deltas already computed. Returns ``(delta, terms)``, ``terms[k]`` being the
    ``((l, term), ...)`` of each use. Symbolic (the default ``add`` builds a SymPy sum),
    with numbers (``add=math.fsum``-like), or with a mistaken ``local``:

    >>> import sympy as sp
    >>> a, b, E = sp.symbols("a b E")
    >>> uses = {a: (b, E), b: (E,)}
    >>> local = {(E, a): 2, (E, b): 3, (b, a): 5}
    >>> backward(E, [b, a], uses.get, lambda l, k: local[l, k])[0][a]
    17
    """
    delta = {top: seed, **(known or {})}
    terms = {}
    for k in below:
        terms[k] = tuple((l, delta[l] * local(l, k)) for l in uses(k) if l in delta)
        delta[k] = add(*[t for _, t in terms[k]])
    return delta, terms


def _top_down_order(net: Network, nodes):
    """Nodes from the loss downward, level by level (longest distance to the loss), so
    that siblings keep their declaration order: z_1, z_2, z_3 before z_5 (seed 002)."""
    height = {net.loss: 0}
    for k in reversed(net.order):
        if k != net.loss and k in net.ancestors_of_loss:
            height[k] = 1 + max(height[l] for l in net.consumers[k] if l in height)
    position = {k: i for i, k in enumerate(net.order)}
    return sorted(nodes, key=lambda k: (height[k], position[k]))


def _edges_down(path):
    """The edges of a path ``(w, z_k, ..., E)`` as (producer, consumer), loss end first."""
    return [(path[i], path[i + 1]) for i in reversed(range(len(path) - 1))]


def derive(net: Network, wrt=None, *, method: str = "top-down", in_outputs: bool = True,
           max_paths: int | None = None):
    """Derive dE/dw by ``method`` for ``wrt``: one symbol/name, a list, or None for all params.
    ``wrt`` may name a node too (not the loss): the result is its delta dE/dz_k, the total
    derivative of the loss with respect to the node's value.

    ``in_outputs`` writes activation derivatives in terms of node outputs, as the texts do
    (``sigma'(u)`` becomes ``z (1 - z)`` where ``z = sigma(u)`` is a node). Path forms are
    built only up to ``max_paths`` paths (default ``limits.MAX_PATHS``). A single ``wrt`` returns a :class:`Derivation`,
    otherwise a dict symbol -> Derivation in the order asked (top-down shares one pass).

    >>> import sympy as sp
    >>> from symprop import mlp
    >>> net = mlp([2, 2, 1], hidden="sigmoid", output="sigmoid", loss="half_sse")
    >>> grads = derive(net)
    >>> len(grads) == len(net.params)
    True
    """
    if method not in METHODS:
        raise NetworkError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    max_paths = limits.MAX_PATHS if max_paths is None else max_paths
    with _gc_paused():
        engine = _engine(net, in_outputs)
        if wrt is None:
            targets = list(net.params)
        elif isinstance(wrt, (str, sp.Symbol)):
            return Derivation(net, _resolve(net, wrt), method, engine, max_paths)
        else:
            targets = [_resolve(net, w) for w in wrt]
        return {w: Derivation(net, w, method, engine, max_paths) for w in targets}


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector while deriving.

    A derivation allocates millions of small SymPy objects that stay alive, and every full
    collection walks all of them: at 784-128-10 that made the derivation 2.9x slower and its
    growth super-linear in the number of weights (benchmarks/bench_derive.py). Reference
    counting still frees everything as usual; cycles wait for the next collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def local_partial(net: Network, of: sp.Symbol, wrt: sp.Symbol, *, in_outputs: bool = True) -> LocalPartial:
    """The local partial ``∂of/∂wrt`` of node ``of``'s expression (memoized per network).

    >>> import sympy as sp
    >>> from symprop import Network, sigmoid
    >>> x, w, h, E = sp.symbols("x w h E")
    >>> net = Network({h: sigmoid(w*x), E: h**2}, loss=E, params=[w], inputs=[x])
    >>> local_partial(net, h, w).expr
    h*x*(1 - h)
    >>> local_partial(net, h, w, in_outputs=False).expr
    x*(1 - sigmoid(w*x))*sigmoid(w*x)
    """
    return _engine(net, in_outputs).local(of, wrt)


def delta_expr(net: Network, node: sp.Symbol, *, in_outputs: bool = True) -> sp.Expr:
    """dE/d(node) as one evaluated expression in node symbols (memoized per network)."""
    return _delta_exprs(_engine(net, in_outputs), node)


def step_estimate(net: Network, wrt, limit: int) -> int:
    """About how many steps the derivations of ``wrt`` (symbols) print in all: two a node on
    a path to the loss, plus the bottom; counted only until ``limit`` is passed (so that a
    network of 100,000 weights is judged at once)."""
    total, seen = 0, {}
    for w in wrt:
        users = tuple(k for k in net.consumers[w] if k in net.ancestors_of_loss)
        if users not in seen:
            found, stack = set(users), list(users)
            while stack and len(found) <= limit:
                for l in net.consumers[stack.pop()]:
                    if l not in found and l in net.ancestors_of_loss:
                        found.add(l)
                        stack.append(l)
            seen[users] = 2 * len(found) + len(users) + 3
        total += seen[users]
        if total > limit:
            break
    return total


def resolve_wrt(net: Network, wrt) -> sp.Symbol:
    """The symbol of ``wrt`` (a name or a Symbol) when dE/d``wrt`` can be derived: a
    parameter, an input, or a node other than the loss (whose result is the node's delta
    dE/dz_k, seed 002 §1.9); else :class:`NetworkError`."""
    return _resolve(net, wrt)


def _resolve(net: Network, wrt) -> sp.Symbol:
    symbol = net.symbol(wrt) if isinstance(wrt, str) else wrt
    if symbol == net.loss:
        raise NetworkError(f"{symbol} is the loss itself (d{symbol}/d{symbol} = 1): differentiate with respect to "
                           "a parameter, an input or another node", symbol)
    if symbol not in net.params and symbol not in net.inputs and symbol not in net.nodes:
        raise NetworkError(f"can only differentiate with respect to a parameter, an input or a node, not {symbol}",
                           symbol)
    return symbol
