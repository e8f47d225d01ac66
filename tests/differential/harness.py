"""Running a generated program every way and comparing: the differential check.

`check_program(program, seed)` takes a `generator.Program` and raises `Mismatch`
naming what differs:

* forward values: eager `ln`, `ln.jit` on "interp" and on "cpu" (when g++ exists)
  against numpy in float64, with a float32 allowance measured by running numpy in
  the program's own dtypes as well; dtypes and shapes against numpy's;
* gradients of `sum(out * w)` (random `w`) w.r.t. every float input: against
  central finite differences of the numpy program in float64 (points where the
  one-sided differences disagree, a kink or a branch switch, are left out), float32
  gradients against the float64 ones, and the backends against each other.
"""

from __future__ import annotations

import linecache
import shutil
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import lanterna as ln

# A generated program (generator.Program) and its array specs (generator.Spec).
Program = Any
Spec = Any

# --- the numpy reference -----------------------------------------------------------------


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _nll(logp: np.ndarray, target: Any, reduction: str) -> np.ndarray:
    target = np.asarray(target)
    picked = -logp[np.arange(logp.shape[0]), target]
    return np.sum(picked) if reduction == "sum" else np.mean(picked)


def _scatter_add(updates: np.ndarray, indices: Any, rows: int) -> np.ndarray:
    idx = np.asarray(indices)
    updates = np.asarray(updates)
    out = np.zeros((rows, *updates.shape[idx.ndim :]), updates.dtype)
    np.add.at(out, idx, updates)
    return out


def reference(force64: bool = False) -> types.SimpleNamespace:
    """numpy's meaning of every `X.` name a generated program uses. With `force64`
    float32 is float64 (casts included): the program's value in float64."""
    f32 = np.float64 if force64 else np.float32

    def astype(x: Any, dtype: Any) -> np.ndarray:
        return np.asarray(x).astype(dtype)

    def cond(
        pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], *ops: Any
    ) -> Any:
        return true_fn(*ops) if bool(pred) else false_fn(*ops)

    def fori_loop(lo: int, hi: int, body: Callable[[Any, Any], Any], init: Any) -> Any:
        val = init
        for i in range(lo, hi):
            val = body(i, val)
        return val

    def while_loop(test: Callable[[Any], Any], body: Callable[[Any], Any], init: Any) -> Any:
        val = init
        while bool(test(val)):
            val = body(val)
        return val

    return types.SimpleNamespace(
        float32=f32,
        float64=np.float64,
        int32=np.int32,
        int64=np.int64,
        add=np.add,
        subtract=np.subtract,
        multiply=np.multiply,
        divide=np.divide,
        maximum=np.maximum,
        minimum=np.minimum,
        power=np.power,
        negative=np.negative,
        abs=np.abs,
        exp=np.exp,
        log=np.log,
        tanh=np.tanh,
        sqrt=np.sqrt,
        sigmoid=lambda x: 1 / (1 + np.exp(-x)),
        relu=lambda x: np.maximum(x, 0),
        greater=np.greater,
        less=np.less,
        greater_equal=np.greater_equal,
        less_equal=np.less_equal,
        logical_and=np.logical_and,
        logical_or=np.logical_or,
        logical_not=np.logical_not,
        where=np.where,
        sum=lambda x, axis=None, keepdims=False: np.sum(x, axis=_axis(axis), keepdims=keepdims),
        mean=lambda x, axis=None, keepdims=False: np.mean(x, axis=_axis(axis), keepdims=keepdims),
        max=lambda x, axis=None, keepdims=False: np.max(x, axis=_axis(axis), keepdims=keepdims),
        matmul=np.matmul,
        dot=np.dot,
        reshape=np.reshape,
        transpose=np.transpose,
        broadcast_to=np.broadcast_to,
        expand_dims=np.expand_dims,
        concatenate=np.concatenate,
        stack=np.stack,
        take=np.take,
        softmax=lambda x, axis=-1: _softmax(x, axis),
        log_softmax=lambda x, axis=-1: _log_softmax(x, axis),
        cross_entropy=lambda z, t, reduction="mean": _nll(_log_softmax(z, -1), t, reduction),
        nll_loss=_nll,
        scatter_add=_scatter_add,
        astype=astype,
        asarray=np.asarray,
        cond=cond,
        fori_loop=fori_loop,
        while_loop=while_loop,
        function=lambda f: f,
        checkpoint=lambda f: f,
    )


# --- running a program -------------------------------------------------------------------


def make_array(spec: Spec, rng: np.random.Generator) -> np.ndarray:
    if spec.high is not None:
        return rng.integers(spec.low, spec.high, spec.shape).astype(spec.dtype)
    return rng.uniform(-2.0, 2.0, spec.shape).astype(spec.dtype)


def constants(program: Program) -> list[np.ndarray]:
    """The program's `C`: fixed by its text, so one program always traces the same."""
    rng = np.random.default_rng(int(program.digest, 16))
    return [make_array(s, rng) for s in program.consts]


def inputs(program: Program, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_array(s, rng) for s in program.inputs]


def as64(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]


_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {}


def load(program: Program, namespace: str) -> Callable[..., Any]:
    """`program` defined with `X` as "ln", "numpy" or "numpy64". The source is
    registered with linecache (under a name fixed by its text) so `ln.jit` can read
    it and convert its control flow, as it does for a file."""
    key = (program.digest, namespace)
    fn = _FUNCTIONS.get(key)
    if fn is not None:
        return fn
    filename = f"<differential program {program.digest}>"
    lines = program.source.splitlines(keepends=True)
    linecache.cache[filename] = (len(program.source), None, lines, filename)
    consts = constants(program)
    if namespace == "ln":
        x: Any = ln
    else:
        x = reference(force64=namespace == "numpy64")
        if namespace == "numpy64":
            consts = as64(consts)
    scope: dict[str, Any] = {"X": x, "C": consts, "__name__": f"differential_{program.digest}"}
    # The text is the generator's own output (or a saved regression), not input.
    exec(compile(program.source, filename, "exec"), scope)  # noqa: S102
    fn = _FUNCTIONS[key] = scope["program"]
    return fn


def _outputs(result: Any) -> list[np.ndarray]:
    return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]


def run_numpy(program: Program, args: Sequence[np.ndarray], force64: bool) -> list[np.ndarray]:
    fn = load(program, "numpy64" if force64 else "numpy")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _outputs(fn(*(as64(args) if force64 else args)))


def loss_fn(program: Program, namespace: str) -> Callable[..., Any]:
    """`sum(out_k * w_k)` over the program's outputs: arguments are the inputs then
    the weights `w_k`."""
    fn = load(program, namespace)
    if namespace == "ln":
        # Called from a trace, a jitted function is inlined, its control flow converted.
        fn = ln.jit(fn)
    n = len(program.inputs)
    summed: Callable[..., Any] = ln.sum if namespace == "ln" else np.sum

    def loss(*args: Any) -> Any:
        result = fn(*args[:n])
        outs = result if isinstance(result, tuple) else (result,)
        total = summed(outs[0] * args[n])
        for out, w in zip(outs[1:], args[n + 1 :]):
            total = total + summed(out * w)
        return total

    return loss


_JITTED: dict[tuple[str, str], Any] = {}


def jitted(program: Program, backend: str) -> Callable[..., Any]:
    """`ln.jit` of (outputs, loss, gradients of the loss w.r.t. the float inputs in
    ascending order) on `backend`: one trace and one compile for all."""
    key = (program.digest, backend)
    fn = _JITTED.get(key)
    if fn is None:
        prog = ln.jit(load(program, "ln"))  # inlined, control flow converted
        loss = loss_fn(program, "ln")
        n = len(program.inputs)
        argnums = program.float_inputs
        # ln.grad returns the gradients in the order of `argnums`.
        asked = argnums[::-1]  # a reversed order: gradients come back in it
        place = [asked.index(a) for a in argnums]

        def both(*args: Any) -> Any:
            value, grads = ln.value_and_grad(loss, argnums=asked)(*args)
            return prog(*args[:n]), value, tuple(grads[k] for k in place)

        fn = _JITTED[key] = ln.jit(both, backend=backend)
    return fn


# --- comparing -----------------------------------------------------------------------------

RTOL = {"float32": 2e-4, "float64": 1e-9}
GRAD_RTOL = {"float32": 2e-3, "float64": 1e-7}
FD_RTOL = 1e-5


class Mismatch(AssertionError):
    """A program's results differ between two ways of running it."""


def _close(
    what: str, got: np.ndarray, want: np.ndarray, rtol: float, slack: np.ndarray | float = 0.0
) -> None:
    """|got - want| <= rtol * (|want| + max|want| + 1) + slack, elementwise; shapes equal."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        raise Mismatch(f"{what}: shape {got.shape}, expected {want.shape}")
    scale = float(np.max(np.abs(want), initial=0.0)) + 1.0
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    tol = rtol * (np.abs(want) + scale) + slack
    bad = ~(err <= tol)  # NaN counts as bad
    if np.any(bad):
        i = tuple(int(k) for k in np.argwhere(bad)[0])
        raise Mismatch(
            f"{what}: at index {i} got {got[i]!r}, expected {want[i]!r} "
            f"(error {err[i]:.3g} > tolerance {np.broadcast_to(tol, err.shape)[i]:.3g})\n"
            f"got:\n{got}\nexpected:\n{want}"
        )


def finite_differences(
    f: Callable[..., Any], args: Sequence[np.ndarray], argnums: Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Central differences of the scalar `f` in float64, a mask per argument of the
    points where `f` is smooth enough to compare (the one-sided differences agree),
    and |f|."""
    base = list(args)
    f0 = float(f(*base))
    grads, smooth = [], []
    for a in argnums:
        x = base[a]
        g = np.zeros(x.shape)
        ok = np.ones(x.shape, bool)
        for idx in np.ndindex(x.shape):
            h = 1e-6 * max(1.0, abs(float(x[idx])))
            plus, minus = x.copy(), x.copy()
            plus[idx] += h
            minus[idx] -= h
            fp = float(f(*base[:a], plus, *base[a + 1 :]))
            fm = float(f(*base[:a], minus, *base[a + 1 :]))
            g[idx] = (fp - fm) / (2 * h)
            forward, backward = (fp - f0) / h, (f0 - fm) / h
            ok[idx] = abs(forward - backward) <= 1e-3 * (1 + abs(g[idx])) + 1e-8 * abs(f0) / h
        grads.append(g)
        smooth.append(ok)
    return grads, smooth, abs(f0)


def precision(program: Program) -> str:
    """float32 when any float32 value can occur (an input, a constant or a cast)."""
    specs = [*program.inputs, *program.consts]
    if "float32" in program.source or any(s.dtype == "float32" for s in specs if s.high is None):
        return "float32"
    return "float64"


def backends() -> list[str]:
    return ["interp", "cpu"] if shutil.which("g++") else ["interp"]


def check_program(program: Program, seed: int) -> None:
    """Run `program` every way and raise Mismatch at the first disagreement."""
    args = inputs(program, seed)
    prec = precision(program)
    want64 = run_numpy(program, args, force64=True)
    native = run_numpy(program, args, force64=False)
    for k, (w, n) in enumerate(zip(want64, native)):
        if not np.all(np.isfinite(w)):
            raise AssertionError(f"the generator made a program with non-finite output {k}")

    def forward(what: str, outs: list[np.ndarray]) -> None:
        if len(outs) != len(want64):
            raise Mismatch(f"{what}: {len(outs)} outputs, expected {len(want64)}")
        for k, (got, w, n) in enumerate(zip(outs, want64, native)):
            if got.dtype != n.dtype:
                raise Mismatch(f"{what}, output {k}: dtype {got.dtype}, numpy gives {n.dtype}")
            # float32 rounding may be amplified by the program: allow 10x what numpy's
            # own float32 run is off by.
            slack = 10 * np.abs(n.astype(np.float64) - w)
            _close(f"{what}, output {k}", got, w, RTOL[prec], slack)

    with np.errstate(all="ignore"):
        forward("eager ln", _outputs(load(program, "ln")(*args)))

    rng = np.random.default_rng(seed + 1)
    weights = [rng.uniform(-1.0, 1.0, w.shape).astype(n.dtype) for w, n in zip(want64, native)]
    argnums = program.float_inputs
    results = {}
    loss64 = loss_fn(program, "numpy64")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value64 = np.asarray(loss64(*as64(args), *as64(weights)))
        value_native = np.asarray(loss_fn(program, "numpy")(*args, *weights))
    for backend in backends():
        outs, value, grads = jitted(program, backend)(*args, *weights)
        forward(f"ln.jit on {backend}", _outputs(outs))
        slack = 10 * np.abs(value_native.astype(np.float64) - value64)
        _close(f"ln.value_and_grad on {backend}, the value", value, value64, RTOL[prec], slack)
        results[backend] = [np.asarray(g) for g in grads]

    # Gradients against central differences of the numpy program in float64. A
    # program whose float32 values all come from its inputs is also differentiated
    # with float64 inputs, and its float32 gradients are compared with that; one
    # with float32 casts or constants is differentiated in float32 only (with
    # float64 inputs its loops could change their carried dtypes).
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd, smooth, size = finite_differences(loss64, as64(args) + as64(weights), argnums)
    fixed32 = "float32" in program.source or any(
        s.dtype == "float32" for s in program.consts if s.high is None
    )
    fd_rtol = 1e-2 if fixed32 else FD_RTOL
    analytic = dict(results)
    if prec == "float32" and not fixed32:
        _, _, g64 = jitted(program, "interp")(*as64(args), *as64(weights))
        analytic = {"interp with float64 inputs": [np.asarray(g) for g in g64]}
        for backend, gs in results.items():
            for a, g, ref in zip(argnums, gs, analytic["interp with float64 inputs"]):
                what = f"gradient w.r.t. {program.inputs[a].name} on {backend}"
                _close(f"{what} vs float64", g, ref, GRAD_RTOL["float32"])
    for backend, gs in analytic.items():
        for a, g, want, ok in zip(argnums, gs, fd, smooth):
            what = f"gradient w.r.t. {program.inputs[a].name} on {backend} vs finite differences"
            if g.shape != want.shape:
                raise Mismatch(f"{what}: shape {g.shape}, expected {want.shape}")
            _close(what, np.where(ok, g, want), want, fd_rtol, 1e-9 * size)
    if len(results) > 1:
        for a, gi, gc in zip(argnums, results["interp"], results["cpu"]):
            what = f"gradient w.r.t. {program.inputs[a].name}: cpu vs interp"
            _close(what, gc, gi, GRAD_RTOL[prec])
