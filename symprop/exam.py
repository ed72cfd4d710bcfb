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

How a variant is drawn:

* the *combination* first (a layered family's sizes, activations, loss, form and reduction;
  a graph family's bound activations; a circuit family's template), each equally likely,
  then the weight (variable) asked about; only the numbers are redrawn until the variant is
  acceptable, so no combination vanishes because its numbers are often rejected. Before
  drawing, :func:`variants` checks every combination: one whose questions cannot have
  enough wrong options is an :class:`ExamError` naming it; a weight that cannot is never
  asked, and a warning names it.
* numbers are rejected when a unit is saturated or dead, at a kink, at a tie, when the
  gradient vanishes, and when a typical mistake lands within ``distinct`` of the answer
  (``distinct`` is larger than Moodle's ``tolerance``: a mistake a grader would accept as
  right is never left in). A mistake that equals the answer *structurally*, for every
  number near the drawn ones (relu' = 1 on an active unit), cannot be redrawn away: it is
  left out, and the answer sheet says why.
* options come in ± pairs (:func:`_choose`): the answer with the sign error, the other
  mistakes each with the same mistake made together with the sign error; with an odd
  number of options one has no partner, and that one is the answer with probability
  1/(number of options). Picking from "the ± pair" gains nothing. The right option's
  letter is uniform.
* a variant equal to a lower-numbered one (same combination, question and numbers) is
  redrawn from ``PCG64([seed, index, j])``, j = 1, 2, ...; so variant 7 stays the same
  whether 10 or 200 variants are written. :func:`variants` warns when the family has
  fewer different variants than asked for.

Options are *distinct*: two values ``a``, ``b`` count as the same when
``|a - b| <= distinct * max(|a|, |b|)`` (``distinct`` defaults to 2 %, well above the
0.05 % that rounding to 4 significant digits can move a value). A mistake that gives the
value of an option already chosen is left out, and the variant says so.

>>> from symprop.spec import family_from_text
>>> fam = family_from_text('[family]\noptions = 2\n[family.layered]\nsizes = [1, 1, 1]\n', "demo.toml")
>>> v = variant(fam, 1, 1)
>>> v.question, len(v.options), v.correct_letter in "ABC"
('dE/dw_2_1_1', 3, True)
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import sympy as sp

from . import functions as fn
from . import limits
from .derive import derive
from .graph import Network, NetworkError
from .layered import mlp
from .mistakes import (
    Mistake, circuit_mistake_gradient, circuit_mistakes, circuit_with_sign_error, mistakes, with_sign_error,
)
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
        return _notes(self.dropped)

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


# Redraws of a variant that repeats a lower-numbered one, before the repeat is accepted.
MAX_REPEAT_REDRAWS = 50
_PROBE_SEED = 0x5EED  # probes use their own generators: they never move a variant's draw
# Relative size of the nudge that tells a structural coincidence (the mistake equals the
# answer for all numbers near the drawn ones) from a coincidence of the numbers.
_NUDGE = 1e-4


class _Base:
    """What network and circuit generators share: combinations drawn first, the numbers
    redrawn until acceptable, and variant k redrawn when it repeats a lower one."""

    def __init__(self, family: Family):
        self.family = family
        self._asked: dict = {}  # combination index -> the questions that can reach the options
        self._excluded: dict = {}  # combination index -> [(question, combination, why)] that cannot
        self._made: dict = {}  # seed -> variants 1..n drawn so far
        self._seen: dict = {}  # seed -> {signature: index}

    def variant(self, seed: int, index: int):
        made = self._made.setdefault(seed, [])
        seen = self._seen.setdefault(seed, {})
        while len(made) < index:
            v, sig = self._unique(seed, len(made) + 1, seen)
            seen.setdefault(sig, v.index)
            made.append(v)
        return made[index - 1]

    def _unique(self, seed, index, seen):
        """Variant ``index``: its own draw, redrawn (generator ``[seed, index, j]``) while it
        repeats a lower-numbered variant; so variant k is the same whatever the count."""
        for j in range(MAX_REPEAT_REDRAWS + 1):
            rng = np.random.Generator(np.random.PCG64([seed, index] + ([j] if j else [])))
            v = self.draw(rng, seed, index)
            sig = self.signature(v)
            if sig not in seen:
                return v, sig
        warnings.warn(f"{self.family.file}: variant {index} repeats variant {seen[sig]} "
                      f"(no other in {MAX_REPEAT_REDRAWS} redraws): the family has too few different variants")
        return v, sig

    def check(self):
        """Every combination the family allows can reach its options (an ExamError names
        the one that cannot; one warning line counts the questions never asked, as they
        cannot); returns how many different variants the family has at most."""
        space = sum(self.space(i) for i in range(len(self.combinations)))
        excluded = [x for i in range(len(self.combinations)) for x in self._excluded.get(i, ())]
        if excluded:
            total = excluded[0]
            count = len({c for _, c, _ in excluded})
            warnings.warn(f"{self.family.file}: {len(excluded)} questions in {count} of {len(self.combinations)} "
                          f"combinations are never asked, as they cannot have the options; first: {total[0]} in "
                          f"{total[1]} ({total[2]})")
        return space

    def asked(self, i):
        """The questions of combination ``i`` that can reach the required options, probed
        once (the same for every seed and count); a warning names those that cannot."""
        if i not in self._asked:
            self._asked[i] = self._probe_combination(i)
        return self._asked[i]

    def _fail(self, text, reason):
        fam = self.family
        raise ExamError(
            f"{fam.file}: combination {text}: no acceptable numbers in {fam.max_tries} probe draws (last: {reason}); "
            "widen the ranges, allow the case in [family] allow, lower [family] options"
            + (" or min_options" if fam.kind == "circuit" else "") + ", or remove the combination")


_COINCIDES = {
    "unit-slope": " for any numbers near these (the activation's derivative is 1 there: an active unit)",
    "structural": " for any numbers near these (not a coincidence of the numbers)",
    "zero": " (both are 0)",
    "numbers": " at these numbers",
}


def _notes(dropped) -> tuple[str, ...]:
    """One line of plain text per mistake left out, saying why."""
    lines = []
    for m, reason, twin in dropped:
        if reason == "right":
            why = "coincides with the right answer" + _COINCIDES.get(m.coincides, "")
        elif reason == "undefined":
            why = "not a finite number"
        else:
            why = "coincides with the option from " + twin.label
        lines.append(f"{m.label}: {why}, left out")
    return tuple(lines)


def _needed_simple(wanted: int) -> int:
    """Mistakes other than the sign error that ``wanted`` wrong options need: pairs of a
    mistake and its sign-error compound, and one more when the options are odd in number."""
    n = wanted + 1
    return n // 2 - 1 + n % 2 if wanted else 0


def _choose(rng, answer, valued, wanted: int, fewest: int, distinct: float, negate, structural):
    """The wrong options, ``wanted`` of them (at least ``fewest``), as (mistake, value) pairs,
    and the mistakes left out as (mistake, why, twin) triples.

    A mistake within ``distinct`` of the answer rejects the numbers (:class:`_Rejected`)
    unless ``structural(m)`` says why it equals the answer whatever the numbers: then it is
    left out, so said. The options pair up by sign: every value but at most one has its
    negation among the options. The answer is the one without a partner with probability
    1/(number of options) (when the count is odd), else paired with a mistake worth its
    negation (the sign error); the other pairs are a mistake and the same mistake made
    with the sign error (``negate(m)``). So "pick from the ± pair" gains nothing.
    """
    dropped, negations, simple = [], [], []
    for m, v in valued:
        if not math.isfinite(v):
            dropped.append((m, "undefined", None))
        elif _same(v, answer, distinct):
            why = "zero" if v == 0 and answer == 0 else structural(m)  # a zero answer (allowed): 0 stays 0
            if why is None and wanted == 0:  # a numerical question lists no mistakes
                why = "numbers"
            if why is None:
                raise _Rejected(f"{m.label} gives {v:.6g}, within {distinct:g} of the answer {answer:.6g}")
            dropped.append((replace(m, coincides=why), "right", None))
        elif _same(v, -answer, distinct):
            negations.append((m, v))
        else:
            simple.append((m, v))
    if wanted == 0:
        return [], dropped
    u = float(rng.random())
    negations = [negations[int(i)] for i in rng.permutation(len(negations))]
    order = [simple[int(i)] for i in rng.permutation(len(simple))]
    kinds = list(dict.fromkeys(m.kind for m, _ in order))
    first = [next(x for x in order if x[0].kind == k) for k in kinds]  # one per kind first
    order = first + [x for x in order if all(x is not f for f in first)]
    chosen = None
    for k in range(wanted, max(fewest, 1) - 1, -1):
        chosen = _paired(k, u, answer, negations, order, negate, distinct)
        if chosen is not None:
            break
    if chosen is None:
        raise _Rejected(f"only {len(simple)} distinct mistakes besides {len(negations)} sign errors, "
                        f"too few for {max(fewest, 1)} wrong options")
    used = [m for m, _ in chosen]
    for m, v in negations + order:
        if any(m is c for c in used):
            continue
        twin = next((c for c in chosen if _same(v, c[1], distinct)), None)
        if twin is not None:
            dropped.append((m, "option", twin[0]))
    return chosen, dropped


def _paired(k, u, answer, negations, order, negate, distinct):
    """``k`` wrong options in ± pairs (see :func:`_choose`), or None if too few mistakes."""
    n = k + 1
    pairs, odd = n // 2, n % 2
    alone = bool(odd) and u < 1 / n  # the answer is the option without a partner
    values, chosen = [answer], []

    def free(v):
        return all(not _same(v, w, distinct) for w in values)

    if not negations:  # no sign error to pair the answer with (a zero answer is its own negation)
        need_pairs, need_single = k // 2, k % 2
    elif alone:
        need_pairs, need_single = pairs, 0
    else:
        chosen.append(negations[0])
        values.append(negations[0][1])
        need_pairs, need_single = pairs - 1, odd
    for m, v in order:
        if not (need_pairs or need_single):
            break
        if not (free(v) and free(-v)) or _same(v, -v, distinct):
            continue
        if need_pairs:
            chosen += [(m, v), (negate(m), -v)]
            values += [v, -v]
            need_pairs -= 1
        else:
            chosen.append((m, v))
            values.append(v)
            need_single = False
    return None if need_pairs or need_single else chosen


def _nudged(values: dict) -> dict:
    """The numbers nudged by a relative and absolute ``_NUDGE`` (a fixed generator)."""
    rng = np.random.Generator(np.random.PCG64(_PROBE_SEED))
    out = {}
    for s in sorted(values, key=lambda s: s.name):
        a, b = rng.uniform(-1, 1, 2)
        out[s] = float(values[s]) * (1 + _NUDGE * a) + _NUDGE * b
    return out


def _equal(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300)


class _Generator(_Base):
    """Draws the variants of one family; networks and mistakes are cached by architecture."""

    def __init__(self, family: Family):
        super().__init__(family)
        self._networks: dict = {}
        self._analysis: dict = {}
        if family.layered is not None:
            keys = [k for k in _LAYERED_KEYS if k in family.layered]
            choices = itertools.product(*(family.layered[k] for k in keys))
        else:
            keys = list(family.activations)
            choices = itertools.product(*(family.activations[g] for g in keys))
        self.combinations = [dict(zip(keys, c)) for c in choices]

    # -- architecture

    def network(self, i) -> tuple[Network, str, dict | None]:
        """Combination ``i``'s network, its architecture as text, and a layered family's choices."""
        fam, pick = self.family, self.combinations[i]
        if fam.layered is not None:
            if i not in self._networks:
                functions = fam.functions
                output = pick["output"] if pick["output"] == "softmax" else fn.activation(pick["output"], functions)
                self._networks[i] = mlp(list(pick["sizes"]), fn.activation(pick["hidden"], functions), output,
                                        pick["loss"], form=pick["form"], reduction=pick["reduction"])
            text = "-".join(map(str, pick["sizes"])) + f", hidden {pick['hidden']}, output {pick['output']}, loss {pick['loss']}"
            return self._networks[i], text, {k: pick[k] for k in ("sizes", "hidden", "output", "loss")}
        if i not in self._networks:
            self._networks[i] = _bind_network(fam.graph.network, pick)
        key = sorted((g, a.name) for g, a in pick.items())
        text = ", ".join(f"{g} = {a}" for g, a in key) or "fixed graph"
        return self._networks[i], text, None

    def _described(self, i, text):
        """The combination as a message names it: the architecture, and form and reduction
        when the family varies them."""
        fam = self.family
        if fam.layered is None:
            return text
        extra = [f"{k} {self.combinations[i][k]}" for k in ("form", "reduction") if len(fam.layered.get(k, ())) > 1]
        return ", ".join([text] + extra)

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

    def _probe_combination(self, i):
        fam = self.family
        net, text, _ = self.network(i)
        candidates = [p for p in net.params if any(fnmatch.fnmatchcase(p.name, pat) for pat in fam.wrt)]
        if not candidates:
            raise ExamError(f"{fam.file}: [family] wrt: no parameter of the network ({text}) "
                            f"matches {', '.join(fam.wrt)}")
        ok, failed = [], []
        for j, w in enumerate(candidates):
            reason = self._probe(i, j, net, w)
            (ok if reason is None else failed).append((w, reason))
        if not ok:
            w, reason = failed[0]
            self._fail(self._described(i, text), f"d{net.loss}/d{w}: {reason}")
        self._excluded[i] = [(f"d{net.loss}/d{w}", self._described(i, text), reason) for w, reason in failed]
        return tuple(w for w, _ in ok)

    def _probe(self, i, j, net, wrt):
        """None if ``wrt`` has enough typical mistakes for the options, else the reason.
        (Numbers that make too many of them coincide are redrawn when the variant is drawn.)"""
        need = _needed_simple(self.family.options)
        others = {(m.kind, m.path, m.node) for m in self.analysis(net, wrt)[1] if m.kind != "sign"}
        if len(others) < need:
            return (f"{len(others)} typical mistakes besides the sign error, {need} needed for "
                    f"[family] options = {self.family.options}")
        return None

    def space(self, i) -> int:
        """At most how many different variants combination ``i`` gives."""
        net, _, _ = self.network(i)
        count = 1
        for s in net.inputs + net.targets:
            count *= self._choices(net, s) ** self.family.batch
        for s in net.params:
            count *= self._choices(net, s)
        return count * len(self.asked(i))

    def _choices(self, net, s) -> int:
        rule = self.rule(net, s)
        if rule[0] == "fixed":
            return 1
        if rule[0] == "one-hot":
            return max(1, len(net.targets))
        return len(rule[1])

    @staticmethod
    def signature(v):
        return (id(v.network), str(v.wrt), tuple(tuple(sorted((s.name, x) for s, x in d.items())) for d in v.samples))

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

    def draw(self, rng, seed: int, index: int) -> Variant:
        """The combination and the weight first (each combination equally likely, whatever
        its rejection rate), then numbers until they make an acceptable question."""
        fam = self.family
        i = int(rng.integers(len(self.combinations)))
        asked = self.asked(i)
        wrt = asked[int(rng.integers(len(asked)))]
        net, text, _ = self.network(i)
        reason, clock = "", _Clock(fam, index)
        for tries in range(1, fam.max_tries + 1):
            clock.check(tries, reason)
            try:
                return self._numbers(rng, i, net, wrt, seed, index, tries)
            except _Rejected as why:
                reason = str(why)
        raise ExamError(
            f"{fam.file}: variant {index}: no acceptable numbers for {self._described(i, text)} in {fam.max_tries} "
            f"tries (last: {reason}); widen the ranges, allow the case in [family] allow, lower [family] options "
            "or raise max_tries"
        )

    def _numbers(self, rng, i, net, wrt, seed, index, tries) -> Variant:
        fam = self.family
        params = self.sample(net, rng, per_sample=False)
        samples = tuple({**self.sample(net, rng, per_sample=True), **params} for _ in range(fam.batch))
        return self._finish(rng, seed, index, i, net, wrt, samples, tries)

    def _finish(self, rng, seed, index, i, net, wrt, samples, tries) -> Variant:
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

        def combined(m, pts):
            combine = _reducer("sum") if m.kind == "batch-sum" else reduce
            return combine([ev.value(m.expr, p) for p in pts])

        valued = [(m, combined(m, points)) for m in wrong]
        nudged = []

        def structural(m):
            if not nudged:
                nudged.append([ev.forward(_nudged(s)) for s in samples])
            pts = nudged[0]
            if not _equal(reduce([ev.value(right, p) for p in pts]), combined(m, pts)):
                return None
            if m.node is not None:
                f = net.nodes[m.node]
                slope = ev.value(fn.record_of(f).differentiate(f, 1), points[0])
                if slope == 1.0:
                    return "unit-slope"
            return "structural"

        chosen, dropped = _choose(rng, answer, valued, fam.options, fam.options, fam.distinct, with_sign_error,
                                  structural)
        order = rng.permutation(len(chosen) + 1)
        entries = [(answer, None)] + [(v, m) for m, v in chosen]
        options = tuple(
            Option(_letter(i), entries[j][0], entries[j][1]) for i, j in enumerate(int(o) for o in order)
        )
        _, text, layers = self.network(i)
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
    number of variants asked for (the variants below it are drawn too, since a repeat of
    one of them is redrawn)."""
    _check_seed(seed)
    if not isinstance(index, int) or index < 1:
        raise ExamError(f"a variant index counts from 1, not {index!r}")
    return _generator(family).variant(seed, index)


def variants(family: Family, n: int, seed: int) -> list[Variant] | list[CircuitVariant]:
    """Variants 1..n of ``family`` for ``seed``. Every combination the family allows is
    checked first (an ExamError names one that cannot reach its options); a warning says
    when the family has fewer different variants than ``n``."""
    _check_seed(seed)
    if n < 1:
        raise ExamError(f"the number of variants must be at least 1, not {n}")
    gen = _generator(family)
    space = gen.check()
    if space < n:
        warnings.warn(f"{family.file}: the family has at most {space} different variants, fewer than the {n} "
                      "asked for: some repeat")
    return [gen.variant(seed, i) for i in range(1, n + 1)]


_GENERATORS: dict = {}  # id(family) -> (family, generator): probes and drawn variants are reused


def _generator(family: Family):
    entry = _GENERATORS.get(id(family))
    if entry is None or entry[0] is not family:
        if len(_GENERATORS) >= 8:
            _GENERATORS.pop(next(iter(_GENERATORS)))
        entry = (family, _CircuitGenerator(family) if family.kind == "circuit" else _Generator(family))
        _GENERATORS[id(family)] = entry
    return entry[1]


def _check_seed(seed):
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ExamError(f"the seed must be a non-negative integer, not {seed!r}")


# -- gate circuits ------------------------------------------------------------------------------

class _Answered:
    """What a question with options offers: the right letter, the wrong options, the notes."""

    @property
    def notes(self) -> tuple[str, ...]:
        """One line of plain text per dropped mistake."""
        return _notes(self.dropped)

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


class _CircuitGenerator(_Base):
    """Draws the variants of a circuit family; mistakes are cached per (circuit, variable)."""

    def __init__(self, family: Family):
        super().__init__(family)
        self._mistakes: dict = {}
        self.combinations = list(family.circuits)

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

    def _probe_combination(self, i):
        """The questions of template ``i`` that can be asked: with ``wrt = "all"`` one, every
        variable together; else each matching variable on its own."""
        fam = self.family
        text, circuit = self.combinations[i]
        if fam.all_gradients:
            groups = [circuit.variables]
        else:
            groups = [(s,) for s in circuit.variables if any(fnmatch.fnmatchcase(s.name, p) for p in fam.wrt)]
        ok, failed = [], []
        for j, asked in enumerate(groups):
            reason = self._probe(i, j, circuit, asked)
            (ok if reason is None else failed).append((asked, reason))
        if not ok:
            self._fail(repr(text), failed[0][1])
        self._excluded[i] = [(f"d{circuit.output}/d{a[0]}", repr(text), reason) for a, reason in failed]
        return tuple(a for a, _ in ok)

    def _probe(self, i, j, circuit, asked):
        need = max(_needed_simple(self.family.min_options), 0)
        for x in asked:
            others = [m for m in self.mistakes(circuit, x) if m.kind != "sign" or m.gate is not None]
            if len(others) < need:
                return (f"d{circuit.output}/d{x}: {len(others)} typical mistakes besides the sign error, "
                        f"{need} needed for [family] min_options = {self.family.min_options}")
        rng = np.random.Generator(np.random.PCG64([_PROBE_SEED, i, j]))
        text = self.combinations[i][0]
        reason = ""
        for _ in range(self.family.max_tries):  # a circuit's draw is cheap: as many as a variant gets
            try:
                self._finish(rng, 0, 0, text, circuit, asked, self._values(rng, circuit), 1)
                return None
            except _Rejected as why:
                reason = str(why)
        return reason

    def space(self, i) -> int:
        _, circuit = self.combinations[i]
        count = 1
        for s in circuit.variables:
            rule = self.rule(s)
            count *= 1 if rule[0] == "fixed" else len(rule[1])
        return count * len(self.asked(i))

    @staticmethod
    def signature(v):
        return (v.expression, tuple(str(q.wrt) for q in v.questions),
                tuple(sorted((s.name, x) for s, x in v.values.items())))

    def _values(self, rng, circuit):
        values = {}
        for s in circuit.variables:
            rule = self.rule(s)
            values[s] = rule[1] if rule[0] == "fixed" else rule[1][int(rng.integers(len(rule[1])))]
        return values

    def draw(self, rng, seed: int, index: int) -> CircuitVariant:
        """The template and the question first (each template equally likely, whatever its
        rejection rate), then numbers until they make an acceptable variant."""
        fam = self.family
        i = int(rng.integers(len(self.combinations)))
        text, circuit = self.combinations[i]
        groups = self.asked(i)
        asked = groups[int(rng.integers(len(groups)))]
        reason, clock = "", _Clock(fam, index)
        for tries in range(1, fam.max_tries + 1):
            clock.check(tries, reason)
            try:
                return self._finish(rng, seed, index, text, circuit, asked, self._values(rng, circuit), tries)
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
        nudged = []
        questions = []
        for x in asked:
            answer = flow.deltas[x]
            valued = [(m, circuit_mistake_gradient(flow, m, x)) for m in self.mistakes(circuit, x)]

            def structural(m, x=x):
                if not nudged:
                    try:
                        nudged.append(circuit.evaluate(_nudged(values)))
                    except NetworkError:
                        nudged.append(None)
                other = nudged[0]
                if other is None or not _equal(other.deltas[x], circuit_mistake_gradient(other, m, x)):
                    return None
                return "structural"

            chosen, dropped = _choose(rng, answer, valued, fam.options, fam.min_options, fam.distinct,
                                      circuit_with_sign_error, structural)
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
