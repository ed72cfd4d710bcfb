r"""The vector/matrix form of backpropagation for layered networks (seeds 000 and 003).

A layered network computes, for l = 1..L,

    z^l = W^l a^(l-1) + b^l,    a^l = f_l(z^l),    a^0 = x,

and a loss E of the output a^L (``ŷ`` when f_L is softmax) and the target y. Its matrix
derivation runs top-down with one gate rule of seed 000's table per step:

    δ^L   = ŷ - y                                (softmax + cross-entropy)
    δ^L   = Diag(f'(z^L)) dE/da^L                 (any other loss: elementwise f)
    δ^l   = Diag(f'(z^l)) (W^(l+1))^T δ^(l+1)     (z = Wx, then elementwise f; seed 003)
    dE/dW^l = δ^l (a^(l-1))^T                     (delta^T x)
    dE/db^l = δ^l                                 (z = x)

and over a batch (samples are columns: X is n_0 x N) the same with matrices, where
``Diag(v) u`` becomes ``v ⊙ u`` and the bias gradient sums over the samples.

Layout (declared once, kept everywhere): **denominator layout for gradients** — dE/dV of
the scalar loss has the shape of V (dE/dW^l is n_l x n_(l-1), δ^l = dE/dz^l is a column),
as in seed 003; **Jacobians ∂u/∂v as in seed 000** — one row per entry of u, one column
per entry of v (∂z^l/∂a^(l-1) = W^l). So the chain rule reads
dE/dv = (∂u/∂v)^T dE/du, and seed 000's "dL/dW = δ^T x" (row-vector δ) is δ x^T here.

Dimensions are symbols n_0..n_L (and N for the batch): the derivation is the same for
every width, so deriving a 150528-100-10 network costs what a 2-3-2 one does. Numbers come
from compiling the batch steps into NumPy matrix products (:meth:`MatrixDerivation.gradient`).

>>> d = derive_matrix([784, 128, 10], hidden="sigmoid", output="softmax", loss="cross_entropy")
>>> for step in d.steps[:3]:
...     print(text(step.lhs), "=", text(step.rhs), f"[{step.rule}]")
δ^2 = ŷ - y [softmax + cross-entropy]
dE/dW^2 = δ^2 (a^1)^T [delta^T x]
dE/db^2 = δ^2 [z = x]
>>> [(text(q), shape) for q, shape in d.steps[1].shapes]
[('dE/dW^2', (n_2, n_1)), ('δ^2', (n_2, 1)), ('a^1', (n_1, 1))]
>>> values = random_layered([784, 128, 10], batch=4, seed=0, targets="onehot")
>>> [g.shape for g in d.gradient(values).dW]
[(128, 784), (10, 128)]
"""

from __future__ import annotations

import functools
import math
import operator
import re
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.matrices.expressions.diagonal import DiagMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr
from sympy.printing.precedence import PRECEDENCE

from . import functions as fn
from .derive import Step
from .functions import Primitive, Rule
from .graph import NetworkError
from .printing import LatexPrinter, TextPrinter

__all__ = [
    "LAYOUT", "GATES", "OUTPUT_RULES", "MatrixRule", "MatrixStep", "MatrixDerivation", "MatrixGradient", "LayeredValues",
    "WorkedNumbers",
    "Jacobian", "Gradient", "Elementwise", "Softmax", "Ones",
    "derive_matrix", "derive_layers", "from_layers", "random_layered", "values_from_scalar", "mlp_bindings",
    "text", "latex", "activation_derivative", "compile_expression", "quantity_key", "matrix_step",
]

LAYOUT = (
    "denominator layout: dE/dV has the shape of V (δ^l = dE/dz^l is a column); "
    "Jacobians ∂u/∂v have one row per entry of u and one column per entry of v (seed 000), "
    "so dE/dv = (∂u/∂v)^T dE/du"
)



@dataclass(frozen=True, eq=False)
class MatrixRule(Rule):
    """A rule of the matrix form: plain ``rule``, a ``sentence`` and a LaTeX ``title`` (how a
    step's justification names it) in this module's layout."""

    title: str = ""


# Seed 000's table of gates, in this module's layout, then the other rules a step may use
# for the output layer; Step.rule names one of these (or "chain rule", "substitute",
# "loss gradient"). Documents list the rules a derivation uses in this order, each as its
# ``title`` then its ``sentence`` (which does not repeat the title); the sentences write the
# loss of one sample as \mathcal{L} (seed 004).
GATES = {g.name: g for g in (
    MatrixRule("z = Wx", "∂z/∂x = W, so dE/dx = W^T dE/dz",
               r"$\frac{\partial \mathbf{z}}{\partial \mathbf{x}} = \mathbf{W}$, so the gradient passes back as "
               r"$\mathbf{W}^{T} \frac{\partial \mathcal{L}}{\partial \mathbf{z}}$",
               r"$\mathbf{z} = \mathbf{W}\mathbf{x}$"),
    MatrixRule("z = x", "∂z/∂x = I, so dE/dx = dE/dz",
               r"$\frac{\partial \mathbf{z}}{\partial \mathbf{x}} = \mathbf{I}$: a bias, or an identity activation, "
               "passes the gradient on unchanged; a bias added to every sample of a batch receives the sum over "
               "the samples", r"$\mathbf{z} = \mathbf{x}$"),
    MatrixRule("elementwise f", "∂z/∂x = Diag(f'(x)), so dE/dx = f'(x) ⊙ dE/dz",
               r"$\mathbf{a} = f(\mathbf{z})$ entry by entry has $\frac{\partial \mathbf{a}}{\partial \mathbf{z}} = "
               r"\operatorname{Diag}[f'(\mathbf{z})]$, and $\operatorname{Diag}(\mathbf{v})\,\mathbf{u} = "
               r"\mathbf{v} \odot \mathbf{u}$", r"elementwise $f$"),
    MatrixRule("delta^T x", "z = Wx and δ = dE/dz give dE/dW = δ x^T",
               r"for $\mathbf{z} = \mathbf{W}\mathbf{x}$ and $\boldsymbol{\delta} = \frac{\partial \mathcal{L}}{\partial "
               r"\mathbf{z}}$, $\frac{\partial \mathcal{L}}{\partial \mathbf{W}} = \boldsymbol{\delta}\,\mathbf{x}^{T}$ "
               r"(the table's $\boldsymbol{\delta}^{T}\mathbf{x}$, with $\boldsymbol{\delta}$ a column here)",
               r"$\boldsymbol{\delta}^{T}\mathbf{x}$"),
    MatrixRule("softmax + cross-entropy", "ŷ = softmax(z), E = CE(y, ŷ) give dE/dz = ŷ - y",
               r"$\hat{\mathbf{y}} = \operatorname{softmax}(\mathbf{z})$ and $\mathcal{L} = -\mathbf{y}^{T} \log "
               r"\hat{\mathbf{y}}$ give $\frac{\partial \mathcal{L}}{\partial \mathbf{z}} = \hat{\mathbf{y}} - "
               r"\mathbf{y}$ (targets that sum to 1)", "softmax + cross-entropy"),
)}
OUTPUT_RULES = {g.name: g for g in (
    MatrixRule("sigmoid + binary cross-entropy", "a = σ(z) and the binary cross-entropy give dE/dz = a - y",
               r"$\mathbf{a} = \sigma(\mathbf{z})$ and the binary cross-entropy give $\frac{\partial \mathcal{L}}"
               r"{\partial \mathbf{z}} = \mathbf{a} - \mathbf{y}$", "sigmoid + binary cross-entropy"),
    MatrixRule("softmax", "∂ŷ/∂z = Diag(ŷ) - ŷ ŷ^T",
               r"$\frac{\partial \hat{\mathbf{y}}}{\partial \mathbf{z}} = \operatorname{Diag}(\hat{\mathbf{y}}) - "
               r"\hat{\mathbf{y}}\hat{\mathbf{y}}^{T}$", "softmax"),
)}

E = sp.Symbol("E")
N = sp.Symbol("N", integer=True, positive=True)  # samples in a batch (columns)


# -- matrix expressions of our own ------------------------------------------------------
# Each prints itself (_sympystr, _latex) so the generic printers need no matrix rules.

class Jacobian(MatrixExpr):
    """``∂of/∂wrt``: one row per entry of ``of``, one column per entry of ``wrt`` (seed 000)."""

    def __new__(cls, of, wrt):
        return sp.Basic.__new__(cls, of, wrt)

    @property
    def shape(self):
        return (self.args[0].shape[0], self.args[1].shape[0])

    def _sympystr(self, printer):
        return f"∂{printer._print(self.args[0])}/∂{printer._print(self.args[1])}"

    def _latex(self, printer):
        of, wrt = (printer._print(a) for a in self.args)
        return rf"\frac{{\partial {of}}}{{\partial {wrt}}}"


class Gradient(MatrixExpr):
    """``dE/dV`` of the scalar loss: it has the shape of ``V`` (denominator layout)."""

    def __new__(cls, of, wrt):
        return sp.Basic.__new__(cls, of, wrt)

    @property
    def shape(self):
        return self.args[1].shape

    def _sympystr(self, printer):
        return f"d{printer._print(self.args[0])}/d{printer._print(self.args[1])}"

    def _latex(self, printer):
        of, wrt = (printer._print(a) for a in self.args)
        return rf"\frac{{\partial {of}}}{{\partial {wrt}}}"


class Ones(MatrixExpr):
    """The column of ``n`` ones: ``b 1^T`` copies a bias to every sample, ``Δ 1`` sums them."""

    def __new__(cls, n):
        return sp.Basic.__new__(cls, fn.as_expr(n))

    @property
    def shape(self):
        return (self.args[0], sp.S.One)

    def _entry(self, i, j, **kwargs):
        return sp.S.One

    def doit(self, **hints):
        n = self.args[0]
        return sp.ImmutableMatrix.ones(int(n), 1) if n.is_Integer else self

    def _sympystr(self, printer):
        n = printer._print(self.args[0])
        return f"1_{n}" if len(n) == 1 else f"1_{{{n}}}"

    def _latex(self, printer):
        return rf"\mathbf{{1}}_{{{printer._print(self.args[0])}}}"


class Elementwise(MatrixExpr):
    """A scalar function applied entry by entry: ``Elementwise(Lambda((u, v), body), U, V)``.

    Products in the body print as ``⊙``: ``a^1 ⊙ (1 - a^1)`` is sigmoid's derivative.
    """

    def __new__(cls, function, *matrices):
        return sp.Basic.__new__(cls, function, *matrices)

    @property
    def function(self):
        return self.args[0]

    @property
    def matrices(self):
        return self.args[1:]

    @property
    def shape(self):
        return self.args[1].shape

    def _entry(self, i, j, **kwargs):
        return self.function(*[m[i, j] for m in self.matrices])

    def doit(self, **hints):
        mats = [m.doit(**hints) for m in self.matrices]
        if all(isinstance(m, sp.MatrixBase) for m in mats):
            rows, cols = mats[0].shape
            return sp.ImmutableMatrix(rows, cols, lambda i, j: self.function(*[m[i, j] for m in mats]))
        return Elementwise(self.function, *mats)

    def _body(self, printer):
        names = [printer._print(m) for m in self.matrices]
        stand_ins = [sp.Symbol(f"m{i}_") for i in range(len(names))]
        body = self.function.expr.xreplace(dict(zip(self.function.variables, stand_ins)))
        return body, dict(zip(stand_ins, names))

    def _sympystr(self, printer):
        body, names = self._body(printer)
        out = TextPrinter().doprint(body).replace("**", "^")
        out = re.sub(r"\*", " ⊙ ", re.sub(r"(?<=\d)\*", " ", out))  # 99/100 step(z): numbers scale
        for stand_in, name in names.items():
            if "^" in name:  # (a^2)^2, not a^2^2
                out = out.replace(f"{stand_in}^", f"({name})^")
            out = out.replace(str(stand_in), name)
        return out

    def _latex(self, printer):
        body, names = self._body(printer)
        settings = {k: v for k, v in printer._settings.items() if k in LatexPrinter._default_settings}
        settings.update({"names": {**settings.get("names", {}), **names}, "values": {}})
        return _ElementwiseLatex(settings).doprint(body)


class Softmax(MatrixExpr):
    """``softmax`` of each column: ``ŷ = softmax(z)``, column k of Ŷ from column k of Z."""

    def __new__(cls, z):
        return sp.Basic.__new__(cls, z)

    @property
    def shape(self):
        return self.args[0].shape

    def doit(self, **hints):
        z = self.args[0].doit(**hints)
        if not isinstance(z, sp.MatrixBase):
            return Softmax(z)
        rows, cols = z.shape
        return sp.ImmutableMatrix(rows, cols, lambda k, j: fn.softmax(k + 1, *z[:, j]))

    def _sympystr(self, printer):
        return f"softmax({printer._print(self.args[0])})"

    def _latex(self, printer):
        return rf"\operatorname{{softmax}}\left({printer._print(self.args[0])}\right)"


# -- printing ---------------------------------------------------------------------------

class _MatrixText(TextPrinter):
    """Terminal text for matrix expressions: ``Diag(v) (W^2)^T δ^2``, ``u ⊙ v``."""

    def _print_MatMul(self, expr):
        coeff = sp.Mul(*[a for a in expr.args if not a.is_Matrix])
        head = "" if coeff == 1 else "-" if coeff == -1 else TextPrinter().doprint(coeff) + " "
        return head + " ".join(self._factor(m) for m in expr.args if m.is_Matrix)

    def _print_MatAdd(self, expr):
        return " + ".join(self._print(a) for a in _add_terms(expr)).replace("+ -", "- ")

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        bare = isinstance(expr.arg, (sp.MatrixSymbol, Ones)) and "^" not in inner
        return f"{inner}^T" if bare else f"({inner})^T"

    def _print_HadamardProduct(self, expr):
        return " ⊙ ".join(self._factor(a, (sp.MatMul,)) for a in expr.args)

    def _print_DiagMatrix(self, expr):
        return f"Diag({self._print(expr.args[0])})"

    def _print_Identity(self, expr):
        return "I"

    def _print_MatrixSymbol(self, expr):
        return expr.name

    def _factor(self, item, also=()):
        """``item`` as a factor of a product: sums (and ``also``) in parentheses."""
        out = self._print(item)
        grouped = isinstance(item, (sp.MatAdd, sp.HadamardProduct) + also)
        if grouped or (isinstance(item, Elementwise) and not _simple_call(item)):
            return f"({out})"
        return out


def _add_terms(expr):
    """A MatAdd's terms, positive ones first (``ŷ - y``, not ``-y + ŷ``)."""
    terms = list(expr.args)
    return [t for t in terms if not _negative(t)] + [t for t in terms if _negative(t)]


def _negative(term):
    return isinstance(term, sp.MatMul) and term.as_coeff_mmul()[0].could_extract_minus_sign()


class _MatrixLatex(LatexPrinter):
    """LaTeX for matrix expressions with symprop's names; products keep their order."""

    def _print_MatAdd(self, expr):
        tex = ""
        for i, term in enumerate(_add_terms(expr)):
            if _negative(term):
                tex += " - " + self._print(-term)
            else:
                tex += (" + " if i else "") + self._print(term)
        return tex

    def _print_MatMul(self, expr):
        coeff = sp.Mul(*[a for a in expr.args if not a.is_Matrix])
        head = "" if coeff == 1 else "-" if coeff == -1 else LatexPrinter().doprint(coeff) + " "
        return head + " ".join(self._factor(m) for m in expr.args if m.is_Matrix)

    def _print_HadamardProduct(self, expr):
        return r" \odot ".join(self._factor(a, (sp.MatMul,)) for a in expr.args)

    def _print_Identity(self, expr):
        return r"\mathbf{I}"

    def _print_Transpose(self, expr):
        if isinstance(expr.arg, Ones):
            return rf"{self._print(expr.arg)}^{{T}}"
        return super()._print_Transpose(expr)

    def _factor(self, item, also=()):
        """``item`` as a factor of a product: sums (and ``also``) in parentheses."""
        out = self._print(item)
        grouped = isinstance(item, (sp.MatAdd, sp.HadamardProduct) + also)
        if grouped or (isinstance(item, Elementwise) and not _simple_call(item)):
            return rf"\left({out}\right)"
        return out


class _ElementwiseLatex(LatexPrinter):
    r"""A scalar body applied entry by entry: products of matrices as ``\odot``,
    quotients as fractions, number coefficients in front (``\frac{99}{100} step(z)``)."""

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        sign = ""
        if coeff < 0:
            sign, coeff = "- ", -coeff
        num, den = sp.fraction(rest)
        head = "" if coeff == 1 else self._print(coeff) + " "
        body = self._hadamard(num)
        if den != 1:
            body = rf"\frac{{{body}}}{{{self._hadamard(den)}}}"
        return sign + head + body

    def _hadamard(self, product):
        factors = sp.Mul.make_args(product)
        if len(factors) == 1:
            return self._print(factors[0])
        return r" \odot ".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in factors)


def _simple_call(item) -> bool:
    """An elementwise ``f(z)`` (a bare function call) needs no parentheses as a factor."""
    body = item.function.expr
    return isinstance(body, sp.Function) and all(a in item.function.variables or a.is_Number for a in body.args)


def text(expr) -> str:
    """A matrix expression (or a scalar one) for a terminal.

    >>> W, d = sp.MatrixSymbol("W^2", 3, 2), sp.MatrixSymbol("δ^2", 3, 1)
    >>> text(W.T * d)
    '(W^2)^T δ^2'
    """
    return _MatrixText().doprint(expr)


def latex(expr, names=None) -> str:
    r"""A matrix expression as LaTeX, with ``names`` (MatrixSymbol -> display name).

    >>> W, d = sp.MatrixSymbol("W^2", 3, 2), sp.MatrixSymbol("δ^2", 3, 1)
    >>> latex(W.T * d, {W: r"\mathbf{W}^{(2)}", d: r"\boldsymbol{\delta}^{(2)}"})
    '\\left(\\mathbf{W}^{(2)}\\right)^{T} \\boldsymbol{\\delta}^{(2)}'
    """
    return _MatrixLatex({"names": dict(names or {})}).doprint(expr)


# -- steps ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MatrixStep(Step):
    """A :class:`~symprop.derive.Step` whose sides are matrices; ``shapes`` lists
    ``(quantity, (rows, cols))`` for the left side and every named matrix on the right."""

    shapes: tuple = ()


def _step(rule, lhs, rhs, node=None, because=()) -> MatrixStep:
    return MatrixStep(rule, lhs, rhs, node, tuple(because), shapes=_shapes(lhs, rhs))


def _shapes(lhs, rhs):
    seen = {}
    for expr in (lhs, rhs):
        for q in _named(expr):
            seen.setdefault(q, tuple(q.shape))
    return tuple(seen.items())


def _named(expr):
    if isinstance(expr, (sp.MatrixSymbol, Jacobian, Gradient, Ones)):
        yield expr
    elif isinstance(expr, Elementwise):
        for m in expr.matrices:
            yield from _named(m)
    elif isinstance(expr, sp.MatAdd):
        for arg in _add_terms(expr):
            yield from _named(arg)
    elif isinstance(expr, sp.Basic) and not isinstance(expr, sp.Lambda):
        for arg in expr.args:
            yield from _named(arg)


# -- the network ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layered:
    sizes: tuple[int, ...]
    activations: tuple[Primitive, ...]  # f_1..f_L; the last may be softmax's record
    loss: Primitive  # a loss record (its rule in .loss)
    reduction: str
    fused: str | None  # the fused rule ("softmax + cross-entropy", ...) of output and loss, or None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.activations)


def _layered(sizes, hidden, output, loss, reduction, functions=None) -> _Layered:
    """The layered network's records; ``functions`` adds a spec's defined activations."""
    sizes = tuple(sizes)
    if len(sizes) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise NetworkError(f"sizes must be at least two positive integers, got {list(sizes)}")
    depth = len(sizes) - 1
    hidden = [hidden] * (depth - 1) if not isinstance(hidden, (list, tuple)) else list(hidden)
    if len(hidden) != depth - 1:
        raise NetworkError(f"{depth - 1} hidden layers but {len(hidden)} hidden activations")
    if reduction not in ("sum", "mean"):
        raise NetworkError(f"reduction must be 'sum' or 'mean', not {reduction!r}")
    loss_record = fn.record_of(loss) if isinstance(loss, str) else loss
    if loss_record is None or loss_record.loss is None:
        known = ", ".join(sorted(fn.LOSSES))
        raise NetworkError(f"unknown loss {loss!r}; known: {known}")
    if loss_record.loss.logits:  # softmax_cross_entropy: the logits, then the fused softmax
        if fn.record_of(output) not in (fn.record_of("softmax"), fn.record_of("identity")):
            raise NetworkError(f"{loss_record.name} takes logits: use output='identity' or 'softmax'")
        output = "softmax"
    records = [_activation_record(f, functions) for f in hidden]
    records.append(fn.record_of("softmax") if output == "softmax" else _activation_record(output, functions))
    rule = loss_record.loss
    fused = rule.fused[1] if rule.fused and records[-1].name == rule.fused[0] else None
    return _Layered(sizes, tuple(records), loss_record, reduction, fused)


def _activation_record(f, functions) -> Primitive:
    try:
        build = fn.activation(f, functions)
    except ValueError as err:
        raise NetworkError(f"{err} (and softmax for the output)") from None
    return fn.record_of(build) or fn.record_of("identity")


@dataclass(frozen=True)
class _Symbols:
    """The matrices of one form (one sample, or a batch of N columns)."""

    x: sp.MatrixSymbol
    y: sp.MatrixSymbol
    W: tuple  # index l-1 for layer l
    b: tuple
    z: tuple
    a: tuple  # a[0] = x
    delta: tuple
    ones: Ones | None  # 1_N in the batch form


def _symbols(dims, batch, softmax_output) -> _Symbols:
    cols = N if batch else sp.S.One
    depth = len(dims) - 1
    low = (lambda s: s.upper()) if batch else (lambda s: s)
    x = sp.MatrixSymbol(low("x"), dims[0], cols)
    y = sp.MatrixSymbol(low("y"), dims[-1], cols)
    W = tuple(sp.MatrixSymbol(f"W^{l}", dims[l], dims[l - 1]) for l in range(1, depth + 1))
    b = tuple(sp.MatrixSymbol(f"b^{l}", dims[l], 1) for l in range(1, depth + 1))
    z = tuple(sp.MatrixSymbol(f"{low('z')}^{l}", dims[l], cols) for l in range(1, depth + 1))
    a = [x] + [sp.MatrixSymbol(f"{low('a')}^{l}", dims[l], cols) for l in range(1, depth + 1)]
    if softmax_output:
        a[-1] = sp.MatrixSymbol("Ŷ" if batch else "ŷ", dims[-1], cols)
    delta = tuple(sp.MatrixSymbol(f"{'Δ' if batch else 'δ'}^{l}", dims[l], cols) for l in range(1, depth + 1))
    return _Symbols(x, y, W, b, z, tuple(a), delta, Ones(N) if batch else None)


def _latex_names(s: _Symbols, batch) -> dict:
    """Display names in seed 003's notation (bold vectors and matrices, layer in (l))."""
    bold = (lambda c: rf"\mathbf{{{c.upper()}}}") if batch else (lambda c: rf"\mathbf{{{c}}}")
    names = {s.x: bold("x"), s.y: bold("y")}
    for l in range(1, len(s.W) + 1):
        names[s.W[l - 1]] = rf"\mathbf{{W}}^{{({l})}}"
        names[s.b[l - 1]] = rf"\mathbf{{b}}^{{({l})}}"
        names[s.z[l - 1]] = rf"{bold('z')}^{{({l})}}"
        names[s.a[l]] = rf"{bold('a')}^{{({l})}}"
        delta = r"\boldsymbol{\Delta}" if batch else r"\boldsymbol{\delta}"
        names[s.delta[l - 1]] = rf"{delta}^{{({l})}}"
    if s.a[-1].name in ("ŷ", "Ŷ"):
        names[s.a[-1]] = rf"\hat{{{bold('y')}}}"
    return names


# -- elementwise derivatives, written in the layer's outputs as the texts do -----------

# The variables of the entry-by-entry functions (plain symbols, so that two derivations of
# the same network are equal, whatever their widths)
_U, _V = sp.Symbol("u_"), sp.Symbol("v_")


def _forward_activation(f: Primitive, z):
    if f.name == "softmax":
        return Softmax(z)
    return Elementwise(sp.Lambda(_U, f.build(_U)), z)


def _derivative(f: Primitive, z, a):
    """f'(z) entry by entry with f(z) written as the output a (σ' = a ⊙ (1 - a)), or None
    when f' = 1 (identity: the Jacobian is I, the gate "z = x")."""
    u, v = _U, _V
    out = f.build(u)
    d = sp.diff(out, u)
    if d == 1:
        return None
    if out != u:
        d = d.xreplace({out: v})
    used = [(var, m) for var, m in ((u, z), (v, a)) if var in d.free_symbols]
    return Elementwise(sp.Lambda(tuple(var for var, _ in used), d), *[m for _, m in used])


def activation_derivative(f: Primitive, z, a):
    """f'(z) entry by entry as the steps use it, written with the layer's output ``a`` where
    it can be (``σ'(z) = a ⊙ (1 - a)``); None when f' = 1. For documents that list them."""
    return _derivative(f, z, a)


def _loss_gradient(loss: Primitive, a, y, n_out):
    """dE/da of the per-sample loss, entry by entry (a column; a matrix in the batch form),
    from the loss record's derivative: ``k (a - y)`` where it is linear in ``a - y``."""
    k, d = _loss_forms(loss.loss, n_out)[:2]
    if k is not None:
        return a - y if k == 1 else sp.MatMul(k, a - y)
    return Elementwise(sp.Lambda((_U, _V), d), a, y)


def _loss_definition(loss: Primitive, a, y, n_out):
    """The per-sample loss E as a 1x1 matrix expression (for the forward equations): a
    quadratic form where the entry is ``k (u - v)^2``, ``-y^T g(a)`` where it is ``-v g(u)``."""
    k, g, entry = _loss_forms(loss.loss, n_out)[2:]
    if k is not None:
        return sp.MatMul(k, sp.Transpose(a - y), a - y)
    if g is not None:
        return sp.MatMul(-1, y.T, Elementwise(sp.Lambda(_U, g), a))
    return sp.MatMul(-1, Ones(n_out).T, Elementwise(sp.Lambda((_U, _V), -entry), a, y))


@functools.lru_cache(maxsize=64)
def _loss_forms(rule, n_out):
    """What the matrix forms of a loss need, worked out once: ``(k, d)`` with dE/da = k (a - y)
    when the derivative ``d`` is linear in a - y (else k None); ``(k, g, entry)`` with the
    entry k (u - v)^2, or -v g(u) (else both None)."""
    d = (rule.scale(n_out) * rule.gradient).xreplace({fn.U: _U, fn.V: _V})
    linear = sp.cancel(d / (_U - _V))
    entry = rule.entry.xreplace({fn.U: _U, fn.V: _V})
    square = sp.cancel(rule.scale(n_out) * entry / (_U - _V) ** 2)
    g = sp.cancel(-entry / _V)
    return (None if linear.has(_U, _V) else linear, d, None if square.has(_U, _V) else square,
            None if g.has(_V) else g, entry)


# -- the derivation ---------------------------------------------------------------------

class MatrixDerivation:
    """The matrix-form backpropagation of a layered network, as data.

    ``forward`` and ``steps`` are the one-sample equations and derivation,
    ``batch_forward`` and ``batch_steps`` the same over N samples (columns); every step is
    a :class:`MatrixStep` naming its gate rule and the shapes of its quantities.
    ``gradients`` maps each parameter ``W^l``, ``b^l`` to dE/d(param) in the one-sample
    form; ``program`` and ``batch_program`` are the ``(quantity, expression)`` assignments
    that compute them, in order, which :meth:`gradient` runs with NumPy.
    """

    def __init__(self, net: _Layered):
        self.net = net
        self.sizes = net.sizes
        self.depth = len(net.sizes) - 1
        self.dims = tuple(sp.Symbol(f"n_{l}", integer=True, positive=True) for l in range(self.depth + 1))
        self.layout = LAYOUT
        softmax_output = net.activations[-1].name == "softmax"
        self.one = _symbols(self.dims, False, softmax_output)
        self.batch = _symbols(self.dims, True, softmax_output)
        self.names = {**_latex_names(self.one, False), **_latex_names(self.batch, True)}
        self.params = tuple(p for l in range(self.depth) for p in (self.one.W[l], self.one.b[l]))
        self.forward, self.forward_program = self._forward(self.one)
        self.batch_forward, self.batch_forward_program = self._forward(self.batch)
        self.steps, self.program = self._backward(self.one)
        self.batch_steps, self.batch_program = self._backward(self.batch)
        self.gradients = {lhs.args[1]: rhs for lhs, rhs in self.program if isinstance(lhs, Gradient)}
        self.loss = _loss_definition(net.loss, self.one.a[-1], self.one.y, self.dims[-1])

    # -- building

    def _forward(self, s: _Symbols):
        steps, program = [], []
        for l in range(1, self.depth + 1):
            bias = s.b[l - 1] if s.ones is None else s.b[l - 1] * s.ones.T
            pre = s.W[l - 1] * s.a[l - 1] + bias
            out = _forward_activation(self.net.activations[l - 1], s.z[l - 1])
            steps.append(_step("z = Wx", s.z[l - 1], pre, node=s.z[l - 1]))
            rule = "softmax" if isinstance(out, Softmax) else "elementwise f"
            steps.append(_step(rule, s.a[l], out, node=s.a[l], because=(self.net.activations[l - 1].name,)))
            program += [(s.z[l - 1], pre), (s.a[l], out)]
        return steps, program

    def _backward(self, s: _Symbols):
        steps: list[MatrixStep] = []
        program: list[tuple] = []
        batch = s.ones is not None
        L = self.depth
        scale = sp.S.One / N if batch and self.net.reduction == "mean" else sp.S.One

        # the output layer's delta
        delta_L, out_steps = self._output_delta(s, scale)
        steps += out_steps
        program.append((s.delta[L - 1], delta_L))

        for l in range(L, 0, -1):
            delta = s.delta[l - 1]
            W, b = s.W[l - 1], s.b[l - 1]
            dW = delta * s.a[l - 1].T
            steps.append(_step("delta^T x", Gradient(E, W), dW, node=s.z[l - 1]))
            db = delta * s.ones if batch else delta
            steps.append(_step("z = x", Gradient(E, b), db, node=s.z[l - 1], because=("broadcast",) if batch else ()))
            program += [(Gradient(E, W), dW), (Gradient(E, b), db)]
            if l == 1:
                break
            below, f = s.delta[l - 2], self.net.activations[l - 2]
            fprime = _derivative(f, s.z[l - 2], s.a[l - 1])
            back = W.T * delta
            if batch:
                rhs = back if fprime is None else sp.HadamardProduct(fprime, back)
                because = ("z = Wx",) + (() if fprime is None else ("elementwise f", f.name))
                steps.append(_step("chain rule", below, rhs, node=s.z[l - 2], because=because))
            else:
                jz = Jacobian(s.z[l - 1], s.a[l - 1])
                ja = Jacobian(s.a[l - 1], s.z[l - 2])
                chain = sp.MatMul(sp.Transpose(ja), sp.Transpose(jz), delta)
                steps.append(_step("chain rule", below, chain, node=s.z[l - 2], because=("z = Wx", "elementwise f")))
                steps.append(_step("z = Wx", jz, W, node=s.z[l - 1]))
                if fprime is None:
                    steps.append(_step("z = x", ja, sp.Identity(self.dims[l - 1]), node=s.a[l - 1]))
                    rhs = back
                else:
                    steps.append(_step("elementwise f", ja, DiagMatrix(fprime), node=s.a[l - 1], because=(f.name,)))
                    rhs = sp.MatMul(DiagMatrix(fprime), W.T, delta)
                steps.append(_step("substitute", below, rhs, node=s.z[l - 2]))
            program.append((below, rhs))
        return steps, program

    def _output_delta(self, s: _Symbols, scale):
        net, L = self.net, self.depth
        batch = s.ones is not None
        a, z, y, delta = s.a[L], s.z[L - 1], s.y, s.delta[L - 1]
        scaled = (lambda e: e) if scale == 1 else (lambda e: sp.MatMul(scale, *(e.args if isinstance(e, sp.MatMul) else (e,))))
        if net.fused:
            rhs = scaled(a - y)
            because = ("mean over the batch",) if scale != 1 else ()
            return rhs, [_step(net.fused, delta, rhs, node=z, because=because)]
        grad = _loss_gradient(net.loss, a, y, self.dims[-1])
        f, loss = net.activations[-1], net.loss.name
        steps = []
        if f.name == "softmax":
            if batch:  # column by column: J^T g = ŷ ⊙ g - ŷ (ŷ^T g)
                n = Ones(self.dims[-1])
                rhs = scaled(sp.HadamardProduct(a, grad - n * n.T * sp.HadamardProduct(a, grad)))
                return rhs, [_step("softmax", delta, rhs, node=z, because=("loss gradient", loss))]
            jac = DiagMatrix(a) - a * a.T  # symmetric
            steps.append(_step("chain rule", delta, sp.MatMul(sp.Transpose(Jacobian(a, z)), Gradient(E, a)), node=z))
            steps.append(_step("loss gradient", Gradient(E, a), grad, node=a, because=(loss,)))
            steps.append(_step("softmax", Jacobian(a, z), jac, node=a, because=("softmax",)))
            rhs = sp.MatMul(jac, grad)
            steps.append(_step("substitute", delta, rhs, node=z))
            return rhs, steps
        fprime = _derivative(f, z, a)
        if batch:
            rhs = scaled(grad if fprime is None else sp.HadamardProduct(fprime, grad))
            because = ("loss gradient", loss) + (() if fprime is None else ("elementwise f", f.name))
            return rhs, [_step("chain rule", delta, rhs, node=z, because=because)]
        steps.append(_step("chain rule", delta, sp.MatMul(sp.Transpose(Jacobian(a, z)), Gradient(E, a)), node=z))
        steps.append(_step("loss gradient", Gradient(E, a), grad, node=a, because=(loss,)))
        if fprime is None:
            steps.append(_step("z = x", Jacobian(a, z), sp.Identity(self.dims[-1]), node=a))
            rhs = grad
        else:
            steps.append(_step("elementwise f", Jacobian(a, z), DiagMatrix(fprime), node=a, because=(f.name,)))
            rhs = sp.MatMul(DiagMatrix(fprime), grad)
        steps.append(_step("substitute", delta, rhs, node=z))
        return rhs, steps

    # -- description

    @property
    def description(self) -> str:
        """``784-128-10, sigmoid hidden, softmax output, cross-entropy loss (sum over a batch)``."""
        return self.describe()

    def describe(self, name=str, title=str, reduction: bool = True) -> str:
        """``784-128-10, sigmoid hidden, softmax output, cross-entropy loss (sum over a
        batch)``; ``name`` and ``title`` spell an activation and the loss's title (a document
        passes its LaTeX spellings), ``reduction=False`` leaves out the reduction."""
        acts = [name(a) for a in self.net.names]
        hidden = acts[:-1]
        parts = ["-".join(map(str, self.sizes))]
        if hidden:
            parts.append(f"{hidden[0] if len(set(hidden)) == 1 else ', '.join(hidden)} hidden")
        parts.append(f"{acts[-1]} output")
        over = f" ({self.net.reduction} over a batch)" if reduction else ""
        parts.append(f"{title(self.net.loss.loss.title)} loss{over}")
        return ", ".join(parts)

    def dimension_values(self) -> dict:
        """``{n_0: 784, ..., n_L: 10}``."""
        return dict(zip(self.dims, self.sizes))

    def __repr__(self):
        return f"<MatrixDerivation {self.description}>"

    # -- numbers

    @functools.cached_property
    def _compiled(self):
        forward = [(_key(lhs), _compile(rhs)) for lhs, rhs in self.batch_forward_program]
        backward = [(_key(lhs), _compile(rhs)) for lhs, rhs in self.batch_program]
        delta_L = self._stable_output_delta()
        if delta_L is not None:  # the same Δ^L as the first step, in a form that cannot overflow
            backward[0] = (backward[0][0], delta_L)
        s = self.batch
        results = [[_key(Gradient(E, p)) for p in group] for group in (s.W, s.b)]
        results += [[_key(q) for q in group] for group in (s.delta, s.a)]
        return forward, backward, results

    @functools.cached_property
    def _output_form(self) -> str | None:
        """How the numbers of the output layer are computed: the fused rule, or
        :data:`_SIGMOID_CE`, :data:`_SOFTMAX_BCE` (log space on the logits), :data:`_LOG_LOSS`
        (a log loss of an output that is not a probability), or None (the steps as written)."""
        return _output_form(self.net)

    def _stable_output_delta(self):
        """A closure ``env -> Δ^L`` for the log losses not fused with their output (see
        :data:`_SIGMOID_CE`, :data:`_SOFTMAX_BCE`, :data:`_LOG_LOSS`), else None."""
        form = self._output_form
        if form not in (_SIGMOID_CE, _SOFTMAX_BCE, _LOG_LOSS):
            return None
        k = self._keys
        out, logits, target, samples = k["out"], k["logits"], k["y"], k["N"]
        mean = self.net.reduction == "mean"
        if form == _SIGMOID_CE:
            def raw(env):
                return _sigmoid_cross_entropy_delta(env[logits], env[target])
        elif form == _SOFTMAX_BCE:
            def raw(env):
                return _softmax_binary_cross_entropy_delta(env[logits], env[target])
        else:
            s, L = self.batch, self.depth
            fprime = _derivative(self.net.activations[-1], s.z[L - 1], s.a[L])
            slope = None if fprime is None else _compile(fprime)
            binary = self.net.loss.loss is _loss_rule("binary_cross_entropy")

            def raw(env):
                g = _log_loss_gradient(env[out], env[target], binary)
                return g if slope is None else slope(env) * g
        if not mean:
            return raw
        return lambda env: (1 / env[samples]) * raw(env)

    def _environment(self, values: LayeredValues) -> dict:
        _check_values(self.sizes, values)
        k = self._keys
        env = dict(zip(k["dims"], self.sizes))
        env[k["N"]], env[k["x"]], env[k["y"]] = values.x.shape[1], values.x, values.y
        env.update(zip(k["W"], values.weights))
        env.update(zip(k["b"], values.biases))
        return env

    @functools.cached_property
    def _keys(self) -> dict:
        s = self.batch
        return {"dims": [_key(n) for n in self.dims], "N": _key(N), "x": _key(s.x), "y": _key(s.y),
                "W": [_key(W) for W in s.W], "b": [_key(b) for b in s.b], "out": _key(s.a[-1]), "logits": _key(s.z[-1])}

    def _run_forward(self, env):
        for lhs, f in self._compiled[0]:
            env[lhs] = f(env)
        return env

    def loss_value(self, values: LayeredValues) -> float:
        """The loss E at ``values`` (forward pass only; numerically stable). Where E has no
        finite value (the log of an output that is not positive) it is inf or NaN, which
        :meth:`gradient` refuses with the reason."""
        env = self._run_forward(self._environment(values))
        return self._loss_number(env)

    def _loss_number(self, env) -> float:
        net, rule, form = self.net, self.net.loss.loss, self._output_form
        a, z, y = env[self._keys["out"]], env[self._keys["logits"]], env[self._keys["y"]]
        if form == "softmax + cross-entropy":  # log-sum-exp on the logits
            top = z.max(axis=0, keepdims=True)
            lse = top + np.log(np.exp(z - top).sum(axis=0, keepdims=True))
            total = -float(np.sum(y * (z - lse)))
        elif form == "sigmoid + binary cross-entropy":  # -(y log σ(z) + (1 - y) log(1 - σ(z))) = softplus(z) - y z
            total = float(np.sum(np.logaddexp(0, z) - y * z))
        elif form == _SIGMOID_CE:  # -y log σ(z) = y softplus(-z)
            total = float(np.sum(y * np.logaddexp(0, -z)))
        elif form == _SOFTMAX_BCE:  # log ŷ = z - lse, log(1 - ŷ) from the other logits
            total = _softmax_binary_cross_entropy(z, y)
        else:  # the record's entries; scale p/q applied as * p / q (1/n divides, as the formula)
            scale = sp.Rational(rule.scale(sp.Integer(a.shape[0])))
            total = float(np.sum(rule.numpy(a, y))) * int(scale.p) / int(scale.q)
        return total / y.shape[1] if net.reduction == "mean" else total

    def gradient(self, values: LayeredValues) -> MatrixGradient:
        """Loss and gradients at ``values`` by the batch steps, compiled to NumPy.

        Each step is one NumPy expression (matrix products, elementwise functions); the
        forward activations are kept and reused by the backward steps, as backprop does.
        A log loss is computed from the logits in log space and its output delta in a
        closed form that cannot overflow (the step's value, not its formula, changes);
        where the loss or a gradient has no finite value, :class:`NetworkError` says why.
        """
        return self.evaluate(values)[0]

    def evaluate(self, values: LayeredValues) -> tuple[MatrixGradient, dict]:
        """:meth:`gradient` and the environment it ran in: every quantity of the batch
        program (``Z^l``, ``A^l``, ``Δ^l``, ...) by :func:`quantity_key`, for the modules
        that run more steps on it (:mod:`symprop.matrix_hvp`)."""
        if self.generics:
            g = self.generics[0]
            raise NetworkError(f"the generic activation {g} has no numbers: bind it to an activation, "
                               f"e.g. --bind {g}=sigmoid or a [bind] table with {g} = \"sigmoid\"")
        env = self._run_forward(self._environment(values))
        loss = self._loss_number(env)
        if not math.isfinite(loss):
            raise NetworkError(self._why_loss_not_finite(env, values))
        for lhs, f in self._compiled[1]:
            env[lhs] = f(env)
        dW, db, deltas, activations = ([env[k] for k in keys] for keys in self._compiled[2])
        # one number first: an inf or NaN in dE/db^l = Δ^l 1_N (so in Δ^l), in Z^1 (so in X)
        # or in a hidden A^l reaches this sum; only then is each array looked at
        if not math.isfinite(sum([float(b.sum()) for b in db] + [float(env[k].sum()) for k in self._probe_keys])):
            self._check_finite(env, dW, db, deltas)
        return MatrixGradient(loss, dW, db, deltas, activations), env

    # -- public accessors for the modules built on this one (matrix_hvp, checkpoint)

    @property
    def compiled_program(self) -> tuple[list, list, list]:
        """``(forward, backward, results)``: the batch program compiled to NumPy closures,
        ``forward`` and ``backward`` lists of ``(key, env -> ndarray)`` in order (forward:
        Z^1, A^1, Z^2, ...; backward: Δ^L, then per layer l = L..1 dE/dW^l, dE/db^l, Δ^(l-1)),
        ``results`` the keys of [dE/dW^l], [dE/db^l], [Δ^l], [A^l]."""
        return self._compiled

    def environment(self, values: LayeredValues) -> dict:
        """The inputs of the compiled program: widths, N, X, Y, W^l, b^l by key (checked)."""
        return self._environment(values)

    def loss_from(self, env) -> float:
        """The loss from an environment holding the output layer's Z^L, A^L and Y."""
        return self._loss_number(env)

    @functools.cached_property
    def generics(self) -> tuple[str, ...]:
        """The generic activations (``f``) of the layers, each once: the derivation prints
        Diag(f'(z^l)) for them, and numbers need each bound to an activation."""
        return tuple(dict.fromkeys(f.name for f in self.net.activations if f.kind == "generic"))

    @functools.cached_property
    def _probe_keys(self) -> list:
        """Z^1 and the hidden A^l: with Δ^l, the factors of every dE/dW^l (see :meth:`_check_finite`)."""
        s = self.batch
        return [_key(s.z[0])] + [_key(a) for a in s.a[1:-1]]

    def _why_loss_not_finite(self, env, values: LayeredValues) -> str:
        """Why the loss is inf or NaN, naming the quantity at fault (only on failure)."""
        head = "the loss is not finite"
        L, form, f = self.depth, self._output_form, self.net.activations[-1].name
        for name, array in [("x", values.x), ("y", values.y)] + [
                (f"{p}^{l}", array) for p, arrays in (("W", values.weights), ("b", values.biases))
                for l, array in enumerate(arrays, 1)]:
            if not np.all(np.isfinite(array)):
                return f"{head}: {name} holds {_first_bad(array)}"
        a, y = env[self._keys["out"]], env[self._keys["y"]]
        out = text(self.one.a[-1])
        rule = self.net.loss.loss
        if form == _SOFTMAX_BCE and a.shape[0] == 1:  # ŷ = 1 whatever the logit
            return (f"{head}: log(1 - {out}) = -inf where the target is not 1: a softmax of one output "
                    f"is always 1 (use a sigmoid output for one binary target)")
        if form == _LOG_LOSS:
            with np.errstate(invalid="ignore"):
                where = (y != 0) & ~(a > 0)
                if where.any():
                    return (f"{head}: log of a non-positive output in {out} ({_entry(out, a, y, where)}; "
                            f"{f} outputs are not probabilities)")
                if rule is _loss_rule("binary_cross_entropy"):
                    where = (1 - y != 0) & ~(a < 1)
                    if where.any():
                        return (f"{head}: log(1 - {out}) of an output ≥ 1 in {out} ({_entry(out, a, y, where)}; "
                                f"{f} outputs are not probabilities)")
        z = env[self._keys["logits"]]
        if not np.all(np.isfinite(z)):
            return f"{head}: z^{L} holds {_first_bad(z)} (the forward pass overflows)"
        if not np.all(np.isfinite(a)):
            return f"{head}: {out} holds {_first_bad(a)} (the output activation overflows)"
        return f"{head}: it overflows (the largest |{out}| is {np.max(np.abs(a)):.3g})"

    def _check_finite(self, env, dW, db, deltas):
        """Refuse gradients holding inf or NaN (returns when there are none), cheaply: Δ^l
        and dE/db^l (n_l x N, n_l x 1) are read outright; dE/dW^l = Δ^l (A^(l-1))^T, finite
        when Δ^l and A^(l-1) are, only when A^(l-1) is not finite. A^0 = X is judged by
        Z^1 = W^1 X + b^1 1^T, which every inf or NaN of X reaches, so a big input is not
        read again."""
        s = self.batch
        for l in range(self.depth, 0, -1):
            if not np.all(np.isfinite(deltas[l - 1])):
                raise NetworkError(f"the gradient is not finite: Δ^{l} = dE/dZ^{l} holds {_first_bad(deltas[l - 1])}")
            if not np.all(np.isfinite(db[l - 1])):
                raise NetworkError(f"the gradient is not finite: dE/db^{l} overflows")
            factor = env[_key(s.z[0])] if l == 1 else env[_key(s.a[l - 1])]
            if not np.all(np.isfinite(factor)) and not np.all(np.isfinite(dW[l - 1])):
                below = env[_key(s.a[l - 1])]
                name, factor = ("X", "X^T") if l == 1 else (f"A^{l - 1}", f"(A^{l - 1})^T")
                why = f"{name} holds {_first_bad(below)}" if not np.all(np.isfinite(below)) else "it overflows"
                raise NetworkError(f"the gradient is not finite: dE/dW^{l} = Δ^{l} {factor} holds "
                                   f"{_first_bad(dW[l - 1])} ({why})")

    def worked_numbers(self, values: LayeredValues) -> WorkedNumbers:
        """Every number of a worked solution for one sample, step by step: the forward pass,
        each f'(z^l), dE/da^L, each (W^(l+1))^T δ^(l+1), the deltas and the gradients. The
        deltas, gradients and loss are :meth:`gradient`'s own (the numbers ``grad`` prints);
        the intermediate ones come from the one-sample steps' expressions."""
        if values.x.ndim != 2 or values.x.shape[1] != 1:
            raise NetworkError(f"a worked solution takes one sample, not a batch of {values.x.shape[-1]}")
        g = self.gradient(values)
        env = self._run_forward(self._environment(values))
        s, L = self.one, self.depth
        z = [env[_key(Z)] for Z in self.batch.z]
        a = list(g.activations)
        one = {**dict(zip((_key(n) for n in self.dims), self.sizes)), _key(s.y): values.y}
        one.update({_key(s.z[l]): z[l] for l in range(L)})
        one.update({_key(s.a[l]): a[l] for l in range(L + 1)})
        fprime = []
        for l, f in enumerate(self.net.activations, 1):
            output_rule = l == L and (self.net.fused or f.name == "softmax")
            d = None if output_rule else _derivative(f, s.z[l - 1], s.a[l])
            fprime.append(None if d is None else np.asarray(_compile(d)(one), dtype=float) + np.zeros_like(z[l - 1]))
        loss_gradient = None
        if not self.net.fused:
            loss_gradient = np.asarray(_compile(_loss_gradient(self.net.loss, s.a[L], s.y, self.dims[-1]))(one), dtype=float)
        back = [values.weights[l].T @ g.deltas[l] for l in range(1, L)]
        return WorkedNumbers(g.loss, z, a, fprime, loss_gradient, back, list(g.deltas), list(g.dW), list(g.db))

    def random_values(self, batch: int = 1, seed: int = 0, dtype=np.float64) -> LayeredValues:
        """Random weights and data fit for this network's loss (see :func:`random_layered`)."""
        fused = self.net.loss.loss.fused
        targets = {None: "normal", "softmax": "onehot", "sigmoid": "binary"}[fused and fused[0]]
        return random_layered(self.sizes, batch, seed, targets=targets, dtype=dtype)

    # -- explicit entries (the cross-check with the scalar form)

    def explicit(self, bindings) -> dict:
        """Run the one-sample :attr:`program` on explicit SymPy matrices.

        ``bindings`` maps the one-sample matrices (``x``, ``y``, ``W^l``, ``b^l``, ``z^l``,
        ``a^l``) to explicit matrices of the sizes; returns every computed quantity
        (deltas and ``Gradient(E, param)``) as an explicit matrix. Used to check, entry by
        entry, that the matrix form equals the scalar form (see :func:`mlp_bindings`).
        """
        dims = self.dimension_values()
        known = {k.xreplace(dims): v for k, v in bindings.items()}
        out = {}
        for lhs, rhs in self.program:
            value = _explicit(rhs.xreplace(dims).xreplace(known))
            if not isinstance(value, sp.MatrixBase):
                raise NetworkError(f"{text(lhs)}: not every matrix in {text(rhs)} is bound")
            value = sp.ImmutableMatrix(value)
            out[lhs] = value
            if isinstance(lhs, sp.MatrixSymbol):
                known[lhs.xreplace(dims)] = value
        return out


def _explicit(expr):
    """Evaluate a matrix expression whose matrices are explicit, from the leaves up."""
    if isinstance(expr, (sp.MatrixBase, sp.MatrixSymbol, sp.Lambda)) or not expr.args:
        return expr
    args = [_explicit(a) for a in expr.args]
    if isinstance(expr, DiagMatrix) and isinstance(args[0], sp.MatrixBase):
        return sp.ImmutableMatrix(sp.diag(*args[0]))
    new = expr.func(*args)
    if isinstance(new, (sp.Identity, Ones)) and new.shape[0].is_Integer:
        return sp.ImmutableMatrix(new.as_explicit())
    return new.doit(deep=False) if isinstance(new, MatrixExpr) else new


def derive_matrix(sizes, hidden="sigmoid", output="identity", loss="half_sse", *, reduction="sum",
                  functions=None) -> MatrixDerivation:
    """Derive backpropagation for a layered network in matrix form.

    ``sizes`` lists the layer widths from inputs to outputs; ``hidden`` is one activation
    name (or one per hidden layer), ``output`` the output's (or ``"softmax"``); ``loss`` is
    ``half_sse``, ``mse``, ``cross_entropy``, ``binary_cross_entropy`` or
    ``softmax_cross_entropy``; ``reduction`` says how a batch's losses combine. The same
    names as :func:`symprop.layered.mlp`, which builds the scalar form of the same network.

    >>> d = derive_matrix([2, 3, 1], hidden="tanh", output="sigmoid", loss="half_sse")
    >>> print(text(d.program[0][1]))
    Diag(a^2 ⊙ (1 - a^2)) (a^2 - y)
    >>> print(text(d.program[3][1]))
    Diag(1 - (a^1)^2) (W^2)^T δ^2
    """
    return MatrixDerivation(_layered(sizes, hidden, output, loss, reduction, functions))


# -- NumPy: compiling matrix expressions into closures ----------------------------------
# One closure per node of the expression, built once; running a step is a few Python
# calls around NumPy's matrix products, so the overhead does not grow with the widths.

def _softmax_columns(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


# The output layer's numbers for the log losses that are not fused with their output
# (the fused pairings, softmax + cross-entropy and sigmoid + binary cross-entropy, are
# stable as derived: Δ^L = Ŷ - Y, and their losses are computed from the logits). Each
# computes E from the logits in log space and Δ^L = dE/dZ^L in a closed form of bounded
# quantities; the derivation's steps, and what they print, are unchanged.
_SIGMOID_CE = "sigmoid + cross-entropy"  # E = -Σ y log σ(z) = Σ y softplus(-z);  δ = -y ⊙ σ(-z)
_SOFTMAX_BCE = "softmax + binary cross-entropy"  # E = -Σ_k [y_k log ŷ_k + (1 - y_k) log(1 - ŷ_k)]
_LOG_LOSS = "log loss"  # cross-entropy or binary cross-entropy of an output that is not a probability


def _loss_rule(name):
    return fn.record_of(name).loss


def _output_form(net: _Layered) -> str | None:
    """The numeric form of a network's output layer (see :data:`_SIGMOID_CE` etc.)."""
    if net.fused:
        return net.fused
    rule, f = net.loss.loss, net.activations[-1].name
    if rule is _loss_rule("cross_entropy"):
        return _SIGMOID_CE if f == "sigmoid" else _LOG_LOSS if f != "softmax" else None
    if rule is _loss_rule("binary_cross_entropy"):
        return _SOFTMAX_BCE if f == "softmax" else _LOG_LOSS  # (sigmoid is fused)
    return None


def _sigmoid_cross_entropy_delta(z, y):
    """dE/dz of E = Σ y softplus(-z): -y σ(-z), entry by entry (σ(-z) = 1 - σ(z) without
    the cancellation of 1 - σ(z) when σ(z) is near 1, and from e^(-|z|): no overflow)."""
    e = np.exp(-np.abs(z))
    return -y * np.where(z >= 0, e / (1 + e), 1 / (1 + e))


def _softmax_parts(z):
    """For logits z (n x N, a sample a column): ŷ = softmax(z), log ŷ, log(1 - ŷ), the
    index of each column's largest logit and r, the softmax of each column without that
    entry (0 there), all without overflow or cancellation. log(1 - ŷ) is None when n = 1.

    Only the largest entry of a column can exceed 1/2, so ``log1p(-ŷ_k)`` is exact for the
    others; for the largest, 1 - ŷ_top is the other entries' share,
    ``log(1 - ŷ_top) = (m2 - m) + log q - log(1 + e^(m2 - m) q)`` with m the largest logit,
    m2 the largest of the others and ``q = Σ_(j≠top) e^(z_j - m2)`` (at least 1)."""
    n, cols = z.shape[0], np.arange(z.shape[1])
    top = z.argmax(axis=0)
    m = z[top, cols]
    e = np.exp(z - m)
    total = e.sum(axis=0)
    yhat = e / total
    log_yhat = z - (m + np.log(total))
    if n == 1:
        return yhat, log_yhat, None, top, np.zeros_like(z)
    rest = z.copy()
    rest[top, cols] = -np.inf
    m2 = rest.max(axis=0)
    q = np.exp(rest - m2)  # 0 at the top
    q_sum = q.sum(axis=0)
    log_rest = m2 - m
    with np.errstate(divide="ignore"):  # log1p(-1) at a top of 1, replaced below
        log1m = np.log1p(-yhat)
    log1m[top, cols] = log_rest + np.log(q_sum) - np.log1p(np.exp(log_rest) * q_sum)
    return yhat, log_yhat, log1m, top, q / q_sum


def _softmax_binary_cross_entropy(z, y) -> float:
    """Σ over outputs and samples of -(y log ŷ + (1 - y) log(1 - ŷ)), ŷ = softmax(z),
    in log space (finite at any finite logits, but for one output: ŷ = 1 always)."""
    _, log_yhat, log1m, _, _ = _softmax_parts(z)
    if log1m is None:  # log(1 - ŷ) = -inf: only a target of 1 (weight 1 - y = 0) is finite
        with np.errstate(invalid="ignore"):
            second = np.where(y == 1, 0.0, (1 - y) * -np.inf)
    else:
        second = (1 - y) * log1m
    return 0.0 - float(np.sum(y * log_yhat + second))  # (0.0 - x: no -0.0 for a loss of 0)


def _softmax_binary_cross_entropy_delta(z, y):
    """dE/dz for E = -Σ_k [y_k log ŷ_k + (1 - y_k) log(1 - ŷ_k)], ŷ = softmax(z):

        δ_j = n ŷ_j - y_j - Σ_(k≠j) (1 - y_k) r_kj,    r_kj = e^(z_j) / Σ_(i≠k) e^(z_i),

    (from ∂ log ŷ_k/∂z_j = [k = j] - ŷ_j and ∂ log(1 - ŷ_k)/∂z_j = [k ≠ j] r_kj - ŷ_j).
    With t the column's largest entry: for k ≠ t, r_kj = ŷ_j c_k with c_k = (1 - y_k)/(1 - ŷ_k),
    and 1 - ŷ_k ≥ 1/2; r_tj is the softmax without t (:func:`_softmax_parts`). So

        δ = n ŷ - y - ŷ ⊙ (S - c) - (1 - y_t) r,    S = Σ_(k≠t) c_k,  c_t = 0,

    every term bounded (ŷ, r ≤ 1, |c_k| ≤ 2 |1 - y_k|): no overflow at any finite logits."""
    n, cols = z.shape[0], np.arange(z.shape[1])
    yhat, _, _, top, r = _softmax_parts(z)
    if n == 1:  # ŷ = 1: E is constant (and finite only where y = 1, which gives 0)
        return yhat - y
    with np.errstate(divide="ignore", invalid="ignore"):  # 1 - ŷ_t may be 0: c_t is set to 0
        c = (1 - y) / (1 - yhat)
    c[top, cols] = 0.0
    return n * yhat - y - yhat * (c.sum(axis=0) - c) - (1 - y[top, cols]) * r


def _log_loss_gradient(a, y, binary):
    """dE/da of the cross-entropy -y/a, or of the binary one -y/a + (1 - y)/(1 - a), taking
    a term whose target weight (y, 1 - y) is 0 as 0 (as the loss does: 0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(y == 0, 0.0, -y / a)
        if binary:
            w = 1 - y
            g = g + np.where(w == 0, 0.0, w / (1 - a))
    return g


def _first_bad(array) -> str:
    """``NaN at (2, 5)``: the first non-finite entry of ``array``, 1-based."""
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
    value = array[index]
    return f"{'NaN' if np.isnan(value) else f'{value}'} at ({', '.join(str(i + 1) for i in index)})"


def _entry(name, a, y, where) -> str:
    """``a^2_1 = -0.5 at sample 3, target 1``: the first entry flagged by ``where``."""
    j, k = (int(i) for i in np.argwhere(where)[0])
    return f"{name}_{j + 1} = {a[j, k]:.6g} at sample {k + 1}, target {y[j, k]:.6g}"


def _key(expr) -> str:
    """A quantity's name in the environment of a compiled program (plain strings: fast)."""
    return str(expr)


def _compile(expr):
    """A function ``env -> ndarray`` computing ``expr``; ``env`` maps symbols to values."""
    if isinstance(expr, (sp.MatrixSymbol, sp.Symbol)):
        return operator.itemgetter(_key(expr))
    if expr.is_Number:
        c = float(expr)
        return lambda env: c
    if isinstance(expr, (sp.MatAdd, sp.Add)):
        plus = [_compile(t) for t in expr.args if not _negated(t)]
        minus = [_compile(-t) for t in expr.args if _negated(t)]

        def add(env):
            out = plus[0](env)
            for f in plus[1:]:
                out = out + f(env)
            for f in minus:
                out = out - f(env)
            return out
        if not plus:
            whole = _compile(-expr)
            return lambda env: -whole(env)
        return add
    if isinstance(expr, sp.MatMul):
        return _compile_matmul(expr)
    if isinstance(expr, (sp.Mul, sp.HadamardProduct)):
        parts = [_compile(a) for a in expr.args]
        return lambda env: functools.reduce(operator.mul, [f(env) for f in parts])
    if isinstance(expr, sp.Pow):
        base, exponent = _compile(expr.base), _compile(expr.exp)
        return lambda env: base(env) ** exponent(env)
    if isinstance(expr, sp.Transpose):
        arg = _compile(expr.arg)
        return lambda env: arg(env).T
    if isinstance(expr, Elementwise):
        mats = [_compile(m) for m in expr.matrices]
        body = _compile(expr.function.expr)
        keys = [_key(v) for v in expr.function.variables]
        return lambda env: body({**env, **{k: m(env) for k, m in zip(keys, mats)}})
    if isinstance(expr, Softmax):
        arg = _compile(expr.args[0])
        return lambda env: _softmax_columns(arg(env))
    if isinstance(expr, sp.Function):
        record = fn.record_of(expr)
        if record is None or record.numpy is None:
            raise NetworkError(f"no NumPy form for {type(expr).__name__}")
        f = record.numpy
        args = [_compile(a) for a in expr.args]
        return lambda env: f(*[g(env) for g in args])
    raise NetworkError(f"cannot evaluate {type(expr).__name__} numerically: {expr}")


def compile_expression(expr):
    """A function ``env -> ndarray`` computing the matrix expression ``expr`` with NumPy
    (as the batch program is compiled); ``env`` maps :func:`quantity_key` names to arrays."""
    return _compile(expr)


def quantity_key(expr) -> str:
    """A quantity's name in the environment of a compiled program."""
    return _key(expr)


def matrix_step(rule, lhs, rhs, node=None, because=()) -> MatrixStep:
    """A :class:`MatrixStep` with the shapes of ``lhs`` and of every matrix in ``rhs``."""
    return _step(rule, lhs, rhs, node, because)


def _negated(term):
    return _negative(term) if term.is_Matrix else term.could_extract_minus_sign()


def _compile_matmul(expr):
    """A matrix product, right to left. A column of ones 1 on the right sums the columns
    (Δ 1_N: the bias gradient sums the samples); a row of ones 1^T on the right of a bias
    is left to broadcasting (b 1_N^T: the bias added to every sample); 1^T M sums M's
    columns; 1 r (a row repeated) is also left to broadcasting."""
    coeff, product = expr.as_coeff_mmul()
    args = product.args if isinstance(product, sp.MatMul) else (product,)
    scale = _compile(sp.Mul(coeff, *[a for a in args if not a.is_Matrix]))
    ops = []
    for f in reversed([a for a in args if a.is_Matrix]):
        if isinstance(f, Ones):
            ops.append(("ones", None))
        elif isinstance(f, sp.Transpose) and isinstance(f.arg, Ones):
            ops.append(("ones^T", None))
        else:
            ops.append(("matrix", _compile(f)))

    def run(env):
        value, sum_columns = None, False
        for kind, g in ops:
            if kind == "ones":
                sum_columns = value is None
            elif kind == "ones^T":
                if value is not None:
                    value = value.sum(axis=0, keepdims=True)
            else:
                m = g(env)
                value = m if value is None else m @ value
                if sum_columns:
                    value, sum_columns = value.sum(axis=1, keepdims=True), False
        k = scale(env)
        return value if k == 1 else k * value
    return run


# -- values -----------------------------------------------------------------------------

@dataclass
class LayeredValues:
    """Numbers for a layered network: ``weights[l-1]`` is W^l (n_l x n_(l-1)),
    ``biases[l-1]`` is b^l (n_l x 1), ``x`` the inputs (n_0 x N, one sample a column) and
    ``y`` the targets (n_L x N)."""

    weights: list
    biases: list
    x: np.ndarray
    y: np.ndarray


@dataclass
class MatrixGradient:
    """The loss and dE/dW^l, dE/db^l (``dW[l-1]``, ``db[l-1]``), with the deltas Δ^l and
    activations A^0..A^L of the batch."""

    loss: float
    dW: list
    db: list
    deltas: list = field(repr=False)
    activations: list = field(repr=False)

    def named(self) -> dict:
        """``{"W^1": dE/dW^1, "b^1": dE/db^1, ...}``."""
        out = {}
        for l, (gw, gb) in enumerate(zip(self.dW, self.db), 1):
            out[f"W^{l}"], out[f"b^{l}"] = gw, gb
        return out

    @property
    def batch(self) -> int:
        return self.activations[0].shape[1]


@dataclass
class WorkedNumbers:
    """The numbers of one sample's worked solution (:meth:`MatrixDerivation.worked_numbers`),
    each a column or a matrix; lists by layer: ``z[l-1]`` is z^l, ``a[l]`` is a^l (a^0 = x),
    ``fprime[l-1]`` is f_l'(z^l) (None where no step uses it: identity, a fused or softmax
    output), ``back[l-1]`` is (W^(l+1))^T δ^(l+1), ``loss_gradient`` is dE/da^L (None for a
    fused output rule)."""

    loss: float
    z: list
    a: list
    fprime: list
    loss_gradient: np.ndarray | None
    back: list
    deltas: list
    dW: list
    db: list


MAX_LISTED = 100_000  # gradient entries listed in JSON
MAX_SHOWN = 40  # entries of one matrix shown in text


def _check_values(sizes, values: LayeredValues):
    depth = len(sizes) - 1
    if len(values.weights) != depth or len(values.biases) != depth:
        raise ValueError(f"{depth} layers but {len(values.weights)} weight matrices and {len(values.biases)} bias vectors")
    batch = values.x.shape[1] if values.x.ndim == 2 else None
    expected = [("x", values.x, (sizes[0], batch)), ("y", values.y, (sizes[-1], batch))]
    for l in range(1, depth + 1):
        expected.append((f"W^{l}", values.weights[l - 1], (sizes[l], sizes[l - 1])))
        expected.append((f"b^{l}", values.biases[l - 1], (sizes[l], 1)))
    for name, array, shape in expected:
        if np.shape(array) != shape:
            raise ValueError(f"{name} has shape {np.shape(array)}, expected {shape}")


def random_layered(sizes, batch: int = 1, seed: int = 0, *, targets: str = "normal", dtype=np.float64) -> LayeredValues:
    """Random weights and data for a layered network, reproducible from ``seed``.

    Weights are normal with variance 1/n_(l-1) (so sums stay of order 1 at any width),
    biases small, inputs standard normal. ``targets``: ``"normal"``, ``"onehot"`` (one
    class per sample, for cross-entropy) or ``"binary"`` (0 or 1 entries).

    >>> v = random_layered([3, 4, 2], batch=5, seed=1, targets="onehot")
    >>> v.weights[0].shape, v.x.shape, v.y.sum(axis=0).tolist()
    ((4, 3), (3, 5), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    sizes = list(sizes)
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        weights.append((rng.standard_normal((fan_out, fan_in), dtype=np.float64) / np.sqrt(fan_in)).astype(dtype))
        biases.append((0.1 * rng.standard_normal((fan_out, 1))).astype(dtype))
    x = rng.standard_normal((sizes[0], batch)).astype(dtype)
    if targets == "onehot":
        y = np.zeros((sizes[-1], batch), dtype=dtype)
        y[rng.integers(0, sizes[-1], size=batch), np.arange(batch)] = 1
    elif targets == "binary":
        y = rng.integers(0, 2, size=(sizes[-1], batch)).astype(dtype)
    elif targets == "normal":
        y = rng.standard_normal((sizes[-1], batch)).astype(dtype)
    else:
        raise ValueError(f"targets must be 'normal', 'onehot' or 'binary', not {targets!r}")
    return LayeredValues(weights, biases, x, y)


def values_from_scalar(sizes, values) -> LayeredValues:
    """Matrices from scalar values named as :func:`symprop.layered.mlp` names them
    (``x_i``, ``t_j``, ``w_l_j_i``, ``b_l_j``); a tuple value is a batch (one column a sample).

    >>> v = values_from_scalar([1, 1], {"x_1": 2.0, "t_1": 1.0, "w_1_1_1": 0.5, "b_1_1": 0.0})
    >>> v.weights[0].tolist(), v.x.tolist()
    ([[0.5]], [[2.0]])
    """
    values = {str(k): v for k, v in values.items()}
    batch = {len(v) for v in values.values() if isinstance(v, (tuple, list))}
    if len(batch) > 1:
        raise ValueError("batch values of different lengths")
    n = batch.pop() if batch else 1

    def get(name):
        if name not in values:
            raise ValueError(f"no value for {name}")
        v = values[name]
        return list(v) if isinstance(v, (tuple, list)) else [v] * n

    def column(names):
        return np.array([get(name) for name in names], dtype=np.float64)

    def scalar(name):
        v = values.get(name)
        if isinstance(v, (tuple, list)):
            raise ValueError(f"{name} is a parameter: one value, not a batch")
        if v is None:
            raise ValueError(f"no value for {name}")
        return float(v)

    sizes = list(sizes)
    weights, biases = [], []
    for l in range(1, len(sizes)):
        weights.append(np.array([[scalar(f"w_{l}_{j}_{i}") for i in range(1, sizes[l - 1] + 1)]
                                 for j in range(1, sizes[l] + 1)]))
        biases.append(np.array([[scalar(f"b_{l}_{j}")] for j in range(1, sizes[l] + 1)]))
    x = column([f"x_{i}" for i in range(1, sizes[0] + 1)])
    y = column([f"t_{j}" for j in range(1, sizes[-1] + 1)])
    return LayeredValues(weights, biases, x, y)


def scalar_values(values: LayeredValues) -> dict:
    """The inverse of :func:`values_from_scalar`: every number by the name
    :func:`symprop.layered.mlp` gives it, inputs and targets as lists (one entry a sample),
    ready for :mod:`symprop.numeric` on the scalar network.

    >>> v = values_from_scalar([1, 1], {"x_1": (2.0, 3.0), "t_1": (1.0, 0.0), "w_1_1_1": 0.5, "b_1_1": 0.0})
    >>> scalar_values(v)
    {'x_1': [2.0, 3.0], 't_1': [1.0, 0.0], 'w_1_1_1': 0.5, 'b_1_1': 0.0}
    """
    out = {f"x_{i + 1}": row.tolist() for i, row in enumerate(values.x)}
    out.update({f"t_{j + 1}": row.tolist() for j, row in enumerate(values.y)})
    for l, (W, b) in enumerate(zip(values.weights, values.biases), 1):
        rows, cols = W.shape
        out.update({f"w_{l}_{j + 1}_{i + 1}": float(W[j, i]) for j in range(rows) for i in range(cols)})
        out.update({f"b_{l}_{j + 1}": float(b[j, 0]) for j in range(rows)})
    return out


def derive_layers(layers) -> MatrixDerivation:
    """The matrix derivation of a spec's ``[layers]`` table (:class:`symprop.spec.Layers`),
    its defined activations included."""
    return derive_matrix(layers.sizes, layers.hidden, layers.output, layers.loss, reduction=layers.reduction,
                         functions=layers.functions)


def from_layers(layers) -> tuple[MatrixDerivation, LayeredValues]:
    """The derivation and the numbers of a spec's ``[layers]`` table: its ``[values]`` if it
    has any, else random ones drawn with its ``seed`` for a batch of ``batch`` samples."""
    d = derive_layers(layers)
    if layers.values:
        return d, values_from_scalar(d.sizes, layers.values)
    return d, d.random_values(layers.batch, layers.seed)


def mlp_bindings(d: MatrixDerivation, form: str = "layer") -> dict:
    """The one-sample matrices of ``d`` as explicit matrices of the scalar network's
    symbols, as :func:`symprop.layered.mlp` names them (``form`` as there).

    With these, :meth:`MatrixDerivation.explicit` gives dE/dW^l entry by entry in the
    scalar network's node symbols, comparable with its scalar derivations.
    """
    if form not in ("layer", "neuron"):
        raise NetworkError(f"form must be 'layer' or 'neuron', not {form!r}")
    s, sizes = d.one, d.sizes

    def col(name, n):
        return sp.ImmutableMatrix(n, 1, lambda j, _: sp.Symbol(name.format(j=j + 1)))

    out = {s.x: col("x_{j}", sizes[0]), s.y: col("t_{j}", sizes[-1])}
    previous = out[s.x]
    for l in range(1, d.depth + 1):
        W = sp.ImmutableMatrix(sizes[l], sizes[l - 1], lambda j, i: sp.Symbol(f"w_{l}_{j + 1}_{i + 1}"))
        b = col(f"b_{l}_{{j}}", sizes[l])
        out[s.W[l - 1]], out[s.b[l - 1]] = W, b
        a = col(f"a_{l}_{{j}}", sizes[l])
        out[s.z[l - 1]] = col(f"z_{l}_{{j}}", sizes[l]) if form == "layer" else W * previous + b
        if l == d.depth and d.net.activations[-1].name == "softmax":
            # mlp names the logits a_L_j (identity nodes) and, without the fused loss, ŷ y_j
            logits = list(a)
            out[s.a[l]] = (sp.ImmutableMatrix([fn.softmax(k, *logits) for k in range(1, sizes[l] + 1)])
                           if d.net.fused else col("y_{j}", sizes[l]))
        else:
            out[s.a[l]] = a
        previous = a
    return out


def parameter_entry(name: str, sizes) -> tuple[str, int, int, int]:
    """``("w", l, j, i)`` for mlp's weight name ``w_l_j_i`` (row j, column i of W^l), or
    ``("b", l, j, 1)`` for ``b_l_j``; a :class:`NetworkError` for anything else.

    >>> parameter_entry("w_1_2_1", [2, 3, 2])
    ('w', 1, 2, 1)
    """
    m = re.fullmatch(r"(w)_(\d+)_(\d+)_(\d+)|(b)_(\d+)_(\d+)", str(name))
    if m is None:
        raise NetworkError(f"{name}: name a weight w_l_j_i (row j, column i of W^l) or a bias b_l_j")
    kind, l, j, i = ("w", int(m[2]), int(m[3]), int(m[4])) if m[1] else ("b", int(m[6]), int(m[7]), 1)
    sizes = list(sizes)
    if not (1 <= l < len(sizes) and 1 <= j <= sizes[l] and 1 <= i <= sizes[l - 1]):
        raise NetworkError(f"{name}: no such {'weight' if kind == 'w' else 'bias'} in a "
                           f"{'-'.join(map(str, sizes))} network")
    return kind, l, j, i
