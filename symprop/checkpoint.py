r"""Checkpointed backpropagation for layered networks (Chen et al. 2016, "Training deep nets
with sublinear memory cost").

Backprop keeps every layer's forward values, z^l and a^l, for the backward pass (seed 003:
"to compute the derivatives, you need to store all a^l(x_i)"): 2 (n_1 + ... + n_L) N numbers
for a batch of N. Checkpointing keeps only every K-th layer's values, the *checkpoints*
c = K, 2K, ... below L (and the input a^0 = x), and recomputes the others when the backward
pass needs them, one segment at a time:

- the forward pass runs as usual, but drops the values of a layer that is neither a
  checkpoint nor in the last segment once the next layer has used them;
- the backward step of layer l (dE/dW^l = δ^l (a^(l-1))^T, δ^(l-1) = f'(z^(l-1)) ⊙
  (W^l)^T δ^l) needs layer l-1's values, so the backward steps of layers c_(j+1) .. c_j + 1
  need layers c_j .. c_(j+1) - 1: the segment from checkpoint c_j. Before them, layers
  c_j + 1 .. c_(j+1) - 1 are recomputed from a^(c_j), and dropped after;
- the last segment (from the last checkpoint to L) is still held when the forward pass ends,
  so it is used as it is, not recomputed.

With L layers of width n, at most about 2 (L/K + K) n N numbers are held instead of 2 L n N,
for L - K extra layer evaluations at most (less than one more forward pass); K = √L (``"sqrt"``)
makes it O(√L). K = 1 stores every layer (plain backprop), as does any K ≥ L. The gradient
is the same to the last bit: the same compiled steps run on the same numbers.

>>> from symprop.matrix import derive_matrix
>>> d = derive_matrix([3] + [4] * 7 + [2], hidden="tanh", output="identity", loss="half_sse")
>>> plan = checkpoint_plan(d.depth, 3)
>>> plan.checkpoints, plan.recomputed
((3, 6), (1, 2, 4, 5))
>>> result = checkpointed_gradient(d, d.random_values(batch=2, seed=0), 3)
>>> result.stored_values, result.plain_stored_values
(56, 120)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .graph import NetworkError
from .matrix import LayeredValues, MatrixDerivation, MatrixGradient

__all__ = ["CheckpointPlan", "CheckpointedGradient", "checkpoint_plan", "checkpoint_every", "checkpointed_gradient",
           "stored_values_of"]


def checkpoint_every(depth: int, every) -> int:
    """The K of ``--checkpoints``: an integer of at least 1, or ``"sqrt"`` for ⌈√L⌉.

    >>> checkpoint_every(20, "sqrt"), checkpoint_every(20, 4)
    (5, 4)
    """
    if every == "sqrt":
        return max(1, math.ceil(math.sqrt(depth)))
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise NetworkError(f"--checkpoints takes a positive integer K or 'sqrt', not {every!r}")
    return every


@dataclass(frozen=True)
class CheckpointPlan:
    """Which layers a checkpointed backward pass stores and which it recomputes.

    ``checkpoints`` are the layers c = K, 2K, ... < L whose z^c, a^c stay in memory;
    ``segments`` the layer ranges ``(c_j, c_(j+1))`` the backward pass works through (each
    needs layers c_j .. c_(j+1) - 1, from the top one down); ``recomputed`` the layers whose
    values are computed a second time (those of every segment but the last, checkpoints
    excepted)."""

    depth: int
    every: int
    checkpoints: tuple[int, ...]
    segments: tuple[tuple[int, int], ...]
    recomputed: tuple[int, ...]

    @property
    def kept(self) -> tuple[int, ...]:
        """The layers whose forward values survive the forward pass: the checkpoints, the
        last segment and the output layer."""
        last = self.segments[-1][0]
        return tuple(sorted(set(self.checkpoints) | set(range(last + 1, self.depth + 1))))


def checkpoint_plan(depth: int, every) -> CheckpointPlan:
    """The plan for a network of ``depth`` layers with a checkpoint every ``every`` layers
    (an integer, or ``"sqrt"``).

    >>> checkpoint_plan(10, 4)
    CheckpointPlan(depth=10, every=4, checkpoints=(4, 8), segments=((0, 4), (4, 8), (8, 10)), recomputed=(1, 2, 3, 5, 6, 7))
    """
    k = checkpoint_every(depth, every)
    checkpoints = tuple(range(k, depth, k))
    bounds = (0, *checkpoints, depth)
    segments = tuple(zip(bounds, bounds[1:]))
    recomputed = tuple(l for start, end in segments[:-1] for l in range(start + 1, end))
    return CheckpointPlan(depth, k, checkpoints, segments, recomputed)


def stored_values_of(plan: CheckpointPlan, layer_values) -> int:
    """The forward numbers a checkpointed backward pass holds at once at the fullest, from
    the plan alone: ``layer_values[l-1]`` is layer l's count (z^l and a^l). At the end of the
    forward pass it holds the kept layers; while it recomputes segment (c_j, c_(j+1)), the
    checkpoints up to c_j and that segment's layers. (:func:`checkpointed_gradient` counts
    what it really holds; the tests check that the two agree.)

    >>> stored_values_of(checkpoint_plan(8, 3), [16] * 7 + [8])
    56
    """
    held = [sum(layer_values[l - 1] for l in plan.kept)]
    for start, end in plan.segments[:-1]:
        held.append(sum(layer_values[c - 1] for c in plan.checkpoints if c <= start)
                    + sum(layer_values[l - 1] for l in range(start + 1, end)))
    return max(held)


@dataclass
class CheckpointedGradient:
    """The gradient of a checkpointed backward pass (its ``deltas`` and forward values are not
    kept: ``gradient.deltas`` is empty), with what it cost: ``stored_values``
    the forward numbers (entries of z^l and a^l, l ≥ 1) held at once at the fullest (the end
    of the forward pass, or a segment recomputed during the backward pass),
    ``plain_stored_values`` those plain backprop holds, ``recomputed_layers`` the layers
    evaluated twice, ``plan`` the plan."""

    gradient: MatrixGradient
    plan: CheckpointPlan
    stored_values: int
    plain_stored_values: int
    recomputed_layers: tuple[int, ...]
    layer_values: tuple[int, ...]  # forward numbers of layer l (z^l and a^l), index l - 1

    @property
    def extra_layer_evaluations(self) -> int:
        return len(self.recomputed_layers)


def checkpointed_gradient(d: MatrixDerivation, values: LayeredValues, every) -> CheckpointedGradient:
    """:meth:`MatrixDerivation.gradient`, storing only every ``every``-th layer's forward
    values (an integer K, or ``"sqrt"``) and recomputing the rest segment by segment.

    Runs the derivation's own compiled steps, so the gradient is the one ``grad`` gives;
    where it is not finite, the plain gradient's error says why."""
    if d.generics:
        d.gradient(values)  # raises: a generic activation has no numbers until it is bound
    plan = checkpoint_plan(d.depth, every)
    forward, backward, results = d.compiled_program
    L = d.depth
    layer_keys = [(forward[2 * (l - 1)], forward[2 * l - 1]) for l in range(1, L + 1)]  # (Z^l, A^l) steps
    env = d.environment(values)
    held: set[int] = set()  # layers whose Z^l, A^l are in env
    layer_values = tuple(2 * n * values.x.shape[1] for n in d.sizes[1:])

    def compute(l):
        for key, f in layer_keys[l - 1]:
            env[key] = f(env)
        held.add(l)

    def drop(l):
        for key, _ in layer_keys[l - 1]:
            env.pop(key, None)
        held.discard(l)

    def holding():
        return sum(layer_values[l - 1] for l in held)

    kept = set(plan.kept)
    for l in range(1, L + 1):  # the forward pass, dropping what the backward pass will recompute
        compute(l)
        if l - 1 >= 1 and l - 1 not in kept:
            drop(l - 1)
    if L not in kept:  # (never: the output layer is always kept)
        raise AssertionError("the output layer is dropped")
    peak = holding()
    loss = d.loss_from(env)

    # backward: Δ^L, then per layer l = L..1 the steps dE/dW^l, dE/db^l, Δ^(l-1)
    groups, position = {}, 1
    for l in range(L, 0, -1):
        size = 3 if l > 1 else 2
        groups[l] = backward[position:position + size]
        position += size
    delta_keys = results[2]
    key, f = backward[0]
    env[key] = f(env)
    for index, (start, end) in reversed(list(enumerate(plan.segments))):
        last = index == len(plan.segments) - 1
        if not last:
            for l in range(start + 1, end):
                compute(l)
            peak = max(peak, holding())
        for l in range(end, start, -1):
            for key, f in groups[l]:
                env[key] = f(env)
            env.pop(delta_keys[l - 1])  # Δ^l has given dE/dW^l and Δ^(l-1): not kept either
        for l in range(max(start, 1), end + 1):  # done: Δ^start is known, so this segment's values go
            drop(l)
    dW, db = ([env[k] for k in keys] for keys in results[:2])
    if not (math.isfinite(loss) and all(np.all(np.isfinite(g)) for g in (*dW, *db))):
        d.gradient(values)  # raises, naming the quantity at fault
    activations = [values.x]  # the forward values and the deltas were dropped on the way: not returned
    gradient = MatrixGradient(loss, dW, db, [], activations)
    return CheckpointedGradient(gradient, plan, peak, sum(layer_values), plan.recomputed, layer_values)
