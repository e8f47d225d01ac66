"""Random well-typed lanterna programs: a hypothesis strategy, `programs()`.

A program is Python source written against the public API through one name, `X`,
so the same text runs with `X = lanterna` (eagerly on numpy arrays, and under
`ln.jit` on each backend) and with `X` bound to plain numpy (harness.py). `C[k]`
in the text is a constant array (made from the program's hash, so a program
always traces to the same IR and hits the compile cache).

The text is built op by op, keeping each value's shape, dtype and a bound on its
magnitude, so every program is well typed and stays where the float64 reference
is trustworthy: logarithms and square roots see positive operands, denominators
stay away from zero, `exp` sees small operands, loop bodies contract. Every
choice is drawn from hypothesis, so a failure shrinks to a short program; the
input arrays come from a seed (harness.py).

The switches below keep the generator away from known bugs that are being fixed
(issue 12); turn one on when its fix is merged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

# --- sizes -----------------------------------------------------------------------------------

MAX_DIM = 4
MAX_SIZE = 48  # elements of any value; keeps finite differences cheap
MAX_RANK = 4
MAX_INPUTS = 4
BOUND = 200.0  # no value may exceed this in magnitude (by the generator's estimate)
EXP_BOUND = 3.0  # exp only of values bounded by this
FLOATS = ("float32", "float64")
INTS = ("int32", "int64")

# --- programs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """An input or constant array: floats are uniform in [-2, 2]; an index array
    (`high` set) holds integers in [low, high)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    high: int | None = None
    low: int = 0

    def __repr__(self) -> str:
        extra = "" if self.high is None else f", high={self.high}"
        extra += f", low={self.low}" if self.low else ""
        return f"Spec({self.name!r}, {self.shape!r}, {self.dtype!r}{extra})"


@dataclass(frozen=True)
class Program:
    """One generated program: `source` defines `program(<inputs>)` returning one
    array or a tuple of them. Its repr is valid Python, to paste into a regression."""

    source: str
    inputs: tuple[Spec, ...]
    consts: tuple[Spec, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Program(\n    source='''\n{self.source}''',\n    inputs={self.inputs!r},\n"
            f"    consts={self.consts!r},\n)"
        )

    @property
    def float_inputs(self) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.inputs) if s.high is None)

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr((self.source, self.inputs, self.consts)).encode()).hexdigest()[
            :16
        ]


@dataclass
class Val:
    """A value in scope while generating: its Python name, type and magnitude bound."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bound: float

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class _Shared:
    """State of one program shared by the builders of its nested blocks."""

    draw: Callable[[st.SearchStrategy[Any]], Any]
    inputs: list[Spec] = field(default_factory=list)
    consts: list[Spec] = field(default_factory=list)
    helpers: list[list[str]] = field(default_factory=list)
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def _promote(*dtypes: str) -> str:
    return "float64" if "float64" in dtypes else "float32"


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _fmt(x: Any) -> str:
    return repr(tuple(x)) if isinstance(x, tuple | list) else repr(x)


class Builder:
    """Emits the statements of one block (the program, a helper, a branch or a
    loop body) into `lines`, drawing every choice from hypothesis."""

    def __init__(
        self,
        shared: _Shared,
        vals: Sequence[Val],
        indent: int = 1,
        inputs_allowed: bool = True,
        depth: int = 0,
        in_helper: bool = False,
        python_flow: bool = True,
    ):
        self.shared = shared
        self.vals = list(vals)
        self.indent = indent
        self.inputs_allowed = inputs_allowed
        self.depth = depth
        self.in_helper = in_helper
        # Python `if`/`while` on staged values (converted by ln.jit / @ln.function).
        self.python_flow = python_flow
        self.lines: list[str] = []

    # --- drawing ------------------------------------------------------------------------

    def choice(self, options: Sequence[Any]) -> Any:
        return self.shared.draw(st.sampled_from(list(options)))

    def integer(self, lo: int, hi: int) -> int:
        return self.shared.draw(st.integers(lo, hi))

    def flag(self) -> bool:
        return self.shared.draw(st.booleans())

    def child(self, vals: Sequence[Val], indent: int | None = None) -> Builder:
        return Builder(
            self.shared,
            vals,
            self.indent + 1 if indent is None else indent,
            self.inputs_allowed,
            self.depth + 1,
            self.in_helper,
            self.python_flow,
        )

    # --- values -------------------------------------------------------------------------

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def emit(self, expr: str, shape: tuple[int, ...], dtype: str, bound: float) -> Val:
        v = Val(self.shared.fresh("v"), tuple(shape), dtype, bound)
        self.line(f"{v.name} = {expr}")
        self.vals.append(v)
        return v

    def pick(self, pred: Callable[[Val], bool] = lambda v: True) -> Val | None:
        """A value in scope satisfying `pred`, the most recent ones first (so it shrinks
        towards chains)."""
        found = [v for v in self.vals if v.dtype in FLOATS and pred(v)]
        if not found:
            return None
        return found[-1 - self.integer(0, len(found) - 1)]

    def shape(self, max_rank: int = 3) -> tuple[int, ...]:
        rank = self.integer(0, max_rank)
        return tuple(self.integer(1, MAX_DIM) for _ in range(rank))

    def operand(self, shape: tuple[int, ...], dtype: str) -> Val:
        """A new float array of this type: a program input or a constant."""
        if self.inputs_allowed and len(self.shared.inputs) < MAX_INPUTS and self.flag():
            spec = Spec(f"x{len(self.shared.inputs)}", shape, dtype)
            self.shared.inputs.append(spec)
            v = Val(spec.name, shape, dtype, 2.0)
        else:
            spec = Spec(f"C[{len(self.shared.consts)}]", shape, dtype)
            self.shared.consts.append(spec)
            v = Val(spec.name, shape, dtype, 2.0)
        self.vals.append(v)
        return v

    def index_array(
        self, shape: tuple[int, ...], high: int, literal_ok: bool = True, wrap: bool = False
    ) -> str:
        """Integer indices into `high` rows of this shape: a staged input, a numpy
        constant or a list literal; negative ones too when `wrap` (numpy's wrap-around)."""
        lo = -high if wrap else 0
        kinds = ["const"]
        if self.inputs_allowed and len(self.shared.inputs) < MAX_INPUTS:
            kinds.insert(0, "input")
        if literal_ok and len(shape) == 1:
            kinds.append("list")
        kind = self.choice(kinds)
        if kind == "list":
            return repr([self.integer(lo, high - 1) for _ in range(shape[0])])
        dtype = self.choice(INTS)
        if kind == "input":
            spec = Spec(f"x{len(self.shared.inputs)}", shape, dtype, high, lo)
            self.shared.inputs.append(spec)
        else:
            spec = Spec(f"C[{len(self.shared.consts)}]", shape, dtype, high, lo)
            self.shared.consts.append(spec)
        return spec.name

    def float_val(self, pred: Callable[[Val], bool] = lambda v: True) -> Val:
        """A float value in scope (or a new operand when none fits)."""
        v = self.pick(pred)
        if v is None:
            v = self.operand(self.shape(), self.choice(FLOATS))
        return v

    def partner(self, a: Val, into: bool = False) -> Val | None:
        """A value broadcasting with `a` (into `a`'s shape exactly when `into`), in
        scope or new; None when the result would be too big."""

        def fits(v: Val) -> bool:
            out = _broadcast(a.shape, v.shape)
            if out is None or math.prod(out) > MAX_SIZE or len(out) > MAX_RANK:
                return False
            if into:
                return out == a.shape and _promote(a.dtype, v.dtype) == a.dtype
            return True

        if self.flag():
            v = self.pick(fits)
            if v is not None:
                return v
        # A new shape: a suffix of a's dimensions, some set to 1, maybe leading ones.
        keep = self.integer(0, a.rank)
        dims = [1 if self.integer(0, 3) == 0 else d for d in a.shape[a.rank - keep :]]
        if not into:
            dims = [self.integer(1, MAX_DIM) if d == 1 and self.flag() else d for d in dims]
            if a.rank < 3 and self.integer(0, 3) == 0:
                dims.insert(0, self.integer(1, 3))
        shape = tuple(dims)
        dtype = a.dtype if into else self.choice(FLOATS)
        if _broadcast(a.shape, shape) is None or not fits(Val("", shape, dtype, 0.0)):
            return None
        return self.operand(shape, dtype)

    # --- the op menu ----------------------------------------------------------------------

    def op(self) -> Val:
        """Emit one operation (maybe a whole control-flow construct); its result."""
        kinds = [
            "unary",
            "binary",
            "scalar",
            "reduce",
            "where",
            "matmul",
            "reshape",
            "index",
            "gather",
            "softmax",
            "concat",
            "cast",
            "loss",
            "scatter",
        ]
        if self.depth < 2:
            kinds += ["cond", "fori", "while", "py_for"]
            if self.python_flow:
                kinds += ["py_if", "py_while"]
            if not self.in_helper:
                kinds += ["helper"]
        for _ in range(8):
            v = getattr(self, f"op_{self.choice(kinds)}")()
            if v is not None:
                return v
        return self.op_unary()

    def op_unary(self) -> Val:
        a = self.float_val()
        b = a.bound
        forms: list[tuple[str, float]] = [
            ("X.tanh({})", 1.0),
            ("-{}", b),
            ("X.negative({})", b),
            ("X.abs({})", b),
            ("abs({})", b),
            ("X.sigmoid({})", 1.0),
            ("X.relu({})", b),
            ("X.log(X.abs({}) + 1.0)", math.log(b + 1)),
            ("X.log({0} * {0} + 0.5)", math.log(b * b + 0.5)),
            ("X.sqrt(X.abs({}) + 0.25)", math.sqrt(b + 0.25)),
            ("X.sqrt({0} * {0} + 1.0)", math.sqrt(b * b + 1)),
            ("{} ** 2", b * b),
            ("X.power({}, 3)", b**3),
            ("X.power(X.abs({}) + 0.5, 0.5)", math.sqrt(b + 0.5)),
            ("X.power(X.abs({}) + 0.5, -1.5)", 0.5**-1.5),
            ("X.exp(X.tanh({}))", math.e),
            ("X.exp(-X.abs({}))", 1.0),
        ]
        if b <= EXP_BOUND:
            forms.append(("X.exp({})", math.exp(b)))
        forms = [(f, bd) for f, bd in forms if bd <= BOUND]
        form, bound = self.choice(forms)
        return self.emit(form.format(a.name), a.shape, a.dtype, bound)

    def op_scalar(self) -> Val:
        a = self.float_val()
        c = self.choice([2.0, 0.5, -1.5, 3.0, 1.0])
        b = a.bound
        forms = [
            ("{a} + {c}", b + abs(c)),
            ("{c} - {a}", b + abs(c)),
            ("{a} * {c}", b * abs(c)),
            ("{c} * {a}", b * abs(c)),
            ("{a} / {c}", b / abs(c)),
            ("{c} / (X.abs({a}) + 1.0)", abs(c)),
            ("X.maximum({a}, {c})", max(b, abs(c))),
            ("X.minimum({c}, {a})", max(b, abs(c))),
        ]
        forms = [(f, bd) for f, bd in forms if bd <= BOUND]
        form, bound = self.choice(forms)
        return self.emit(form.format(a=a.name, c=c), a.shape, a.dtype, bound)

    def op_binary(self) -> Val | None:
        a = self.float_val()
        b = self.partner(a)
        if b is None:
            return None
        shape = _broadcast(a.shape, b.shape)
        assert shape is not None
        dtype = _promote(a.dtype, b.dtype)
        x, y, bx, by = a.name, b.name, a.bound, b.bound
        if self.flag():
            x, y, bx, by = y, x, by, bx
        forms = [
            ("{x} + {y}", bx + by),
            ("X.add({x}, {y})", bx + by),
            ("{x} - {y}", bx + by),
            ("X.subtract({x}, {y})", bx + by),
            ("{x} * {y}", bx * by),
            ("X.multiply({x}, {y})", bx * by),
            ("X.divide({x}, X.abs({y}) + 1.0)", bx),
            ("{x} / ({y} * {y} + 0.5)", 2 * bx),
            ("X.maximum({x}, {y})", max(bx, by)),
            ("X.minimum({x}, {y})", max(bx, by)),
        ]
        if by <= 3:
            forms.append(("X.power(X.abs({x}) + 0.5, {y})", (bx + 0.5) ** by + 2.0**by))
            forms.append(("(X.abs({x}) + 0.5) ** {y}", (bx + 0.5) ** by + 2.0**by))
        forms = [(f, bd) for f, bd in forms if bd <= BOUND]
        form, bound = self.choice(forms)
        return self.emit(form.format(x=x, y=y), shape, dtype, bound)

    def predicate(self, a: Val) -> tuple[str, tuple[int, ...]]:
        """A bool array from comparisons of `a` (and maybe a partner), with its shape."""
        op = self.choice([">", "<", ">=", "<="])
        kind = self.choice(["scalar", "partner", "fn"])
        if kind == "scalar":
            text, shape = f"({a.name} {op} {self.choice([0.0, 0.5, -0.5])})", a.shape
        else:
            b = self.partner(a)
            if b is None:
                text, shape = f"({a.name} {op} 0.0)", a.shape
            else:
                out = _broadcast(a.shape, b.shape)
                assert out is not None
                name = {">": "greater", "<": "less", ">=": "greater_equal", "<=": "less_equal"}
                text = (
                    f"X.{name[op]}({a.name}, {b.name})"
                    if kind == "fn"
                    else f"({a.name} {op} {b.name})"
                )
                shape = out
        if self.integer(0, 3) == 0:
            # Combine with a second comparison of the same value.
            how = self.choice(["&", "|", "and", "or", "not"])
            other = f"({a.name} {self.choice(['>', '<'])} {self.choice([1.0, -1.0])})"
            if how in ("&", "|"):
                text = f"({text} {how} {other})"
            elif how == "not":
                text = f"X.logical_not({text})"
            else:
                text = f"X.logical_{how}({text}, {other})"
            shape = _broadcast(shape, a.shape) or shape
        return text, shape

    def op_where(self) -> Val | None:
        a = self.float_val()
        pred, pshape = self.predicate(a)
        if self.integer(0, 2) == 0:
            dtype = self.choice(FLOATS)
            return self.emit(f"X.astype({pred}, X.{dtype})", pshape, dtype, 1.0)
        x = self.partner(a) if self.flag() else a
        if x is None:
            return None
        other = self.choice(["scalar", "neg", "partner"])
        if other == "partner":
            y = self.partner(x)
            if y is None:
                return None
        elif other == "neg":
            y = Val(f"0.1 * {x.name}", x.shape, x.dtype, x.bound)
        else:
            y = Val("0.0", (), x.dtype, 0.0)
        shape = _broadcast(pshape, x.shape, y.shape)
        if shape is None or math.prod(shape) > MAX_SIZE or len(shape) > MAX_RANK:
            return None
        args = [pred, x.name, y.name]
        if self.flag():
            args = [f"X.logical_not({pred})", y.name, x.name]
        text = f"X.where({', '.join(args)})"
        return self.emit(text, shape, _promote(x.dtype, y.dtype), max(x.bound, y.bound))

    def axes(self, rank: int) -> Any:
        """None, an int (maybe negative) or a tuple of distinct axes (any order)."""
        if rank == 0:
            return None
        kind = self.choice(["none", "int", "tuple"])
        if kind == "none":
            return None
        if kind == "int":
            ax = self.integer(0, rank - 1)
            return ax - rank if self.flag() else ax
        n = self.integer(1, rank)
        chosen = self.shared.draw(st.permutations(list(range(rank))))[:n]
        return tuple(ax - rank if self.flag() else ax for ax in chosen)

    def op_reduce(self) -> Val | None:
        a = self.float_val()
        axis = self.axes(a.rank)
        keepdims = self.flag()
        axes = (
            set(range(a.rank))
            if axis is None
            else {ax % a.rank for ax in (axis if isinstance(axis, tuple) else (axis,))}
        )
        count = math.prod(a.shape[i] for i in axes)
        shape = tuple(
            1 if i in axes else d for i, d in enumerate(a.shape) if keepdims or i not in axes
        )
        fns = [("sum", a.bound * count), ("mean", a.bound), ("max", a.bound)]
        fn, bound = self.choice([(f, b) for f, b in fns if b <= BOUND])
        args = []
        if axis is not None or self.flag():
            args.append(f"axis={_fmt(axis)}")
        if keepdims or self.flag():
            args.append(f"keepdims={keepdims}")
        if self.flag():
            text = f"X.{fn}({', '.join([a.name, *args])})"
        else:
            text = f"{a.name}.{fn}({', '.join(args)})"
        return self.emit(text, shape, a.dtype, bound)

    def op_matmul(self) -> Val | None:
        a = self.float_val(lambda v: 1 <= v.rank <= 3)
        if not 1 <= a.rank <= 3:
            return None
        k = a.shape[-1]
        n = self.integer(1, MAX_DIM)
        options: list[tuple[int, ...]] = [(k,), (k, n)]
        if a.rank == 3:
            options += [(a.shape[0], k, n), (1, k, n)]
        else:
            options.append((self.integer(1, 3), k, n))
        bshape = self.choice(options)
        b = self.pick(lambda v: v.shape == bshape) if self.flag() else None
        if b is None:
            b = self.operand(bshape, self.choice(FLOATS))
        # numpy's dot and matmul differ past rank 2 (dot pairs every batch of a
        # with every batch of b): each form gets its own result shape.
        form = self.choice(["X.matmul({a}, {b})", "{a} @ {b}", "X.dot({a}, {b})"])
        product = np.dot if form.startswith("X.dot") else np.matmul
        shape = product(np.zeros(a.shape), np.zeros(b.shape)).shape
        if math.prod(shape) > MAX_SIZE:
            return None
        bound = a.bound * b.bound * k
        if bound > BOUND:
            return None
        return self.emit(form.format(a=a.name, b=b.name), shape, _promote(a.dtype, b.dtype), bound)

    def op_reshape(self) -> Val | None:
        a = self.float_val()
        kind = self.choice(["reshape", "transpose", "expand", "broadcast"])
        if kind == "reshape":
            dims: list[int] = []
            left = a.size
            while left > 1 and len(dims) < MAX_RANK - 1:
                divisors = [d for d in range(1, left + 1) if left % d == 0]
                d = self.choice(divisors)
                dims.append(d)
                left //= d
            if left > 1 or self.flag():
                dims.append(left)
            shape = tuple(dims)
            shown = list(dims)
            if shown and self.flag():
                shown[self.integer(0, len(shown) - 1)] = -1
            text = (
                f"X.reshape({a.name}, {_fmt(shown)})"
                if self.flag()
                else f"{a.name}.reshape({_fmt(shown)})"
            )
            return self.emit(text, shape, a.dtype, a.bound)
        if kind == "transpose":
            if a.rank < 2:
                return None
            perm = tuple(self.shared.draw(st.permutations(list(range(a.rank)))))
            form = self.choice(["X.transpose({a}, {p})", "{a}.T", "X.transpose({a})"])
            if form != "X.transpose({a}, {p})":
                perm = tuple(reversed(range(a.rank)))
            shape = tuple(a.shape[p] for p in perm)
            return self.emit(form.format(a=a.name, p=_fmt(perm)), shape, a.dtype, a.bound)
        if kind == "expand":
            if a.rank >= MAX_RANK:
                return None
            axis = self.integer(-a.rank - 1, a.rank)
            shape = np.expand_dims(np.zeros(a.shape), axis).shape
            return self.emit(f"X.expand_dims({a.name}, {axis})", shape, a.dtype, a.bound)
        dims = [self.integer(1, MAX_DIM) if d == 1 and self.flag() else d for d in a.shape]
        if a.rank < 3 and self.flag():
            dims.insert(0, self.integer(1, 3))
        shape = tuple(dims)
        if math.prod(shape) > MAX_SIZE:
            return None
        return self.emit(f"X.broadcast_to({a.name}, {_fmt(shape)})", shape, a.dtype, a.bound)

    def op_index(self) -> Val | None:
        a = self.float_val(lambda v: v.rank >= 1)
        if a.rank == 0:
            return None
        items: list[str] = []
        for n in a.shape:
            kind = self.choice(["all", "slice", "int"])
            if kind == "all":
                items.append(":")
            elif kind == "int":
                i = self.integer(-n, n - 1)
                items.append(str(i))
            else:
                step = self.choice([1, 2, -1, -2])
                start = self.choice([None, *range(-n, n)])
                stop = self.choice([None, *range(-n, n + 1)])
                text = f"{'' if start is None else start}:{'' if stop is None else stop}"
                items.append(text + ("" if step == 1 else f":{step}"))
        if self.integer(0, 3) == 0:
            items.insert(self.integer(0, len(items)), "None")
        if len(items) > 1 and self.integer(0, 3) == 0:
            # An Ellipsis standing for the full slices at one end.
            if items[-1] == ":":
                items[-1] = "..."
            elif items[0] == ":":
                items[0] = "..."
        key = ", ".join(items)
        shape = eval(f"np.zeros({a.shape})[{key}]").shape  # numpy's rule
        if 0 in shape:
            return None
        return self.emit(f"{a.name}[{key}]", shape, a.dtype, a.bound)

    def op_gather(self) -> Val | None:
        a = self.float_val(lambda v: v.rank >= 1)
        if a.rank == 0:
            return None
        axis = self.integer(0, a.rank - 1)
        ishape = self.shape(max_rank=2)
        if len(ishape) == 0 and self.flag():
            ishape = (self.integer(1, 3),)
        idx = self.index_array(ishape, a.shape[axis], wrap=True)
        zeros = np.zeros(ishape, np.int64)
        shape = np.take(np.zeros(a.shape), zeros, axis=axis).shape
        forms = [f"X.take({a.name}, {idx}, axis={axis if self.flag() else axis - a.rank})"]
        # A numpy constant cannot be indexed by a staged value (numpy asks for its
        # value, as with JAX tracers): index it as an `ln` array.
        base = f"X.asarray({a.name})" if a.name.startswith("C[") else a.name
        if axis == 0:
            forms.append(f"{base}[{idx}]")
        if axis == 1:
            forms.append(f"{base}[:, {idx}]")
        if a.rank == 1:
            forms.append(f"X.take({a.name}, {idx})")
        if a.rank >= 2 and axis == 0 and self.flag():
            # An index array next to an integer: numpy's advanced-indexing rule.
            j = self.integer(0, a.shape[1] - 1)
            text = f"{base}[{idx}, {j}]"
            shape = eval(f"np.zeros({a.shape})[zeros, {j}]").shape
            if math.prod(shape) <= MAX_SIZE and 0 not in shape:
                return self.emit(text, shape, a.dtype, a.bound)
        if math.prod(shape) > MAX_SIZE or 0 in shape:
            return None
        return self.emit(self.choice(forms), shape, a.dtype, a.bound)

    def op_softmax(self) -> Val | None:
        a = self.float_val(lambda v: v.rank >= 1)
        if a.rank == 0:
            return None
        axis = self.integer(-a.rank, a.rank - 1)
        if self.flag():
            return self.emit(f"X.softmax({a.name}, axis={axis})", a.shape, a.dtype, 1.0)
        bound = 2 * a.bound + math.log(a.shape[axis]) + 1
        if bound > BOUND:
            return None
        return self.emit(f"X.log_softmax({a.name}, axis={axis})", a.shape, a.dtype, bound)

    def op_loss(self) -> Val | None:
        a = self.float_val(lambda v: v.rank == 2)
        if a.rank != 2:
            return None
        t = self.index_array((a.shape[0],), a.shape[1], literal_ok=False)
        reduction = self.choice(["mean", "sum"])
        bound = (2 * a.bound + math.log(a.shape[1]) + 1) * a.shape[0]
        if bound > BOUND:
            return None
        if self.flag():
            text = f"X.cross_entropy({a.name}, {t}, reduction={reduction!r})"
        else:
            text = f"X.nll_loss(X.log_softmax({a.name}, axis=-1), {t}, reduction={reduction!r})"
        return self.emit(text, (), a.dtype, bound)

    def op_concat(self) -> Val | None:
        a = self.float_val(lambda v: v.rank >= 1)
        stack = a.rank == 0 or self.flag()
        if stack:
            axis = self.integer(-a.rank - 1, a.rank)
        else:
            axis = self.integer(-a.rank, a.rank - 1)
        parts = [a]
        for _ in range(self.integer(1, 2)):
            if stack:
                want = a.shape
            else:
                want = tuple(
                    self.integer(1, 3) if i == axis % a.rank else d for i, d in enumerate(a.shape)
                )
            b = self.pick(lambda v, w=want: v.shape == w) if self.flag() else None
            parts.append(b if b is not None else self.operand(want, self.choice(FLOATS)))
        if self.flag():
            parts.reverse()
        arrays = [np.zeros(p.shape) for p in parts]
        shape = (np.stack if stack else np.concatenate)(arrays, axis=axis).shape
        if math.prod(shape) > MAX_SIZE or len(shape) > MAX_RANK:
            return None
        fn = "stack" if stack else "concatenate"
        text = f"X.{fn}([{', '.join(p.name for p in parts)}], axis={axis})"
        dtype = _promote(*(p.dtype for p in parts))
        return self.emit(text, shape, dtype, max(p.bound for p in parts))

    def op_cast(self) -> Val:
        a = self.float_val()
        dtype = self.choice(FLOATS)
        if self.flag():
            return self.emit(f"X.astype({a.name}, X.{dtype})", a.shape, dtype, a.bound)
        return self.emit(f"{a.name}.astype(X.{dtype})", a.shape, dtype, a.bound)

    def op_scatter(self) -> Val | None:
        u = self.float_val(lambda v: v.rank >= 1)
        if u.rank == 0:
            return None
        k = 1 if u.rank == 1 else self.integer(1, 2)
        rows = self.integer(1, MAX_DIM)
        idx = self.index_array(u.shape[:k], rows)
        shape = (rows, *u.shape[k:])
        bound = u.bound * math.prod(u.shape[:k])
        if bound > BOUND or math.prod(shape) > MAX_SIZE:
            return None
        return self.emit(f"X.scatter_add({u.name}, {idx}, {rows})", shape, u.dtype, bound)

    # --- control flow -------------------------------------------------------------------

    def scalar_predicate(self) -> str:
        """A staged rank-0 bool: a reduction compared with a threshold."""
        p = self.float_val()
        form = self.choice(
            ["X.sum({p}) > 0.0", "X.max({p}) < 1.0", "X.mean({p}) >= 0.25", "{p}.sum() < 0.5"]
        )
        if p.rank >= 1 and self.integer(0, 3) == 0:
            form = "{p}[" + ", ".join("0" for _ in p.shape) + "] > 0.0"
        return form.format(p=p.name)

    def chain(self, start: Val, steps: int, carried: Val | None = None) -> Val:
        """Elementwise ops from `start`, keeping its shape and dtype. With `carried`
        (a loop's carried value) the result is bounded by max(carried's bound, 1), so
        iterating the body cannot blow up."""
        v = start
        if start not in self.vals:
            self.vals.append(start)
        for _ in range(steps):
            kind = self.choice(["unary", "scalar", "binary", "where"])
            if kind == "binary":
                b = self.partner(v, into=True)
                if b is None:
                    continue
                op = self.choice(["+", "-", "*"])
                bound = v.bound * b.bound if op == "*" else v.bound + b.bound
                if bound > BOUND:
                    continue
                v = self.emit(f"{v.name} {op} {b.name}", v.shape, v.dtype, bound)
            elif kind == "where":
                text = f"X.where({v.name} > 0.0, {v.name}, 0.1 * {v.name})"
                v = self.emit(text, v.shape, v.dtype, v.bound)
            else:
                saved = self.vals
                self.vals = [v]  # the op's operand is the chain's value
                w = self.op_unary() if kind == "unary" else self.op_scalar()
                self.vals = [*saved, w]
                v = w
        if carried is not None and v.bound > max(carried.bound, 1.0):
            if self.flag():
                v = self.emit(f"X.tanh({v.name})", v.shape, v.dtype, 1.0)
            else:
                text = f"0.5 * {carried.name} + 0.5 * X.tanh({v.name})"
                v = self.emit(text, v.shape, v.dtype, max(carried.bound, 1.0))
        return v

    def body_function(
        self,
        name: str,
        params: list[Val],
        start: Val,
        carried: Val | None = None,
        prefix: Sequence[str] = (),
        result: str = "{}",
    ) -> Val:
        """Emit a local `def` whose body is a chain from `start`; the chain's result."""
        self.line(f"def {name}({', '.join(p.name for p in params)}):")
        sub = self.child([*self.vals, *(p for p in params if p.dtype in FLOATS)])
        for text in prefix:
            sub.line(text)
        out = sub.chain(start, self.integer(0, 3), carried)
        sub.line("return " + result.format(out.name))
        self.lines += sub.lines
        return out

    def op_cond(self) -> Val:
        a = self.float_val()
        pred = self.scalar_predicate()
        param = Val(self.shared.fresh("a"), a.shape, a.dtype, a.bound)
        t, f = self.shared.fresh("true_fn"), self.shared.fresh("false_fn")
        out_t = self.body_function(t, [param], param)
        out_f = self.body_function(f, [param], param)
        bound = max(out_t.bound, out_f.bound)
        return self.emit(f"X.cond({pred}, {t}, {f}, {a.name})", a.shape, a.dtype, bound)

    def op_py_if(self) -> Val:
        a = self.float_val()
        pred = self.scalar_predicate()
        name = self.shared.fresh("v")
        with_else = self.flag()
        bound = 0.0 if with_else else a.bound
        if not with_else:
            self.line(f"{name} = {a.name}")
        self.line(f"if {pred}:")
        for branch in ("if", "else") if with_else else ("if",):
            if branch == "else":
                self.line("else:")
            sub = self.child(self.vals)
            out = sub.chain(a, self.integer(0, 3))
            sub.line(f"{name} = {out.name}")
            self.lines += sub.lines
            bound = max(bound, out.bound)
        v = Val(name, a.shape, a.dtype, bound)
        self.vals.append(v)
        return v

    def op_fori(self) -> Val:
        a = self.float_val()
        n = self.integer(0, 3)
        acc = Val(self.shared.fresh("acc"), a.shape, a.dtype, a.bound)
        i = Val(self.shared.fresh("i"), (), "int64", 0.0)
        body = self.shared.fresh("body")
        prefix: list[str] = []
        start = acc
        use = self.choice(["none", "float", "gather"])
        if use == "float":
            # The index is a staged int64; cast it so the dtype rules of numpy and
            # lanterna (weak Python scalars) agree.
            prefix.append(f"{acc.name}_i = {acc.name} + 0.25 * X.astype({i.name}, X.{a.dtype})")
            start = Val(f"{acc.name}_i", a.shape, a.dtype, a.bound + 1)
        elif use == "gather" and n > 0:
            rows = self.pick(
                lambda v: (
                    v.rank >= 1
                    and v.shape[0] >= n
                    and _broadcast(v.shape[1:], a.shape) == a.shape
                    and _promote(v.dtype, a.dtype) == a.dtype
                )
            )
            if rows is not None:
                table = f"X.asarray({rows.name})" if rows.name.startswith("C[") else rows.name
                prefix.append(f"{acc.name}_i = {acc.name} + {table}[{i.name}]")
                start = Val(f"{acc.name}_i", a.shape, a.dtype, a.bound + rows.bound)
        self.body_function(body, [i, acc], start, acc, prefix)
        if self.integer(0, 3) == 0:
            body = f"X.checkpoint({body})"  # the body recomputed in the backward pass
        text = f"X.fori_loop(0, {n}, {body}, {a.name})"
        return self.emit(text, a.shape, a.dtype, max(a.bound, 1.0))

    def op_while(self) -> Val:
        a = self.float_val()
        n = self.integer(0, 3)
        c = Val(self.shared.fresh("c"), (), "", 0.0)
        acc = Val(self.shared.fresh("acc"), a.shape, a.dtype, a.bound)
        body = self.shared.fresh("body")
        prefix = [f"{c.name}_i, {acc.name} = {c.name}"]
        self.body_function(body, [c], acc, acc, prefix, result=f"({c.name}_i + 1, {{}})")
        if self.flag():
            test = f"lambda c: c[0] < {n}"
        else:
            test = f"lambda c: X.logical_and(c[0] < {n}, X.sum(c[1]) < 1.0)"
        name = self.shared.fresh("v")
        self.line(f"_, {name} = X.while_loop({test}, {body}, (0, {a.name}))")
        v = Val(name, a.shape, a.dtype, max(a.bound, 1.0))
        self.vals.append(v)
        return v

    def op_py_while(self) -> Val:
        a = self.float_val()
        p = self.float_val()
        n = self.integer(0, 3)
        k = self.shared.fresh("k")
        name = self.shared.fresh("v")
        self.line(f"{k} = X.sum({p.name}) * 0.0")
        self.line(f"{name} = {a.name}")
        self.line(f"while {k} < {n - 0.5}:")
        sub = self.child([*self.vals, Val(name, a.shape, a.dtype, a.bound)])
        out = sub.chain(sub.vals[-1], self.integer(1, 3), sub.vals[-1])
        sub.line(f"{name} = {out.name}")
        sub.line(f"{k} = {k} + 1.0")
        self.lines += sub.lines
        v = Val(name, a.shape, a.dtype, max(a.bound, 1.0))
        self.vals.append(v)
        return v

    def op_py_for(self) -> Val:
        a = self.float_val()
        name = self.shared.fresh("v")
        self.line(f"{name} = {a.name}")
        self.line(f"for _ in range({self.integer(0, 3)}):")
        sub = self.child([*self.vals, Val(name, a.shape, a.dtype, a.bound)])
        out = sub.chain(sub.vals[-1], self.integer(1, 2), sub.vals[-1])
        sub.line(f"{name} = {out.name}")
        self.lines += sub.lines
        v = Val(name, a.shape, a.dtype, max(a.bound, 1.0))
        self.vals.append(v)
        return v

    def op_helper(self) -> Val:
        """Define a module-level helper over one or two values in scope and call it
        (decorated with `@X.function`, or plain and so inlined)."""
        a = self.float_val()
        args = [a]
        if self.flag():
            b = self.pick(lambda v: v is not a)
            if b is not None:
                args.append(b)
        name = self.shared.fresh("helper")
        # `@ln.function`: its own func.func (control flow converted); `@ln.checkpoint`:
        # recomputed in the backward pass; plain: inlined.
        decorator = self.choice(["@X.function", "@X.checkpoint", ""])
        params = [Val(f"p{j}", v.shape, v.dtype, v.bound) for j, v in enumerate(args)]
        allow_flow = decorator == "@X.function" or not decorator
        sub = Builder(self.shared, params, 1, False, self.depth + 1, True, allow_flow)
        out = None
        for _ in range(self.integer(1, 3)):
            out = sub.op_py_if() if allow_flow and self.integer(0, 3) == 0 else sub.op()
        assert out is not None
        sub.line(f"return {out.name}")
        head = [
            *([decorator] if decorator else []),
            f"def {name}({', '.join(p.name for p in params)}):",
        ]
        self.shared.helpers.append(head + sub.lines)
        call = f"{name}({', '.join(v.name for v in args)})"
        if self.flag():
            # Called twice: a staged helper's second call reuses its func.func.
            call = f"{call} + {call}"
            return self.emit(call, out.shape, out.dtype, 2 * out.bound)
        return self.emit(call, out.shape, out.dtype, out.bound)


@st.composite
def programs(draw: Callable[[st.SearchStrategy[Any]], Any], max_ops: int = 6) -> Program:
    """A random well-typed program of 1..max_ops top-level operations."""
    shared = _Shared(draw)
    b = Builder(shared, [])
    first = Spec("x0", b.shape(), b.choice(FLOATS))
    shared.inputs.append(first)
    b.vals.append(Val(first.name, first.shape, first.dtype, 2.0))
    n = draw(st.integers(1, max_ops))
    outs = [b.op() for _ in range(n)]
    result = outs[-1]
    if len(outs) > 1 and draw(st.booleans()):
        other = outs[draw(st.integers(0, len(outs) - 2))]
        b.line(f"return {result.name}, {other.name}")
    else:
        b.line(f"return {result.name}")
    params = ", ".join(s.name for s in shared.inputs)
    parts = ["\n".join(h) for h in shared.helpers]
    parts.append("\n".join([f"def program({params}):", *b.lines]))
    return Program("\n\n".join(parts) + "\n", tuple(shared.inputs), tuple(shared.consts))
