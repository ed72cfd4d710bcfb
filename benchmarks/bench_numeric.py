"""Speed of the scalar form's lambdified gradient: against its own forward pass, hand-written
NumPy backprop and central finite differences.

    .venv/bin/python benchmarks/bench_numeric.py            # 8-8-8, 64-32-10 and 784-128-10
    .venv/bin/python benchmarks/bench_numeric.py --quick    # the two small sizes only

For a sigmoid/softmax MLP with cross-entropy averaged over a batch of 256 (one scalar
symbol per weight, :func:`symprop.mlp`), it times in one run, on the same random weights
and data (:func:`symprop.matrix.random_layered`):

- compile: building the network and lambdifying its forward and backward programs (once);
- forward: the loss alone, the forward pass as ``check`` runs it for finite differences;
- gradient: forward values, every delta and every dE/dw (:func:`symprop.numeric.gradient`
  without the conversion of the input dict);
- numpy: the same backprop written by hand in NumPy matrix code (the baseline);
- finite differences: two forward passes per parameter, timed on a sample of parameters
  and extrapolated to all of them.

and prints medians and the ratios gradient/forward (target: at most 3), finite
differences/gradient (it grows with the parameter count: P+1 forward passes against two,
seed 004) and gradient/numpy (the gap that the matrix form, bench_matrix.py, closes).
Ratios are taken within rounds (one call of each per round), so a busy machine slows
all alike. The script checks that the gradient agrees with the NumPy baseline first.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from bench_matrix import interleaved, numpy_backprop  # noqa: E402  (sets the BLAS threads first)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symprop import mlp  # noqa: E402
from symprop.matrix import random_layered, scalar_values  # noqa: E402
from symprop.numeric import _gradient, _loss, _point, _program  # noqa: E402

SIZES = [(8, 8, 8), (64, 32, 10), (784, 128, 10)]
BATCH = 256
FD_SAMPLE = 12  # parameters whose central differences are timed, then extrapolated


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def central_difference(program, leaves, m, p, h=1e-6):
    plus = _loss(program, {**leaves, p: leaves[p] + h}, m)
    minus = _loss(program, {**leaves, p: leaves[p] - h}, m)
    return (plus - minus) / (2 * h)


def bench(sizes, repeats):
    values = random_layered(sizes, BATCH, seed=0, targets="onehot")

    def compile_():
        net = mlp(sizes, hidden="sigmoid", output="softmax", loss="cross_entropy", reduction="mean")
        return net, _program(net)

    (net, program), compile_time = timed(compile_)
    point = _point(net, scalar_values(values))
    leaves, m = point.leaves, point.m

    ours = _gradient(program, point)
    loss, dW, db = numpy_backprop(values.weights, values.biases, values.x, values.y)
    assert abs(ours.loss - loss) <= 1e-10 * max(1.0, abs(loss)), (ours.loss, loss)
    w = net.symbol("w_1_1_1")
    assert np.isclose(ours.gradient[w], dW[0][0, 0], rtol=1e-9, atol=1e-13)

    sample = random.Random(0).sample(net.params, min(FD_SAMPLE, len(net.params)))
    medians, ratios = interleaved({
        "gradient": lambda: _gradient(program, point),
        "forward": lambda: _loss(program, leaves, m),
        "numpy": lambda: numpy_backprop(values.weights, values.biases, values.x, values.y),
        "fd sample": lambda: [central_difference(program, leaves, m, p) for p in sample],
    }, repeats)
    scale = len(net.params) / len(sample)  # extrapolate the sample to every parameter
    return {
        "params": len(net.params),
        "compile": compile_time,
        "gradient": medians["gradient"],
        "forward": medians["forward"],
        "numpy": medians["numpy"],
        "fd": medians["fd sample"] * scale,
        # interleaved gives the ratios of the first function (the gradient) to each
        "gradient/forward": ratios["forward"],
        "fd/gradient": scale / ratios["fd sample"],
        "gradient/numpy": ratios["numpy"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two small sizes only")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per size (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for the NumPy baseline (default 1)")
    args = parser.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    print(f"sigmoid/softmax MLP, mean cross-entropy over a batch of {BATCH}; median of {args.repeats} rounds")
    print(f"{'network':>11} {'params':>8} {'compile':>8} {'forward':>9} {'gradient':>9} {'numpy':>9} {'fd (extr.)':>11}"
          f" {'grad/fwd':>9} {'fd/grad':>9} {'grad/numpy':>11}")
    for size in sizes:
        repeats = args.repeats if size[0] < 500 else max(3, args.repeats // 2)
        r = bench(size, repeats)
        print(f"{'-'.join(map(str, size)):>11} {r['params']:>8,} {r['compile']:>7.1f}s {r['forward'] * 1e3:>7.1f}ms"
              f" {r['gradient'] * 1e3:>7.1f}ms {r['numpy'] * 1e3:>7.2f}ms {r['fd']:>10.2f}s"
              f" {r['gradient/forward']:>9.2f} {r['fd/gradient']:>9.0f} {r['gradient/numpy']:>11.1f}")
    print(f"numpy {np.__version__}; finite differences extrapolated from {FD_SAMPLE} parameters")


if __name__ == "__main__":
    main()
