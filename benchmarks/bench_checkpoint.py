"""Memory and time of checkpointed backprop against K, for a deep layered network.

    python benchmarks/bench_checkpoint.py [--layers 32] [--width 128] [--batch 512] [--repeats 5]

On one deep network (``--layers`` tanh layers of ``--width`` units, softmax + cross-entropy),
for K = 1, 2, 4, ⌈√L⌉, 8, L (a checkpoint every K layers; K = 1 and K = L are plain
backprop), it prints:

- the forward numbers held at once at the fullest (``stored_values``, counted by the run)
  and as MiB of float64;
- the peak of memory allocated during the call, measured with ``tracemalloc`` (NumPy
  reports its arrays to it), relative to plain backprop (``d.gradient``) measured the same way;
- the median time of the call, relative to plain backprop timed in the same rounds;
- the layers recomputed (extra layer evaluations).

It checks first that every K gives plain backprop's gradient.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symprop.checkpoint import checkpointed_gradient  # noqa: E402
from symprop.matrix import derive_matrix  # noqa: E402


def peak_bytes(f) -> int:
    """The peak of memory allocated while ``f`` runs, above what was allocated before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    f()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    L = args.layers
    sizes = [args.width] * L + [10]
    d = derive_matrix(sizes, hidden="tanh", output="softmax", loss="cross_entropy", reduction="mean")
    values = d.random_values(batch=args.batch, seed=0)
    plain = d.gradient(values)
    ks = sorted({1, 2, 4, math.ceil(math.sqrt(L)), 8, L})
    for k in ks:
        result = checkpointed_gradient(d, values, k)
        worst = max(np.abs(a - b).max() for a, b in zip(result.gradient.dW + result.gradient.db, plain.dW + plain.db))
        assert worst <= 1e-12, (k, worst)
    plain_peak = peak_bytes(lambda: d.gradient(values))
    print(f"{L} tanh layers of {args.width} units, softmax output, batch {args.batch}; "
          f"plain backprop: peak {plain_peak / 2**20:.1f} MiB (tracemalloc)")
    print(f"{'K':>4} {'stored values':>14} {'MiB':>7} {'peak MiB':>9} {'peak/plain':>11} {'time ms':>8} "
          f"{'time/plain':>11} {'recomputed':>11}")
    for k in ks:
        result = checkpointed_gradient(d, values, k)
        peak = peak_bytes(lambda: checkpointed_gradient(d, values, k))
        ratios, times = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            d.gradient(values)
            t1 = time.perf_counter()
            checkpointed_gradient(d, values, k)
            t2 = time.perf_counter()
            times.append(t2 - t1)
            ratios.append((t2 - t1) / (t1 - t0))
        print(f"{k:>4} {result.stored_values:>14,} {result.stored_values * 8 / 2**20:>7.1f} {peak / 2**20:>9.1f} "
              f"{peak / plain_peak:>11.2f} {statistics.median(times) * 1e3:>8.1f} {statistics.median(ratios):>11.2f} "
              f"{len(result.recomputed_layers):>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
