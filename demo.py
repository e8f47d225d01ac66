"""`python -m lanterna.demo`: train a small model through the compiler.

A two-layer tanh network learns to classify points of two interleaved spirals
(generated here, no download). Each training step -- forward, backward through
`ln.value_and_grad`, and the SGD update -- is one compiled call; the loss is
shown falling with a progress bar.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import lanterna as ln


def spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, n points each, with labels 0 and 1."""
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 1.5 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (1.5 * np.pi)
    x = np.concatenate([arm, -arm]) + rng.normal(0, 0.02, (2 * n, 2))
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return x.astype(np.float32), y


def init(rng: np.random.Generator, hidden: int) -> dict[str, np.ndarray]:
    def glorot(m: int, n: int) -> np.ndarray:
        return (rng.normal(0, 1, (m, n)) * np.sqrt(2.0 / (m + n))).astype(np.float32)

    return {
        "w1": glorot(2, hidden),
        "b1": np.zeros(hidden, np.float32),
        "w2": glorot(hidden, hidden),
        "b2": np.zeros(hidden, np.float32),
        "w3": glorot(hidden, 2),
        "b3": np.zeros(2, np.float32),
    }


def loss_fn(p, x, y):
    h = ln.tanh(x @ p["w1"] + p["b1"])
    h = ln.tanh(h @ p["w2"] + p["b2"])
    return ln.cross_entropy(h @ p["w3"] + p["b3"], y)


def make_step(lr: float, backend: str):
    @ln.jit(backend=backend)
    def step(p, x, y):
        loss, g = ln.value_and_grad(loss_fn)(p, x, y)
        return loss, {k: p[k] - lr * g[k] for k in p}

    return step


def accuracy(p, x, y) -> float:
    h = np.tanh(x @ p["w1"] + p["b1"])
    h = np.tanh(h @ p["w2"] + p["b2"])
    return float(np.mean(np.argmax(h @ p["w3"] + p["b3"], axis=1) == y))


def progress(i: int, total: int, loss: float, width: int = 30) -> str:
    done = int(width * i / total)
    return f"\r[{'#' * done}{'.' * (width - done)}] step {i:4d}/{total}  loss {loss:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lanterna.demo", description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--backend", default=None, help="cpu (default), interp, ...")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x, y = spirals(200, rng)
    params = init(rng, args.hidden)
    step = make_step(args.lr, args.backend)
    start = time.perf_counter()
    first = last = float("nan")
    for i in range(1, args.steps + 1):
        loss, params = step(params, x, y)
        last = float(loss)
        if i == 1:
            first = last
        if i == 1 or i % 10 == 0 or i == args.steps:
            sys.stdout.write(progress(i, args.steps, last))
            sys.stdout.flush()
    elapsed = time.perf_counter() - start
    print(
        f"\nloss {first:.4f} -> {last:.4f}, accuracy {accuracy(params, x, y):.1%}, "
        f"{args.steps} steps in {elapsed:.2f} s on backend '{step.backend_name}' "
        f"({step.trace_count} trace)"
    )
    return 0 if last < first else 1


if __name__ == "__main__":
    sys.exit(main())
