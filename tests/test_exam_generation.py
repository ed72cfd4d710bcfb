"""How exam variants are drawn (issue 13): 100 variants of each bundled family, seeds fixed.

No item gives its answer away by being in the only ± pair, every multiple-choice item has
at least four options, no typical mistake lies within the grading tolerance of the answer
(except a structural coincidence, said so), no two variants are equal, every combination the
family allows appears, and the right option's letter is uniform (chi-square).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from pathlib import Path

import pytest

from symprop.documents.prose import mistake_sentence
from symprop.documents.variants import _printer
from symprop.exam import ExamError, _CircuitGenerator, _Generator, variant, variants
from symprop.spec import family_from_text, load_family

ROOT = Path(__file__).resolve().parent.parent
NETWORK = ROOT / "examples" / "exam_family.toml"
CIRCUIT = ROOT / "examples" / "exam_circuit_family.toml"
COUNT, SEED = 100, 2024


@pytest.fixture(scope="module", params=[NETWORK, CIRCUIT], ids=["network", "circuit"])
def drawn(request):
    fam = load_family(request.param)
    vs = variants(fam, COUNT, SEED)
    assert len(vs) == COUNT
    return fam, vs  # how long it takes is benchmarks/bench_exam.py's to measure


def items(vs):
    return [q for v in vs for q in v.questions]


def _negations(a: float, b: float) -> bool:
    return abs(a + b) <= 1e-9 * max(abs(a), abs(b)) and a != 0


def chi_square_p(counts: list[int]) -> float:
    """P(X >= chi-square) for uniform cells, df = len(counts) - 1 (closed forms for df 2..5)."""
    n, k = sum(counts), len(counts)
    x = sum((c - n / k) ** 2 / (n / k) for c in counts)
    df = k - 1
    if df % 2 == 0:
        return math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(df // 2))
    # odd df: Q(1/2, x/2) plus the series of half-integer terms
    q = math.erfc(math.sqrt(x / 2))
    term = math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    for i in range(1, (df + 1) // 2):
        q += term
        term *= x / (2 * i + 1)
    return q


def test_chi_square_helper():
    assert chi_square_p([20, 20, 20, 20, 20]) == pytest.approx(1.0)
    assert chi_square_p([40, 15, 15, 15, 15]) == pytest.approx(math.exp(-12.5) * (1 + 12.5), rel=1e-12)
    assert chi_square_p([30, 10, 30, 30]) == pytest.approx(0.00738, abs=1e-5)  # df 3, x = 12: tables give 0.0074


def test_no_answer_in_the_only_plus_minus_pair(drawn):
    fam, vs = drawn
    in_pair = expected = 0
    for q in items(vs):
        values = [o.value for o in q.options]
        pairs = [(i, j) for i, j in itertools.combinations(range(len(values)), 2) if _negations(values[i], values[j])]
        right = next(i for i, o in enumerate(q.options) if o.correct)
        assert not (pairs and all(right in p for p in pairs)), (q.question, values)
        members = {i for p in pairs for i in p}
        in_pair += right in members
        expected += len(members) / len(values)
    # "pick from a ± pair" gains nothing: the answer is in a pair as often as a random option
    assert abs(in_pair - expected) <= 0.1 * len(items(vs)), (in_pair, expected)


def test_every_item_has_at_least_four_options(drawn):
    fam, vs = drawn
    assert all(len(q.options) >= 4 for q in items(vs))
    assert all(sum(o.correct for o in q.options) == 1 for q in items(vs))


def test_no_listed_mistake_within_the_grading_tolerance(drawn):
    fam, vs = drawn
    assert fam.distinct >= fam.tolerance  # one notion: what Moodle accepts, options never are
    structural = 0
    for v in vs:
        for q in v.questions:
            for o in q.wrong_options:
                assert abs(o.value - q.answer) > fam.tolerance * abs(q.answer), (v.index, o.mistake.label)
                assert abs(o.value - q.answer) > fam.distinct * max(abs(o.value), abs(q.answer))
                assert o.mistake.label and o.mistake.kind
            for m, why, twin in q.dropped:
                if why == "right":  # left out only when no numbers could move it
                    assert m.coincides in ("unit-slope", "structural", "zero"), (v.index, m.label, m.coincides)
                    structural += 1
                else:
                    assert why == "option" and twin is not None or why == "undefined"
    print(f"structural coincidences listed: {structural}")


def test_a_structural_coincidence_is_said_so():
    fam = load_family(NETWORK)
    vs = variants(fam, COUNT, SEED)
    relu = [(v, m) for v in vs for m, why, _ in v.dropped if why == "right" and v.layers["hidden"] == "relu"]
    assert relu
    v, m = relu[0]
    assert m.coincides == "unit-slope"
    assert "= 1$ at the active unit" in mistake_sentence(m, v.network, _printer(v.network))
    assert any("the activation's derivative is 1 there" in n for n in v.notes)


def _signature(v):
    if hasattr(v, "expression"):
        return (v.expression, tuple(str(q.wrt) for q in v.questions), tuple(sorted((s.name, x) for s, x in v.values.items())))
    return (v.architecture, str(v.wrt), tuple(sorted((s.name, x) for s, x in v.samples[0].items())))


def test_no_two_variants_are_equal(drawn):
    fam, vs = drawn
    signatures = [_signature(v) for v in vs]
    assert len(set(signatures)) == len(signatures)


def test_every_combination_appears(drawn):
    fam, vs = drawn
    if fam.kind == "circuit":
        assert Counter(v.expression for v in vs).keys() == {text for text, _ in fam.circuits}
        return
    keys = ("sizes", "hidden", "output", "loss")
    allowed = set(itertools.product(*(fam.layered[k] for k in keys)))
    seen = Counter(tuple(v.layers[k] for k in keys) for v in vs)
    assert seen.keys() == allowed, allowed - seen.keys()
    assert ((2, 2, 1), "relu", "identity", "half_sse") in seen
    # and the weights of both layers are asked, identity output included
    layers = {(v.layers["output"], v.wrt.name[:3]) for v in vs}
    assert {("identity", "w_1"), ("identity", "w_2"), ("sigmoid", "w_1"), ("sigmoid", "w_2")} <= layers


def test_the_right_option_is_uniform(drawn):
    fam, vs = drawn
    by_count: dict = {}
    for q in items(vs):
        by_count.setdefault(len(q.options), []).append(next(i for i, o in enumerate(q.options) if o.correct))
    n, positions = max(by_count.items(), key=lambda kv: len(kv[1]))
    counts = [positions.count(i) for i in range(n)]
    assert chi_square_p(counts) > 0.01, counts


def test_variant_k_is_the_same_whatever_the_count():
    for path in (NETWORK, CIRCUIT):
        ten = variants(load_family(path), 10, SEED)
        hundred = variants(load_family(path), 30, SEED)[:10]
        alone = variant(load_family(path), SEED, 7)
        assert [_signature(v) for v in ten] == [_signature(v) for v in hundred]
        assert _signature(alone) == _signature(ten[6])
        assert [[o.value for o in q.options] for q in alone.questions] == [
            [o.value for o in q.options] for q in ten[6].questions]


SMALL = """
[family]
kind = "circuit"
expressions = ["(x + y)*z"]
variables = ["x", "y", "z"]
wrt = "z"
options = 3
[family.values]
x = {choices = [1, 2]}
y = 3
z = 2
"""


def test_a_small_family_warns_and_repeats_only_when_it_must():
    fam = family_from_text(SMALL, "small.toml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vs = variants(fam, 4, seed=1)
    messages = [str(w.message) for w in caught]
    assert any("at most 2 different variants, fewer than the 4" in m for m in messages), messages
    assert len({_signature(v) for v in vs[:2]}) == 2  # the first two differ: a repeat is redrawn
    assert all("\n" not in m for m in messages)


def test_a_combination_that_cannot_have_its_options_is_named():
    fam = family_from_text("""
[family]
wrt = ["b_2_*"]
options = 4
[family.layered]
sizes = [[1, 1, 1], [2, 2, 1]]
hidden = "relu"
output = ["identity", "sigmoid"]
""", "short.toml")
    with pytest.raises(ExamError, match=r"short.toml: combination 1-1-1, hidden relu, output identity, loss half_sse"):
        variants(fam, 3, seed=0)


def test_combinations_are_drawn_before_numbers():
    """A combination whose numbers are mostly rejected is drawn as often as the others."""
    fam = load_family(NETWORK)
    gen = _Generator(fam)
    assert len(gen.combinations) == 4 * 3 * 2  # sizes x hidden x output
    assert len(_CircuitGenerator(load_family(CIRCUIT)).combinations) == 4
