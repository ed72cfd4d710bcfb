r"""Worked solutions and exam documents: jinja2 templates filled with printed LaTeX.

Code holds the math, templates hold the prose: this module derives, prints every equation
with :class:`~symprop.printing.LatexPrinter` and hands the templates plain data (strings,
lists and dicts). The templates (``templates/*.tex.j2``) use LaTeX-safe delimiters:
``\VAR{x}`` prints a value, ``\BLOCK{if ...}`` is a statement, ``\#{...}`` a comment. Text a
user typed (a title) goes through the ``latex_escape`` filter; display names are checked
by :func:`~symprop.printing.latex_name`.

>>> import sympy as sp
>>> from symprop import Network, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> tex = render_solution(net, w, method="bottom-up", values={"x": 1.0, "t": 1.0, "w": 0.0})
>>> tex.startswith("\\documentclass") and r"\frac{d E}{d w} &= \frac{d E}{d h}" in tex
True
>>> r"\boxed{-0.125}" in tex  # dE/dw at the values, from the numeric layer
True
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2
import sympy as sp

from . import functions as fn
from .derive import Partial, Total, derive, local_partial
from .graph import Network, NetworkError
from .printing import LatexPrinter, latex_escape, latex_number, latex_softmax

__all__ = [
    "environment", "solution_context", "exam_context", "render_solution", "render_exam",
    "write_atomic", "compile_pdf", "LatexError",
]

# A line of a displayed equation holds about this many characters of visible math
# (a stacked fraction counts as 4); longer sums and products break onto more lines.
LINE_WIDTH = 52
# Networks with more drawable nodes than this get no figure (it would be unreadable).
MAX_FIGURE_NODES = 40
# The figure's node centres span at most this many cm (the text is 16.6 cm wide).
FIGURE_WIDTH, FIGURE_HEIGHT = 14.0, 14.0
# Path lists longer than this are summarised by their count.
MAX_LISTED_PATHS = 12
# Derivation step lists longer than this are left out of a document (use fewer --wrt).
MAX_STEPS = 400

_SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class LatexError(RuntimeError):
    """pdflatex failed, or is not installed; the message says where the log is."""


# -- the jinja2 environment ------------------------------------------------------------

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
    return env


# -- documents --------------------------------------------------------------------------

def render_solution(
    net: Network,
    wrt=None,
    *,
    method: str = "top-down",
    values: Mapping | None = None,
    bind: Mapping[str, str] | None = None,
    title: str | None = None,
    standalone: bool = True,
) -> str:
    """A worked solution of dE/dw for ``wrt`` (a name, a symbol, a list, or None for every
    parameter) as LaTeX: a standalone article, or with ``standalone=False`` a fragment to
    ``\\input`` (it lists the packages it needs). ``values`` (Symbol -> number) and
    ``bind`` (generic name -> activation name) add numbers when the numeric layer can
    evaluate the network.
    """
    context = solution_context(net, wrt, method=method, values=values, bind=bind, title=title, standalone=standalone)
    return environment().get_template("solution.tex.j2").render(context)


def render_exam(
    net: Network,
    wrt=None,
    *,
    method: str = "bottom-up",
    values: Mapping | None = None,
    bind: Mapping[str, str] | None = None,
    title: str | None = None,
    answers: bool = False,
) -> str:
    """An exam question on the ``exam`` class: the network figure, the given values and
    "compute dE/dw", with the worked solution in ``solution`` environments, printed only
    with ``\\printanswers`` (``answers=True`` writes that line; otherwise it is a comment).
    """
    context = exam_context(net, wrt, method=method, values=values, bind=bind, title=title, answers=answers)
    return environment().get_template("exam.tex.j2").render(context)


def solution_context(net, wrt=None, *, method="top-down", values=None, bind=None, title=None, standalone=True) -> dict:
    """The data the solution template receives: plain strings, lists and dicts."""
    doc = _Document(net, values, bind)
    derivations = _derive(net, wrt, method)
    return {
        "title": title,
        "standalone": standalone,
        "network": doc.network(),
        "figure": doc.figure([d.wrt for d in derivations]),
        "derivations": [doc.derivation(d) for d in derivations],
        "table": doc.table(),
        "notes": doc.notes,
    }


def exam_context(net, wrt=None, *, method="bottom-up", values=None, bind=None, title=None, answers=False) -> dict:
    """The data the exam template receives: the question's figure has no numbers (its deltas
    would give the answer away); the one with forward values and deltas goes in the solution."""
    context = solution_context(net, wrt, method=method, values=values, bind=bind, title=title)
    context["answers"] = answers
    figure = context["figure"]
    context["question_figure"] = None if figure is None else {
        **figure,
        "nodes": [{**n, "number": None, "delta": None} for n in figure["nodes"]],
        "numbers": False,
    }
    return context


def _derive(net, wrt, method):
    derived = derive(net, wrt, method=method)
    return [derived] if not isinstance(derived, dict) else list(derived.values())


class _Document:
    """Prints one network's equations, numbers and figure for the templates."""

    def __init__(self, net: Network, values, bind):
        self.net = net
        self.notes: list[str] = []
        self.softmax_names, self.softmax_defs = _softmax_names(net)
        self.printer = LatexPrinter({"names": net.display, "softmax_names": self.softmax_names})
        self.given = {net.symbol(s) if isinstance(s, str) else s: v for s, v in (values or {}).items()}
        sizes = {len(v) for v in self.given.values() if isinstance(v, (tuple, list))}
        self.batch = max(sizes, default=None)
        if sizes:  # a batch: a worked solution follows one sample, the first
            self.given = {s: v[0] if isinstance(v, (tuple, list)) else v for s, v in self.given.items()}
        self.bind = dict(bind or {})
        self.numbers = self._numbers()

    def name(self, symbol) -> str:
        return self.printer.doprint(symbol)

    def math(self, expr) -> str:
        return self.printer.doprint(expr)

    def lines(self, expr, values=None, product=False) -> list[str]:
        printer = self.printer if values is None else self._value_printer(values)
        return _break_lines(printer, expr, product)

    def step_lines(self, step, values=None) -> list[str]:
        """A step's right-hand side; a local partial with one chain is one product."""
        product = step.rule == "local partial" and len(local_partial(self.net, step.lhs.of, step.lhs.wrt).products) == 1
        return self.lines(step.rhs, values, product)

    def _value_printer(self, values):
        return LatexPrinter({"names": self.net.display, "softmax_names": self.softmax_names, "values": values})

    # -- the network

    def network(self) -> dict:
        net = self.net
        given = []
        for s in net.leaves:
            if s in self.given:
                given.append({"name": self.name(s), "number": latex_number(self.given[s]), "role": net.role(s)})
        generics = sorted({f.base_name for k in net.order for f in _generic_calls(net.nodes[k])})
        return {
            "loss": self.name(net.loss),
            "definitions": [{"lhs": self.name(k), "lines": _fit([self.math(net.nodes[k])])} for k in net.order],
            "softmax": self.softmax_defs,
            "generics": [
                {"name": self.math(fn.generic(g)(sp.Symbol("u"))).split("\\left")[0], "bound": self.bind.get(g)}
                for g in generics
            ],
            "given": given,
            "batch": self.batch,  # the given values are the first of this many samples
            "inputs": [self.name(s) for s in net.inputs],
            "targets": [self.name(s) for s in net.targets],
            "params": [self.name(s) for s in net.params],
            "reduction": net.reduction,
        }

    # -- one derivation

    def derivation(self, d) -> dict:
        record = {
            "wrt": self.name(d.wrt),
            "goal": self.math(Total(d.target, d.wrt)),
            "method": d.method,
            "users": [self.name(k) for k in d.users],
            "path_count": d.path_count,
            "groups": None,
            "paths": None,
            "numbers": None,
            "notes": list(d.notes),
        }
        steps = d.steps
        if len(steps) > MAX_STEPS:
            record["notes"].append(f"{len(steps)} steps: too many to print; ask for fewer weights or a smaller network")
        else:
            record["groups"] = self._groups(d, steps)
        record["paths"] = self._paths(d)
        record["notes"] = list(dict.fromkeys(record["notes"] + d.notes))
        if self.numbers is not None and record["groups"] is not None:
            record["numbers"] = self._derivation_numbers(d, steps)
        return record

    def _groups(self, d, steps) -> list[dict]:
        """Each main step (a delta, the bottom factor) with the local partials it uses."""
        groups: list[dict] = []
        for step in steps:
            if step.rule == "substitute":
                continue
            row = {"lhs": self.math(step.lhs), "lines": self.step_lines(step)}
            if step.rule == "local partial" and groups:
                row["because"] = list(step.because)
                groups[-1]["locals"].append(row)
                for rule in step.because:
                    if rule not in groups[-1]["because"]:
                        groups[-1]["because"].append(rule)
                continue
            partials = [x for t in sp.Add.make_args(step.rhs) for x in sp.Mul.make_args(t) if isinstance(x, Partial)]
            groups.append({
                **row,
                "rule": step.rule,
                "node": None if step.node is None else self.name(step.node),
                # the nodes this step sums over: consumers of the node, or users of w
                "over": [self.name(p.of) for p in partials],
                "locals": [],
                "because": [],
            })
        return groups

    def _paths(self, d) -> dict:
        paths = d.paths
        record = {"count": d.path_count, "listed": [], "abstract": None, "local": None}
        if paths is None:
            return record
        if len(paths) <= MAX_LISTED_PATHS:
            record["listed"] = [r" \to ".join(self.name(s) for s in p) for p in paths]
        record["abstract"] = self.lines(d.as_paths)
        record["local"] = self.lines(d.in_local_partials)
        return record

    # -- numbers

    def _numbers(self):
        """Forward values, deltas and gradients from the numeric layer, or None (with a note)."""
        net = self.net
        missing = [s for s in net.leaves if s not in self.given]
        if not self.given:
            return None
        if missing:
            return self._no_numbers(f"no value for {', '.join(map(str, missing))}")
        from .numeric import gradient

        try:
            result = gradient(net, dict(self.given), bind=self.bind or None)
        except (ValueError, TypeError, NetworkError) as err:  # NumericError names the symbol
            return self._no_numbers(str(err))
        point = {s: float(v) for s, v in self.given.items()}
        point.update({k: _one(v) for k, v in result.values.items()})
        return {
            "loss": float(result.loss),
            "point": point,
            "deltas": {k: _one(v) for k, v in result.deltas.items()},
            "gradient": {s: float(v) for s, v in result.gradient.items()},
        }

    def _no_numbers(self, why):
        message = f"numbers left out: {why}"
        self.notes.append(message)
        warnings.warn(message, stacklevel=4)
        return None

    def _evaluate(self, expr) -> float:
        """``expr`` (node symbols, leaves, bound generics) at the forward values."""
        expr = _bind_generics(expr, self.bind)
        point = {s: sp.Float(v, 17) for s, v in self.numbers["point"].items()}
        return float(sp.N(fn.explicit(expr).xreplace(point), 17))

    def _softmax_values(self) -> dict:
        out = {}
        for logits in self.softmax_names:
            for k in range(1, len(logits) + 1):
                y = fn.softmax(k, *logits)
                out[y] = self._evaluate(y)
        return out

    def _derivation_numbers(self, d, steps) -> list[dict]:
        """Formula, numbers substituted and value of every step, in the order a hand
        computation takes: from the loss downward, each delta after its local partials."""
        num = self.numbers
        local_value = {
            s.lhs: self._evaluate(local_partial(self.net, s.lhs.of, s.lhs.wrt).expr)
            for s in steps if s.rule == "local partial"
        }
        values = {**num["point"], **self._softmax_values(), **local_value}
        values.update({Total(d.target, k): v for k, v in num["deltas"].items()})
        if d.method == "bottom-up":  # numbers are computed from the loss down even so
            steps = derive(self.net, d.wrt, method="top-down").steps
        groups: list[list] = []
        for step in steps:
            if step.rule == "substitute":
                continue
            if step.rule == "local partial" and groups:
                groups[-1].insert(-1, step)
            else:
                groups.append([step])
        rows = []
        for step in (s for group in groups for s in group):
            if step.rule == "local partial":
                value = local_value[step.lhs]
            elif step.lhs == Total(d.target, d.wrt):
                value = num["gradient"][d.wrt]
            else:
                value = num["deltas"][step.lhs.wrt]
            formula = self.step_lines(step)
            substituted = self.step_lines(step, {s: v for s, v in values.items() if s != step.lhs})
            number = latex_number(value)
            if substituted in ([number], [rf"\left({number}\right)"]):
                substituted = None  # "= 0.52 = 0.52" says nothing
            parts = formula + (substituted or []) + [number]
            rows.append({
                "lhs": self.math(step.lhs),
                "formula": formula,
                "substituted": substituted,
                "value": number,
                # short enough to read as one line: formula = numbers = value
                "one_line": len(parts) == 2 + (substituted is not None) and sum(map(_width, parts)) <= LINE_WIDTH,
            })
        return rows

    # -- table and figure

    def table(self):
        num = self.numbers
        if num is None:
            return None
        net = self.net
        nodes = [
            {"name": self.name(k), "number": latex_number(num["point"][k]),
             "delta": latex_number(num["deltas"][k]) if k in num["deltas"] else ""}
            for k in net.order
        ]
        outputs = [
            {"name": self.math(y), "number": latex_number(v)} for y, v in self._softmax_values().items()
        ]
        leaves = [
            {"name": self.name(s), "number": latex_number(num["point"][s]),
             "gradient": latex_number(num["gradient"][s]) if s in num["gradient"] else "", "role": net.role(s)}
            for s in net.inputs + net.params
        ]
        return {"loss": latex_number(num["loss"]), "nodes": nodes, "outputs": outputs, "leaves": leaves}

    def figure(self, highlight=()):
        """Nodes placed by depth (inputs left, the loss right), edges labelled by weight."""
        net = self.net
        drawn = list(net.inputs) + [k for k in net.order]
        if len(drawn) > MAX_FIGURE_NODES:
            self.notes.append(f"no figure: {len(drawn)} nodes are too many to draw")
            return None
        level = {s: 0 for s in net.inputs}
        for k in net.order:
            level[k] = 1 + max((level[s] for s in net.producers[k] if s in level), default=-1)
        columns: dict[int, list] = {}
        for s in drawn:
            columns.setdefault(level[s], []).append(s)
        ident = {s: f"n{i}" for i, s in enumerate(drawn)}
        num = self.numbers
        # spacing in cm: roomy for small nets, squeezed to fit the page for deep or wide ones
        dx = min(3.2, FIGURE_WIDTH / max(1, max(columns)))
        dy = min(2.0, FIGURE_HEIGHT / max(1, max(len(m) for m in columns.values()) - 1))
        nodes = []
        for col, members in sorted(columns.items()):
            for row, s in enumerate(members):
                nodes.append({
                    "id": ident[s],
                    "x": f"{dx * col:.2f}",
                    "y": f"{dy * ((len(members) - 1) / 2 - row):.2f}",
                    "label": self.name(s),
                    "number": None if num is None else latex_number(num["point"][s]),
                    "delta": None if num is None or s not in num["deltas"] else latex_number(num["deltas"][s]),
                })
        edges = []
        for k in net.order:
            for s in net.producers[k]:
                if s in ident:
                    weight = _edge_weight(net, s, k)
                    edges.append({
                        "source": ident[s], "target": ident[k],
                        "label": None if weight is None else self.name(weight),
                        "highlight": weight in highlight,
                    })
        return {"nodes": nodes, "edges": edges, "numbers": num is not None}


def _one(value) -> float:
    """The number of a single sample (the numeric layer keeps one array entry per sample)."""
    return float(getattr(value, "ravel", lambda: [value])()[0])


def _softmax_names(net):
    """``\\hat{y}`` for the network's softmax when that name is unambiguous, else nothing.

    Unambiguous: one softmax (one tuple of logits) in the whole network, and no display
    name already using ``\\hat{y}``.
    """
    logits = set()
    for expr in net.nodes.values():
        for f in expr.atoms(fn.softmax, fn.softmax_cross_entropy):
            logits.add(tuple(f.logits))
    if len(logits) != 1 or any(r"\hat{y}" in name for name in net.display.values()):
        return {}, None
    (only,) = logits
    names = {only: r"\hat{y}"}
    return names, {"lhs": r"\hat{y}_{k}", "rhs": latex_softmax(only, net.display)}


def _generic_calls(expr):
    return [f for f in expr.atoms(sp.Function) if isinstance(f, fn.GenericFunction)]


def _bind_generics(expr, bind):
    """Replace each generic g (and g', g'') by the activation it is bound to."""
    for f in sorted({type(c) for c in _generic_calls(expr)}, key=lambda c: (c.base_name, c.order)):
        if f.base_name not in bind:
            raise NetworkError(f"{f.base_name} is a generic function; bind it to an activation to get numbers")
        u = sp.Dummy("u")
        activation = fn.ACTIVATIONS[bind[f.base_name]]
        expr = expr.replace(f, sp.Lambda(u, sp.diff(activation(u), u, f.order)))
    return expr


def _edge_weight(net, source, target):
    """The one parameter multiplying ``source`` in ``target``'s expression, if there is one."""
    found = set()
    for sub in sp.preorder_traversal(net.nodes[target]):
        if sub.is_Mul and source in sub.args:
            found.update(a for a in sub.args if a in net.params)
    return found.pop() if len(found) == 1 else None


# -- line breaking ----------------------------------------------------------------------

_FRACTION = re.compile(r"\\frac\{(?:[^{}]|\{[^{}]*\})*\}\{(?:[^{}]|\{[^{}]*\})*\}")
_SCRIPT = re.compile(r"[_^]\{([^{}]*)\}")


def _width(tex: str) -> int:
    """A rough count of the characters ``tex`` shows (fractions stack, scripts are small)."""
    tex = _FRACTION.sub("ffff", tex)
    tex = re.sub(r"\\(left|right)", "", tex)
    tex = _SCRIPT.sub(lambda m: "x" * ((len(m.group(1)) + 1) // 2), tex)
    tex = re.sub(r"\\operatorname\{([^{}]*)\}", r"\1", tex)
    tex = re.sub(r"\\[A-Za-z]+", "x", tex)
    return len(re.sub(r"[{}\s]", "", tex)) + 2 * len(re.findall(r"[+=-]", tex))


def _break_lines(printer: LatexPrinter, expr, product: bool = False) -> list[str]:
    """The chain sum ``expr`` as display lines of about ``LINE_WIDTH`` characters each.

    Lines break between terms (the next line starts with its sign) and, inside a very long
    product, between factors (the next line starts with ``\\cdot``).
    """
    lines: list[str] = []
    current, width = "", 0
    for i, (sign, factors) in enumerate(printer.terms(expr, product)):
        for j, factor in enumerate(factors):
            if j:
                piece, separator = factor, printer.separator(factor)
            elif i:
                piece, separator = f"{sign} {factor}", " "
            else:
                piece, separator = ("-" if sign == "-" else "") + factor, ""
            w = _width(piece)
            if current and width + w > LINE_WIDTH:
                lines.append(current)
                current, width = (piece if not j else r"\cdot " + factor), w
            else:
                current, width = current + separator + piece, width + w
    lines.append(current)
    return _fit(lines)


def _fit(lines: list[str]) -> list[str]:
    """Lines that cannot break (one huge factor) are set smaller rather than overflow."""
    return [rf"{{\scriptstyle {line}}}" if _width(line) > 1.3 * LINE_WIDTH else line for line in lines]


# -- files ------------------------------------------------------------------------------

def write_atomic(path, text: str | Iterable[str]) -> Path:
    """Write ``text`` (a string or chunks) to ``path`` all at once: into a temporary file in
    the same directory, then ``os.replace``. After a failure the old file (or none) remains.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for chunk in [text] if isinstance(text, str) else text:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def compile_pdf(tex_path, *, latexmk: bool = True, timeout: float = 300) -> Path:
    """Compile ``tex_path`` next to it with latexmk (or, without it or with
    ``latexmk=False``, pdflatex, rerun while the log asks); returns the PDF's path.

    Shell escape is off. On any LaTeX error, raises :class:`LatexError` with the first
    error line and the path of the log.
    """
    tex = Path(tex_path).resolve()
    log = tex.with_suffix(".log")
    flags = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "-no-shell-escape"]
    if latexmk and shutil.which("latexmk"):
        _run_tex(["latexmk", "-pdf", "-silent", f"-pdflatex=pdflatex {' '.join(flags)} %O %S", tex.name], tex, log, timeout)
    elif shutil.which("pdflatex"):
        for _ in range(3):
            _run_tex(["pdflatex", *flags, tex.name], tex, log, timeout)
            if "Rerun to get" not in log.read_text(encoding="utf-8", errors="replace"):
                break
    else:
        raise LatexError("neither latexmk nor pdflatex is installed; install TeX Live to get a PDF")
    return tex.with_suffix(".pdf")


def _run_tex(cmd, tex, log, timeout):
    try:
        done = subprocess.run(
            cmd, cwd=tex.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise LatexError(f"pdflatex took longer than {timeout:.0f} s on {tex}; the log is {log}") from None
    if done.returncode != 0:
        raise LatexError(f"pdflatex failed on {tex}: {_first_error(log)}; the log is {log}")


def _first_error(log: Path) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log was written"
    for line in text.splitlines():
        if line.startswith("!") or re.match(r"^[^:\s]+:\d+: ", line):
            return line.strip()
    return "see the log"
