"""Speed of the matrix form's gradient against hand-written NumPy and PyTorch CPU autograd.

    python benchmarks/bench_matrix.py [--repeats 15] [--dtype float64|float32] [--threads 1] [--quick]

For 784-128-10 at batch 256 and seed 004's 150528-100-10 (224x224x3 inputs) at batch 64,
sigmoid hidden layer, softmax + cross-entropy averaged over the batch (seed 004), it times
in one run, on the same random weights and data (symprop.matrix.random_layered):

- matrix: ``MatrixDerivation.gradient`` -- the derived batch steps compiled to NumPy;
- numpy: the same backprop written by hand in NumPy (the baseline);
- torch: PyTorch CPU autograd, when torch is installed (optional; never a dependency).

and prints the median of several repeats of each and the median ratios matrix/numpy
(target: at most 1.2) and matrix/torch (target: at most 1), timed in rounds (one call of
each per round, the ratio taken within a round) so that a busy machine slows all alike. All three compute the loss and every
dE/dW, dE/db; the script checks that they agree before timing. It also times the
derivation itself for several widths: with symbolic dimensions it should not depend on them.
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

from symprop.matrix import derive_matrix  # noqa: E402

CASES = [((784, 128, 10), 256), ((150528, 100, 10), 64)]
SETUP = dict(hidden="sigmoid", output="softmax", loss="cross_entropy", reduction="mean")


def median_time(f, repeats):
    return interleaved({"f": f}, repeats)[0]["f"]


def interleaved(functions, repeats):
    """Median times of each function, and median ratios of each to the first, timed in
    rounds (one call of each per round) so that a busy machine slows them alike."""
    for f in functions.values():
        f()  # warm up: first touch of memory, BLAS threads
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, f in functions.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    first = next(iter(times.values()))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(first, t)) for name, t in times.items()}
    return medians, ratios


# -- the baselines ------------------------------------------------------------------------

def _sigmoid(z):
    with np.errstate(over="ignore"):  # exp(-z) = inf gives the right limit, 0
        return 1 / (1 + np.exp(-z))


def numpy_backprop(weights, biases, x, y):
    """Hand-written backprop: sigmoid hidden layers, softmax + mean cross-entropy."""
    n = x.shape[1]
    activations, a = [x], x
    for W, b in zip(weights[:-1], biases[:-1]):
        a = _sigmoid(W @ a + b)
        activations.append(a)
    z = weights[-1] @ a + biases[-1]
    top = z.max(axis=0, keepdims=True)
    e = np.exp(z - top)
    total = e.sum(axis=0, keepdims=True)
    loss = -float(np.sum(y * (z - top - np.log(total)))) / n
    delta = (e / total - y) / n
    dW, db = [], []
    for l in range(len(weights) - 1, -1, -1):
        dW.append(delta @ activations[l].T)
        db.append(delta.sum(axis=1, keepdims=True))
        if l:
            a = activations[l]
            delta = (weights[l].T @ delta) * (a * (1 - a))
    return loss, dW[::-1], db[::-1]


def torch_setup(values):
    import torch

    torch.set_num_threads(THREADS)
    params = [torch.tensor(p, requires_grad=True) for pair in zip(values.weights, values.biases) for p in pair]
    x, y = torch.from_numpy(values.x), torch.from_numpy(values.y)

    def run():
        for p in params:
            p.grad = None
        a = x
        for i in range(0, len(params) - 2, 2):
            a = torch.sigmoid(params[i] @ a + params[i + 1])
        z = params[-2] @ a + params[-1]
        loss = -(y * torch.log_softmax(z, dim=0)).sum() / x.shape[1]
        loss.backward()
        return float(loss.detach()), [p.grad for p in params[0::2]], [p.grad for p in params[1::2]]

    return run, torch


# -- the run ------------------------------------------------------------------------------

def bench_case(sizes, batch, repeats, dtype):
    d = derive_matrix(sizes, **SETUP)
    values = d.random_values(batch=batch, seed=0, dtype=dtype)
    ours = d.gradient(values)
    loss, dW, db = numpy_backprop(values.weights, values.biases, values.x, values.y)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert abs(ours.loss - loss) <= tol * max(1, abs(loss))
    for a, b in zip(ours.dW + ours.db, dW + db):
        assert a.dtype == dtype and np.allclose(a, b, rtol=tol, atol=tol * 1e-2)
    functions = {
        "matrix": lambda: d.gradient(values),
        "numpy": lambda: numpy_backprop(values.weights, values.biases, values.x, values.y),
    }
    try:
        run, torch = torch_setup(values)
    except (ImportError, OSError):  # not installed, or an install that cannot load its libraries
        torch = None
    if torch is not None:
        t_loss, t_dW, t_db = run()
        assert abs(t_loss - loss) <= tol * 10 * max(1, abs(loss))
        for a, b in zip(t_dW + t_db, dW + db):
            assert np.allclose(a.numpy(), b, rtol=tol * 10, atol=tol * 1e-1)
        functions["torch"] = run
    return interleaved(functions, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per measurement (median reported)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--quick", action="store_true", help="784-128-10 only, 5 repeats")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and torch threads for all three (default 1: steady timings on a shared machine)")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type
    cases = CASES[:1] if args.quick else CASES
    repeats = min(5, args.repeats) if args.quick else args.repeats

    print(f"gradient of loss and every dE/dW, dE/db ({args.dtype}, {THREADS} thread(s)); median of {repeats} runs")
    print(f"{'network':>16} {'batch':>5} {'matrix':>10} {'numpy':>10} {'torch':>10} {'matrix/numpy':>13} {'matrix/torch':>13}")
    for sizes, batch in cases:
        r, ratio = bench_case(sizes, batch, repeats if sizes[0] < 10_000 else max(3, repeats // 3), dtype)
        torch_time = r.get("torch")
        print(f"{'-'.join(map(str, sizes)):>16} {batch:>5} {r['matrix'] * 1e3:>8.2f}ms {r['numpy'] * 1e3:>8.2f}ms "
              + (f"{torch_time * 1e3:>8.2f}ms" if torch_time else f"{'-':>10}")
              + f" {ratio['numpy']:>13.3f} "
              + (f"{ratio['torch']:>13.3f}" if torch_time else f"{'(no torch)':>13}"))
    try:
        import torch
        print(f"torch {torch.__version__}; numpy {np.__version__}")
    except (ImportError, OSError):
        print("torch is not installed: pip install torch to compare with PyTorch CPU autograd")

    print("\nderivation time (symbolic dimensions: independent of the widths)")
    for width in (10, 100, 1000, 150528):
        sizes = (width, width, 10)
        t = median_time(lambda: derive_matrix(sizes, **SETUP), 5)
        print(f"{'-'.join(map(str, sizes)):>20}  {t * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
