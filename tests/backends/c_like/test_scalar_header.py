"""The portable scalar header (backends/c_like/runtime/lanterna_scalar.h) on its own:
it compiles without any backend's runtime, with g++ and, when nvcc is installed, as
CUDA device code; its functions give numpy's numbers on the values where they are
easy to get wrong (NaN in maximum/minimum, the ends of exp's range, integer
wrapping and division)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lanterna.backends.c_like import RUNTIME_DIR

from support.float_math import FLOAT_MATH

HEADER = RUNTIME_DIR / "lanterna_scalar.h"

# extern "C" wrappers over the header's templates, one loop per function.
WRAPPERS = r"""
#include "lanterna_scalar.h"
#include <cstdio>
#include <stdexcept>

#define UNARY(name, T, fn) \
    extern "C" void name(const T* x, T* y, int64_t n) { \
        for (int64_t i = 0; i < n; ++i) y[i] = lanterna::fn(x[i]); }
#define BINARY(name, T, fn) \
    extern "C" void name(const T* a, const T* b, T* y, int64_t n) { \
        for (int64_t i = 0; i < n; ++i) y[i] = lanterna::fn(a[i], b[i]); }

UNARY(exp_f32, float, exp) UNARY(tanh_f32, float, tanh) UNARY(sigmoid_f32, float, sigmoid)
UNARY(relu_f32, float, relu) UNARY(abs_f32, float, abs_of) UNARY(exp_f64, double, exp)
UNARY(neg_i64, int64_t, wrap_neg) UNARY(abs_i64, int64_t, abs_of)
BINARY(maximum_f32, float, maximum) BINARY(minimum_f32, float, minimum)
BINARY(maximum_f64, double, maximum) BINARY(minimum_f64, double, minimum)
BINARY(add_i64, int64_t, wrap_add) BINARY(sub_i64, int64_t, wrap_sub)
BINARY(mul_i64, int64_t, wrap_mul) BINARY(mul_i32, int32_t, wrap_mul)

// Integer division: 0 and the quotients, or 1 and the error's message.
#define DIVISION(name, fn) \
    extern "C" int name(const int64_t* a, const int64_t* b, int64_t* y, int64_t n, \
                        char* err, size_t errlen) { \
        try { for (int64_t i = 0; i < n; ++i) y[i] = lanterna::fn(a[i], b[i]); } \
        catch (const std::domain_error& e) { std::snprintf(err, errlen, "%s", e.what()); \
                                             return 1; } \
        return 0; }
DIVISION(div_trunc_i64, div_trunc) DIVISION(rem_trunc_i64, rem_trunc)
DIVISION(div_floor_i64, div_floor)
"""

DEVICE = r"""
#include "lanterna_scalar.h"
__global__ void every_function(const float* x, double* d, int64_t* k, int32_t* j) {
    const int i = threadIdx.x;
    d[i] = lanterna::exp(d[i]) + lanterna::tanh(d[i]) + lanterna::sigmoid(d[i])
         + lanterna::log(d[i]) + lanterna::sqrt(d[i]) + lanterna::pow(d[i], 2.0);
    float f = lanterna::exp(x[i]) + lanterna::tanh(x[i]) + lanterna::sigmoid(x[i])
            + lanterna::relu(x[i]) + lanterna::abs_of(x[i]) + lanterna::maximum(x[i], 1.0f)
            + lanterna::minimum(x[i], 1.0f) + lanterna::log(x[i]) + lanterna::sqrt(x[i])
            + lanterna::pow(x[i], 2.0f);
    k[i] = lanterna::wrap_add(k[i], k[i]) + lanterna::wrap_sub(k[i], int64_t(1))
         + lanterna::wrap_mul(k[i], k[i]) + lanterna::wrap_neg(k[i]) + lanterna::abs_of(k[i])
         + lanterna::div_trunc(k[i], int64_t(3)) + lanterna::rem_trunc(k[i], int64_t(3))
         + lanterna::div_floor(k[i], int64_t(3)) + static_cast<int64_t>(f);
    j[i] = lanterna::wrap_mul(j[i], j[i]);
}
"""

I64 = np.iinfo(np.int64)


@pytest.fixture(scope="module")
def scalar(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    folder = tmp_path_factory.mktemp("scalar")
    src, lib = folder / "scalar.cpp", folder / "scalar.so"
    src.write_text(WRAPPERS)
    # The driver's flags that change float code: -fno-trapping-math lets exp vectorize.
    cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-fno-math-errno",
           "-fno-trapping-math", "-march=native", "-fPIC", "-shared", f"-I{RUNTIME_DIR}",
           str(src), "-o", str(lib)]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(lib))


def call(lib: ctypes.CDLL, name: str, *args: np.ndarray) -> np.ndarray:
    out = np.empty_like(args[0])
    ptrs = [ctypes.c_void_p(a.ctypes.data) for a in (*args, out)]
    getattr(lib, name)(*ptrs, ctypes.c_int64(out.size))
    return out


def test_the_header_needs_no_runtime(tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    # Included first and alone, as a C-like backend's runtime header would include it.
    src = tmp_path / "alone.cpp"
    src.write_text('#include "lanterna_scalar.h"\nint main() { return lanterna::relu(-1); }\n')
    cmd = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic",
           f"-I{RUNTIME_DIR}", str(src), "-o", str(tmp_path / "alone")]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert subprocess.run([str(tmp_path / "alone")], check=False).returncode == 0


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_float_math_matches_numpy(scalar, name):
    FLOAT_MATH.check(name, call(scalar, f"{name}_f32", FLOAT_MATH.inputs))


def test_double_exp_matches_numpy(scalar):
    x = FLOAT_MATH.inputs.astype(np.float64)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    # The C library's exp and numpy's differ in the last place at most.
    np.testing.assert_allclose(call(scalar, "exp_f64", x), want, rtol=5e-16, atol=0)


@pytest.mark.parametrize("dtype, suffix", [(np.float32, "f32"), (np.float64, "f64")])
def test_maximum_and_minimum_let_nan_win(scalar, dtype, suffix):
    values = [np.nan, -np.inf, -1.0, -0.0, 0.0, 2.5, np.inf]
    a, b = (np.array(v, dtype) for v in zip(*[(x, y) for x in values for y in values]))
    for name, reference in (("maximum", np.maximum), ("minimum", np.minimum)):
        got, want = call(scalar, f"{name}_{suffix}", a, b), reference(a, b)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        finite = ~np.isnan(want)
        # numpy's choice between 0.0 and -0.0 is the platform's; the values compare equal.
        np.testing.assert_array_equal(got[finite], want[finite])


def test_relu_and_abs_follow_numpy(scalar):
    x = np.array([np.nan, -np.inf, -2.0, -0.0, 0.0, 3.0, np.inf], np.float32)
    relu = call(scalar, "relu_f32", x)
    np.testing.assert_array_equal(relu, np.maximum(x, np.float32(0)))
    np.testing.assert_array_equal(call(scalar, "abs_f32", x), np.abs(x))


def test_integer_arithmetic_wraps_as_numpy_does(scalar):
    edge = [I64.min, I64.min + 1, -3, -1, 0, 1, 7, I64.max - 1, I64.max]
    a, b = (np.array(v, np.int64) for v in zip(*[(x, y) for x in edge for y in edge]))
    with np.errstate(over="ignore"):
        for name, reference in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply)):
            np.testing.assert_array_equal(call(scalar, f"{name}_i64", a, b), reference(a, b))
        np.testing.assert_array_equal(call(scalar, "neg_i64", a), np.negative(a))
        np.testing.assert_array_equal(call(scalar, "abs_i64", a), np.abs(a))
    i32 = np.array([2**31 - 1, -(2**31), 65535, -7], np.int32)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(call(scalar, "mul_i32", i32, i32), i32 * i32)


def _division(lib: ctypes.CDLL, name: str, a: np.ndarray, b: np.ndarray) -> tuple[int, object]:
    out = np.empty_like(a)
    err = ctypes.create_string_buffer(128)
    ptrs = [ctypes.c_void_p(x.ctypes.data) for x in (a, b, out)]
    code = getattr(lib, name)(*ptrs, ctypes.c_int64(a.size), err, ctypes.c_size_t(128))
    return code, (out if code == 0 else err.value.decode())


def test_integer_division_truncates_floors_and_wraps(scalar):
    pairs = [(7, 2), (-7, 2), (7, -2), (-7, -2), (6, 3), (-6, 3), (I64.min, -1), (I64.max, -1),
             (I64.min, 3), (0, -5)]  # fmt: skip
    a, b = (np.array(v, np.int64) for v in zip(*pairs))

    def wrap(v: int) -> int:
        return (v + 2**63) % 2**64 - 2**63

    trunc = [wrap(abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)) for x, y in pairs]
    floor = [wrap(x // y) for x, y in pairs]
    rem = [x - y * q if y != -1 else 0 for (x, y), q in zip(pairs, trunc, strict=True)]
    for name, want in (("div_trunc", trunc), ("div_floor", floor), ("rem_trunc", rem)):
        code, got = _division(scalar, f"{name}_i64", a, b)
        assert code == 0
        np.testing.assert_array_equal(got, np.array(want, np.int64), err_msg=name)
    with np.errstate(over="ignore"):  # I64.min // -1 wraps in numpy too
        np.testing.assert_array_equal(_division(scalar, "div_floor_i64", a, b)[1], a // b)


@pytest.mark.parametrize(
    "name, op", [("div_trunc", "divsi"), ("rem_trunc", "remsi"), ("div_floor", "floordivsi")]
)
def test_division_by_zero_names_the_op(scalar, name, op):
    code, message = _division(scalar, f"{name}_i64", np.array([5], np.int64), np.zeros(1, np.int64))
    assert (code, message) == (1, f"arith.{op}: division by zero")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_header_compiles_as_device_code(tmp_path: Path) -> None:
    src = tmp_path / "device.cu"
    src.write_text(DEVICE)
    cmd = ["nvcc", "-std=c++17", "-x", "cu", "-c", "-Werror", "all-warnings",
           f"-I{RUNTIME_DIR}", str(src), "-o", str(tmp_path / "device.o")]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
