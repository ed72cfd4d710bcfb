"""Seed 002's 7-neuron network, built in Python (the tests of several rooms use it)."""

import sympy as sp

from symprop import Network, functions as F


def seed002():
    """(net, g, z, w, E): z_1..z_3 = g(w_k4 z_4 + w_k5 z_5), z_4, z_5 = g(w_k6 z_6 + w_k7 z_7),
    E = softmax + cross-entropy of z_1..z_3 against y_1..y_3."""
    g = F.generic("g")
    z = {i: sp.Symbol(f"z_{i}") for i in range(1, 8)}
    w = lambda a, b: sp.Symbol(f"w_{a}_{b}")
    y = [sp.Symbol(f"y_{c}") for c in (1, 2, 3)]
    E = sp.Symbol("E")
    nodes = {z[k]: g(w(k, 4) * z[4] + w(k, 5) * z[5]) for k in (1, 2, 3)}
    nodes.update({z[k]: g(w(k, 6) * z[6] + w(k, 7) * z[7]) for k in (4, 5)})
    nodes[E] = F.softmax_cross_entropy_of([z[1], z[2], z[3]], y)
    params = [w(k, j) for k in (1, 2, 3) for j in (4, 5)] + [w(k, j) for k in (4, 5) for j in (6, 7)]
    return Network(nodes, loss=E, params=params, inputs=[z[6], z[7]], targets=y), g, z, w, E
