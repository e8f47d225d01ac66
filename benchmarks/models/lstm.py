"""LSTM character language model (the paper's LSTM): min-char-rnn's setup with
the tanh cell replaced by an LSTM cell (`ln.nn.lstm_cell`, gates i, f, o, g).

Paper configuration: hidden 50, sequence length 20, Adagrad lr 0.1, gradients
clipped to [-5, 5], batch 20 and batch 1. The input is one-hot (a row of the
identity, looked up with `ln.take`), as in min-char-rnn. The hidden and cell
states are carried from step to step. The time loop is one `ln.fori_loop`;
forward, backward and update are one compiled call.
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
    # Recompute each time step in the backward pass instead of storing it
    # (`ln.checkpoint`): memory per step falls to the step's inputs.
    checkpoint: bool = False

    @classmethod
    def small(cls, **kw: Any) -> Config:
        return replace(cls(hidden=16, seq=8, batch=2), **kw)


def init(rng: np.random.Generator, config: Config) -> dict[str, Any]:
    v, h = config.vocab, config.hidden
    params = {
        "cell": {
            "wx": ln.nn.normal(rng, (v, 4 * h)),
            "wh": ln.nn.normal(rng, (h, 4 * h)),
            "b": ln.nn.zeros((4 * h,)),
        },
        "out": {"w": ln.nn.normal(rng, (h, v)), "b": ln.nn.zeros((v,))},
    }
    opt = ln.optim.adagrad(config.lr)
    zeros = ln.nn.zeros((config.batch, h))
    return {"params": params, "opt": opt.init(params), "h": zeros, "c": zeros.copy()}


def loss_fn(
    params: Any, h0: Any, c0: Any, inputs: Any, targets: Any, checkpoint: bool = False
) -> Any:
    """Summed over time, averaged over the batch; the last (h, c) as aux."""
    vocab = params["out"]["b"].shape[0]
    one_hot = np.eye(vocab, dtype=np.float32)

    def step(h: Any, c: Any, x: Any, y: Any) -> Any:
        h, c = ln.nn.lstm_cell(params["cell"], ln.take(one_hot, x, axis=0), h, c)
        logits = ln.nn.linear(params["out"], h)
        return h, c, ln.cross_entropy(logits, y, reduction="sum")

    cell = ln.checkpoint(step) if checkpoint else step

    def body(t: Any, carry: Any) -> Any:
        h, c, loss = carry
        h, c, term = cell(h, c, inputs[t], targets[t])
        return h, c, loss + term

    h, c, loss = ln.fori_loop(0, inputs.shape[0], body, (h0, c0, 0.0))
    return loss / inputs.shape[1], (h, c)


def make_step(config: Config, backend: str | None = None) -> ln.Jitted:
    opt = ln.optim.adagrad(config.lr)

    def loss(params: Any, h0: Any, c0: Any, inputs: Any, targets: Any) -> Any:
        return loss_fn(params, h0, c0, inputs, targets, config.checkpoint)

    @ln.jit(backend=backend)
    def lstm_step(state: Any, batch: Any) -> Any:
        (loss_value, (h, c)), g = ln.value_and_grad(loss, has_aux=True)(
            state["params"], state["h"], state["c"], batch["inputs"], batch["targets"]
        )
        g = ln.optim.clip_by_value(g, config.clip)
        params, opt_state = opt.update(g, state["opt"], state["params"])
        return loss_value, {"params": params, "opt": opt_state, "h": h, "c": c}

    return lstm_step


def batches(rng: np.random.Generator, config: Config) -> Iterator[dict[str, np.ndarray]]:
    return data.char_batches(rng, config.seq, config.batch)
