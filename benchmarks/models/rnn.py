"""Vanilla RNN character language model, min-char-rnn style (the paper's RNN).

    h_t = tanh(Wxh[x_t] + h_{t-1} @ Whh + bh);  loss = sum_t CE(h_t @ Why + by, x_{t+1})

Paper configuration: hidden 50, sequence length 20, Adagrad lr 0.1, gradients
clipped to [-5, 5], batch 20 and batch 1; weights N(0, 0.01), zero biases. The
one-hot input times Wxh is a row lookup (`ln.take`). The hidden state is carried
from step to step as in min-char-rnn. The time loop is an `ln.fori_loop` (one
`scf.for`, not unrolled); forward, backward through it and the Adagrad update
are one compiled call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import lanterna as ln

from . import data


@dataclass(frozen=True)
class Config:
    hidden: int = 50
    seq: int = 20
    batch: int = 1
    lr: float = 0.1
    clip: float = 5.0
    vocab: int = field(default_factory=data.vocab_size)

    @classmethod
    def small(cls, **kw: Any) -> Config:
        return replace(cls(hidden=16, seq=8, batch=2), **kw)


def init(rng: np.random.Generator, config: Config) -> dict[str, Any]:
    v, h = config.vocab, config.hidden
    params = {
        "wxh": ln.nn.normal(rng, (v, h)),
        "whh": ln.nn.normal(rng, (h, h)),
        "why": ln.nn.normal(rng, (h, v)),
        "bh": ln.nn.zeros((h,)),
        "by": ln.nn.zeros((v,)),
    }
    opt = ln.optim.adagrad(config.lr)
    return {"params": params, "opt": opt.init(params), "h": ln.nn.zeros((config.batch, h))}


def loss_fn(params: Any, h0: Any, inputs: Any, targets: Any) -> Any:
    """Summed over time, averaged over the batch; the last hidden state as aux."""

    def body(t: Any, carry: Any) -> Any:
        h, loss = carry
        h = ln.tanh(ln.take(params["wxh"], inputs[t], axis=0) + h @ params["whh"] + params["bh"])
        logits = h @ params["why"] + params["by"]
        return h, loss + ln.cross_entropy(logits, targets[t], reduction="sum")

    h, loss = ln.fori_loop(0, inputs.shape[0], body, (h0, 0.0))
    return loss / inputs.shape[1], h


def make_step(config: Config, backend: str | None = None) -> ln.Jitted:
    opt = ln.optim.adagrad(config.lr)

    @ln.jit(backend=backend)
    def rnn_step(state: Any, batch: Any) -> Any:
        (loss, h), g = ln.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["h"], batch["inputs"], batch["targets"]
        )
        params, opt_state = opt.update(
            ln.optim.clip_by_value(g, config.clip), state["opt"], state["params"]
        )
        return loss, {"params": params, "opt": opt_state, "h": h}

    return rnn_step


def batches(rng: np.random.Generator, config: Config) -> Iterator[dict[str, np.ndarray]]:
    return data.char_batches(rng, config.seq, config.batch)
