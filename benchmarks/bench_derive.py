"""Deriving every gradient of a sigmoid/softmax MLP in scalar form, at growing sizes.

Prints, per size (medians of 7 runs, 3 at 784-128-10): the number of weights, the time to
build the network, the time to derive every gradient (top-down, shared delta pass, each gradient as a product of SymPy
factors), the time per weight, and the growth ratio against the smallest size measured
in the same run (time ratio / weight ratio: 1.0 means linear growth). Then the naive
route at 8-8-8 (one nested expression of all weights, then sympy.diff for each) against
symprop at the same size, as a ratio.

    .venv/bin/python benchmarks/bench_derive.py            # all sizes, up to 784-128-10
    .venv/bin/python benchmarks/bench_derive.py --quick    # small sizes only
"""

import argparse
import gc
import statistics
import time

import sympy as sp

from symprop import derive, mlp


def timed(fn):
    gc.collect()  # no collection of an earlier run's garbage inside the timing
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def derive_all(net):
    grads = derive(net)
    # touch every gradient's factors so nothing is left lazy
    return sum(len(d.bottom) for d in grads.values())


def naive(net):
    """One nested expression of all weights, then sympy.diff once per weight."""
    full = net.nodes[net.loss]
    for k in reversed(net.order):
        full = full.xreplace({k: net.nodes[k]})
    return [sp.diff(full, w) for w in net.params]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [[8, 8, 8], [64, 32, 10], [256, 64, 10]] + ([] if args.quick else [[784, 128, 10]])
    print(f"{'sizes':>12} {'weights':>9} {'build s':>8} {'derive s':>9} {'us/weight':>10} {'growth':>7}")
    base = None
    for size in sizes:
        builds, derives = [], []
        for _ in range(7 if size[0] < 500 else 3):  # medians: single small timings are noise
            # a fresh network each time, so that nothing derived before is reused
            net, build = timed(lambda: mlp(size, hidden="sigmoid", output="softmax", loss="cross_entropy"))
            _, seconds = timed(lambda: derive_all(net))
            builds.append(build)
            derives.append(seconds)
        build, seconds = statistics.median(builds), statistics.median(derives)
        weights = sum(1 for p in net.params if p.name.startswith("w"))
        per = seconds / len(net.params)
        base = base or per
        label = "-".join(map(str, size))
        print(f"{label:>12} {weights:>9,} {build:>8.2f} {seconds:>9.3f} {per * 1e6:>10.1f} {per / base:>7.2f}")

    del net, builds, derives
    net = mlp([8, 8, 8], hidden="sigmoid", output="softmax", loss="cross_entropy")
    _, ours = timed(lambda: [d.expr for d in derive(net).values()])
    _, theirs = timed(lambda: naive(net))
    print(f"\n8-8-8 naive route (nested expression + sympy.diff): {theirs:.2f} s; "
          f"symprop (every gradient as an evaluated expression): {ours:.3f} s; ratio {theirs / ours:.0f}x")


if __name__ == "__main__":
    main()
