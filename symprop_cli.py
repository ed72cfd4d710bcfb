"""The ``symprop`` command's entry point, outside the package: importing symprop loads SymPy
and NumPy, which takes a second, and Ctrl-C in that second (or while the arguments are read) is
"interrupted", exit status 130, rather than a traceback from inside an import."""

import os
import signal
import sys


def main() -> int:
    """Run the command line and end the process with its exit status."""
    try:
        from symprop.cli import main as run
        status = run()
    except KeyboardInterrupt:  # before the command line's own handler is in place
        print("symprop: interrupted", file=sys.stderr)
        status = 130
    # The work is done and written. Ending here skips the interpreter's shutdown, which
    # frees every expression one by one (a second for a large network) and, having
    # restored Python's default SIGINT handling, would let a late Ctrl-C kill the process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the output is whole: let it be written
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: the reader has what it wanted
        pass
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
