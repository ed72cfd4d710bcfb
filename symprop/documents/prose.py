r"""Finished sentences for the documents, built once in Python for LaTeX and for HTML.

A sentence is prose with its math between ``$`` signs: ``"the power rule $(u^n)' = n\,u^{n-1}$"``.
LaTeX templates print it as it is; Moodle's HTML templates print :func:`html` of it (the
prose escaped, the math in MathJax's ``\( \)``). Templates never choose a sentence: the
rule, gate or mistake behind it is decided here, from the records.

>>> html("the rule $a < b$ & more")
'the rule \\(a &lt; b\\) &amp; more'
"""

from __future__ import annotations

import re
from html import escape

from ..derive import local_partial
from ..functions import DefinedFunction, record_of
from ..printing import latex_escape
from .lines import break_sum

__all__ = ["rule_sentence", "html", "names", "method_intro", "step_title", "step_sentence", "mistake_sentence",
           "collapse_words", "collapse_tags"]


def rule_sentence(rule, printer=None) -> str:
    """Why a local partial is what it is, for one derivative rule (a record's sentence; a
    defined function's from its formula, printed by ``printer``)."""
    if rule.sentence is not None:
        return rule.sentence
    head = None if printer is None else printer.head(rule)
    kind = getattr(rule, "kind", None)
    if kind == "generic" and head is not None:
        return f"the activation's derivative ${head}'$ at the node's input (outer derivative of the chain rule)"
    if kind == "defined" and head is not None:
        return f"${head}'$ from the definition of ${head}$ (above)"
    return f"the derivative rule of {latex_escape(rule.name)}"


def defined_functions(exprs, printer) -> list[dict]:
    """Every defined function the expressions use (and those their definitions use), each
    with its definition and its derivative as display lines: ``[{"lhs", "lines"}, ...]``
    pairs, the function then its derivative. Documents list them once, with the network."""
    found, todo = [], [type(f) for e in exprs for f in e.atoms(DefinedFunction)]
    while todo:
        cls = todo.pop(0).base
        if cls not in found:
            found.append(cls)
            todo += [type(f) for f in cls.definition.atoms(DefinedFunction)]
    rows = []
    for cls in sorted(found, key=lambda c: c.__name__):
        record = record_of(cls)
        head = printer.head(record)
        rows.append({"lhs": f"{head}(u)", "lines": break_sum(printer, record.definition)})
        rows.append({"lhs": f"{head}'(u)", "lines": break_sum(printer, record.derivative_definition)})
    return rows


def html(sentence: str) -> str:
    r"""A sentence for HTML: prose escaped, ``\emph{...}`` as ``<em>``, each ``$math$`` as
    ``\(math\)`` (escaped too)."""
    parts = sentence.split("$")
    return "".join(_EMPH.sub(r"<em>\1</em>", escape(part, quote=False)) if i % 2 == 0
                   else rf"\({escape(part, quote=False)}\)" for i, part in enumerate(parts))


_EMPH = re.compile(r"\\emph\{([^{}]*)\}")


def names(items) -> str:
    """``$a$``, ``$a$ and $b$``, ``$a$, $b$ and $c$``: printed names in a sentence."""
    items = [f"${x}$" for x in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def method_intro(method: str, wrt: str, loss: str, *, node: bool = False) -> str:
    """How a derivation by ``method`` proceeds, then what its two kinds of derivatives are.
    ``node``: ``wrt`` is a node, and what is asked for is its delta."""
    if node:
        return _node_intro(method, wrt, loss)
    if method == "top-down":
        first = (rf"We work \emph{{top-down}}, as backpropagation runs on a computer: from the loss ${loss}$ down, "
                 "each node's delta computed once from the deltas of the nodes it gives input to, and stored. Only the "
                 f"nodes on a path from ${wrt}$ to ${loss}$ are needed.")
    elif method == "bottom-up":
        first = (rf"We work \emph{{bottom-up}}, the way that is easier by hand: factor the gradient of ${wrt}$ into the "
                 "delta of the node it enters and a local partial derivative, then walk up along the forward flow "
                 f"until the loss ${loss}$ is reached, visiting only the nodes on a path from ${wrt}$ to ${loss}$.")
    else:
        first = (f"We write the gradient as a sum over all paths from ${wrt}$ up to ${loss}$: each path contributes "
                 "the product of the local partial derivatives along its edges.")
    return first + "\n" + (
        r"A local partial derivative $\frac{\partial z_l}{\partial z_k}$ differentiates one node's expression; a "
        rf"delta $\frac{{d {loss}}}{{d z_k}}$ is the total derivative of the loss.")


def _node_intro(method: str, wrt: str, loss: str) -> str:
    """:func:`method_intro` when ``wrt`` is a node: the result is the node's delta."""
    if method == "top-down":
        first = (rf"We work \emph{{top-down}}, as backpropagation runs on a computer: from the loss ${loss}$ down, "
                 "each node's delta computed once from the deltas of the nodes it gives input to, and stored, until "
                 f"the delta of ${wrt}$ is reached. Only the nodes on a path from ${wrt}$ to ${loss}$ are needed.")
    elif method == "bottom-up":
        first = (rf"We work \emph{{bottom-up}}, the way that is easier by hand: start at ${wrt}$, whose delta is a sum "
                 "over the nodes it gives input to of their deltas times local partial derivatives, then walk up along "
                 f"the forward flow until the loss ${loss}$ is reached, visiting only the nodes on a path from ${wrt}$ "
                 f"to ${loss}$.")
    else:
        first = (f"We write the delta of ${wrt}$ as a sum over all paths from ${wrt}$ up to ${loss}$: each path "
                 "contributes the product of the local partial derivatives along its edges, a chain of products.")
    return first + "\n" + (
        r"A local partial derivative $\frac{\partial z_l}{\partial z_k}$ differentiates one node's expression; a "
        rf"delta $\frac{{d {loss}}}{{d z_k}}$ is the total derivative of the loss. What is asked for, "
        rf"$\frac{{d {loss}}}{{d {wrt}}}$, is itself a delta: the total derivative of the loss with respect to the "
        f"value of ${wrt}$, through every node that uses it.")


def step_title(rule: str, method: str, node: str | None, *, wrt_node: str | None = None) -> str:
    """The bold title of a derivation step; ``wrt_node`` names the node whose delta is asked
    for, when it is a node (not a weight)."""
    if wrt_node is not None and rule == "factor at the bottom":
        return f"Start at ${wrt_node}$."
    if wrt_node is not None and rule == "finish at the bottom":
        return f"The delta of ${wrt_node}$."
    if rule == "factor at the bottom":
        return "Start at the weight."
    if rule == "finish at the bottom":
        return "Finish at the bottom."
    if rule == "sum over consumers" and method == "bottom-up":
        return f"Walk up from ${node}$."
    if rule == "loss directly" and method == "bottom-up":
        return f"${node}$ reaches the loss."
    if rule in ("sum over consumers", "loss directly"):
        return f"The delta of ${node}$."
    if rule == "sum over paths":
        return "Sum over paths."
    return latex_escape(rule).capitalize()


def step_sentence(rule: str, method: str, node: str | None, over: list[str], wrt: str, loss: str,
                  path_count: int, *, wrt_is_node: bool = False) -> str:
    """Why a derivation step is what it is: the chain rule as that step uses it.
    ``wrt_is_node``: ``wrt`` is a node, whose delta is asked for (not a weight's gradient)."""
    one = len(over) == 1
    if wrt_is_node and rule in ("factor at the bottom", "finish at the bottom"):
        return _node_bottom_sentence(rule, over, wrt, loss)
    if rule == "factor at the bottom":
        if one:
            return (f"${wrt}$ enters the network only through ${over[0]}$, so its gradient factors into the delta of "
                    f"${over[0]}$ and a local partial derivative that the expression of ${over[0]}$ gives directly. "
                    "The delta is not known yet: we walk up to find it.")
        return (f"${wrt}$ enters {names(over)}, so its gradient is the sum over these nodes of their delta times a "
                "local partial derivative. The deltas are not known yet: we walk up to find them.")
    if rule == "finish at the bottom":
        if one:
            return (f"${wrt}$ enters the network only through ${over[0]}$, whose delta is known from above: multiply it "
                    "by the local partial derivative.")
        return (f"${wrt}$ enters {names(over)}, whose deltas are known from above: sum each delta times its local "
                "partial derivative.")
    if rule == "sum over consumers":
        if method == "bottom-up":
            how = ("the delta of $" + over[0] + "$ times a local partial derivative" if one
                   else "a sum over these nodes of their delta times a local partial derivative")
            return (f"${node}$ gives input to {names(over)}, so by the chain rule its delta is {how}. The local "
                    f"partial derivatives follow from the node expressions; the {'delta comes' if one else 'deltas come'} next.")
        how = (f"the delta of ${over[0]}$ times a local partial derivative; that delta was computed above and is "
               "reused here" if one else "the sum over these nodes of their delta times a local partial derivative; "
               "their deltas were computed above and are reused here")
        return f"${node}$ gives input to {names(over)}. By the chain rule its delta is {how}."
    if rule == "loss directly":
        return (f"The loss ${loss}$ depends on ${node}$ directly, so the delta of ${node}$ is the local partial "
                f"derivative of ${loss}$.")
    if rule == "sum over paths":
        paths = "The only path" if path_count == 1 else f"Each of the {path_count} paths"
        return (f"{paths} from ${wrt}$ to ${loss}$ contributes the product of the local partial derivatives along it; "
                "each local partial derivative follows from one node's expression.")
    return ""


def collapse_words(node: str, probs: list[str], loss: str, total: str | None = None) -> tuple[str, str]:
    """Title and sentence of the delta of logit ``node`` collapsing, softmax then
    cross-entropy (seed 000's gate rule); ``total``: the given targets' sum when it is not 1."""
    title = f"Softmax and cross-entropy together at ${node}$."
    sentence = (f"The deltas of {names(probs)} and the softmax's local partial derivatives are known now. "
                f"Substituted into the delta of ${node}$, they collapse")
    if total is None:
        return title, sentence + " to the predicted probability minus the target, the rule of softmax with cross-entropy:"
    return title, (sentence + f"; the given targets sum to ${total}$, not $1$, so the delta stays "
                   r"$-t_j + p_j \sum_k t_k$ (it is $p_j - t_j$ only for targets that sum to $1$):")


def collapse_tags(steps: int, targets: list[str]) -> list[str]:
    """The reason beside each step of the collapse (text mode, math in ``$``): the rules
    substituted, the cancellation, the targets' sum."""
    tags = ["(cross-entropy and softmax rules)", r"(each probability cancels; $\delta_{kj}$ keeps $k = j$)",
            "($" + (" + ".join(targets) if len(targets) <= 4 else r"\sum_k t_k") + " = 1$)"]
    return tags[:steps]


def _node_bottom_sentence(rule: str, over: list[str], wrt: str, loss: str) -> str:
    """The first (bottom-up) or last (top-down) step when the delta of node ``wrt`` is asked for."""
    if over == [loss]:
        return (f"The loss ${loss}$ depends on ${wrt}$ directly, so the delta of ${wrt}$ is the local partial "
                f"derivative of ${loss}$.")
    one = len(over) == 1
    if rule == "factor at the bottom":
        if one:
            return (f"We start at ${wrt}$ itself. It gives input only to ${over[0]}$, so by the chain rule its delta is "
                    f"the delta of ${over[0]}$ times a local partial derivative that the expression of ${over[0]}$ "
                    "gives directly. That delta is not known yet: we walk up to find it.")
        return (f"We start at ${wrt}$ itself. It gives input to {names(over)}, so by the chain rule its delta is the "
                "sum over these nodes of their delta times a local partial derivative. The deltas are not known yet: "
                "we walk up to find them.")
    if one:
        return (f"${wrt}$ gives input only to ${over[0]}$, whose delta is known from above: multiplied by the local "
                f"partial derivative, it gives the delta of ${wrt}$ asked for.")
    return (f"${wrt}$ gives input to {names(over)}, whose deltas are known from above: the sum of each delta times its "
            f"local partial derivative is the delta of ${wrt}$ asked for.")


def mistake_sentence(m, net, printer) -> str:
    """What a wrong option of a network question gets wrong: its typical mistake
    (:class:`~symprop.mistakes.Mistake`) as a noun phrase, in the network's names; a
    compound one (``negated``) adds the sign error, a left-out one that gives the right
    answer for every number near the drawn ones (``coincides``) says why."""
    sentence = _network_mistake(m, net, printer)
    if m.negated:
        sentence += ", together with a sign error in the derivative of the loss"
    if m.coincides == "unit-slope" and m.node is not None:
        f = net.nodes[m.node]
        sentence += (f", which changes nothing here: ${_function_head(f, printer)}' = 1$ at the active unit "
                     f"${printer.doprint(m.node)}$, whatever the numbers")
    elif m.coincides:
        sentence += _COINCIDES[m.coincides]
    return sentence


_COINCIDES = {
    "structural": ", which gives the right answer for any numbers near these (not a coincidence of the numbers)",
    "zero": ", which is 0 where the gradient is 0",
    "numbers": ", which gives the right answer at these numbers",
    "unit-slope": ", which gives the right answer for any numbers near these (not a coincidence of the numbers)",
}


def _network_mistake(m, net, printer) -> str:
    name = printer.doprint
    if m.node is not None:
        f = net.nodes[m.node]
        node, function, given = name(m.node), _function_head(f, printer), name(f.args[0])
        factor = name(local_partial(net, m.node, net.producers[m.node][0]).products[0][0][0])
    if m.kind == "sign":
        return "a sign error: the derivative of the loss with respect to the output taken with the wrong sign"
    if m.kind == "loss-factor" and m.factor == 2:
        return r"the $\frac{1}{2}$ of the loss forgotten: its derivative taken as $2\,(y - t)$ instead of $y - t$"
    if m.kind == "loss-factor":
        return ("the power rule's factor 2 left out: the derivative of the squared error taken as $y - t$ instead of "
                r"$2\,(y - t)$")
    if m.kind == "missing-weight":
        return ("the weights left out going down: each delta passed back to the layer below without the weight of "
                "its edge")
    if m.kind == "missing-input":
        return ("the weight's input left out: the gradient taken as the delta of the node the weight enters, as if "
                "the weight were a bias")
    if m.kind == "missing-derivative":
        return (f"a missing activation derivative: the factor ${factor}$ (the derivative of ${function}$ at ${node}$) "
                "left out")
    if m.kind == "pre-activation":
        return (f"the pre-activation used instead of the output: ${function}'$ at ${node}$ written in its output, "
                f"${factor}$, but evaluated with the pre-activation ${given}$ in place of ${node}$")
    if m.kind == "output-for-input":
        return (f"the output used instead of the pre-activation: ${function}'$ at ${node}$ evaluated at the output, "
                f"${name(m.used)}$, instead of at ${given}$")
    if m.kind == "transpose":
        pairs = ", ".join(f"${name(q)}$ for ${name(p)}$" for p, q in m.swapped)
        return f"a wrong weight index (a missing transpose) going down: {pairs}"
    if m.kind == "dropped-path":
        path = r" \to ".join(name(s) for s in m.path)
        return f"a dropped path: ${path}$ left out of the sum over paths"
    if m.kind == "batch-sum":
        return "forgetting the batch mean: the per-sample gradients summed instead of averaged"
    return latex_escape(m.label)


def circuit_mistake_sentence(m, circuit, printer) -> str:
    """What a wrong option of a circuit question gets wrong: its typical mistake
    (:class:`~symprop.mistakes.CircuitMistake`) as a noun phrase; a compound one adds the
    sign error of the whole gradient, a left-out one that always gives the right answer
    near the drawn numbers says so."""
    sentence = _circuit_mistake(m, circuit, printer)
    if m.negated:
        sentence += ", together with the sign of the whole gradient wrong"
    if m.coincides:
        sentence += _COINCIDES[m.coincides]
    return sentence


def _circuit_mistake(m, circuit, printer) -> str:
    name = printer.doprint
    gate = None if m.gate is None else circuit.gate_of[m.gate]
    if m.kind == "fan-out":
        return (f"forgetting the fan-out sum: ${name(m.wire)}$ is used by {len(circuit.uses(m.wire))} gates, but only "
                f"the gradient flowing back via ${name(m.kept)}$ is taken")
    if m.kind == "add-scale":
        return (f"the add gate ${name(m.gate)}$ scaling the gradient by the value of its other inputs, as if it were "
                "a multiply gate, instead of passing it through unchanged")
    if m.kind == "mul-own":
        return (f"the multiply gate ${name(m.gate)}$ not swapping its inputs: each input gets the gradient times its "
                "own value instead of the other input's")
    if m.kind == "max-route":
        wrong, right = ("smaller", "larger") if gate.op == "max" else ("larger", "smaller")
        return f"the {gate.op} gate ${name(m.gate)}$ routing the gradient to the {wrong} input instead of the {right} one"
    if m.kind == "sign" and gate is not None:
        local = name(local_partial(circuit.network, gate.symbol, gate.inputs[0]).expr)
        return f"a sign error at ${name(m.gate)}$: the minus sign of its local gradient ${local}$ dropped"
    if m.kind == "sign":
        return "a sign error: the gradient taken with the wrong sign"
    return latex_escape(m.label)


def _function_head(f, printer) -> str:
    """The LaTeX head of an activation call (SymPy's own tanh by its record's head)."""
    record = record_of(f)
    return printer.head(f) or (record and record.head) or r"\operatorname{" + latex_escape(type(f).__name__) + "}"
