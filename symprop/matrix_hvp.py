r"""Hessian-vector products of a layered network in matrix form, by the R-operator.

Pearlmutter (1994): for a direction ``v`` over the parameters, write ``R{q}`` for the
directional derivative of a quantity q along v, ``R{q} = d/dr q(θ + r v)`` at r = 0. R is a
derivative, so it obeys the product and chain rules, ``R{W^l} = V^l`` and ``R{b^l}`` are the
direction's blocks, ``R{x} = R{y} = 0``, and ``R{dE/dθ} = H v``: the Hessian-vector product
in one forward and one backward pass, at a few times the cost of a gradient, without H.

Forward (l = 1..L; R{a^0} = R{x} = 0):

    R{z^l} = R{W^l} a^(l-1) + W^l R{a^(l-1)} + R{b^l}          (product rule on z = Wa + b)
    R{a^l} = f'(z^l) ⊙ R{z^l}                                   (chain rule, elementwise f)
    R{ŷ}   = (Diag(ŷ) - ŷ ŷ^T) R{z^L}                           (softmax output)

Backward:

    R{δ^L} = R{ŷ}                                               (softmax + cross-entropy: δ^L = ŷ - y)
    R{δ^L} = f''(z^L) ⊙ R{z^L} ⊙ g + f'(z^L) ⊙ h ⊙ R{a^L}       (other losses: δ^L = f'(z^L) ⊙ g,
                                                                 g = dE/da^L, h = d²E/d(a^L)² entrywise)
    R{δ^l} = f''(z^l) ⊙ R{z^l} ⊙ (W^(l+1))^T δ^(l+1)
             + f'(z^l) ⊙ ((R{W^(l+1)})^T δ^(l+1) + (W^(l+1))^T R{δ^(l+1)})
    R{dE/dW^l} = R{δ^l} (a^(l-1))^T + δ^l (R{a^(l-1)})^T
    R{dE/db^l} = R{δ^l}

and over a batch the same with matrices (samples are columns), as :mod:`symprop.matrix`
does it. Numbers: the batch steps are compiled to NumPy by :mod:`symprop.matrix`'s compiler
and run after its gradient, on the same environment, so H v costs about two to four gradients.

>>> from symprop.matrix import derive_matrix, random_layered, text
>>> h = derive_hvp(derive_matrix([3, 4, 2], hidden="tanh", output="softmax", loss="cross_entropy"))
>>> step = h.steps[0]
>>> print(text(step.lhs), "=", text(step.rhs), f"[{step.rule}]")
R{δ^2} = R{ŷ} [R of the output delta]
>>> values = random_layered([3, 4, 2], batch=5, seed=0, targets="onehot")
>>> result = h.hvp(values, random_direction([3, 4, 2], seed=1))
>>> [v.shape for v in result.hvp_W]
[(4, 3), (2, 4)]
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.matrices.expressions.diagonal import DiagMatrix

from . import functions as fn
from .graph import NetworkError
from .matrix import (
    E, N, Elementwise, Gradient, LayeredValues, MatrixDerivation, MatrixGradient, MatrixRule, Ones,
    activation_derivative, compile_expression, matrix_step, parameter_entry, quantity_key, text,
)

__all__ = ["R_RULES", "MatrixHvpDerivation", "MatrixHvp", "Direction", "derive_hvp", "random_direction",
           "direction_from_names", "r_of"]

# The rules an R step uses, in the order documents list them; ``sentence`` says why in words.
R_RULES = {r.name: r for r in (
    MatrixRule("R is a derivative", "R{q} = d/dr q(θ + r v) at r = 0: R{W^l} = V^l, R{b^l} are the direction, R{x} = R{y} = 0",
               r"$\mathcal{R}\{q\} = \frac{d}{dr}\, q(\boldsymbol{\theta} + r\mathbf{v})\big|_{r=0}$ is the derivative of "
               r"$q$ along the direction $\mathbf{v}$: $\mathcal{R}\{\mathbf{W}^{(l)}\}$ and $\mathcal{R}\{\mathbf{b}^{(l)}\}$ "
               r"are the direction's blocks, the data do not move ($\mathcal{R}\{\mathbf{x}\} = \mathcal{R}\{\mathbf{y}\} = "
               r"\mathbf{0}$), and $\mathcal{R}\{\partial \mathcal{L}/\partial \boldsymbol{\theta}\} = \mathbf{H}\mathbf{v}$",
               r"$\mathcal{R}$ is a derivative"),
    MatrixRule("R of a product", "R{W a} = R{W} a + W R{a} (the product rule; R of a sum is the sum of the R's)",
               r"$\mathcal{R}\{\mathbf{W}\mathbf{a}\} = \mathcal{R}\{\mathbf{W}\}\,\mathbf{a} + "
               r"\mathbf{W}\,\mathcal{R}\{\mathbf{a}\}$: the product rule, as for any derivative",
               "product rule"),
    MatrixRule("R of elementwise f", "R{f(z)} = f'(z) ⊙ R{z}",
               r"$\mathcal{R}\{f(\mathbf{z})\} = f'(\mathbf{z}) \odot \mathcal{R}\{\mathbf{z}\}$ entry by entry "
               r"(the chain rule), and $\mathcal{R}\{f'(\mathbf{z})\} = f''(\mathbf{z}) \odot \mathcal{R}\{\mathbf{z}\}$",
               r"elementwise $f$"),
    MatrixRule("R of softmax", "R{ŷ} = (Diag(ŷ) - ŷ ŷ^T) R{z}",
               r"$\mathcal{R}\{\hat{\mathbf{y}}\} = \frac{\partial \hat{\mathbf{y}}}{\partial \mathbf{z}} "
               r"\mathcal{R}\{\mathbf{z}\} = (\operatorname{Diag}(\hat{\mathbf{y}}) - \hat{\mathbf{y}}\hat{\mathbf{y}}^{T})"
               r"\,\mathcal{R}\{\mathbf{z}\}$", "softmax"),
    MatrixRule("R of the output delta", "δ^L = ŷ - y with R{y} = 0 gives R{δ^L} = R{ŷ}",
               r"the fused output rule $\boldsymbol{\delta}^{(L)} = \hat{\mathbf{y}} - \mathbf{y}$ and "
               r"$\mathcal{R}\{\mathbf{y}\} = \mathbf{0}$ give $\mathcal{R}\{\boldsymbol{\delta}^{(L)}\} = "
               r"\mathcal{R}\{\hat{\mathbf{y}}\}$", "output delta"),
    MatrixRule("R of the loss gradient", "δ^L = f'(z^L) ⊙ g(a^L) gives R{δ^L} = f''(z^L) ⊙ R{z^L} ⊙ g + f'(z^L) ⊙ h ⊙ R{a^L}",
               r"$\boldsymbol{\delta}^{(L)} = f'(\mathbf{z}^{(L)}) \odot \mathbf{g}$ with $\mathbf{g} = \partial \mathcal{L}/"
               r"\partial \mathbf{a}^{(L)}$ gives, by the product rule, $f''(\mathbf{z}^{(L)}) \odot \mathcal{R}\{\mathbf{z}^{(L)}\}"
               r" \odot \mathbf{g} + f'(\mathbf{z}^{(L)}) \odot \mathbf{h} \odot \mathcal{R}\{\mathbf{a}^{(L)}\}$, "
               r"$\mathbf{h}$ the loss's second derivative entry by entry", "loss gradient"),
    MatrixRule("R of the delta recursion",
               "δ^l = f'(z^l) ⊙ (W^(l+1))^T δ^(l+1) gives three terms by the product rule",
               r"$\boldsymbol{\delta}^{(l)} = f'(\mathbf{z}^{(l)}) \odot (\mathbf{W}^{(l+1)})^{T}\boldsymbol{\delta}^{(l+1)}$ "
               r"is a product of three factors, so its $\mathcal{R}$ has three terms: $f''(\mathbf{z}^{(l)}) \odot "
               r"\mathcal{R}\{\mathbf{z}^{(l)}\} \odot (\mathbf{W}^{(l+1)})^{T}\boldsymbol{\delta}^{(l+1)}$, then "
               r"$f'(\mathbf{z}^{(l)}) \odot$ the $\mathcal{R}$ of $(\mathbf{W}^{(l+1)})^{T}\boldsymbol{\delta}^{(l+1)}$",
               "delta recursion"),
    MatrixRule("R of delta^T x", "dE/dW = δ a^T gives R{dE/dW} = R{δ} a^T + δ (R{a})^T",
               r"$\frac{\partial \mathcal{L}}{\partial \mathbf{W}} = \boldsymbol{\delta}\,\mathbf{a}^{T}$ gives "
               r"$\mathcal{R}\{\frac{\partial \mathcal{L}}{\partial \mathbf{W}}\} = \mathcal{R}\{\boldsymbol{\delta}\}\,"
               r"\mathbf{a}^{T} + \boldsymbol{\delta}\,(\mathcal{R}\{\mathbf{a}\})^{T}$", r"$\boldsymbol{\delta}^{T}\mathbf{x}$"),
    MatrixRule("R of z = x", "dE/db = δ gives R{dE/db} = R{δ}",
               r"$\frac{\partial \mathcal{L}}{\partial \mathbf{b}} = \boldsymbol{\delta}$ gives "
               r"$\mathcal{R}\{\frac{\partial \mathcal{L}}{\partial \mathbf{b}}\} = \mathcal{R}\{\boldsymbol{\delta}\}$ "
               r"(summed over the samples of a batch)", r"$\mathbf{z} = \mathbf{x}$"),
)}

_U, _V = sp.Symbol("u_"), sp.Symbol("v_")  # the entry-by-entry variables, as symprop.matrix names them


_R_OF: dict[tuple, sp.MatrixExpr] = {}  # (R{q}'s name, shape) -> q: R{q} prints with q's display name


class RMatrix(sp.MatrixSymbol):
    r"""``R{q}`` as a matrix symbol (so that the compiled program looks it up by name) that
    prints its LaTeX as ``\mathcal{R}\{q\}`` with q printed by the document's printer."""

    def _latex(self, printer):
        q = _R_OF[(self.name, *self.shape)]
        if isinstance(q, Gradient):  # a fraction: braces as tall as it
            return rf"\mathcal{{R}}\left\{{{printer._print(q)}\right\}}"
        return rf"\mathcal{{R}}\{{{printer._print(q)}\}}"


def r_of(q) -> RMatrix:
    r"""``R{q}``: the directional derivative of the matrix ``q`` (a MatrixSymbol or a
    :class:`~symprop.matrix.Gradient`) along the direction, a matrix of q's shape.

    >>> W = sp.MatrixSymbol("W^1", 3, 2)
    >>> r_of(W).name, r_of(W).shape
    ('R{W^1}', (3, 2))
    >>> from symprop.matrix import latex
    >>> latex(r_of(W).T, {W: r"\mathbf{W}^{(1)}"})
    '\\left(\\mathcal{R}\\{\\mathbf{W}^{(1)}\\}\\right)^{T}'
    """
    name = f"R{{{text(q)}}}"
    _R_OF.setdefault((name, *q.shape), q)
    return RMatrix(name, *q.shape)


def _hadamard(*factors):
    """The entrywise product of the factors that are not None (one factor: itself)."""
    factors = [f for f in factors if f is not None]
    return factors[0] if len(factors) == 1 else sp.HadamardProduct(*factors)


def _add(*terms):
    """A sum kept in the order written (the printed step reads as the rule does)."""
    terms = [t for t in terms if t is not None]
    return terms[0] if len(terms) == 1 else sp.MatAdd(*terms, evaluate=False)


def _second_derivative(f, z, a):
    """f''(z) entry by entry, written with the layer's output ``a`` where it can be, as the
    derivative of f'(z) in that form by the chain rule through a = f(z) (σ'' = a ⊙ (1 - a) ⊙
    (1 - 2a), tanh'' = -2a ⊙ (1 - a²)); None when f'' = 0 (identity, relu)."""
    out = f.build(_U)
    first = sp.diff(out, _U)
    if out != _U:
        first = first.xreplace({out: _V})
    second = sp.diff(first, _V) * first + sp.diff(first, _U)  # d/du f'(u, a(u)), a' = f'
    if out != _U:
        second = second.xreplace({out: _V})
    if second == 0:
        return None
    used = [(var, m) for var, m in ((_U, z), (_V, a)) if var in second.free_symbols]
    if not used:  # a constant f'' (a quadratic activation): a matrix of that constant
        return sp.MatMul(second, Elementwise(sp.Lambda(_U, sp.S.One), z))
    return Elementwise(sp.Lambda(tuple(var for var, _ in used), second), *[m for _, m in used])


def _loss_derivatives(loss, a, y, n_out):
    """(g, h): dE/da and d²E/da² of one sample's loss, entry by entry, from the loss record;
    each an Elementwise of (a, y), a constant times nothing (h of a squared error: a number),
    or None for h = 1."""
    rule = loss.loss
    g = (rule.scale(n_out) * rule.gradient).xreplace({fn.U: _U, fn.V: _V})
    h = sp.diff(g, _U)
    h = min((h, sp.factor(h), sp.together(h)), key=sp.count_ops)  # y/a² of the cross-entropy, not a quotient rule's sum
    g_matrix = Elementwise(sp.Lambda((_U, _V), g), a, y)
    h_matrix = None if h == 1 else h if not h.has(_U, _V) else Elementwise(sp.Lambda((_U, _V), h), a, y)
    return g_matrix, h_matrix


def _is_number(h) -> bool:
    return isinstance(h, sp.Expr) and not isinstance(h, sp.MatrixExpr)


def _named_gradient(q):
    """dE/da (or R{dE/da}) as a matrix symbol of the same name: what the compiled program
    looks up (it knows MatrixSymbols, not Gradients)."""
    return sp.MatrixSymbol(text(q), *q.shape) if isinstance(q, Gradient) else q


def _scaled(k, matrix):
    """``k`` times a matrix expression (k a SymPy number or symbol; None or 1: the matrix)."""
    return matrix if k is None or k == 1 else sp.MatMul(k, matrix)


@dataclass
class Direction:
    """A direction over the parameters: ``weights[l-1]`` is R{W^l} = V^l (n_l x n_(l-1)),
    ``biases[l-1]`` is R{b^l} (n_l x 1)."""

    weights: list
    biases: list

    def named(self) -> dict:
        out = {}
        for l, (w, b) in enumerate(zip(self.weights, self.biases), 1):
            out[f"W^{l}"], out[f"b^{l}"] = w, b
        return out


def random_direction(sizes, seed: int = 0) -> Direction:
    """A standard normal direction over every weight and bias, reproducible from ``seed``.

    >>> v = random_direction([3, 4, 2], seed=7)
    >>> [w.shape for w in v.weights], [b.shape for b in v.biases]
    ([(4, 3), (2, 4)], [(4, 1), (2, 1)])
    """
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        weights.append(rng.standard_normal((fan_out, fan_in)))
        biases.append(rng.standard_normal((fan_out, 1)))
    return Direction(weights, biases)


def direction_from_names(sizes, entries) -> Direction:
    """A direction from entries named as ``[values]`` names parameters (``w_l_j_i`` is row
    j, column i of W^l; ``b_l_j``); every entry not named is 0. A bad name raises
    :class:`~symprop.graph.NetworkError` naming it.

    >>> direction_from_names([2, 1], {"w_1_1_2": 0.5, "b_1_1": -1.0}).weights[0].tolist()
    [[0.0, 0.5]]
    """
    sizes = list(sizes)
    weights = [np.zeros((m, n)) for n, m in zip(sizes, sizes[1:])]
    biases = [np.zeros((m, 1)) for m in sizes[1:]]
    for name, value in entries.items():
        kind, l, j, i = parameter_entry(str(name), sizes)
        if isinstance(value, (tuple, list)):
            raise NetworkError(f"{name}: a direction takes one number a parameter, not a batch")
        (weights if kind == "w" else biases)[l - 1][j - 1, i - 1] = float(value)
    return Direction(weights, biases)


@dataclass
class MatrixHvp:
    """The loss, the gradient and H v at one point (``values``): ``hvp_W[l-1]`` is R{dE/dW^l}
    (the block of H v for W^l), ``hvp_b[l-1]`` R{dE/db^l}; ``derivation`` the steps that gave them."""

    loss: float
    gradient: MatrixGradient
    hvp_W: list
    hvp_b: list
    direction: Direction
    values: LayeredValues = field(repr=False)
    derivation: MatrixHvpDerivation = field(repr=False)

    def named(self) -> dict:
        """``{"W^1": (H v) for W^1, "b^1": ..., ...}``."""
        out = {}
        for l, (w, b) in enumerate(zip(self.hvp_W, self.hvp_b), 1):
            out[f"W^{l}"], out[f"b^{l}"] = w, b
        return out

    @property
    def batch(self) -> int:
        return self.gradient.batch


class MatrixHvpDerivation:
    """The R-operator steps of a :class:`~symprop.matrix.MatrixDerivation`, as data.

    ``forward`` and ``steps`` are the one-sample R-forward and R-backward steps (each a
    :class:`~symprop.matrix.MatrixStep` with its rule and shapes), ``batch_forward`` and
    ``batch_steps`` the same over N samples; ``program`` the batch assignments that
    :meth:`hvp` compiles and runs after the gradient; ``names`` the LaTeX display names.
    """

    def __init__(self, d: MatrixDerivation):
        self.d = d
        self.depth = d.depth
        self.forward, _ = self._forward(d.one)
        self.steps, _ = self._backward(d.one)
        self.batch_forward, forward_program = self._forward(d.batch)
        self.batch_steps, backward_program = self._backward(d.batch)
        self.program = forward_program + backward_program
        self.names = d.names  # R{q} prints itself around q's name

    def __repr__(self):
        return f"<MatrixHvpDerivation {self.d.description}>"

    # -- building

    def _forward(self, s):
        """R{z^l}, R{a^l} for l = 1..L (R{a^0} = R{x} = 0)."""
        net, batch = self.d.net, s.ones is not None
        steps, program = [], []
        for l in range(1, self.depth + 1):
            W, b, z, a = s.W[l - 1], s.b[l - 1], s.z[l - 1], s.a[l]
            bias = r_of(b) * s.ones.T if batch else r_of(b)
            terms = [r_of(W) * s.a[l - 1]] + ([W * r_of(s.a[l - 1])] if l > 1 else []) + [bias]
            rhs = _add(*terms)
            because = ("R{x} = 0",) if l == 1 else ()
            steps.append(matrix_step("R of a product", r_of(z), rhs, node=z, because=because))
            program.append((r_of(z), rhs))
            f = net.activations[l - 1]
            if f.name == "softmax":
                if batch:  # column by column: (Diag(ŷ) - ŷ ŷ^T) r = ŷ ⊙ (r - 1 1^T (ŷ ⊙ r))
                    n = Ones(self.d.dims[l])
                    rhs = sp.HadamardProduct(a, r_of(z) - n * n.T * sp.HadamardProduct(a, r_of(z)))
                else:
                    rhs = sp.MatMul(DiagMatrix(a) - a * a.T, r_of(z))
                steps.append(matrix_step("R of softmax", r_of(a), rhs, node=a, because=("softmax",)))
            else:
                rhs = _hadamard(activation_derivative(f, z, a), r_of(z))
                steps.append(matrix_step("R of elementwise f", r_of(a), rhs, node=a, because=(f.name,)))
            program.append((r_of(a), rhs))
        return steps, program

    def _backward(self, s):
        net, L = self.d.net, self.depth
        batch = s.ones is not None
        scale = sp.S.One / N if batch and net.reduction == "mean" else None
        steps, program = [], []

        before, rhs, rule, because = self._output_delta(s)
        steps += before
        program += [(_named_gradient(step.lhs), step.rhs) for step in before]
        rhs = _scaled(scale, rhs)
        if scale is not None:
            because += ("mean over the batch",)
        steps.append(matrix_step(rule, r_of(s.delta[L - 1]), rhs, node=s.z[L - 1], because=because))
        program.append((r_of(s.delta[L - 1]), rhs.xreplace({Gradient(E, s.a[L]): _named_gradient(Gradient(E, s.a[L]))})))

        for l in range(L, 0, -1):
            delta, W = s.delta[l - 1], s.W[l - 1]
            below = s.a[l - 1]
            rdW = _add(r_of(delta) * below.T, delta * r_of(below).T if l > 1 else None)
            steps.append(matrix_step("R of delta^T x", r_of(Gradient(E, W)), rdW, node=s.z[l - 1],
                                     because=("R{x} = 0",) if l == 1 else ()))
            rdb = r_of(delta) * s.ones if batch else r_of(delta)
            steps.append(matrix_step("R of z = x", r_of(Gradient(E, s.b[l - 1])), rdb, node=s.z[l - 1],
                                     because=("broadcast",) if batch else ()))
            program += [(r_of(Gradient(E, W)), rdW), (r_of(Gradient(E, s.b[l - 1])), rdb)]
            if l == 1:
                break
            f = net.activations[l - 2]
            z, a = s.z[l - 2], s.a[l - 1]
            curvature = _second_derivative(f, z, a)
            first = None if curvature is None else sp.HadamardProduct(curvature, r_of(z), W.T * delta)
            second = _hadamard(activation_derivative(f, z, a), _add(r_of(W).T * delta, W.T * r_of(delta)))
            rhs = _add(first, second)
            steps.append(matrix_step("R of the delta recursion", r_of(s.delta[l - 2]), rhs, node=z, because=(f.name,)))
            program.append((r_of(s.delta[l - 2]), rhs))
        return steps, program

    def _output_delta(self, s):
        """R{δ^L} (before the batch mean), its rule and reasons, after the steps it needs:
        for a loss not fused with the output, g = dE/da^L and R{g} = h ⊙ R{a^L} by name."""
        net, L = self.d.net, self.depth
        batch = s.ones is not None
        z, a, y = s.z[L - 1], s.a[L], s.y
        f = net.activations[-1]
        if net.fused:  # δ^L = a^L - y (softmax + cross-entropy, sigmoid + binary cross-entropy)
            return [], r_of(a), "R of the output delta", (net.fused,)
        g_rhs, h = _loss_derivatives(net.loss, a, y, self.d.dims[-1])
        g = Gradient(E, a)
        rg_rhs = r_of(a) if h is None else _scaled(h, r_of(a)) if _is_number(h) else sp.HadamardProduct(h, r_of(a))
        before = [matrix_step("loss gradient", g, g_rhs, node=a, because=(net.loss.name,)),
                  matrix_step("R of elementwise f", r_of(g), rg_rhs, node=a, because=(net.loss.name,))]
        if f.name == "softmax":
            if batch:  # δ = ŷ ⊙ (g - 1 1^T (ŷ ⊙ g)), column by column; R of each factor
                n = Ones(self.d.dims[-1])
                first = sp.HadamardProduct(r_of(a), g - n * n.T * sp.HadamardProduct(a, g))
                second = sp.HadamardProduct(a, r_of(g) - n * n.T * _add(sp.HadamardProduct(r_of(a), g),
                                                                         sp.HadamardProduct(a, r_of(g))))
            else:  # δ = (Diag(ŷ) - ŷ ŷ^T) g: the product rule on the Jacobian and on g
                first = sp.MatMul(DiagMatrix(r_of(a)) - r_of(a) * a.T - a * r_of(a).T, g)
                second = sp.MatMul(DiagMatrix(a) - a * a.T, r_of(g))
            return before, _add(first, second), "R of the loss gradient", ("softmax",)
        curvature = _second_derivative(f, z, a)
        first = None if curvature is None else sp.HadamardProduct(curvature, r_of(z), g)
        second = _hadamard(activation_derivative(f, z, a), r_of(g))
        return before, _add(first, second), "R of the loss gradient", (f.name,)

    # -- numbers

    @functools.cached_property
    def _compiled(self):
        return [(quantity_key(lhs), compile_expression(rhs)) for lhs, rhs in self.program]

    @functools.cached_property
    def _keys(self) -> dict:
        """The environment's names of the direction's blocks and of H v's (worked out once:
        printing a name costs more than a small network's matrix products)."""
        s = self.d.batch
        return {"RW": [quantity_key(r_of(W)) for W in s.W], "Rb": [quantity_key(r_of(b)) for b in s.b],
                "RdW": [quantity_key(r_of(Gradient(E, W))) for W in s.W],
                "Rdb": [quantity_key(r_of(Gradient(E, b))) for b in s.b]}

    def hvp(self, values: LayeredValues, direction: Direction) -> MatrixHvp:
        """The loss, the gradient and H v at ``values`` along ``direction``: the gradient's
        compiled batch program, then the R steps on the same environment."""
        sizes = self.d.sizes
        for l, (w, b) in enumerate(zip(direction.weights, direction.biases), 1):
            for name, array, shape in ((f"W^{l}", w, (sizes[l], sizes[l - 1])), (f"b^{l}", b, (sizes[l], 1))):
                if np.shape(array) != shape:
                    raise NetworkError(f"the direction for {name} has shape {np.shape(array)}, expected {shape}")
                if not np.all(np.isfinite(array)):
                    raise NetworkError(f"the direction for {name} is not finite")
        if len(direction.weights) != self.depth or len(direction.biases) != self.depth:
            raise NetworkError(f"{self.depth} layers but a direction of {len(direction.weights)} weight matrices")
        gradient, env = self.d.evaluate(values)
        keys = self._keys
        env.update({k: np.asarray(v, dtype=float) for k, v in zip(keys["RW"], direction.weights)})
        env.update({k: np.asarray(v, dtype=float) for k, v in zip(keys["Rb"], direction.biases)})
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for key, f in self._compiled:
                env[key] = f(env)
        hvp_W = [np.asarray(env[k], dtype=float) for k in keys["RdW"]]
        hvp_b = [np.asarray(env[k], dtype=float) for k in keys["Rdb"]]
        for l in range(self.depth, 0, -1):
            for name, array in ((f"W^{l}", hvp_W[l - 1]), (f"b^{l}", hvp_b[l - 1])):
                if not np.all(np.isfinite(array)):
                    raise NetworkError(f"the Hessian-vector product is not finite: R{{dE/d{name}}} overflows")
        if not math.isfinite(gradient.loss):
            raise NetworkError("the loss is not finite")
        return MatrixHvp(gradient.loss, gradient, hvp_W, hvp_b, direction, values, self)


def derive_hvp(d: MatrixDerivation) -> MatrixHvpDerivation:
    """The R-operator derivation (Hessian-vector product) of a matrix derivation ``d``."""
    return MatrixHvpDerivation(d)
