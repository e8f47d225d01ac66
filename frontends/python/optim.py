"""Functional optimizers and gradient clipping over pytrees: `ln.optim`.

They are written with `ln` ops, so the same code runs inside a trace (where an
update becomes part of the one compiled training step) and eagerly on numpy
arrays. Like optax, an optimizer is a pair of pure functions: `init(params)`
makes its state (a pytree of arrays, so it can be passed to and returned from
an `ln.jit` function), and `update(grads, state, params)` returns the new
parameters and the new state.

    opt = ln.optim.adam(1e-3)
    state = opt.init(params)

    @ln.jit
    def step(params, state, x, y):
        loss, g = ln.value_and_grad(loss_fn)(params, x, y)
        params, state = opt.update(ln.optim.clip_by_global_norm(g, 5.0), state, params)
        return loss, params, state

Every state array keeps its parameter's shape and dtype, so repeated calls of a
jitted step reuse one trace. Hyperparameters are Python numbers: constants of
the trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lanterna.frontends.python import ops, pytree
from lanterna.frontends.python.location import user_error


def tree_map_n(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """`fn` applied leafwise to trees of the same structure as `tree`."""
    leaves, treedef = pytree.flatten(tree)
    others = []
    for other in rest:
        o_leaves, o_def = pytree.flatten(other)
        if o_def != treedef:
            raise user_error(
                f"ln.optim: pytrees differ in structure: {treedef} and {o_def} "
                "(gradients, state and parameters must have the same structure)"
            )
        others.append(o_leaves)
    return pytree.unflatten(treedef, [fn(*xs) for xs in zip(leaves, *others)])


def _zeros_like(x: Any) -> Any:
    """Zeros with `x`'s shape and dtype: a numpy array, so `init` works outside a trace."""
    return np.zeros(np.shape(x), _dtype(x))


def _dtype(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.dtype(np.float64)


@dataclass(frozen=True)
class Optimizer:
    """`init(params) -> state`; `update(grads, state, params) -> (params, state)`."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


def sgd(lr: float) -> Optimizer:
    """Plain gradient descent: `p - lr * g`. Its state is empty (`()`)."""

    def init(params: Any) -> Any:
        return ()

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        return tree_map_n(lambda p, g: p - lr * g, params, grads), state

    return Optimizer(init, update)


def momentum(lr: float, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum: `v = beta * v + g; p = p - lr * v` (PyTorch's SGD with
    momentum and no dampening). The state is the velocity tree."""

    def init(params: Any) -> Any:
        return pytree.tree_map(_zeros_like, params)

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        velocity = tree_map_n(lambda v, g: beta * v + g, state, grads)
        return tree_map_n(lambda p, v: p - lr * v, params, velocity), velocity

    return Optimizer(init, update)


def adagrad(lr: float, eps: float = 1e-8) -> Optimizer:
    """Adagrad as in min-char-rnn: `m = m + g*g; p = p - lr * g / sqrt(m + eps)`.
    The state is the tree of accumulated squares."""

    def init(params: Any) -> Any:
        return pytree.tree_map(_zeros_like, params)

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        acc = tree_map_n(lambda m, g: m + g * g, state, grads)
        new = tree_map_n(lambda p, g, m: p - lr * g / ops.sqrt(m + eps), params, grads, acc)
        return new, acc

    return Optimizer(init, update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam with bias correction (Kingma & Ba): the state is
    `{"count": int64 scalar, "mu": tree, "nu": tree}`."""

    def init(params: Any) -> Any:
        return {
            "count": np.zeros((), np.int64),
            "mu": pytree.tree_map(_zeros_like, params),
            "nu": pytree.tree_map(_zeros_like, params),
        }

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        count = state["count"] + 1
        mu = tree_map_n(lambda m, g: b1 * m + (1.0 - b1) * g, state["mu"], grads)
        nu = tree_map_n(lambda v, g: b2 * v + (1.0 - b2) * (g * g), state["nu"], grads)

        def step(p: Any, m: Any, v: Any) -> Any:
            # The corrections in the parameter's own dtype, so a float32 model stays float32.
            t = ops.astype(count, _dtype(p))
            m_hat = m / (1.0 - ops.exp(t * math.log(b1)))
            v_hat = v / (1.0 - ops.exp(t * math.log(b2)))
            return p - lr * m_hat / (ops.sqrt(v_hat) + eps)

        new = tree_map_n(step, params, mu, nu)
        return new, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(init, update)


# --- gradient clipping --------------------------------------------------------------------


def clip_by_value(grads: Any, limit: float) -> Any:
    """Every element clipped into `[-limit, limit]` (min-char-rnn's `np.clip`)."""
    return pytree.tree_map(lambda g: ops.minimum(ops.maximum(g, -limit), limit), grads)


def global_norm(tree: Any) -> Any:
    """The L2 norm of all leaves together, as one scalar."""
    leaves = pytree.flatten(tree)[0]
    if not leaves:
        raise user_error("ln.optim.global_norm: the tree has no leaves")
    total = ops.sum(leaves[0] * leaves[0])
    for leaf in leaves[1:]:
        total = total + ops.sum(leaf * leaf)
    return ops.sqrt(total)


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """The tree scaled by `max_norm / max(norm, max_norm)`: unchanged when its
    global norm is at most `max_norm`, else rescaled to norm `max_norm`."""
    norm = global_norm(grads)
    scale = max_norm / ops.maximum(norm, max_norm)
    return pytree.tree_map(lambda g: g * ops.astype(scale, _dtype(g)), grads)


__all__ = [
    "Optimizer",
    "adagrad",
    "adam",
    "clip_by_global_norm",
    "clip_by_value",
    "global_norm",
    "momentum",
    "sgd",
    "tree_map_n",
]
