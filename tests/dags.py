"""Random DAG networks for property tests, and an independent evaluator.

The evaluator never uses symprop's derivative rules: it rewrites every symprop function
into elementary SymPy (``functions.explicit``) and evaluates exactly with rationals, so
it is a check of the engine, not a copy of it.
"""

from __future__ import annotations

import random
import warnings

import sympy as sp
from hypothesis import strategies as st

from symprop import Network, functions as F

G = F.generic("g")
ACTIVATIONS = [
    "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "identity", "g", "max", "min", "softmax", "product", "exp",
]
LOSSES = ["half_sse", "mse", "softmax_cross_entropy", "cross_entropy", "binary_cross_entropy"]


_U = sp.Dummy("u")
_TANH_DERIVATIVES = [sp.diff(sp.tanh(_U), _U, order) for order in range(3)]


def bind_generic(expr):
    """Bind the generic g to tanh (and g', g'') so the expression has numbers."""
    for order, f in enumerate(_TANH_DERIVATIVES):
        if expr.has(F.generic("g", order)):
            expr = expr.replace(F.generic("g", order), lambda arg, f=f: f.xreplace({_U: arg}))
    return expr


def evaluate(expr, point):
    """``expr`` evaluated at ``point`` with 30-digit floats, independently of symprop's rules.

    Each function call is rewritten into elementary SymPy (``functions.explicit``) on its
    own, and each distinct subexpression is evaluated once: a fully substituted gradient
    repeats the same subtrees exponentially often, and evaluating it as a tree took minutes.
    """
    values = {s: sp.Float(v, 30) for s, v in point.items()}
    memo = {}

    def value(e):
        if e in memo:
            return memo[e]
        if e in values:
            v = values[e]
        elif e.is_Number or e.is_NumberSymbol:
            v = sp.N(e, 30)
        elif not e.args:
            raise KeyError(f"no value for {e}")
        elif isinstance(e, (sp.Add, sp.Mul, sp.Pow)):
            v = sp.N(e.func(*[value(a) for a in e.args]), 30)
        else:  # a function: its explicit form at its arguments' values (indices stay as they are;
            # a tuple argument, softmax's logits, has a slot per entry)
            slots = [a if a.is_Number else sp.Tuple(*[sp.Dummy() for _ in a.args]) if isinstance(a, sp.Tuple)
                     else sp.Dummy() for a in e.args]
            f = bind_generic(F.explicit(e.func(*slots)))
            pairs = []
            for d, a in zip(slots, e.args):
                if isinstance(a, sp.Tuple):
                    pairs += list(zip(d.args, a.args))
                elif d is not a:
                    pairs.append((d, a))
            v = sp.N(f.xreplace({d: value(a) for d, a in pairs}), 30)
        memo[e] = v
        return v

    return complex(value(F.as_expr(expr))).real


def forward(net, point):
    """Every node's value at ``point`` (exact where possible), in topological order."""
    values = dict(point)
    for k in net.order:
        values[k] = sp.Float(evaluate(net.nodes[k], values), 30)
    return values


def reference_gradient(net, w, point):
    """sympy.diff of the fully substituted, explicit loss: the independent reference."""
    full = net.nodes[net.loss]
    for k in reversed(net.order):
        full = full.xreplace({k: net.nodes[k]})
    full = bind_generic(F.explicit(full))
    # differentiate in real symbols: |u|' is then sign(u), not re/im derivatives (defined
    # functions such as softsign use abs)
    real = {s: sp.Dummy(s.name, real=True) for s in full.free_symbols}
    derivative = sp.diff(full.xreplace(real), real.get(w, w)).xreplace({r: s for s, r in real.items()})
    return evaluate(derivative, point)


@st.composite
def dag_networks(draw, max_hidden=5):
    """A random DAG: fan-out, skip connections, shared parameters, every activation."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    n_inputs = draw(st.integers(1, 3))
    n_hidden = draw(st.integers(1, max_hidden))
    inputs = [sp.Symbol(f"x_{i}") for i in range(1, n_inputs + 1)]
    pool = [sp.Symbol(f"w_{i}") for i in range(1, draw(st.integers(2, 6)) + 1)]  # small: shared weights
    nodes, available = {}, list(inputs)
    for k in range(1, n_hidden + 1):
        fan_in = rng.randint(1, min(3, len(available)))
        reads = rng.sample(available, fan_in)
        u = sp.Add(*[rng.choice(pool) * r for r in reads])
        act = draw(st.sampled_from(ACTIVATIONS))
        if act in ("max", "min"):
            gate = F.maximum if act == "max" else F.minimum
            expr = gate(u, rng.choice(pool) * rng.choice(available))
        elif act == "softmax":
            expr = F.softmax(rng.randint(1, 2), u, rng.choice(pool) * rng.choice(available))
        elif act == "product":
            expr = u * rng.choice(available)
        elif act == "exp":
            expr = sp.exp(u / 4)
        elif act == "g":
            expr = G(u)
        elif act == "identity":
            expr = u
        elif act == "leaky_relu":
            expr = F.leaky_relu(u, sp.Rational(1, 10))
        else:
            expr = getattr(F, act, None)(u) if act != "tanh" else sp.tanh(u)
        z = sp.Symbol(f"z_{k}")
        nodes[z] = expr
        available.append(z)
    hidden = [s for s in available if s not in inputs]
    # the loss reads the last node and a random sample of others (skip connections to E)
    outs = [hidden[-1]] + [h for h in hidden[:-1] if rng.random() < 0.4]
    loss = draw(st.sampled_from(LOSSES))
    targets = [sp.Symbol(f"t_{j}") for j in range(1, len(outs) + 1)]
    E = sp.Symbol("E")
    if loss in ("cross_entropy", "binary_cross_entropy"):
        probs = [F.sigmoid(o) for o in outs]
        nodes[E] = F.cross_entropy(probs, targets) if loss == "cross_entropy" else F.binary_cross_entropy(probs[0], targets[0])
        targets = targets if loss == "cross_entropy" else targets[:1]
    elif loss == "softmax_cross_entropy":
        nodes[E] = F.softmax_cross_entropy_of(outs, targets)
    else:
        nodes[E] = getattr(F, loss)(outs, targets)
    used = set().union(*[e.free_symbols for e in nodes.values()])
    params = [p for p in pool if p in used]
    targets = [t for t in targets if t in used]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a parameter used only off the loss's paths is fine here
        return Network(nodes, loss=E, params=params, inputs=inputs, targets=targets)


def random_point(net, seed):
    """Rational values for the leaves; targets that sum to 1 (softmax/CE need it)."""
    rng = random.Random(seed)
    point = {s: sp.Rational(rng.randint(-90, 90), 100) for s in net.inputs + net.params}
    raw = [rng.randint(1, 9) for _ in net.targets]
    point.update({t: sp.Rational(r, sum(raw)) for t, r in zip(net.targets, raw)})
    return point
