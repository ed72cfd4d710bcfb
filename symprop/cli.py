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
import contextlib
import json
import math
import os
import sys
import threading
import warnings

from . import __version__, limits, numeric, report
from .derive import METHODS, derive
from .graph import NetworkError
from .output import LatexError, compile_pdf, write_atomic
from .spec import Family, Layers, Spec, SpecError, load, parameter_named, parse_expression, parse_toml, read_direction, read_text

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the command line or its input: printed as one line, exit status 2."""


def _load(path, *kinds):
    """The file at ``path``, which must be one of ``kinds`` (Spec, Layers, Family); a
    [layers] spec asked for as a Spec gives its scalar form."""
    from .spec import VectorSpec

    loaded = load(path)
    if isinstance(loaded, VectorSpec) and VectorSpec not in kinds:
        raise SpecError(path, "[network] outputs", "this spec is a vector-valued function (outputs, no loss), and this "
                                                   "verb needs a scalar loss; derive, grad and solve give its Jacobian")
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
    from .spec import VectorSpec

    loaded = _load(args.spec, Spec, Layers, VectorSpec)
    if isinstance(loaded, VectorSpec):  # outputs instead of a loss: the Jacobian
        return _run_derive_jacobian(args, loaded, out)
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
    p.add_argument("--checkpoints", metavar="K|sqrt", type=_checkpoints,
                   help="for a [layers] spec: explain checkpointed backprop with a checkpoint every K layers instead")
    p.add_argument("--hvp", action="store_true", help="the worked R-operator solution of Hv along the spec's [direction]")
    p.add_argument("--update", action="store_true",
                   help="add one gradient-descent step w <- w - lr dE/dw with numbers for the weights asked (needs --lr)")
    p.add_argument("--lr", type=float, metavar="ETA", help="the learning rate of --update")
    p.add_argument("--check", action="store_true",
                   help="add seed 004's finite-difference check (forward and central) with its cost in forward passes")
    p.add_argument("--epsilon", type=float, default=numeric.STEP, metavar="EPS",
                   help=f"the step of --check: h = EPS·max(1, |w|) (default {numeric.STEP:g})")
    p.set_defaults(run=_run_solve)


def _solve_extras(args, spec=None) -> dict:
    """The keywords of --update/--lr and --check/--epsilon for render_solution, checked: a
    learning rate that is a positive number, a step between 0 and 1, a network spec with
    [values] (the sections are numbers); else one line, exit status 2."""
    if args.lr is not None and not args.update:
        raise UsageError("--lr is the learning rate of --update; add --update")
    if args.update and (args.lr is None or not (math.isfinite(args.lr) and args.lr > 0)):
        raise UsageError("--update needs --lr ETA, a positive learning rate, e.g. --update --lr 0.1")
    if args.epsilon != numeric.STEP and not args.check:
        raise UsageError("--epsilon is the step of --check; add --check")
    if args.check and not (math.isfinite(args.epsilon) and 0 < args.epsilon < 1):
        raise UsageError(f"--epsilon {args.epsilon:g}: the finite-difference step must be between 0 and 1")
    if not (args.update or args.check):
        return {}
    flag = "--update" if args.update else "--check"
    if args.hvp or (spec is not None and not isinstance(spec, Spec)) or getattr(args, "checkpoints", None) is not None:
        raise UsageError(f"{flag} works on a network spec with [nodes], in the worked solution of dE/dw")
    if spec is not None and not spec.values:
        raise UsageError(f"{args.spec}: {flag} needs numbers: give the inputs, targets and parameters in [values]")
    return {"update": args.lr if args.update else None, "check": args.check, "epsilon": args.epsilon}


def _run_solve(args, out):
    from .documents.solution import render_solution

    _solve_extras(args)  # before any other work: --update, --check and their numbers
    if args.hvp:
        return _run_solve_hvp(args, out)

    if args.pdf and args.fragment:
        raise UsageError("--pdf needs a standalone document; leave out --fragment")
    _check_output(args)
    from .spec import VectorSpec

    spec = _load(args.spec, Spec, Layers, VectorSpec)
    extras = _solve_extras(args, spec)
    if isinstance(spec, VectorSpec):  # outputs instead of a loss: the Jacobian
        return _run_solve_jacobian(args, spec, out)
    if args.checkpoints is not None:
        if not isinstance(spec, Layers):
            raise UsageError(f"{args.spec}: --checkpoints needs a [layers] spec: it stores every K-th layer of a layered network")
        return _run_solve_checkpoints(args, spec, out)
    if isinstance(spec, Layers):
        return _run_solve_matrix(args, spec, out)
    _bound_steps(args, spec, _wrt_list(spec, args.wrt))
    tex = render_solution(
        spec.network, _wrt_list(spec, args.wrt), method=args.method or "top-down", values=spec.values,
        bind=_bindings(spec, args.bind), title=args.title, standalone=not args.fragment, **extras,
    )
    return _emit(args, tex, out)


def _run_solve_matrix(args, layers, out):
    """A [layers] spec: the matrix-form worked solution (every W^l and b^l, with shapes)."""
    from .documents.matrix import render_matrix_solution

    if args.wrt or args.method not in (None, "top-down"):
        raise UsageError(f"{args.spec}: a [layers] spec has the matrix form, which derives every W^l and b^l "
                         "top-down at once; leave out --wrt and --method")
    layers = layers.with_bind(args.bind)
    tex = render_matrix_solution(_derive_matrix(layers), numbers=_solution_numbers(args, layers), bound=layers.bind,
                                 title=args.title, standalone=not args.fragment)
    return _emit(args, tex, out)


def _solution_numbers(args, layers):
    """The numbers of the matrix solution: (derivation, values) of the spec's one sample with
    every generic activation bound, or None when the matrices are too large to print (as in
    an exam), an activation is unbound, or the spec has a batch or neither [values] nor a seed."""
    from .documents.matrix import MAX_EXAM_DEPTH, MAX_EXAM_WIDTH
    from .matrix import from_layers

    numbers = None
    given = layers.values or "seed" in layers.raw.get("layers", {})  # not the default seed's draw
    small = max(layers.sizes) <= MAX_EXAM_WIDTH and len(layers.sizes) - 1 <= MAX_EXAM_DEPTH
    if given and small and not layers.unbound:
        with contextlib.suppress(ValueError):  # no numbers to show: the derivation stands alone
            d, values = from_layers(layers.bound())
            numbers = (d, values) if values.x.shape[1] == 1 else None
    if numbers is None and args.bind:
        raise UsageError(f"--bind: the matrix-form solution of {args.spec} has no numbers to bind a function for "
                         f"(they need [values] of one sample, at most {MAX_EXAM_DEPTH} layers of {MAX_EXAM_WIDTH} units)")
    return numbers


def _run_solve_checkpoints(args, layers, out):
    """``solve SPEC --checkpoints K``: what checkpointed backprop stores and recomputes for this
    [layers] spec, with the memory and time it trades, at the spec's numbers."""
    from .checkpoint import checkpointed_gradient
    from .documents.checkpoint import render_checkpoint_solution
    from .matrix import from_layers

    if args.wrt or args.method not in (None, "top-down"):
        raise UsageError(f"{args.spec}: --checkpoints explains the whole backward pass; leave out --wrt and --method")
    layers = layers.with_bind(args.bind).bound()
    try:
        d, values = from_layers(layers)
    except ValueError as err:
        raise UsageError(f"{args.spec}: [values]: {err}") from None
    result = checkpointed_gradient(d, values, args.checkpoints)
    return _emit(args, render_checkpoint_solution(d, result, title=args.title, standalone=not args.fragment), out)


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
    p.add_argument("--checkpoints", metavar="K|sqrt", type=_checkpoints,
                   help="for a [layers] spec: keep only every K-th layer's forward values and recompute the rest "
                        "in the backward pass (sqrt: K = ceil(sqrt(L)), Chen et al. 2016)")
    p.set_defaults(run=_run_grad)


def _run_grad(args, out):
    from .spec import VectorSpec

    layers = _load(args.spec, Spec, Layers, VectorSpec)
    if isinstance(layers, VectorSpec):  # outputs instead of a loss: the Jacobian at the values
        return _run_grad_jacobian(args, layers, out)
    if getattr(args, "checkpoints", None) is not None and not isinstance(layers, Layers):
        raise UsageError(f"{args.spec}: --checkpoints needs a [layers] spec: it stores every K-th layer of a layered network")
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
    if args.checkpoints is not None:  # the same gradient, storing every K-th layer only
        from .checkpoint import checkpointed_gradient

        return _emit_report(out, args.format, checkpointed_gradient(d, values, args.checkpoints))
    _emit_report(out, args.format, d.gradient(values))


def _checkpoints(text):
    """An argparse type: ``--checkpoints K`` (a positive integer) or ``sqrt``."""
    if text == "sqrt":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive integer K nor 'sqrt'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer (a checkpoint every K layers)")
    return value


# -- hvp of a [layers] spec (the `hvp` verb calls this for a [layers] spec) ----------------

def _run_hvp_matrix(args, layers, out):
    """``symprop hvp SPEC`` on a [layers] spec: H v by the R-operator in matrix form, at the
    spec's numbers (options checked by :func:`_run_hvp`)."""
    from .matrix import from_layers, parameter_entry
    from .matrix_hvp import derive_hvp, direction_from_names, random_direction

    if args.values:
        layers = layers.with_values_file(args.values)
    layers = layers.with_bind(args.bind).bound()
    try:
        d, values = from_layers(layers)
    except ValueError as err:
        raise UsageError(f"{args.spec}: [values]: {err}") from None

    def parameter(name):  # w_l_j_i or b_l_j of these sizes
        try:
            parameter_entry(name, layers.sizes)
        except NetworkError as err:
            raise ValueError(str(err)) from None
        return name

    if args.v == "random":
        direction = random_direction(d.sizes, seed=args.seed)
    else:
        try:
            direction = direction_from_names(d.sizes, _direction(args, layers.raw.get("direction"), parameter))
        except NetworkError as err:
            raise UsageError(f"{args.spec}: direction: {err}") from None
    result = derive_hvp(d).hvp(values, direction)
    if args.format == "latex":
        from .documents.matrix_hvp import render_matrix_hvp

        return _emit(args, render_matrix_hvp(result, title=args.title), out)
    return _emit(args, report.text(result) + "\n" if args.format == "text" else _json(report.json(result)), out)


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
    p.add_argument("--plot", metavar="FILE.pdf", help="also write a PDF: each activation the units use and its "
                   "derivative, every unit marked at its input (pdflatex)")
    p.set_defaults(run=_run_flow)


def _run_flow(args, out):
    if args.plot is not None:
        _check_plot(args)  # before any work: a bad path is one line, nothing computed
    spec, values, bind = _numeric_setup(args)
    result = numeric.flow(spec.network, values, bind=bind)
    tex = None
    if args.plot is not None:  # rendered before anything is printed: a network without units prints nothing
        from .documents.plots import render_plot_document

        try:
            tex = render_plot_document(spec.network, values, bind)
        except NetworkError:
            raise
        except ValueError as err:  # no unit to plot
            raise UsageError(f"--plot {args.plot}: {args.spec}: {err}") from None
    _emit_report(out, args.format, result)
    return 0 if tex is None else _write_plot(args, tex)


def _check_plot(args):
    """--plot FILE.pdf: a .pdf name, not an input, a regular file in a writable directory."""
    from .output import OutputError, writable_target

    if what := _input_file(args, args.plot):
        raise UsageError(f"--plot {args.plot}: this is {what}; choose another file")
    if not args.plot.lower().endswith(".pdf"):
        raise UsageError(f"--plot {args.plot}: the plot is a PDF; name the file FILE.pdf")
    try:
        writable_target(args.plot)
    except OutputError as err:  # names the path already
        raise UsageError(str(err)) from None


def _write_plot(args, tex):
    """Compile ``tex`` in a temporary folder and put only the PDF in place (atomically); on
    a LaTeX failure the log goes next to the PDF's place and the error names it."""
    import shutil
    import tempfile
    from pathlib import Path

    from .output import OutputError

    _check_plot(args)  # again, just before writing
    target = Path(args.plot)
    work = Path(tempfile.mkdtemp(prefix="symprop-plot-"))
    try:
        source = work / target.with_suffix(".tex").name
        write_atomic(source, tex)
        try:
            pdf = compile_pdf(source, keep_log=False)
        except LatexError as err:
            log = target.with_suffix(".log")
            try:
                write_atomic(log, source.with_suffix(".log").read_bytes())
                message = str(err).replace(str(source.with_suffix(".log")), str(log))
            except OSError:
                message = str(err)
            print(f"symprop: --plot {args.plot}: {message.replace(str(source), 'the plot')}", file=sys.stderr)
            return 1
        write_atomic(target, pdf.read_bytes())
    except OutputError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"cannot write {args.plot}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"symprop: wrote {args.plot}", file=sys.stderr)
    return 0


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


# -- Jacobians: a vector-valued spec (outputs instead of a loss) -----------------------

def _jacobian(args, spec):
    """The Jacobian of a vector-valued spec with respect to ``--wrt`` (inputs, parameters or
    inner nodes; default: the inputs, or the parameters when it has none)."""
    from .jacobian import jacobian

    names = args.wrt or None
    for name in names or ():
        if name not in spec.symbols:
            raise UsageError(f"{spec.file}: --wrt {name}: no such input, parameter or node")
        if spec.symbols[name] in spec.function.targets:
            raise UsageError(f"{spec.file}: --wrt {name}: {name} is a target; differentiate with respect to "
                             "an input, a parameter or an inner node")
    try:
        return jacobian(spec.function, names, method=getattr(args, "method", None) or "top-down",
                        max_paths=getattr(args, "max_paths", None))
    except NetworkError as err:
        key = f"--wrt {err.symbol}" if names and err.symbol is not None else "[network]"
        raise UsageError(f"{spec.file}: {key}: {err}") from None


def _bound_jacobian_steps(args, J):
    """Refuse a Jacobian whose entries' derivations would print more than ``limits.MAX_STEPS``
    steps in all (many outputs times many variables), as _bound_steps does for a loss."""
    from .derive import step_estimate

    total = 0
    for o in J.outputs:
        total += step_estimate(J.network.networks[o], J.wrt, limits.MAX_STEPS)
        if total > limits.MAX_STEPS:
            raise UsageError(f"{args.spec}: the {J.shape[0]:,}×{J.shape[1]:,} entries of the Jacobian would print "
                             f"more steps than allowed ({limits.says('MAX_STEPS')}); name the variables with --wrt")


def _run_derive_jacobian(args, spec, out):
    if args.form is not None:
        raise UsageError(f"{args.spec}: --form applies to a [layers] spec; this one is a vector-valued function")
    J = _jacobian(args, spec)
    _bound_jacobian_steps(args, J)
    if args.format == "text":
        out.write(report.text(J) + "\n")
    else:
        out.write(_json(report.json(J), ensure_ascii=False))


def _run_grad_jacobian(args, spec, out):
    from .jacobian import jacobian_at
    from .spec import read_values_file

    if args.gates:
        raise UsageError(f"{args.spec}: --gates stages a scalar loss; this spec is a vector-valued function")
    values = dict(spec.values)
    if args.values:
        def value_of(name, key, batch):
            if name not in spec.symbols:
                raise SpecError(args.values, key, f"unknown symbol {name!r} (not in {spec.file})")
            if spec.symbols[name] in spec.function.nodes:
                raise SpecError(args.values, key, f"{name} is a node; values are for inputs, targets and parameters")
            return spec.symbols[name]

        values.update(read_values_file(args.values, value_of))
    J = _jacobian(args, spec)
    _emit_report(out, args.format, jacobian_at(J, values, bind=_bindings(spec, args.bind)))


def _run_solve_jacobian(args, spec, out):
    from .documents.jacobian import render_jacobian_solution

    if getattr(args, "checkpoints", None) is not None:
        raise UsageError(f"{args.spec}: --checkpoints needs a [layers] spec; this one is a vector-valued function")
    J = _jacobian(args, spec)
    _bound_jacobian_steps(args, J)
    tex = render_jacobian_solution(J, values=spec.values, bind=_bindings(spec, args.bind), title=args.title,
                                   standalone=not args.fragment)
    return _emit(args, tex, out)


# -- entry point ------------------------------------------------------------------------

# -- hvp and hessian: second order, by the R-operator ------------------------------------

def _add_hvp(commands):
    p = commands.add_parser("hvp", help="the Hessian-vector product Hv along a direction v, derived by the R-operator")
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--values", metavar="FILE", help="a TOML file whose [values] (or top-level keys) override the spec's")
    p.add_argument("--bind", action="append", metavar="G=NAME", help="bind a generic function to an activation, e.g. g=tanh (repeatable)")
    p.add_argument("--format", choices=("text", "json", "latex"), default="text",
                   help="latex: a worked solution of the R-forward and R-backward passes")
    p.add_argument("--v", metavar="FILE|NAME=VALUE,...|random",
                   help="the direction: a TOML file ([direction] table or top-level keys), name=value pairs, or random "
                        "(with --seed); default: the spec's [direction] table; parameters left out are 0")
    p.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="the seed of --v random (default 0)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically); default: standard output")
    p.add_argument("--pdf", action="store_true", help="with --format latex and -o: also compile the PDF")
    p.add_argument("--title", help="the LaTeX document's title (printed literally)")
    p.set_defaults(run=_run_hvp)


def _run_hvp(args, out):
    from .hvp import hvp

    if args.pdf and (args.format != "latex" or args.output is None):
        raise UsageError("--pdf needs --format latex and -o FILE.tex")
    if args.title is not None and args.format != "latex":
        raise UsageError("--title goes with --format latex")
    _check_output(args)
    loaded = _load(args.spec, Spec, Layers)
    if isinstance(loaded, Layers):
        return _run_hvp_matrix(args, loaded, out)
    spec, values, bind = _numeric_setup(args)
    result = hvp(spec.network, values, _scalar_direction(args, spec), bind=bind)
    if args.format == "latex":
        return _emit(args, _hvp_document(result, args.title), out)
    return _emit(args, report.text(result) + "\n" if args.format == "text" else _json(report.json(result)), out)


def _hvp_document(result, title=None, standalone=True):
    from .documents.hvp import render_hvp_solution

    return render_hvp_solution(result, title=title, standalone=standalone)


def _run_solve_hvp(args, out):
    """``solve SPEC --hvp``: the worked R-operator solution (the spec's [direction] as v)."""
    from .hvp import hvp

    if args.wrt or args.method not in (None, "top-down"):
        raise UsageError(f"{args.spec}: --hvp works the whole R-operator pass; leave out --wrt and --method")
    if args.pdf and args.fragment:
        raise UsageError("--pdf needs a standalone document; leave out --fragment")
    _check_output(args)
    spec = _load(args.spec, Spec, Layers)
    if isinstance(spec, Layers):
        raise UsageError(f"{args.spec}: solve --hvp takes a spec with [nodes]; for a [layers] spec, "
                         "`symprop hvp SPEC --format latex` writes the matrix form")
    if not spec.direction:
        raise UsageError(f"{spec.file}: no direction v: solve --hvp takes the spec's [direction] table "
                         "(`symprop hvp SPEC --v ... --format latex` takes any)")
    result = hvp(spec.network, dict(spec.values), dict(spec.direction), bind=_bindings(spec, args.bind))
    return _emit(args, _hvp_document(result, args.title, standalone=not args.fragment), out)


def _scalar_direction(args, spec) -> dict:
    """The direction v by parameter symbol: --v random (standard normal, --seed), --v as
    :func:`_direction` reads it, or the spec's [direction] table."""
    params = spec.network.params
    if getattr(args, "v", None) == "random":
        import numpy as np

        rng = np.random.default_rng(args.seed)
        return {p: float(x) for p, x in zip(params, rng.standard_normal(len(params)))}
    if getattr(args, "v", None) is None:
        if not spec.direction:
            raise UsageError(f"{spec.file}: no direction v: give --v FILE, --v NAME=VALUE,..., --v random "
                             "(with --seed N) or a [direction] table in the spec")
        return dict(spec.direction)
    return _direction(args, None, parameter_named(params))


def _direction(args, table, parameter) -> dict:
    """The direction v from ``--v NAME=VALUE,...``, ``--v FILE`` (its [direction] or [values]
    table, or its top-level keys) or, without --v, the spec's [direction] ``table``; names go
    through ``parameter`` (see :func:`symprop.spec.read_direction`), and parameters left out
    are 0. Every problem is one line naming the file and key, or the pair."""
    text = args.v
    if text is None:
        if table is None:
            raise UsageError(f"{args.spec}: no direction v: give --v FILE, --v NAME=VALUE,..., --v random "
                             "(with --seed N) or a [direction] table in the spec")
        if not isinstance(table, dict):
            raise SpecError(args.spec, "[direction]", "must be a table of parameter = number")
        return read_direction(table, args.spec, parameter)
    if "=" not in text:  # a file
        if not os.path.isfile(text):
            raise UsageError(f"--v {text}: no such file; give --v FILE, --v NAME=VALUE,... or --v random")
        raw = parse_toml(read_text(text), text)
        key = next((k for k in ("direction", "values") if k in raw), None)
        if key is not None and (len(raw) > 1 or not isinstance(raw[key], dict)):
            raise SpecError(text, f"[{key}]", f"give the direction either in a [{key}] table or as top-level "
                                              "keys, not both")
        return read_direction(raw[key] if key else raw, text, parameter, f"[{key}] " if key else "")
    direction = {}
    for item in text.split(","):
        name, sep, number = (part.strip() for part in item.partition("="))
        if not (sep and name and number):
            raise UsageError(f"--v {item.strip()!r}: write NAME=VALUE pairs separated by commas, e.g. w_1=1,b_1=0.5")
        try:
            key = parameter(name)
        except ValueError as err:
            raise UsageError(f"--v {item.strip()}: {err}") from None
        try:
            value = float(number)
        except ValueError:
            raise UsageError(f"--v {item.strip()}: not a number") from None
        if not math.isfinite(value):
            raise UsageError(f"--v {item.strip()}: not a finite number")
        if key in direction:
            raise UsageError(f"--v {name}: given twice")
        direction[key] = value
    return direction


def _add_hessian(commands):
    p = commands.add_parser("hessian", help="the full Hessian of a small network (symbolic and numeric), its "
                            "eigenvalues and the Gauss-Newton matrix")
    _add_numeric_options(p)
    p.set_defaults(run=_run_hessian)


def _run_hessian(args, out):
    from .hvp import hessian

    if isinstance(_load(args.spec, Spec, Layers), Layers):
        raise UsageError(f"{args.spec}: hessian takes a spec with [nodes] (a small network); for a [layers] spec, "
                         "`symprop hvp` gives Hv")
    spec, values, bind = _numeric_setup(args)
    P = len(spec.network.params)
    if P > limits.MAX_HESSIAN_PARAMS:
        raise UsageError(f"{args.spec}: the Hessian of {P:,} parameters has {P * P:,} entries, more than a small "
                         f"network's ({limits.says('MAX_HESSIAN_PARAMS')}); `symprop hvp` gives Hv for any size")
    _emit_report(out, args.format, hessian(spec.network, values, bind=bind))


VERBS = [_add_derive, _add_solve, _add_exam, _add_grade, _add_grad, _add_check, _add_step, _add_flow, _add_circuit,
         _add_hvp, _add_hessian]


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
