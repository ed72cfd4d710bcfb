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


# -- entry point ------------------------------------------------------------------------

VERBS = [_add_derive]


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
