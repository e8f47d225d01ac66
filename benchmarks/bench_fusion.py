"""Elementwise fusion on a small MLP training step, on the cpu backend.

Builds the loss of a two-layer perceptron as IR, differentiates it with
`reverse-ad`, and compiles the gradient function twice: with the cpu default
pipeline, and with `fuse-elementwise` appended. Prints, side by side, the
number of `ln` ops in the gradient function and the time per step.

    python benchmarks/bench_fusion.py [--batch 64 --inputs 128 --hidden 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lanterna.backends.cpu_cpp.backend import CpuBackend
from lanterna.ir import parse_module
from lanterna.passes import run_pipeline

MLP = """
func.func @f(%w1: tensor<{i}x{h}xf32>, %b1: tensor<{h}xf32>, %w2: tensor<{h}x{o}xf32>,
             %b2: tensor<{o}xf32>, %x: tensor<{n}x{i}xf32>, %y: tensor<{n}x{o}xf32>) -> tensor<f32> {{
  %h0 = ln.matmul %x, %w1 : tensor<{n}x{i}xf32>, tensor<{i}x{h}xf32>
  %h1 = ln.add %h0, %b1 : tensor<{n}x{h}xf32>, tensor<{h}xf32>
  %h2 = ln.tanh %h1 : tensor<{n}x{h}xf32>
  %o0 = ln.matmul %h2, %w2 : tensor<{n}x{h}xf32>, tensor<{h}x{o}xf32>
  %o1 = ln.add %o0, %b2 : tensor<{n}x{o}xf32>, tensor<{o}xf32>
  %o2 = ln.sigmoid %o1 : tensor<{n}x{o}xf32>
  %d = ln.sub %o2, %y : tensor<{n}x{o}xf32>, tensor<{n}x{o}xf32>
  %sq = ln.mul %d, %d : tensor<{n}x{o}xf32>, tensor<{n}x{o}xf32>
  %l = ln.mean %sq {{axes = array<i64: 0, 1>}} : tensor<{n}x{o}xf32>
  func.return %l : tensor<f32>
}}
"""


def ln_op_count(module, fn: str) -> int:
    f = next(op for op in module.ops if op.sym_name.data == fn)
    return sum(
        1
        for op in f.walk()
        if op.name.startswith("ln.") and getattr(op.parent_op(), "name", "") != "ln.fused"
    )


def time_per_step(compiled, args, repeat: int) -> float:
    compiled(*args)  # warm up
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            compiled(*args)
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--inputs", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=200)
    a = parser.parse_args()
    text = MLP.format(n=a.batch, i=a.inputs, h=a.hidden, o=a.outputs)
    rng = np.random.default_rng(0)
    shapes = [
        (a.inputs, a.hidden),
        (a.hidden,),
        (a.hidden, a.outputs),
        (a.outputs,),
        (a.batch, a.inputs),
        (a.batch, a.outputs),
    ]
    args = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]
    base = "reverse-ad{func=f argnums=0,1,2,3}," + CpuBackend.default_pipeline
    rows = []
    results = []
    for label, pipeline in (("default", base), ("+fuse-elementwise", base + ",fuse-elementwise")):
        module = parse_module(text)
        run_pipeline(module, pipeline)
        compiled = CpuBackend().compile(module, "f_grad")
        results.append(compiled(*args))
        rows.append((label, ln_op_count(module, "f_grad"), time_per_step(compiled, args, a.repeat)))
    for g0, g1 in zip(*results, strict=True):
        if not np.allclose(g0, g1, rtol=1e-5, atol=1e-6):
            print("warning: the two pipelines disagree")
    print(f"MLP {a.batch}x{a.inputs} -> {a.hidden} -> {a.outputs}, f32, gradient step")
    print(f"{'pipeline':<20} {'ln ops':>7} {'us/step':>10}")
    for label, ops, seconds in rows:
        print(f"{label:<20} {ops:>7} {seconds * 1e6:>10.1f}")
    print(f"speedup: {rows[0][2] / rows[1][2]:.2f}x")


if __name__ == "__main__":
    main()
