"""The Python frontend: tracing with staged values, the public ops, pytrees and
`jit` -- the first stage of the pipeline, turning Python functions into IR."""

from lanterna.frontends.python import nn, ops, optim
from lanterna.frontends.python.api import Jitted, Lowered, jit
from lanterna.frontends.python.control import checkpoint, cond, fori_loop, while_loop
from lanterna.frontends.python.function import ShapeDtypeStruct, StagedFunction, function
from lanterna.frontends.python.ops import *
from lanterna.frontends.python.pytree import flatten as tree_flatten
from lanterna.frontends.python.pytree import tree_map
from lanterna.frontends.python.pytree import unflatten as tree_unflatten
from lanterna.frontends.python.tracing import Tensor
from lanterna.frontends.python.transforms import (
    GradientCheckError,
    check_grads,
    grad,
    value_and_grad,
    vjp,
)

__all__ = [
    "GradientCheckError",
    "Jitted",
    "Lowered",
    "ShapeDtypeStruct",
    "StagedFunction",
    "Tensor",
    "check_grads",
    "checkpoint",
    "cond",
    "fori_loop",
    "function",
    "grad",
    "jit",
    "nn",
    "optim",
    "tree_flatten",
    "tree_map",
    "tree_unflatten",
    "value_and_grad",
    "vjp",
    "while_loop",
]
__all__ += ops.__all__
