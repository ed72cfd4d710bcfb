"""Write every bundled example's outputs to a directory, to diff before and after a change.

    .venv/bin/python tools/snapshot.py OUT            # then: diff -r BEFORE OUT

Runs each verb of the command line in this process (derive, solve, exam, grad, check,
step, flow, circuit, grade) on every bundled example, plus a few extra specs below that
reach every built-in primitive, and writes one file per run: what the verb printed, its
exit status and its warnings, or the files it wrote. PDFs are not compiled (their bytes
carry dates); the .tex they come from is what is compared.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tomllib
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Specs that reach the built-in primitives the bundled examples do not use.
EXTRA = {
    "extra_primitives.toml": """
[network]
inputs = ["x_1", "x_2"]
targets = ["t_1", "t_2"]
params = ["w_1", "w_2", "w_3", "w_4", "b"]
loss = "E"
[nodes]
h_1 = "relu(w_1*x_1 + b)"
h_2 = "leaky_relu(w_2*x_2 - b, 0.1)"
h_3 = "softplus(w_3*h_1 + w_4*h_2)"
h_4 = "max(h_1, h_3) + min(h_2, x_1)"
p_1 = "softmax([h_3, h_4], 1)"
p_2 = "softmax([h_3, h_4], 2)"
s = "sigmoid(w_4*h_4 + exp(w_1*x_2) + log(1 + h_1**2) + sqrt(1 + h_2**2))"
E = "cross_entropy([p_1, p_2], [t_1, t_2]) + binary_cross_entropy(s, t_1) + mse([h_3], [t_2])"
[values]
x_1 = 0.5
x_2 = -0.8
t_1 = 1.0
t_2 = 0.0
w_1 = 0.7
w_2 = -0.4
w_3 = 0.3
w_4 = 0.9
b = 0.1
""",
    "extra_layers.toml": """
[layers]
sizes = [2, 3, 1]
hidden = "tanh"
output = "sigmoid"
loss = "binary_cross_entropy"
seed = 3
batch = 2
""",
    "extra_layers_relu.toml": """
[layers]
sizes = [3, 2, 2, 3]
hidden = ["relu", "softplus"]
output = "softmax"
loss = "cross_entropy"
reduction = "mean"
seed = 1
batch = 4
""",
}

CIRCUITS = [
    ("(x + y)*z", "x=-2,y=5,z=-4"),
    ("1/(1 + exp(-(w_0*x_0 + w_1*x_1 + w_2)))", "w_0=2,x_0=-1,w_1=-3,x_1=-2,w_2=-3"),
    ("max(x, y)*z + x", "x=3,y=-1,z=2"),
    ("x*(x*y + exp(x))", "x=-1,y=2"),
    ("tanh(relu(x)*y) + sigmoid(x - y)**2 + log(softplus(y))", "x=0.5,y=1.5"),
]


def run(argv, out_file: Path):
    """Run the CLI with ``argv``; write stdout, the exit status and stderr to ``out_file``."""
    from symprop.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exit_:
            status = exit_.code
        except Exception:  # a traceback is a result to compare too
            status = "traceback"
            traceback.print_exc(file=stderr)
    out_file.write_text(f"$ symprop {' '.join(map(str, argv))}\n{stdout.getvalue()}\n"
                        f"-- exit {status}\n{stderr.getvalue()}", encoding="utf-8")


def tables(path):
    return set(tomllib.loads(path.read_text(encoding="utf-8")))


def main(out):
    # paths relative to OUT, so that messages naming files read the same wherever it runs
    Path(out).mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    out = Path(".")
    for folder, files in (("examples", {p.name: p.read_text(encoding="utf-8") for p in EXAMPLES.glob("*.toml")}),
                          ("inputs", EXTRA)):
        Path(folder).mkdir(exist_ok=True)
        for name, text in files.items():
            (Path(folder) / name).write_text(text.lstrip(), encoding="utf-8")
    specs = sorted(Path("examples").glob("*.toml")) + sorted(Path("inputs").glob("*.toml"))
    for spec in specs:
        kind = tables(spec)
        stem = spec.stem
        if "family" in kind:
            for extra, args in (("", []), ("-answers-combined", ["--answers", "--combined"])):
                d = out / f"{stem}{extra}"
                run(["exam", spec, "--variants", 8, "--seed", 7, "-o", d, "--moodle", d / "quiz.xml", *args],
                    out / f"{stem}{extra}.exam.txt")
            continue
        if "layers" in kind:
            for fmt in ("text", "json"):
                run(["derive", spec, "--format", fmt], out / f"{stem}.derive.{fmt}")
                run(["grad", spec, "--format", fmt], out / f"{stem}.grad.{fmt}")
            run(["solve", spec, "-o", out / f"{stem}.solve.tex"], out / f"{stem}.solve.txt")
            if "mnist" not in stem:
                run(["derive", spec, "--form", "scalar", "--method", "top-down"], out / f"{stem}.derive-scalar.text")
                for verb in ("check", "flow"):
                    run([verb, spec, "--format", "json"], out / f"{stem}.{verb}.json")
            continue
        for method in ("top-down", "bottom-up", "paths"):
            for fmt in ("text", "json"):
                run(["derive", spec, "--method", method, "--format", fmt], out / f"{stem}.derive.{method}.{fmt}")
            run(["solve", spec, "--method", method, "-o", out / f"{stem}.solve.{method}.tex"],
                out / f"{stem}.solve.{method}.txt")
        run(["exam", spec, "-o", out / f"{stem}.exam.tex"], out / f"{stem}.exam.txt")
        run(["exam", spec, "--answers", "--method", "top-down", "-o", out / f"{stem}.exam-answers.tex"],
            out / f"{stem}.exam-answers.txt")
        for fmt in ("text", "json"):
            for verb in ("grad", "check", "flow"):
                run([verb, spec, "--format", fmt], out / f"{stem}.{verb}.{fmt}")
            run(["step", spec, "--lr", 0.1, "--steps", 3, "--format", fmt], out / f"{stem}.step.{fmt}")
            run(["grad", spec, "--gates", "--format", fmt], out / f"{stem}.grad-gates.{fmt}")
    run(["grade", Path("examples") / "seed002_gradient_flow.toml", "--wrt", "w_1_2", "--answer", "(z_1 - t)*z_2"],
        out / "grade.mistake.txt")
    run(["grade", Path("examples") / "seed002_gradient_flow.toml", "--wrt", "w_1_2", "--answer",
         "(z_1 - t)*(1 - z_1**2)*z_2", "--format", "json"], out / "grade.right.json")
    run(["grade", Path("examples") / "seed002_seven_neurons.toml", "--wrt", "w_5_7", "--answer",
         "z_7*g_prime(w_5_6*z_6 + w_5_7*z_7)", "--format", "json"], out / "grade.generic.json")
    for i, (expr, at) in enumerate(CIRCUITS, 1):
        for fmt in ("text", "json", "latex"):
            run(["circuit", expr, "--at", at, "--format", fmt], out / f"circuit{i}.{fmt}")
        run(["circuit", expr, "--at", at, "--format", "latex", "--exam", "--answers"], out / f"circuit{i}.exam.tex")
        run(["circuit", expr, "--at", at, "--format", "latex", "--figure"], out / f"circuit{i}.figure.tex")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
