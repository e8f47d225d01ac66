"""Transformations of Python functions: `grad`, `value_and_grad`, `vjp`, and the
finite-difference checker `check_grads`.

They follow JAX's names and signatures and compose with `ln.jit` in either
order. Inside a trace, differentiating `f` means: trace `f` on the side into
its own `func.func` of the trace's module, run the `reverse-ad` pass on it (in
VJP form: cotangents are arguments), and emit a `func.call` to the result.
Outside a trace, the transformed function is itself jitted on the default
backend, so `ln.grad(f)(x)` compiles once per argument signature.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects import func

from lanterna.errors import LanternaError
from lanterna.frontends.python import pytree
from lanterna.frontends.python.api import Jitted, _value_name, symbol_name
from lanterna.frontends.python.autograph import convert
from lanterna.frontends.python.location import user_error
from lanterna.frontends.python.tracing import Tensor, Tracer, apply, current_tracer, lift, tracing
from lanterna.ir.context import make_context
from lanterna.ir.ln import OnesOp, ZerosOp
from lanterna.ir.ln.adjoint import is_differentiable_type


def _fn_name(f: Callable[..., Any]) -> str:
    return getattr(f, "__name__", type(f).__name__)


def _argnums_tuple(
    f: Callable[..., Any], argnums: int | Sequence[int], nargs: int
) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise user_error(f"ln.grad of '{_fn_name(f)}': argnums is empty")
    out: list[int] = []
    for i in nums:
        if not isinstance(i, int) or not -nargs <= i < nargs:
            raise user_error(
                f"ln.grad of '{_fn_name(f)}': argnums {i} is out of range for "
                f"{nargs} positional argument{'s' if nargs != 1 else ''}"
            )
        if i % nargs in out:
            # JAX gives the repeated argument's gradient to one of the copies and
            # zero to the other: nothing a caller could mean.
            raise user_error(
                f"ln.grad of '{_fn_name(f)}': argnums {tuple(nums)} names argument "
                f"{i % nargs} twice"
            )
        out.append(i % nargs)
    return tuple(out)


def _arg_names(f: Callable[..., Any], paths: Sequence[tuple[Any, ...]]) -> list[str | None]:
    """SSA names for the leaves: `params_w` for `params["w"]` of parameter `params`."""
    try:
        params = [
            p.name
            for p in inspect.signature(f).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = []
    for pos, *rest in paths:
        head = params[pos] if pos < len(params) else f"arg{pos}"
        names.append(_value_name([head, *rest]))
    return names


# Traces that hold a pullback (their own or in a trace nested in them), to name
# the cause when one of them is differentiated in turn.
_HOLDS_PULLBACKS: weakref.WeakSet[Tracer] = weakref.WeakSet()


@dataclass
class _Pullback:
    """The outcome of differentiating one call inside a trace."""

    out: Any  # f's primary output (pytree of Tensors)
    aux: Any
    grads: list[Any]  # one pytree per argnum


def _pullback(
    f: Callable[..., Any],
    args: Sequence[Any],
    argnums: tuple[int, ...],
    has_aux: bool,
    cotangents: Any | None,
    what: str,
    kwargs: dict[str, Any] | None = None,
) -> _Pullback:
    """Differentiate `f` at `args` inside the current trace.

    With `cotangents` None, f's primary output must be a float scalar and is
    seeded with 1; otherwise `cotangents` is a pytree matching it (a VJP).
    `kwargs` are passed to `f` as they are and, like the staged values of
    enclosing traces that `f` closes over, are constants of the differentiation
    (as in JAX): such values become extra parameters of the traced function that
    are not in `argnums`.
    """
    outer = current_tracer()
    assert outer is not None
    name = _fn_name(f)
    leaves, treedef = pytree.flatten(tuple(args))
    staged = [lift(x) for x in leaves]
    owner = [path[0] for path in pytree.leaf_paths(tuple(args))]
    diff = [i for i, o in enumerate(owner) if o in argnums]
    for i in diff:
        t = staged[i].value.type
        if not is_differentiable_type(t):
            raise user_error(
                f"{what} of '{name}': argument {owner[i]} has dtype {staged[i].dtype}; only "
                "float arrays can be differentiated"
            )

    sub = Tracer(
        outer.fresh_symbol(symbol_name(name)),
        [s.value.type for s in staged],
        _arg_names(f, pytree.leaf_paths(tuple(args))),
        parent=outer,
        captures=True,
    )
    with tracing(sub):
        result = f(*pytree.unflatten(treedef, sub.args), **(kwargs or {}))
        if has_aux:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise user_error(
                    f"{what} of '{name}' with has_aux=True: the function must return a pair "
                    f"(output, aux), got {type(result).__name__}"
                )
            result, aux = result
        else:
            aux = None
        out_leaves, out_tree = pytree.flatten(result)
        out_leaves = [lift(x) for x in out_leaves]
        if cotangents is None:
            _check_loss(out_leaves, what, name)
        aux_leaves, aux_tree = pytree.flatten(aux)
        aux_leaves = [lift(x) for x in aux_leaves]
        fn = sub.finish([*out_leaves, *aux_leaves])
    outer.module.body.block.add_op(fn)

    # Seeds: the given cotangents (or 1) for the output, 0 for float aux leaves.
    if cotangents is None:
        seeds = [apply(OnesOp, result_type=out_leaves[0].value.type)]
    else:
        ct_leaves, ct_tree = pytree.flatten(cotangents)
        if ct_tree != out_tree:
            raise user_error(
                f"{what} of '{name}': the cotangent's structure does not match the output's"
            )
        seeds = []
        for o, c in zip(out_leaves, ct_leaves):
            if is_differentiable_type(o.value.type):
                c = lift(c, o.dtype)
                if c.shape != o.shape:
                    raise user_error(
                        f"{what} of '{name}': cotangent of shape {c.shape} for an output of "
                        f"shape {o.shape}"
                    )
                seeds.append(c)
    seeds += [
        apply(ZerosOp, result_type=a.value.type)
        for a in aux_leaves
        if is_differentiable_type(a.value.type)
    ]

    from lanterna.passes.reverse_ad import ADError, ReverseAD

    grad_name = outer.fresh_symbol(f"{fn.sym_name.data}_vjp")
    try:
        ReverseAD(func=fn.sym_name.data, argnums=tuple(diff), seed=True, out=grad_name).apply(
            make_context(), outer.module
        )
    except ADError as e:
        if sub in _HOLDS_PULLBACKS:
            # The pass cannot differentiate its own output yet; say it in the user's terms.
            raise user_error(
                f"{what} of '{name}': '{name}' itself calls ln.grad, ln.value_and_grad or "
                "ln.vjp; differentiating a gradient (reverse over reverse) is not supported"
            ) from None
        raise user_error(f"{what} of '{name}': {e}") from None
    t: Tracer | None = outer
    while t is not None:
        _HOLDS_PULLBACKS.add(t)
        t = t.parent
    grad_fn = next(
        o for o in outer.module.ops if isinstance(o, func.FuncOp) and o.sym_name.data == grad_name
    )
    call = func.CallOp(
        grad_name,
        [s.value for s in [*staged, *sub.captured, *seeds]],
        list(grad_fn.function_type.outputs.data),
    )
    outer.insert(call)
    results = [Tensor(r, outer) for r in call.res]
    n_out, n_aux = len(out_leaves), len(aux_leaves)
    out = pytree.unflatten(out_tree, results[:n_out])
    aux_out = pytree.unflatten(aux_tree, results[n_out : n_out + n_aux])
    # The adjoints come in leaf order (`diff`); the caller asked for them in
    # `argnums` order.
    grad_of = dict(zip(diff, results[n_out + n_aux :]))
    grads = []
    for a in argnums:
        _, tree = pytree.flatten(args[a])
        grads.append(pytree.unflatten(tree, [grad_of[i] for i in diff if owner[i] == a]))
    return _Pullback(out, aux_out, grads)


def _check_loss(out_leaves: Sequence[Tensor], what: str, name: str) -> None:
    """The output of a function given to `grad` must be one float scalar."""
    if len(out_leaves) == 1 and out_leaves[0].shape == () and out_leaves[0].dtype.kind == "f":
        return
    if len(out_leaves) != 1:
        shown, hint = f"{len(out_leaves)} values", "use ln.vjp for other outputs"
    else:
        o = out_leaves[0]
        shown = f"shape {o.shape} and dtype {o.dtype}"
        if o.dtype.kind != "f":
            hint = "only float outputs can be differentiated"
        elif o.size == 1:
            # As JAX: a shape-(1,) loss is an array, not a scalar. Say how to make one.
            index = "index it with [0]" if o.ndim == 1 else "reshape it to ()"
            hint = f"return ln.sum(...) of it, or {index}"
        else:
            hint = "reduce it to a scalar (e.g. ln.sum(...)), or use ln.vjp for other outputs"
    raise user_error(
        f"{what} of '{name}': the function must return a scalar float (a loss), got {shown}; {hint}"
    )


class _Transformed:
    """A transformed function: emits IR inside a trace, jits itself outside."""

    def __init__(self, f: Callable[..., Any], body: Callable[..., Any], prefix: str):
        functools.update_wrapper(self, f)
        self.f = f
        self.body = body
        self._jitted: Jitted | None = None
        self._lock = threading.Lock()
        self.__name__ = f"{prefix}_{_fn_name(f)}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current_tracer() is not None:
            return self.body(*args, **kwargs)
        if self._jitted is None:
            with self._lock:  # one Jitted (one trace cache) when first called from threads
                if self._jitted is None:
                    self._jitted = Jitted(self)
        return self._jitted(*args, **kwargs)


def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """`(f(*args, **kwargs), grad)`; with `has_aux`, `((out, aux), grad)`. The
    gradient is a pytree like the argument (a tuple of them, in `argnums` order,
    when `argnums` is a tuple). Keyword arguments are passed to `f` and not
    differentiated, as in JAX."""

    staged = convert(f)  # Python control flow on staged values, as under ln.jit

    def body(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums_tuple(f, argnums, len(args))
        pb = _pullback(staged, args, nums, has_aux, None, "ln.grad", kwargs)
        g = pb.grads[0] if isinstance(argnums, int) else tuple(pb.grads)
        return ((pb.out, pb.aux) if has_aux else pb.out), g

    return _Transformed(f, body, "value_and_grad")


def grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """The gradient of a scalar function w.r.t. the arguments in `argnums`
    (keyword arguments are passed to `f` and not differentiated)."""
    vg = value_and_grad(f, argnums, has_aux)

    def body(*args: Any, **kwargs: Any) -> Any:
        (out, g) = vg(*args, **kwargs)
        return (g, out[1]) if has_aux else g

    return _Transformed(f, body, "grad")


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Any:
    """`(out, vjp_fn)` (or `(out, vjp_fn, aux)`): `vjp_fn(ct)` is the tuple of
    cotangent-weighted gradients w.r.t. every primal."""
    nums = tuple(range(len(primals)))

    fwd = Jitted(f) if current_tracer() is None else convert(f)
    result = fwd(*primals)
    out, aux = result if has_aux else (result, None)

    staged = convert(f)

    def pull(primals_: Any, ct: Any) -> Any:
        return tuple(_pullback(staged, primals_, nums, has_aux, ct, "ln.vjp").grads)

    pull.__name__ = f"vjp_{_fn_name(f)}"
    pulled = Jitted(pull) if current_tracer() is None else pull

    def vjp_fn(ct: Any) -> Any:
        return pulled(tuple(primals), ct)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


# --- the gradient checker -----------------------------------------------------------------


class GradientCheckError(LanternaError, AssertionError):
    """Analytic and numerical gradients disagree."""


@dataclass
class GradientReport:
    """The worst disagreement found: which argument, which element, both values."""

    argnum: int
    index: tuple[int, ...]
    analytic: float
    numeric: float
    error: float


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    argnums: int | Sequence[int] | None = None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> GradientReport | None:
    """Compare `ln.grad(f)` with central finite differences in float64.

    `args` are numpy arrays (float arguments are converted to float64);
    `argnums` defaults to every float argument. Raises GradientCheckError naming
    the worst element (argument, index, both values) when
    `|analytic - numeric| > atol + rtol * |numeric|` anywhere; otherwise returns
    the report of the worst element (None when nothing is differentiated).
    """
    arrays = [
        np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
        for a in args
    ]
    if argnums is None:
        nums = tuple(i for i, a in enumerate(arrays) if a.dtype.kind == "f")
    else:
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        return None

    value = Jitted(f)
    analytic = grad(f, argnums=nums)(*arrays)
    worst: GradientReport | None = None
    failed = False
    for pos, a in enumerate(nums):
        g = np.asarray(analytic[pos], np.float64)
        for idx in np.ndindex(arrays[a].shape):
            plus = list(arrays)
            minus = list(arrays)
            plus[a] = arrays[a].copy()
            minus[a] = arrays[a].copy()
            plus[a][idx] += eps
            minus[a][idx] -= eps
            numeric = (float(value(*plus)) - float(value(*minus))) / (2 * eps)
            err = abs(float(g[idx]) - numeric)
            bad = err > atol + rtol * abs(numeric)
            if worst is None or (bad and not failed) or (bad == failed and err > worst.error):
                worst = GradientReport(a, idx, float(g[idx]), numeric, err)
                failed = failed or bad
    if failed and worst is not None:
        raise GradientCheckError(
            f"gradient of '{_fn_name(f)}' w.r.t. argument {worst.argnum} differs from finite "
            f"differences at index {worst.index}: analytic {worst.analytic:.10g}, numeric "
            f"{worst.numeric:.10g} (error {worst.error:.3g} > atol {atol:g} + rtol {rtol:g})"
        )
    return worst
