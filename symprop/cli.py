"""The ``symprop`` command.

Every verb reads a spec file, so every verb reports a bad spec the same way: one line
naming the file, the key and the problem, and exit status 2, never a traceback.

>>> main(["--version"])
symprop 0.1.0
0
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import __version__
from .derive import METHODS
from .graph import NetworkError
from .printing import spec_chain, spec_string

__all__ = ["main"]


class UsageError(Exception):
    """A problem with the command line or its input: printed as one line, exit status 2."""


def _load(path):
    from .spec import load_spec

    return load_spec(path)


def _wrt_list(spec, names):
    if not names:
        return None
    missing = [n for n in names if n not in spec.symbols]
    if missing:
        raise UsageError(f"{spec.file}: --wrt {missing[0]}: no such parameter or input")
    return [spec.symbols[n] for n in names]


# -- derive -----------------------------------------------------------------------------

def _add_derive(commands):
    p = commands.add_parser("derive", help="derive dE/dw by the chain rule and show the steps")
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--wrt", action="append", metavar="NAME", help="a parameter or input (repeatable); default: every parameter")
    p.add_argument("--method", choices=METHODS, default="top-down")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--max-paths", type=int, default=1000, help="refuse path forms past this many paths")
    p.set_defaults(run=_run_derive)


def _run_derive(args, out):
    spec = _load(args.spec)
    wrt = _wrt_list(spec, args.wrt)
    derived = spec.network.derive(wrt, method=args.method, max_paths=args.max_paths)
    if args.format == "text":
        out.write("\n\n".join(str(d) for d in derived.values()) + "\n")
    else:
        json.dump({"derivations": [_derivation_json(d) for d in derived.values()]}, out, indent=2)
        out.write("\n")


def _derivation_json(d) -> dict:
    result = d.substituted
    record = {
        "wrt": str(d.wrt),
        "method": d.method,
        "steps": [{"rule": s.rule, "equation": f"{spec_string(s.lhs)} = {spec_chain(s.rhs)}"} for s in d.steps],
        "result": None if result is None else spec_string(result),
        "forms": {
            "deltas": spec_chain(d.in_deltas),
            "local": None if d.in_local_partials is None else spec_chain(d.in_local_partials),
            "paths": None if d.as_paths is None else spec_chain(d.as_paths),
        },
        "path_count": d.path_count,
    }
    if d.notes:
        record["note"] = "; ".join(d.notes)
    return record


# -- solve and exam: LaTeX documents ---------------------------------------------------

def _add_document_options(p):
    p.add_argument("spec", help="the TOML spec file")
    p.add_argument("--wrt", action="append", metavar="NAME", help="a parameter or input (repeatable); default: every parameter")
    p.add_argument("-o", "--output", metavar="FILE.tex", help="write the LaTeX here (atomically); default: standard output")
    p.add_argument("--pdf", action="store_true", help="also compile FILE.pdf with latexmk or pdflatex (needs -o)")
    p.add_argument("--title", help="the document title (printed literally)")


def _add_solve(commands):
    p = commands.add_parser("solve", help="write a worked LaTeX solution of dE/dw")
    _add_document_options(p)
    p.add_argument("--method", choices=METHODS, default="top-down")
    p.add_argument("--fragment", action="store_true", help="no preamble: a fragment to \\input into your own document")
    p.set_defaults(run=_run_solve)


def _run_solve(args, out):
    from .render import render_solution

    if args.pdf and args.fragment:
        raise UsageError("--pdf needs a standalone document; leave out --fragment")
    _check_output(args)
    spec = _load(args.spec)
    tex = render_solution(
        spec.network, _wrt_list(spec, args.wrt), method=args.method, values=spec.values,
        bind=spec.bind, title=args.title, standalone=not args.fragment,
    )
    return _emit(args, tex, out)


def _add_exam(commands):
    p = commands.add_parser("exam", help="write an exam question (exam class) with its worked solution")
    _add_document_options(p)
    p.add_argument("--method", choices=METHODS, default="bottom-up", help="the method of the solution (default: bottom-up, easier by hand)")
    p.add_argument("--answers", action="store_true", help="print the answer sheet (\\printanswers); default: the question sheet")
    p.set_defaults(run=_run_exam)


def _run_exam(args, out):
    from .render import render_exam

    _check_output(args)
    spec = _load(args.spec)
    tex = render_exam(
        spec.network, _wrt_list(spec, args.wrt), method=args.method, values=spec.values,
        bind=spec.bind, title=args.title, answers=args.answers,
    )
    return _emit(args, tex, out)


def _check_output(args):
    if args.pdf and args.output is None:
        raise UsageError("--pdf needs -o FILE.tex (the PDF is written next to it)")


def _emit(args, tex, out):
    """Print the LaTeX, or write it atomically and optionally compile it."""
    from .render import LatexError, compile_pdf, write_atomic

    if args.output is None:
        out.write(tex)
        return 0
    try:
        write_atomic(args.output, tex)
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


# -- entry point ------------------------------------------------------------------------

VERBS = [_add_derive, _add_solve, _add_exam]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symprop", description="Derive backpropagation symbolically, the way the course texts do it by hand."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="verb", metavar="VERB")
    for add in VERBS:
        add(commands)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a failed check, 2 bad input)."""
    from .spec import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"symprop {__version__}")
        return 0
    if not args.verb:
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _warn_line
        try:
            status = args.run(args, sys.stdout)
        except (SpecError, UsageError) as err:
            print(f"symprop: {err}", file=sys.stderr)
            return 2
        except NetworkError as err:
            print(f"symprop: {args.spec}: {err}", file=sys.stderr)
            return 2
    return status or 0


def _warn_line(message, category, filename, lineno, file=None, line=None):
    print(f"symprop: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
