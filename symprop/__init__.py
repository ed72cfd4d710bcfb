"""symprop: derive backpropagation symbolically, the way the course texts do it by hand.

>>> import sympy as sp
>>> from symprop import Network, derive, sigmoid
>>> x, t, w, h, E = sp.symbols("x t w h E")
>>> net = Network({h: sigmoid(w*x), E: (t - h)**2/2}, loss=E, params=[w], inputs=[x], targets=[t])
>>> print(derive(net, w, method="bottom-up"))
dE/dw  (bottom-up, 1 path)
  dE/dw = dE/dh*∂h/∂w    [factor at the bottom]
  ∂h/∂w = h*(1 - h)*x    [local partial: σ'(u) = σ(u)(1 - σ(u)); multiply: the other factor]
  dE/dh = ∂E/∂h    [loss directly]
  ∂E/∂h = h - t    [local partial: multiply by a constant: scale; power rule]
  dE/dw = ∂E/∂h*∂h/∂w    [substitute]
  dE/dw = (h - t)*h*(1 - h)*x    [substitute]
  = x*(σ(w*x) - t)*σ(w*x)*(1 - σ(w*x))    [substitute the node definitions]

"""

from .derive import Derivation, Partial, Step, Total, derive
from .functions import (
    binary_cross_entropy, cross_entropy, define_function, generic, half_sse, identity, leaky_relu, maximum,
    minimum, mse, relu, sigmoid, sign, softmax, softmax_cross_entropy, softmax_cross_entropy_of, softplus, step,
)
from .graph import Network, NetworkError
from .hvp import derive_hvp, hessian  # hvp() itself: from symprop.hvp import hvp (the module keeps its name)
from .jacobian import VectorNetwork, jacobian
from .layered import mlp
from .numeric import check, flow, gradient
from .numeric import step as descend

__version__ = "0.1.0"

__all__ = [
    "Network", "NetworkError", "mlp", "derive", "Derivation", "Step", "Partial", "Total",
    "gradient", "check", "descend", "flow", "define_function", "VectorNetwork", "jacobian",
    "sigmoid", "relu", "leaky_relu", "softplus", "step", "sign", "identity", "maximum", "minimum",
    "softmax", "softmax_cross_entropy", "softmax_cross_entropy_of", "generic",
    "half_sse", "mse", "cross_entropy", "binary_cross_entropy",
    "derive_hvp", "hessian",
]
