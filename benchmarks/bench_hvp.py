"""Speed of the matrix form's Hessian-vector product against its own gradient.

    python benchmarks/bench_hvp.py [--repeats 9] [--batch 64] [--threads 1]

For layered networks up to 784-128-10 (sigmoid hidden layers, softmax + cross-entropy
averaged over the batch), it times in one run, on the same random weights, data and direction:

- grad: ``MatrixDerivation.gradient`` (one forward and one backward pass);
- hvp: ``MatrixHvpDerivation.hvp`` (the gradient, then the R forward and R backward passes),

in rounds (one call of each per round, the ratio taken within a round, so that a busy machine
slows both alike), and prints the median times, the median ratio hvp/grad and the ratio of the best times (the
least disturbed by a busy machine). The theory
(Pearlmutter 1994) says about 2 to 4: the R passes cost one to three gradients more. Before
timing, it checks that H v equals the central difference of the gradient along v.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def _threads_from_argv(argv) -> int:
    # BLAS reads its thread count when NumPy is first imported, so this runs before it
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symprop.matrix import LayeredValues, derive_matrix  # noqa: E402
from symprop.matrix_hvp import derive_hvp, random_direction  # noqa: E402

SIZES = [(64, 32, 10), (256, 64, 10), (784, 128, 10), (784, 128, 64, 10)]
SETUP = dict(hidden="sigmoid", output="softmax", loss="cross_entropy", reduction="mean")


def _shifted(values, direction, eps):
    return LayeredValues([w + eps * v for w, v in zip(values.weights, direction.weights)],
                         [b + eps * v for b, v in zip(values.biases, direction.biases)], values.x, values.y)


def check(d, h, values, direction, eps=1e-5) -> float:
    """The largest |H v - central difference| relative to max |H v|."""
    hv = h.hvp(values, direction).named()
    plus = d.gradient(_shifted(values, direction, eps)).named()
    minus = d.gradient(_shifted(values, direction, -eps)).named()
    scale = max(np.abs(g).max() for g in hv.values())
    return max(np.abs(hv[k] - (plus[k] - minus[k]) / (2 * eps)).max() for k in hv) / scale


def rounds(grad, hvp, repeats):
    times = {"grad": [], "hvp": []}
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        grad()
        t1 = time.perf_counter()
        hvp()
        t2 = time.perf_counter()
        times["grad"].append(t1 - t0)
        times["hvp"].append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
    best = min(times["hvp"]) / min(times["grad"])  # the least disturbed by a busy machine
    return statistics.median(times["grad"]), statistics.median(times["hvp"]), statistics.median(ratios), best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=THREADS, help="BLAS threads (default 1)")
    args = parser.parse_args(argv)
    print(f"batch {args.batch}, {args.threads} BLAS thread(s), median of {args.repeats} rounds")
    print(f"{'sizes':<18} {'params':>8} {'check':>9} {'grad ms':>9} {'hvp ms':>9} {'hvp/grad':>9} {'best/best':>10}")
    for sizes in SIZES:
        d = derive_matrix(list(sizes), **SETUP)
        h = derive_hvp(d)
        values = d.random_values(batch=args.batch, seed=0)
        direction = random_direction(list(sizes), seed=1)
        error = check(d, h, values, direction)
        grad_s, hvp_s, ratio, best = rounds(lambda: d.gradient(values), lambda: h.hvp(values, direction), args.repeats)
        params = sum(n * (m + 1) for m, n in zip(sizes, sizes[1:]))
        print(f"{'-'.join(map(str, sizes)):<18} {params:>8,} {error:>9.1e} {grad_s * 1e3:>9.2f} {hvp_s * 1e3:>9.2f} "
              f"{ratio:>9.2f} {best:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
