"""Every bound symprop puts on its input and its work, in one place.

A bound turns an input that would run for hours, exhaust memory or overflow into a one-line
message that names it; README.md's "Limits" lists them with their messages. Change one for
a run with the environment variable ``SYMPROP_<NAME>``::

    SYMPROP_MAX_STEPS=200000 symprop derive big.toml

or in Python by assigning the attribute before the call (it is read at each use):

>>> import symprop.limits as limits
>>> limits.MAX_NESTING
200
>>> limits.says("MAX_NESTING")
'MAX_NESTING = 200; set SYMPROP_MAX_NESTING to change it'

A setting that is not a positive number is reported by the command line (exit status 2)
and leaves the default in place.
"""

import math
import os

__all__ = ["says", "INVALID"]

INVALID: dict[str, str] = {}  # SYMPROP_<NAME> settings that are not positive numbers


def _setting(name: str, default):
    text = os.environ.get("SYMPROP_" + name)
    if text is None:
        return default
    try:
        value = type(default)(text.strip().replace("_", ""))
    except ValueError:
        value = None
    if value is None or not (value > 0 and math.isfinite(value)):
        INVALID[name] = text
        return default
    return value


# -- reading a spec or an expression (symprop.spec) -----------------------------------------
MAX_EXPRESSION_LENGTH = _setting("MAX_EXPRESSION_LENGTH", 100_000)  # characters in one expression
MAX_NESTING = _setting("MAX_NESTING", 200)  # levels of one expression's syntax tree
MAX_LITERAL_DIGITS = _setting("MAX_LITERAL_DIGITS", 30)  # digits of a number literal
MAX_EXPONENT = _setting("MAX_EXPONENT", 1000)  # |n| of x**n for a number n
MAX_NUMBER_BITS = _setting("MAX_NUMBER_BITS", 20_000)  # bits of a number computed from literals
MAX_TOWER = _setting("MAX_TOWER", 10)  # levels of a power tower a**b**c...
MAX_SCALAR_PARAMS = _setting("MAX_SCALAR_PARAMS", 200_000)  # weights of a [layers] net in the scalar form

# -- deriving (symprop.derive, symprop.printing, the command line) ---------------------------
MAX_STEPS = _setting("MAX_STEPS", 50_000)  # derivation steps of one derive, solve or exam run
MAX_PATHS = _setting("MAX_PATHS", 1000)  # paths from a weight to the loss listed in the path form
MAX_PATH_FACTORS = _setting("MAX_PATH_FACTORS", 10_000)  # local partials in all paths of the path form
MAX_SUBSTITUTED_SIZE = _setting("MAX_SUBSTITUTED_SIZE", 100_000)  # tree nodes of a fully substituted gradient
MAX_PRINTED = _setting("MAX_PRINTED", 200_000)  # tree nodes of one printed expression
MAX_GATES = _setting("MAX_GATES", 2000)  # gates of one circuit
MAX_DOCUMENT_STEPS = _setting("MAX_DOCUMENT_STEPS", 400)  # steps of one weight's derivation in a document

# -- numbers (symprop.numeric, symprop.grade, the command line) ------------------------------
MAX_LAYERS_SCALAR_NUMBERS = _setting("MAX_LAYERS_SCALAR_NUMBERS", 20_000)  # weights of check/step/flow on [layers]
MAX_CHECKED_PARAMS = _setting("MAX_CHECKED_PARAMS", 2000)  # parameters of one check (two forward passes each)
MAX_DESCENT_STEPS = _setting("MAX_DESCENT_STEPS", 100_000)  # --steps of one step run
MAX_EXACT_DIGITS = _setting("MAX_EXACT_DIGITS", 700)  # digits of grade's exact evaluation
MAX_MAGNITUDE = _setting("MAX_MAGNITUDE", 1e300)  # |value| of grade's exact evaluation
MAX_EXPANDED_POWER = _setting("MAX_EXPANDED_POWER", 8)  # power of a sum grade expands to compare symbolically
MAX_GRADE_SECONDS = _setting("MAX_GRADE_SECONDS", 10.0)  # time grade spends evaluating at random points
MAX_PROOF_SECONDS = _setting("MAX_PROOF_SECONDS", 2.0)  # time grade spends proving a right answer symbolically
MAX_HESSIAN_PARAMS = _setting("MAX_HESSIAN_PARAMS", 30)  # parameters of `symprop hessian` (P² entries, P Hv passes)

# -- exams (symprop.exam, the command line) --------------------------------------------------
MAX_VARIANTS = _setting("MAX_VARIANTS", 5000)  # --variants of one exam run
MAX_VARIANT_SECONDS = _setting("MAX_VARIANT_SECONDS", 30.0)  # time to find one acceptable variant

# -- the process (symprop.cli) ---------------------------------------------------------------
STACK_MB = _setting("STACK_MB", 512)  # stack of the thread the verbs run in (deep networks recurse deeply)
RECURSION_LIMIT = _setting("RECURSION_LIMIT", 60_000)  # Python's recursion limit in that thread


def says(name: str) -> str:
    """How a message names a bound: its value and the setting that changes it."""
    value = globals()[name]
    shown = f"{value:,}" if isinstance(value, int) else f"{value:g}".replace("e+", "e")
    return f"{name} = {shown}; set SYMPROP_{name} to change it"
