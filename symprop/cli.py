"""The ``symprop`` command.

Every verb reads its file through :func:`symprop.spec.load` (a network spec, a ``[layers]``
spec or a question family), so every verb reports a bad file the same way: one line
naming the file, the key and the problem, and exit status 2, never a traceback. Results
are printed by :mod:`symprop.report`, documents rendered by :mod:`symprop.documents`,
files written by :mod:`symprop.output`.

>>> main(["--version"])
symprop 0.1.0
0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import warnings

from . import __version__, limits, numeric, report
from .derive import METHODS, derive
from .graph import NetworkError
from .output import LatexError, compile_pdf, write_atomic
from .spec import Family, Layers, Spec, SpecError, load, parse_expression

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the command line or its input: printed as one line, exit status 2."""


def _load(path, *kinds):
    """The file at ``path``, which must be one of ``kinds`` (Spec, Layers, Family); a
    [layers] spec asked for as a Spec gives its scalar form."""
    loaded = load(path)
    if isinstance(loaded, Layers) and Spec in kinds and Layers not in kinds:
        return loaded.scalar_spec()
    if isinstance(loaded, Family) and Family not in kinds:
        raise SpecError(path, "[family]", "this file is a question family: `symprop exam FILE --variants N` writes its variants")
    return loaded


def _wrt_list(spec, names):
    """The symbols of ``--wrt`` names: parameters, inputs, or nodes (a node's result is its
    delta dE/dz_k); a target, the loss or an unknown name is one line, exit status 2."""
    from .derive import resolve_wrt

    if not names:
        return None
    missing = [n for n in names if n not in spec.symbols]
    if missing:
        raise UsageError(f"{spec.file}: --wrt {missing[0]}: no such parameter, input or node")
    try:
        return [resolve_wrt(spec.network, spec.symbols[n]) for n in names]
    except NetworkError as err:
        raise UsageError(f"{spec.file}: --wrt {err.symbol}: {err}") from None


# -- derive -----------------------------------------------------------------------------

def _add_derive(commands):
    p = commands.add_parser("derive", help="derive dE/dw by the chain rule and show the steps")
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--wrt", action="append", metavar="NAME", help="a parameter, input or node (repeatable; a node gives its delta); default: every parameter")
    p.add_argument("--method", choices=METHODS, default="top-down")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--max-paths", type=_int_in(1, 10**9), help="leave out path forms past this many paths (default: MAX_PATHS)")
    p.add_argument("--form", choices=("matrix", "scalar"),
                   help="for a [layers] spec: the matrix form (the default) or the scalar network of every weight")
    p.set_defaults(run=_run_derive)


def _run_derive(args, out):
    loaded = _load(args.spec, Spec, Layers)
    layers = loaded if isinstance(loaded, Layers) else None
    if (args.form or ("matrix" if layers else "scalar")) == "matrix":
        return _run_derive_matrix(args, layers, out)
    spec = layers.scalar_spec() if layers else loaded
    wrt = _wrt_list(spec, args.wrt)
    _bound_steps(args, spec, wrt)
    derived = derive(spec.network, wrt, method=args.method, max_paths=args.max_paths)
    # written as each is derived: the first appears at once, even for many weights
    if args.format == "text":
        for i, d in enumerate(derived.values()):
            out.write(("\n" if i else "") + str(d) + "\n")
    else:  # as json.dump(..., indent=2) writes it, one derivation at a time
        out.write('{\n  "derivations": [')
        for i, d in enumerate(derived.values()):
            item = json.dumps(report.json(d), indent=2, allow_nan=False).replace("\n", "\n    ")
            out.write(("," if i else "") + "\n    " + item)
        out.write("\n  ]\n}\n" if derived else "]\n}\n")




def _bound_steps(args, spec, wrt):
    """Refuse, with the way out, a request whose derivations would print more than
    ``limits.MAX_STEPS`` steps (every weight of a deep or wide network)."""
    from .derive import step_estimate

    params = wrt if wrt is not None else list(spec.network.params)
    n = step_estimate(spec.network, params, limits.MAX_STEPS)
    if n > limits.MAX_STEPS:
        ways = "name the weights with --wrt" + (", or use the matrix form (symprop derive on the [layers] spec)"
                                                 if spec.layers is not None else "")
        raise UsageError(f"{args.spec}: the derivations of {len(params):,} weights would print more steps "
                         f"than allowed ({limits.says('MAX_STEPS')}); {ways}")


def _run_derive_matrix(args, layers, out):
    if layers is None:
        raise UsageError(f"{args.spec}: --form matrix needs a [layers] spec (sizes, hidden, output, loss)")
    if args.wrt:
        raise UsageError("--wrt applies to the scalar form: the matrix form derives every W^l and b^l at once")
    d = _derive_matrix(layers)
    if args.format == "text":
        out.write(report.text(d) + "\n")
    else:
        out.write(_json(report.json(d), ensure_ascii=False))


def _derive_matrix(layers):
    from .matrix import derive_layers

    return derive_layers(layers)


# -- solve and exam: LaTeX documents ---------------------------------------------------

def _add_document_options(p):
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--wrt", action="append", metavar="NAME", help="a parameter, input or node (repeatable; a node gives its delta); default: every parameter")
    p.add_argument("-o", "--output", metavar="FILE.tex", help="write the LaTeX here (atomically); default: standard output")
    p.add_argument("--pdf", action="store_true", help="also compile FILE.pdf with pdflatex (needs -o)")
    p.add_argument("--title", help="the document title (printed literally)")


def _add_solve(commands):
    p = commands.add_parser("solve", help="write a worked LaTeX solution of dE/dw")
    _add_document_options(p)
    p.add_argument("--method", choices=METHODS, help="default: top-down")
    p.add_argument("--fragment", action="store_true", help="no preamble: a fragment to \\input into your own document")
    p.add_argument("--bind", action="append", metavar="G=NAME", help="bind a generic function to an activation for the numbers, e.g. g=tanh (repeatable)")
    p.set_defaults(run=_run_solve)


def _run_solve(args, out):
    from .documents.solution import render_solution

    if args.pdf and args.fragment:
        raise UsageError("--pdf needs a standalone document; leave out --fragment")
    _check_output(args)
    spec = _load(args.spec, Spec, Layers)
    if isinstance(spec, Layers):
        if args.bind:
            raise UsageError(f"--bind: the matrix-form solution of {args.spec} has no numbers to bind a function for")
        return _run_solve_matrix(args, spec, out)
    _bound_steps(args, spec, _wrt_list(spec, args.wrt))
    tex = render_solution(
        spec.network, _wrt_list(spec, args.wrt), method=args.method or "top-down", values=spec.values,
        bind=_bindings(spec, args.bind), title=args.title, standalone=not args.fragment,
    )
    return _emit(args, tex, out)


def _run_solve_matrix(args, layers, out):
    """A [layers] spec: the matrix-form worked solution (every W^l and b^l, with shapes)."""
    from .documents.matrix import render_matrix_solution

    if args.wrt or args.method not in (None, "top-down"):
        raise UsageError(f"{args.spec}: a [layers] spec has the matrix form, which derives every W^l and b^l "
                         "top-down at once; leave out --wrt and --method")
    return _emit(args, render_matrix_solution(_derive_matrix(layers), title=args.title, standalone=not args.fragment), out)


def _add_exam(commands):
    p = commands.add_parser("exam", help="write an exam question (exam class) with its worked solution")
    _add_document_options(p)
    p.add_argument("--method", choices=METHODS, default="bottom-up", help="the method of the solution (default: bottom-up, easier by hand)")
    p.add_argument("--answers", action="store_true", help="print the answer sheet (\\printanswers); default: the question sheet")
    family = p.add_argument_group(
        "question families", "when SPEC has a [family] table: -o names a directory; the family sets the weight and the method")
    family.add_argument("--variants", type=_int_in(1, limits.MAX_VARIANTS, "MAX_VARIANTS"), default=1, metavar="N",
                        help=f"how many variants to write (default 1, at most {limits.MAX_VARIANTS:,})")
    family.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, metavar="S",
                        help="the seed: the same seed gives the same files (default 0)")
    family.add_argument("--combined", action="store_true", help="one document with every variant instead of one per variant")
    family.add_argument("--moodle", metavar="FILE.xml", help="also write the variants as a Moodle XML quiz")
    family.add_argument("--qti", metavar="FILE.zip",
                        help="also write the variants as a QTI 2.1 package (Canvas, Blackboard and other systems)")
    p.set_defaults(run=_run_exam)


def _run_exam(args, out):
    from .documents.solution import render_exam

    spec = _load(args.spec, Spec, Layers, Family)
    if isinstance(spec, Family):
        return _run_exam_family(args, spec)
    if args.combined or args.moodle or args.qti or args.variants != 1 or args.seed != 0:
        raise UsageError(f"{args.spec}: --variants, --seed, --combined, --moodle and --qti need a question family "
                         "(a [family] table)")
    if isinstance(spec, Layers):
        return _run_exam_matrix(args, spec, out)
    _check_output(args)
    _bound_steps(args, spec, _wrt_list(spec, args.wrt))
    tex = render_exam(
        spec.network, _wrt_list(spec, args.wrt), method=args.method, values=spec.values,
        bind=spec.bind, title=args.title, answers=args.answers,
    )
    return _emit(args, tex, out)


def _run_exam_matrix(args, layers, out):
    """A [layers] spec: a matrix-form question with numbers (forward pass, deltas, dE/dW^l
    and dE/db^l, or the entries --wrt names) on the exam class, with its worked solution."""
    from .documents.matrix import MAX_EXAM_DEPTH, MAX_EXAM_WIDTH, render_matrix_exam
    from .matrix import from_layers, parameter_entry

    _check_output(args)
    if args.method != "bottom-up":
        raise UsageError(f"{args.spec}: a [layers] spec has the matrix form, which goes top-down; leave out --method")
    if max(layers.sizes) > MAX_EXAM_WIDTH or len(layers.sizes) - 1 > MAX_EXAM_DEPTH:
        raise UsageError(f"{args.spec}: an exam prints every matrix as numbers: at most {MAX_EXAM_DEPTH} layers "
                         f"of at most {MAX_EXAM_WIDTH} units, not {'-'.join(map(str, layers.sizes))}; "
                         "`symprop solve` writes the matrix-form solution at any size")
    numbers = layers.bound()  # a generic f: the activation [bind] gives it
    try:
        d, values = from_layers(numbers)
    except ValueError as err:
        raise UsageError(f"{args.spec}: [values]: {err}") from None
    if values.x.shape[1] != 1:
        raise UsageError(f"{args.spec}: an exam question takes one sample, not a batch of {values.x.shape[1]}: "
                         "give one value for each x_i and t_j in [values] (or batch = 1)")
    entries = [parameter_entry(name, layers.sizes) for name in args.wrt or ()]
    tex = render_matrix_exam(d, values, entries=entries, bound=layers.bind, title=args.title, answers=args.answers)
    return _emit(args, tex, out)


def _run_exam_family(args, family):
    """N variants of a question family, the answer key and optionally a Moodle quiz."""
    from dataclasses import replace

    from .exam import ExamError
    from .output import OutputError, write_exam

    if args.wrt:
        raise UsageError(f"{args.spec}: --wrt: a family chooses the weight; set [family] wrt")
    if args.variants < 1:
        raise UsageError(f"--variants must be at least 1, not {args.variants}")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, not {args.seed}")
    if args.title is not None:
        family = replace(family, title=args.title)
    directory = args.output or f"{family.name}-exam"
    if what := _input_file(args, directory):
        raise UsageError(f"-o {directory}: this is {what}; -o names the directory of the exam's files")
    for option, path in (("--moodle", args.moodle), ("--qti", args.qti)):
        if path is not None and (what := _input_file(args, path)):
            raise UsageError(f"{option} {path}: this is {what}; choose another file")

    def check(path):  # every file, before any is written
        if what := _input_file(args, path):
            raise UsageError(f"-o {directory}: the exam would overwrite {what}, {path}; choose another directory")

    bar = _count_bar(sys.stderr, "PDFs") if args.pdf and sys.stderr.isatty() else None
    try:
        written = write_exam(
            family, args.variants, args.seed, directory, combined=args.combined, answers=args.answers,
            pdf=args.pdf, moodle=args.moodle, qti=args.qti, check=check, progress=bar,
        )
    except ExamError as err:
        raise UsageError(str(err)) from None
    except OutputError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"cannot write to {err.filename or directory}: {err.strerror or err}") from None
    except LatexError as err:
        if bar is not None:
            bar.end()
        print(f"symprop: {err}", file=sys.stderr)
        return 1
    print(f"symprop: wrote {args.variants} variant{'s' * (args.variants != 1)} of {family.name}: "
          + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _input_file(args, path):
    """What ``path`` is when it names an input of the command (the spec, a --values file;
    through symlinks and hard links too), so that writing it would destroy the input; else
    None."""
    for name, what in ((getattr(args, "spec", None), "the input spec"), (getattr(args, "values", None), "the --values file")):
        if name is None:
            continue
        try:
            same = os.path.samefile(path, name)
        except OSError:  # one of them does not exist (yet)
            same = os.path.realpath(path) == os.path.realpath(name)
        if same:
            return what
    return None


def _check_output(args):
    """Refuse, before any work, an -o that must not or cannot be written: an input file,
    anything but a regular file (a symlink counts as the file it names), a file in a
    missing or read-only directory; with --pdf, the same for the PDF next to it."""
    from .output import OutputError, pdf_path, writable_target

    if args.pdf and args.output is None:
        raise UsageError("--pdf needs -o FILE.tex (the PDF is written next to it)")
    if args.output is None:
        return
    if what := _input_file(args, args.output):
        raise UsageError(f"-o {args.output}: this is {what}; choose another file")
    try:
        writable_target(args.output)
        if args.pdf:
            pdf = pdf_path(args.output)
            if what := _input_file(args, pdf):
                raise UsageError(f"-o {args.output}: the PDF {pdf} would overwrite {what}; choose another file")
            writable_target(pdf, directory=False)
    except OutputError as err:
        raise UsageError(str(err)) from None


def _emit(args, tex, out):
    """Print the text, or write it atomically and optionally compile it (LaTeX, --pdf)."""
    from .output import OutputError

    if args.output is None:
        out.write(tex)
        return 0
    _check_output(args)  # again, just before writing: some verbs come here directly
    try:
        write_atomic(args.output, tex)
    except OutputError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"cannot write {args.output}: {err.strerror or err}") from None
    if args.pdf:
        try:
            pdf = compile_pdf(args.output)
        except LatexError as err:
            print(f"symprop: {err}", file=sys.stderr)
            return 1
        print(f"symprop: wrote {pdf}", file=sys.stderr)
    return 0


# -- numbers: grad, check, step, flow ---------------------------------------------------

def _add_numeric_options(p):
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--values", metavar="FILE", help="a TOML file whose [values] (or top-level keys) override the spec's")
    p.add_argument("--bind", action="append", metavar="G=NAME", help="bind a generic function to an activation, e.g. g=tanh (repeatable)")
    p.add_argument("--format", choices=("text", "json"), default="text")




def _numeric_setup(args):
    """The spec, its values overridden by --values, and its bindings overridden by --bind.

    A [layers] spec runs in its scalar form here, on its [values] or, without any, on the
    random weights and batch its seed draws (as `grad` uses them in the matrix form).
    """
    from .matrix import from_layers, scalar_values

    loaded = _load(args.spec, Spec, Layers)
    layers = loaded if isinstance(loaded, Layers) else None
    if layers is not None and layers.param_count > limits.MAX_LAYERS_SCALAR_NUMBERS:
        raise UsageError(f"{args.spec}: {args.verb} runs the scalar form, one symbol per weight, and "
                         f"{layers.param_count:,} parameters are more than it does in reasonable time "
                         f"({limits.says('MAX_LAYERS_SCALAR_NUMBERS')}); `symprop grad` uses the matrix form at any size")
    spec = layers.scalar_spec() if layers else loaded
    values = dict(spec.values)
    if layers is not None and not values:
        values = {spec.symbols[name]: v for name, v in scalar_values(from_layers(layers)[1]).items()}
    if args.values:
        values.update(_values_file(spec, args.values))
    return spec, values, _bindings(spec, args.bind)


def _values_file(spec, path):
    from .spec import read_values_file

    def value_of(name, key, batch):
        if name not in spec.symbols:
            raise SpecError(path, key, f"unknown symbol {name!r} (not in {spec.file})")
        if spec.symbols[name] in spec.network.nodes:
            raise SpecError(path, key, f"{name} is a node; values are for inputs, targets and parameters")
        return spec.symbols[name]

    return read_values_file(path, value_of)


def _bindings(spec, items):
    from .spec import bound_activation

    bind = dict(spec.bind)
    for item in items or ():
        name, sep, activation = (part.strip() for part in item.partition("="))
        if not (sep and name and activation):
            raise UsageError(f"--bind {item}: write NAME=ACTIVATION, e.g. g=tanh")
        if name not in spec.generics:
            raise UsageError(f"--bind {item}: {name} is not a function declared in [network] functions of {spec.file}")

        def fail(problem):
            raise UsageError(f"--bind {item}: {problem}")

        bind[name] = bound_activation(activation, spec.functions, fail)
    return bind


def _emit_report(out, fmt, result):
    if fmt == "text":
        out.write(report.text(result) + "\n")
    else:
        out.write(_json(report.json(result)))


def _json(record, **options) -> str:
    """``record`` as JSON text, whole or not at all: a number that is not finite (no
    Infinity or NaN, which strict parsers refuse) is a one-line error, nothing printed."""
    try:
        return json.dumps(record, indent=2, allow_nan=False, **options) + "\n"
    except ValueError:
        raise UsageError("the result holds a number that is not finite (an overflow); nothing is printed") from None


def _add_grad(commands):
    p = commands.add_parser("grad", help="forward values, deltas and the gradient at the spec's values")
    _add_numeric_options(p)
    p.add_argument("--gates", action="store_true",
                   help="also stage every node into elementary gates and report each gate's value, local gradients and delta")
    p.add_argument("--wrt", action="append", metavar="NAME",
                   help="list only dE/dNAME under gradient: a parameter, input or node (its delta; repeatable)")
    p.set_defaults(run=_run_grad)


def _run_grad(args, out):
    layers = _load(args.spec, Spec, Layers)
    if isinstance(layers, Layers) and args.wrt:
        raise UsageError("--wrt applies to the scalar form: the matrix form gives every W^l and b^l at once")
    if isinstance(layers, Layers):  # a layered network: the matrix form, NumPy matrix products
        return _run_grad_matrix(args, layers, out)
    spec, values, bind = _numeric_setup(args)
    wrt = _wrt_list(spec, args.wrt)
    if args.gates and wrt:
        raise UsageError("--wrt and --gates: --gates reports every gate; leave out --wrt")
    if args.gates:
        return _run_grad_gates(args, spec, values, bind, out)
    result = numeric.gradient(spec.network, values, bind=bind)
    _emit_report(out, args.format, result if wrt is None else report.gradient_for(result, wrt))


def _run_grad_gates(args, spec, values, bind, out):
    """``grad --gates``: the gradient as usual, then the staged circuit of the whole spec."""
    from .gates import stage

    batch = [s.name for s, v in values.items() if isinstance(v, tuple)]
    if batch:
        raise UsageError(f"{args.spec}: --gates evaluates one sample, but the values of {batch[0]} are a batch")
    result = numeric.gradient(spec.network, values, bind=bind)
    flow = stage(spec.network).evaluate(values, bind=bind)
    if args.format == "text":
        out.write(f"{report.text(result)}\n\n{report.text(flow)}\n")
    else:
        record = report.json(result)
        circuit = report.json(flow)
        record.update({"gates": circuit["gates"], "fan_out": circuit["fan_out"]})
        out.write(_json(record))


def _run_grad_matrix(args, layers, out):
    from .matrix import from_layers

    if args.gates:
        raise UsageError(f"{args.spec}: --gates needs a spec with [nodes]; a [layers] spec has the matrix form")
    if args.values:
        layers = layers.with_values_file(args.values)
    layers = layers.with_bind(args.bind).bound()  # a generic f: the activation it is bound to, for numbers
    try:
        d, values = from_layers(layers)
    except ValueError as err:
        raise UsageError(f"{args.spec}: [values]: {err}") from None
    _emit_report(out, args.format, d.gradient(values))


def _add_check(commands):
    p = commands.add_parser("check", help="check the gradient against finite differences (exit 1 on a failure)")
    _add_numeric_options(p)
    p.add_argument("--against", action="append", metavar="NAME=EXPR",
                   help="your gradient dE/dNAME as an expression in the spec's symbols (repeatable)")
    p.add_argument("--only", action="append", metavar="GLOB", help="check only the parameters matching GLOB, e.g. 'w_1_*' (repeatable)")
    p.add_argument("--difference", choices=numeric.DIFFERENCES, default="central",
                   help="central: (E(w+h) - E(w-h))/2h, 2P forward passes (default); "
                        "forward: (E(w+h) - E(w))/h, P + 1 forward passes (seed 004)")
    p.add_argument("--epsilon", type=float, default=numeric.STEP, metavar="EPS",
                   help=f"the step: h = EPS·max(1, |w|) (default {numeric.STEP:g})")
    p.add_argument("--timing", action="store_true",
                   help="also measure the time of the forward passes and of one backprop (output then varies by run)")
    p.set_defaults(run=_run_check)


def _run_check(args, out):
    spec, values, bind = _numeric_setup(args)
    against = {}
    for item in args.against or ():
        name, sep, text = (part.strip() for part in item.partition("="))
        if not (sep and name and text):
            raise UsageError(f"--against {item}: write NAME=EXPR, e.g. w=(h - t)*h*(1 - h)*x")
        symbol = spec.symbols.get(name)
        if symbol is None or (symbol not in spec.network.params and symbol not in spec.network.inputs):
            raise UsageError(f"--against {item}: {name} is not a parameter or an input of {spec.file}")
        against[symbol] = parse_expression(text, spec.symbols, spec.functions, where=f"--against {name}")
    result = numeric.check(spec.network, values, bind=bind, against=against, only=args.only,
                           difference=args.difference, epsilon=args.epsilon, timed=args.timing)
    _emit_report(out, args.format, result)
    return 0 if result.passed else 1


def _add_step(commands):
    p = commands.add_parser("step", help="take descent steps w <- w - lr dE/dw: gradient descent, SGD (--batch-size 1) "
                            "or minibatch SGD")
    _add_numeric_options(p)
    p.add_argument("--lr", type=float, required=True, metavar="ETA", help="the learning rate")
    p.add_argument("--steps", type=_int_in(1, limits.MAX_DESCENT_STEPS, "MAX_DESCENT_STEPS"), default=1, metavar="N",
                   help=f"how many steps (default 1, at most {limits.MAX_DESCENT_STEPS:,})")
    p.add_argument("--only", action="append", metavar="GLOB", help="update only the parameters matching GLOB, e.g. 'w_*' (repeatable)")
    p.add_argument("--batch-size", type=_int_in(1, 10**9), metavar="B",
                   help="minibatch SGD with B samples a step (default: the whole batch)")
    p.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="the seed of the minibatch shuffling (default 0)")
    p.set_defaults(run=_run_step)


def _run_step(args, out):
    spec, values, bind = _numeric_setup(args)
    progress = _progress_bar(sys.stderr) if sys.stderr.isatty() else None
    result = numeric.step(spec.network, values, lr=args.lr, steps=args.steps, only=args.only,
                          batch_size=args.batch_size, seed=args.seed, bind=bind, progress=progress)
    _emit_report(out, args.format, result)


def _progress_bar(stream, delay=1.0, width=30):
    """A progress callback that draws on ``stream`` once a run has taken ``delay`` seconds."""
    import time

    start, last = time.monotonic(), [0.0]

    def update(i, n, loss):
        now = time.monotonic()
        if now - start < delay or (now - last[0] < 0.1 and i < n):
            return
        last[0] = now
        done = width * i // n
        stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n}  loss {loss:.6g}" + ("\n" if i == n else ""))
        stream.flush()

    return update


def _count_bar(stream, what, delay=1.0, width=30):
    """A progress callback ``update(done, total)`` that draws ``[###...] done/total what``
    on ``stream`` once a run has taken ``delay`` seconds, and ends the line at the last."""
    import time

    start, last, open_line = time.monotonic(), [0.0], [False]

    def update(i, n):
        now = time.monotonic()
        if now - start < delay or (now - last[0] < 0.1 and i < n) or (i == n and not open_line[0]):
            return  # a quick run draws nothing, not even the last line
        last[0], open_line[0] = now, i < n
        done = width * i // n
        stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {what}" + ("\n" if i == n else ""))
        stream.flush()

    def end():
        """End a line left open (a run that stopped early), so that a message starts afresh."""
        if open_line[0]:
            stream.write("\n")
            stream.flush()
            open_line[0] = False

    update.end = end
    return update


def _add_flow(commands):
    p = commands.add_parser("flow", help="gradient-flow diagnostics: |delta| by depth, saturated and dead units, "
                            "the cause of a zero gradient, an exploding/vanishing verdict")
    _add_numeric_options(p)
    p.set_defaults(run=_run_flow)


def _run_flow(args, out):
    spec, values, bind = _numeric_setup(args)
    _emit_report(out, args.format, numeric.flow(spec.network, values, bind=bind))


# -- circuit: one expression staged into elementary gates -------------------------------

def _add_circuit(commands):
    p = commands.add_parser("circuit", help="stage an expression into elementary gates: a value and a gradient on every wire")
    p.add_argument("expr", metavar="EXPR", help='the expression, e.g. "(x + y)*z" (the spec syntax)')
    p.add_argument("--at", required=True, metavar="NAME=VALUE,...",
                   help="the variables and their values, e.g. x=-2,y=5,z=-4 (every name the expression uses)")
    p.add_argument("--format", choices=("text", "json", "latex"), default="text")
    p.add_argument("--exam", action="store_true", help="LaTeX: a 'fill in the gradients' question on the exam class")
    p.add_argument("--answers", action="store_true", help="with --exam: print the answer sheet (\\printanswers)")
    p.add_argument("--fragment", action="store_true", help="LaTeX: no preamble, a fragment to \\input")
    p.add_argument("--figure", action="store_true", help="LaTeX: the circuit figure alone (standalone class, cropped)")
    p.add_argument("--title", help="the LaTeX document's title (printed literally)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically); default: standard output")
    p.add_argument("--pdf", action="store_true", help="with --format latex and -o: also compile the PDF")
    p.set_defaults(run=_run_circuit)


def _run_circuit(args, out):
    import sympy as sp

    from .documents.circuit import render_circuit
    from .gates import stage
    from .spec import FUNCTIONS

    latex = args.format == "latex"
    if not latex and (args.exam or args.answers or args.fragment or args.figure or args.pdf or args.title):
        raise UsageError("--exam, --answers, --fragment, --figure, --title and --pdf go with --format latex")
    if args.fragment and (args.exam or args.figure):
        raise UsageError("--exam and --figure write whole documents; leave out --fragment")
    if args.pdf and (args.output is None or args.fragment):
        raise UsageError("--pdf needs -o FILE.tex and a standalone document")
    values = _at_values(args.at, FUNCTIONS)
    symbols = {name: sp.Symbol(name) for name in values}
    try:
        expr = parse_expression(args.expr, symbols, where="EXPR")
        flow = stage(expr, list(symbols.values())).evaluate({symbols[n]: v for n, v in values.items()})
    except SpecError as err:
        hint = f" (the variables are the names in --at: {', '.join(values)})" if "unknown symbol" in err.problem else ""
        raise UsageError(f"{err}{hint}") from None
    except NetworkError as err:
        raise UsageError(f"EXPR: {err}") from None
    if latex:
        text = render_circuit(flow, exam=args.exam, answers=args.answers, standalone=not args.fragment,
                              title=args.title, figure=args.figure)
    elif args.format == "json":
        text = _json(report.json(flow))
    else:
        text = report.text(flow) + "\n"
    return _emit(args, text, out)


def _at_values(text, functions) -> dict:
    """``x=-2,y=5`` as {"x": -2.0, "y": 5.0}, in the order given."""
    import keyword
    import math

    values = {}
    for item in text.split(","):
        name, sep, number = (part.strip() for part in item.partition("="))
        if not (sep and name and number):
            raise UsageError(f"--at {item.strip()!r}: write NAME=VALUE pairs separated by commas, e.g. x=-2,y=5")
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
            raise UsageError(f"--at {name}: not a valid variable name")
        if name in functions:
            raise UsageError(f"--at {name}: {name} is the name of a function")
        if name in values:
            raise UsageError(f"--at {name}: given twice")
        try:
            value = float(number)
        except ValueError:
            raise UsageError(f"--at {name}={number}: not a number") from None
        if not math.isfinite(value):
            raise UsageError(f"--at {name}={number}: not a finite number")
        values[name] = value
    return values


# -- grade: check a student's answer ----------------------------------------------------

def _add_grade(commands):
    p = commands.add_parser("grade", help="check an expression for dE/dw; exit 0 when right, 1 when wrong")
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--wrt", required=True, metavar="NAME", help="the parameter, input or node")
    p.add_argument("--answer", required=True, metavar="EXPR",
                   help="the expression, in the spec's names (node names mean node values); write --answer=EXPR when it starts with '-'")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(run=_run_grade)


def _run_grade(args, out):
    from .grade import grade

    spec = _load(args.spec, Spec)
    _wrt_list(spec, [args.wrt])
    answer = parse_expression(args.answer, spec.symbols, spec.functions, where="answer")
    result = grade(spec.network, args.wrt, answer)
    if args.format == "text":
        out.write(result.message() + "\n")
    else:
        out.write(_json(report.json(result)))
    return 0 if result.correct else 1


# -- entry point ------------------------------------------------------------------------

VERBS = [_add_derive, _add_solve, _add_exam, _add_grade, _add_grad, _add_check, _add_step, _add_flow, _add_circuit]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and exit status 2), as every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int, limit: str | None = None):
    """An argparse type: an integer from ``low`` to ``high``, or a one-line error saying so
    (and which setting of :mod:`symprop.limits` sets ``high``)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high:,}"
                                             + (f" ({limits.says(limit)})" if limit and value > high else ""))
        return value
    return parse


MAX_SEED = 2**63 - 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="symprop", description="Derive backpropagation symbolically, the way the course texts do it by hand."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for add in VERBS:
        add(commands)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a failed check, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return done.code if isinstance(done.code, int) else 2
    if args.version:
        print(f"symprop {__version__}")
        return 0
    if not args.verb:
        parser.print_help()
        return 2
    for name, text in limits.INVALID.items():
        print(f"symprop: SYMPROP_{name}={text!r}: a limit is a positive number", file=sys.stderr)
        return 2
    return _deep(lambda: _run(args))


# Deep networks and deeply nested expressions recurse deeply in SymPy (printing, rewriting):
# the verbs run in a thread with a large stack and a high recursion limit.


def _deep(work):
    """``work()`` in a thread with a deep stack; Ctrl-C is "interrupted", exit status 130."""
    outcome = {}

    def target():
        try:
            outcome["status"] = work()
        except BaseException as err:  # handed to the main thread
            outcome["error"] = err

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, limits.RECURSION_LIMIT))
    size = threading.stack_size(limits.STACK_MB * 2**20)
    try:
        thread = threading.Thread(target=target, name="symprop", daemon=True)
        thread.start()
    finally:
        threading.stack_size(size)
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        print("symprop: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.setrecursionlimit(limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["status"]


def _run(args) -> int:
    """One verb, every failure as one line on stderr with its exit status."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _warn_line
        try:
            status = args.run(args, sys.stdout)
        except (SpecError, UsageError) as err:
            print(f"symprop: {err}", file=sys.stderr)
            return 2
        except NetworkError as err:
            print(f"symprop: {getattr(args, 'spec', 'EXPR')}: {err}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # the reader stopped early (`symprop ... | head`): not an error of ours; point
            # stdout at devnull so that Python's exit flush does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            print("symprop: interrupted", file=sys.stderr)
            return 130
        except (RecursionError, MemoryError) as err:
            kind = "too deeply nested" if isinstance(err, RecursionError) else "too large for memory"
            print(f"symprop: {getattr(args, 'spec', 'EXPR')}: the network or an expression is {kind} "
                  "to work with here", file=sys.stderr)
            return 2
        except Exception as err:  # a bug of ours: one line all the same, and a status that says so
            print(f"symprop: internal error ({type(err).__name__}: {err}); please report it with the input",
                  file=sys.stderr)
            return INTERNAL_ERROR
    return status or 0


INTERNAL_ERROR = 70  # EX_SOFTWARE


def _warn_line(message, category, filename, lineno, file=None, line=None):
    print(f"symprop: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
