r"""Exam generator: seeded variants of a question family, wrong options from typical mistakes.

A *question family* (:class:`~symprop.spec.Family`, read by :func:`symprop.spec.load`) is a
network template (a layered family of MLPs, or a fixed graph whose generic activations take
turns), the weights that may be asked about and how the numbers are drawn. Every variant
is reproducible from ``(seed, variant index)`` alone: its random generator is
``numpy.random.Generator(PCG64([seed, index]))``, so variant 7 is the same whether 10 or 200
variants are written.

Each variant has one question, "compute dE/dw at the given values", its answer, and wrong
options, each a typical mistake's gradient (:mod:`symprop.mistakes`) at the same numbers.
A family with ``kind = "circuit"`` asks about a gate circuit (:mod:`symprop.gates`) instead:
one variable's gradient or, with ``wrt = "all"``, every wire's ("fill in the gradients").

Options are *distinct*: two values ``a``, ``b`` count as the same when
``|a - b| <= distinct * max(|a|, |b|)`` (``distinct`` defaults to 2 %, well above the
0.05 % that rounding to 4 significant digits can move a value). A mistake that coincides
with the right answer or with an option already chosen is dropped, and the variant says so.

>>> from symprop.spec import family_from_text
>>> fam = family_from_text('[family]\noptions = 2\n[family.layered]\nsizes = [1, 1, 1]\n', "demo.toml")
>>> v = variant(fam, 1, 1)
>>> v.question, len(v.options), v.correct_letter in "ABC"
('dE/dw_1_1_1', 3, True)
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import sympy as sp

from . import functions as fn
from . import limits
from .derive import derive
from .graph import Network, NetworkError
from .layered import mlp
from .mistakes import Mistake, circuit_mistake_gradient, circuit_mistakes, mistakes
from .numeric import Evaluator
from .spec import Family, value_rule

__all__ = [
    "variant_number", "ExamError", "Variant", "Option", "variant", "variants", "CircuitQuestion", "CircuitVariant", "KINK",
]


def variant_number(index: int) -> str:
    """Variant ``index`` as it is named in files and quizzes: four digits, so that variant 7
    is ``0007`` whether 10 or 5,000 variants are written (more would need five)."""
    return f"{index:04d}"

# An argument this close to the jump of a kinked function (relu, max, ...) is "at a kink".
KINK = 1e-9
# Gates whose local gradient is a switch (0 or 1): a zero gradient behind one of them is
# the lesson (max routes, relu blocks), not a degenerate variant.
_SWITCHES = ("max", "min", "relu")
_ROLES = {"inputs": "input", "targets": "target", "params": "param"}
_LAYERED_KEYS = ("sizes", "hidden", "output", "loss", "form", "reduction")


class ExamError(ValueError):
    """A family that cannot produce what was asked; one line naming the file and the problem."""


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
    layers: dict | None = None  # a layered family's choices: sizes, hidden, output, loss (names)

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


class _Clock:
    """The time budget of one variant's tries: a family whose condition cannot be met must
    end with a message, however large its max_tries."""

    def __init__(self, family, index):
        self.family, self.index = family, index
        self.deadline = time.monotonic() + limits.MAX_VARIANT_SECONDS

    def check(self, tries, reason):
        if time.monotonic() > self.deadline:
            raise ExamError(
                f"{self.family.file}: variant {self.index}: no acceptable variant in {limits.MAX_VARIANT_SECONDS:g} s "
                f"({tries - 1} tries; last: {reason}); widen the ranges, allow the case in [family] allow, "
                f"lower [family] options or raise the time ({limits.says('MAX_VARIANT_SECONDS')})")


class _Rejected(Exception):
    """A drawn variant is degenerate; the message says why."""


class _Generator:
    """Draws the variants of one family; networks and mistakes are cached by architecture."""

    def __init__(self, family: Family):
        self.family = family
        self._networks: dict = {}
        self._analysis: dict = {}

    # -- architecture

    def network(self, rng) -> tuple[Network, str, dict | None]:
        """A drawn network, its architecture as text, and a layered family's choices."""
        fam = self.family
        if fam.layered is not None:
            pick = {k: v[int(rng.integers(len(v)))] for k, v in fam.layered.items()}
            key = tuple(pick[k] for k in _LAYERED_KEYS)
            if key not in self._networks:
                functions = fam.functions
                output = pick["output"] if pick["output"] == "softmax" else fn.activation(pick["output"], functions)
                net = mlp(list(pick["sizes"]), fn.activation(pick["hidden"], functions), output, pick["loss"],
                          form=pick["form"], reduction=pick["reduction"])
                self._networks[key] = net
            text = "-".join(map(str, pick["sizes"])) + f", hidden {pick['hidden']}, output {pick['output']}, loss {pick['loss']}"
            return self._networks[key], text, {k: pick[k] for k in ("sizes", "hidden", "output", "loss")}
        pick = {g: v[int(rng.integers(len(v)))] for g, v in fam.activations.items()}
        key = tuple(sorted((g, a.name) for g, a in pick.items()))
        if key not in self._networks:
            self._networks[key] = _bind_network(fam.graph.network, pick)
        text = ", ".join(f"{g} = {a}" for g, a in key) or "fixed graph"
        return self._networks[key], text, None

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
            return value_rule("targets", [0.0, 1.0], self.family.decimals, None)
        return value_rule(role, [-1.0, 1.0], self.family.decimals, None)

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
        reason, clock = "", _Clock(fam, index)
        for tries in range(1, fam.max_tries + 1):
            clock.check(tries, reason)
            net, architecture, layers = self.network(rng)
            candidates = [p for p in net.params if any(fnmatch.fnmatchcase(p.name, pat) for pat in fam.wrt)]
            if not candidates:
                raise ExamError(f"{fam.file}: [family] wrt: no parameter of the network ({architecture}) "
                                f"matches {', '.join(fam.wrt)}")
            wrt = candidates[int(rng.integers(len(candidates)))]
            params = self.sample(net, rng, per_sample=False)
            samples = tuple({**self.sample(net, rng, per_sample=True), **params} for _ in range(fam.batch))
            try:
                return self._finish(rng, seed, index, net, wrt, (architecture, layers), samples, tries)
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
        text, layers = architecture
        return Variant(index, seed, net, wrt, text, samples, points, gradients, answer, options, tuple(dropped), tries,
                       layers)

    def _check(self, net, checks, ev, point):
        allow = self.family.allow
        for k, value in point.items():
            if k in net.nodes and not (value.is_Number and value.is_finite):
                raise _Rejected(f"{k} is undefined at the drawn values")
        for k, f in checks:
            args = [ev.value(a, point) for a in f.args]
            record = fn.record_of(f)
            if record is not None and record.kinked and "kink" not in allow and abs(args[0]) < KINK:
                raise _Rejected(f"{type(f).__name__} at its kink in {k} (argument 0)")
            if isinstance(f, (fn.maximum, fn.minimum)) and "tie" not in allow and abs(args[0] - args[1]) < KINK:
                raise _Rejected(f"a tie in {type(f).__name__} in {k}")
            if record is not None and record.activation and record.cls is not None and "saturated" not in allow:
                slope = ev.value(record.differentiate(f, 1), point)
                if not abs(slope) >= self.family.saturation:
                    raise _Rejected(f"{k} is saturated or dead ({record.name}' = {slope:.3g})")

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


def _bind_network(net: Network, pick: Mapping[str, fn.Primitive]) -> Network:
    """The network with each generic function replaced by the activation picked for it."""
    def concrete(expr):
        return expr.replace(
            lambda e: isinstance(e, fn.GenericFunction) and e.base_name in pick,
            lambda e: sp.diff(pick[e.base_name].build(_U), _U, e.order).xreplace({_U: e.args[0]}),
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
        return value_rule("variables", [-1.0, 1.0], self.family.decimals, None)

    def variant(self, seed: int, index: int) -> CircuitVariant:
        fam = self.family
        rng = np.random.Generator(np.random.PCG64([seed, index]))
        # the template is drawn once, so each is equally likely whatever its rejection rate
        text, circuit = fam.circuits[int(rng.integers(len(fam.circuits)))]
        reason, clock = "", _Clock(fam, index)
        for tries in range(1, fam.max_tries + 1):
            clock.check(tries, reason)
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
