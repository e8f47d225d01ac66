"""The C-like core without the cpu runtime: a small backend made of a subclass with
its own spellings, a second output stream and a header of twenty lines renders the
structural ops and the elementwise loops, compiles with g++ against the portable
scalar header only, and computes what the interpreter computes."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from xdsl.ir import Operation

from lanterna.backends.c_like import RUNTIME_DIR
from lanterna.backends.c_like.arith import ARITH_OPS
from lanterna.backends.c_like.elementwise import ELEMENT_OPS, element, numel
from lanterna.backends.c_like.emitter import CLikeEmitter, c_string
from lanterna.ir import ln, parse_module
from lanterna.ir.interpreter import Interpreter

TINY_H = """
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <tuple>
#include "lanterna_scalar.h"
#define TINY_CHECK() (void)0
template <class T> T* tiny_alloc(int64_t n) {
    return static_cast<T*>(std::calloc(n ? n : 1, sizeof(T)));  // a test: never freed
}
template <class R, class... A, class Body> std::function<R(A...)> tiny_rec(Body body) {
    auto self = std::make_shared<std::function<R(A...)>>();
    *self = [self, body](A... a) -> R { return body(*self, a...); };  // a test: leaks
    return *self;
}
"""


class TinyEmitter(CLikeEmitter):
    """A backend that is nothing but spellings: malloc'd buffers, a kernel stream."""

    backend: ClassVar[str] = "tiny"
    header: ClassVar[str | None] = "tiny.h"
    streams: ClassVar[tuple[str, ...]] = ("head", "kernels", "host")
    function_qualifier: ClassVar[str] = "inline"
    loop_pragma: ClassVar[str | None] = "#pragma GCC unroll 2"
    stack_check: ClassVar[str | None] = "TINY_CHECK();"

    def fail(self, message: str) -> str:
        return f"throw std::runtime_error({c_string(message)});"

    def recursive_closure(self, signature: str) -> str:
        return f"tiny_rec<{signature}>"

    def result_buffer(self, op: Operation) -> str:
        r = op.results[0]
        c = self.scalar_type(element(r))
        name = self.define(r)
        self.line(f"{c}* {name} = tiny_alloc<{c}>({numel(r)});")
        return name

    def emit_entry(self, entry: str) -> None:
        ft = self.funcs[entry].function_type
        args = [f"static_cast<{self.ctype(t)}>(inputs[{i}])" for i, t in enumerate(ft.inputs.data)]
        with self.scope('extern "C" void tiny_entry(void* const* inputs, void* const* outputs) {'):
            self.line(f"auto result = {self.fn_names[entry]}({', '.join(args)});")
            for i, t in enumerate(ft.outputs.data):
                self.line(
                    f"std::memcpy(outputs[{i}], std::get<{i}>(result), "
                    f"{numel(t)} * sizeof(*std::get<{i}>(result)));"
                )


def _neg_kernel(em: CLikeEmitter, op: Operation) -> None:
    """`ln.neg` through a function written to the kernel stream."""
    c = em.scalar_type(element(op.results[0]))
    kernel = em.fresh("neg_kernel")
    header = f"static void {kernel}(const {c}* x, {c}* y, int64_t n) {{"
    with em.to_stream("kernels"), em.scope(header):
        em.line("for (int64_t i = 0; i < n; ++i) y[i] = -x[i];")
    y = em.result_buffer(op)
    em.line(f"{kernel}({em.ref(op.operands[0])}, {y}, {numel(op.results[0])});")


TINY_OPS = {**ELEMENT_OPS, **ARITH_OPS, ln.NegOp: _neg_kernel}

T = "tensor<2x3xf64>"
CLOSURE = f"!cont.closure<(index, {T}) -> ({T})>"
PROGRAM = f"""
func.func @scale(%v: {T}, %s: tensor<f64>) -> {T} {{
  %y = ln.mul %v, %s : {T}, tensor<f64>
  func.return %y : {T}
}}
func.func @f(%x: {T}, %b: tensor<3xf64>, %s: tensor<f64>) -> ({T}, {T}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %h = ln.add %x, %b : {T}, tensor<3xf64>
  %r = scf.for %i = %c0 to %c3 step %c1 iter_args(%acc = %h) -> ({T}) {{
    %t = func.call @scale(%acc, %s) : ({T}, tensor<f64>) -> {T}
    scf.yield %t : {T}
  }}
  %k = cont.lambda rec %self (%j: index, %v: {T}) -> ({T}) {{
    %more = arith.cmpi slt, %j, %c3 : index
    %out = scf.if %more -> ({T}) {{
      %n = ln.neg %v : {T}
      %j1 = arith.addi %j, %c1 : index
      %w = cont.apply %self(%j1, %n) : {CLOSURE}
      scf.yield %w : {T}
    }} else {{
      scf.yield %v : {T}
    }}
    cont.yield %out : {T}
  }}
  %z = cont.apply %k(%c0, %r) : {CLOSURE}
  %q:2 = scf.while (%j = %c0, %v = %z) : (index, {T}) -> (index, {T}) {{
    %go = arith.cmpi slt, %j, %c3 : index
    scf.condition(%go) %j, %v : index, {T}
  }} do {{
  ^bb0(%j2: index, %v2: {T}):
    %j3 = arith.addi %j2, %c1 : index
    %v3 = ln.sigmoid %v2 : {T}
    scf.yield %j3, %v3 : index, {T}
  }}
  %bc = builtin.unrealized_conversion_cast %b : tensor<3xf64> to tensor<3xf64>
  %p = ln.checkpoint -> ({T}) {{
    %e = ln.fused %q#1, %bc : {T}, tensor<3xf64> -> {T} {{
    ^bb0(%u: tensor<f64>, %c: tensor<f64>):
      %m = ln.mul %u, %c : tensor<f64>, tensor<f64>
      %th = ln.tanh %m : tensor<f64>
      ln.fused_yield %th : tensor<f64>
    }}
    ln.checkpoint_yield %e : {T}
  }}
  func.return %p, %r : {T}, {T}
}}
"""


def render() -> str:
    return TinyEmitter(parse_module(PROGRAM), TINY_OPS).emit("f").source


def test_the_subclass_spellings_and_no_cpu_runtime():
    source = render()
    assert source.startswith("// Generated by lanterna's tiny backend from @f.\n")
    assert '#include "tiny.h"' in source
    assert "inline const double* fn_scale(const double* v, const double* s) {" in source
    # Every function and closure checks its stack with the subclass's line.
    assert source.count("TINY_CHECK();") == 3
    assert 'throw std::runtime_error("scf.for: step must be positive");' in source
    assert "tiny_rec<const double*, int64_t, const double*>(" in source
    for cpu in ("lanterna_cpu", "LANTERNA_STACK_CHECK", "lanterna::release", "run_entry",
                "arena", "lanterna::alloc", "lanterna::RuntimeError", "lanterna::recursive",
                "ivdep", "static const double*"):  # fmt: skip
        assert cpu not in source, cpu
    # What remains of `lanterna::` is the portable scalar header.
    scalar = (RUNTIME_DIR / "lanterna_scalar.h").read_text()
    for name in set(re.findall(r"lanterna::(\w+)", source)):
        assert re.search(rf"inline \w+ {name}\(", scalar), name


def test_streams_join_in_their_declared_order():
    source = render()
    head, kernel, host = (
        source.index('#include "tiny.h"'),
        source.index("static void neg_kernel(const double* x, double* y, int64_t n) {"),
        source.index("namespace {"),
    )
    assert head < kernel < host
    # The kernel is written at the top level, called from the host code.
    assert "\nstatic void neg_kernel(" in source
    assert "        neg_kernel(v, n, 6);" in source


def test_ops_are_commented_and_loops_carry_the_pragma():
    source = render()
    assert "    // %h = ln.add %x, %b : tensor<2x3xf64>, tensor<3xf64>\n" in source
    # A broadcast: nested loops, the pragma before the innermost, indices static.
    assert (
        "    double* h = tiny_alloc<double>(6);\n"
        "    for (int64_t i0_ = 0; i0_ < 2; ++i0_)\n"
        "        #pragma GCC unroll 2\n"
        "        for (int64_t i1_ = 0; i1_ < 3; ++i1_)\n"
        "            h[i0_ * 3 + i1_] = x[i0_ * 3 + i1_] + b[i1_];\n"
    ) in source
    # Same shapes or a single element: one flat loop, the load of `s` at index 0.
    assert "for (int64_t i_ = 0; i_ < 6; ++i_) y[i_] = v[i_] * s[0];" in source
    # The fused op inside the checkpoint: the same renderer, with its own scalars.
    assert re.search(r"const double u = \w+\[i0_ \* 3 \+ i1_\];", source)
    assert "const double c = bc[i1_];" in source
    assert "const double th = lanterna::tanh(m);  // ln.tanh" in source


def test_a_standalone_op_is_a_one_op_fused_region():
    """The same op alone and as the body of an `ln.fused`: the same loop nest."""
    alone = f"""
    func.func @f(%a: {T}, %b: tensor<3xf64>) -> {T} {{
      %r = ln.maximum %a, %b : {T}, tensor<3xf64>
      func.return %r : {T}
    }}"""
    fused = f"""
    func.func @f(%a: {T}, %b: tensor<3xf64>) -> {T} {{
      %r = ln.fused %a, %b : {T}, tensor<3xf64> -> {T} {{
      ^bb0(%x: tensor<f64>, %y: tensor<f64>):
        %m = ln.maximum %x, %y : tensor<f64>, tensor<f64>
        ln.fused_yield %m : tensor<f64>
      }}
      func.return %r : {T}
    }}"""
    one = TinyEmitter(parse_module(alone), TINY_OPS).emit("f").source
    many = TinyEmitter(parse_module(fused), TINY_OPS).emit("f").source
    loops = re.compile(r"for \(int64_t (\w+) = 0; \1 < (\d+); \+\+\1\)")
    assert loops.findall(one) == loops.findall(many) == [("i0_", "2"), ("i1_", "3")]
    assert "r[i0_ * 3 + i1_] = lanterna::maximum(a[i0_ * 3 + i1_], b[i1_]);" in one
    assert "r[i0_ * 3 + i1_] = m;" in many
    assert "const double m = lanterna::maximum(x, y);  // ln.maximum" in many


def test_missing_hooks_name_the_backend():
    class Bare(CLikeEmitter):
        backend: ClassVar[str] = "bare"

    with pytest.raises(NotImplementedError, match="bare backend cannot allocate 'ln.mul'"):
        Bare(parse_module(PROGRAM), TINY_OPS).emit("f")
    total = (
        f"func.func @g(%v: {T}) -> tensor<3xf64> {{\n"
        f"  %n = ln.sum %v {{axes = array<i64: 0>}} : {T}\n"
        "  func.return %n : tensor<3xf64>\n}"
    )
    with pytest.raises(NotImplementedError, match="bare backend has no lowering for 'ln.sum'"):
        Bare(parse_module(total), TINY_OPS).emit("g")
    identity = f"func.func @g(%v: {T}) -> {T} {{\n  func.return %v : {T}\n}}"
    with pytest.raises(NotImplementedError, match="bare backend has no entry point"):
        Bare(parse_module(identity), TINY_OPS).emit("g")
    em = Bare(parse_module(identity), TINY_OPS)
    no_stream = "bare backend has no output stream 'kernels'"
    with pytest.raises(NotImplementedError, match=no_stream), em.to_stream("kernels"):
        pass


def test_names_are_sanitized_unique_and_never_reserved():
    text = """
    func.func @"my-fn"(%int: tensor<2xf32>, %for: tensor<2xf32>) -> tensor<2xf32> {
      %i_ = ln.add %int, %for : tensor<2xf32>, tensor<2xf32>
      %0 = ln.mul %i_, %i_ : tensor<2xf32>, tensor<2xf32>
      %1 = ln.mul %0, %0 : tensor<2xf32>, tensor<2xf32>
      func.return %1 : tensor<2xf32>
    }"""
    source = TinyEmitter(parse_module(text), TINY_OPS).emit("my-fn").source
    assert "inline const float* fn_my_fn(const float* int_1, const float* for_1) {" in source
    # `i_` is a loop counter: the value takes another name; unnamed values are named
    # after their op, uniquely.
    assert "float* i__1 = tiny_alloc<float>(2);" in source
    assert "float* mul = tiny_alloc<float>(2);" in source
    assert "float* mul_1 = tiny_alloc<float>(2);" in source


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_the_tiny_backend_compiles_and_matches_the_interpreter(tmp_path: Path):
    module = parse_module(PROGRAM)
    source = TinyEmitter(module, TINY_OPS).emit("f").source
    (tmp_path / "tiny.h").write_text(TINY_H)
    cpp, lib = tmp_path / "m.cpp", tmp_path / "m.so"
    cpp.write_text(source)
    cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-Werror", "-fPIC", "-shared",
           f"-I{tmp_path}", f"-I{RUNTIME_DIR}", str(cpp), "-o", str(lib)]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + "\n" + source
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s) for s in ((2, 3), (3,), ())]
    want = Interpreter(module).call("f", *args)
    outs = [np.empty((2, 3)) for _ in want]
    ins = (ctypes.c_void_p * 3)(*[a.ctypes.data for a in args])
    out_ptrs = (ctypes.c_void_p * 2)(*[o.ctypes.data for o in outs])
    ctypes.CDLL(str(lib)).tiny_entry(ins, out_ptrs)
    for got, expected in zip(outs, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
