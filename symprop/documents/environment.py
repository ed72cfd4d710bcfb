r"""The jinja2 environment of the LaTeX and HTML templates (``templates/``).

Templates use LaTeX-safe delimiters: ``\VAR{x}`` prints a value, ``\BLOCK{if ...}`` is a
statement, ``\#{...}`` a comment. They hold prose and layout only: every value arrives
printed, every sentence finished (:mod:`symprop.documents.prose`). Filters:
``latex_escape`` for text a user typed, ``html`` for a sentence in Moodle's HTML.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from ..printing import latex_escape
from .prose import html

__all__ = ["environment"]

_SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


@functools.cache
def environment() -> jinja2.Environment:
    r"""The jinja2 environment for ``templates/*.tex.j2`` (LaTeX-safe delimiters).

    Templates come from the installed package (``symprop/templates`` in a wheel) or, in a
    source tree or an editable install, from the top-level ``templates/`` directory.

    >>> environment().from_string(r"\VAR{title|latex_escape}").render(title="50% & more")
    '50\\% \\& more'
    """
    try:
        loader: jinja2.BaseLoader = jinja2.PackageLoader("symprop", "templates")
    except ValueError:  # not installed as a wheel: the templates live next to the package
        loader = jinja2.FileSystemLoader(str(_SOURCE_TEMPLATES))
    env = jinja2.Environment(
        loader=loader,
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        line_statement_prefix=None,
        line_comment_prefix=None,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["latex_escape"] = latex_escape
    env.filters["html"] = html
    return env
