"""Convolutional digit classifier (the paper's CNN, PyTorch's MNIST example net).

    conv 1->10 k5, maxpool 2, relu, conv 10->20 k5, maxpool 2, relu,
    linear 320->50, relu, dropout 0.5, linear 50->10, log_softmax + NLL

Trained with plain SGD at batch 100 and batch 1. The images are generated
28x28 seven-segment-style digits (`data.py`), not MNIST. Each batch carries an
integer seed for the dropout mask, as an array so a new seed is not a new
trace. Forward, backward and the SGD update are one compiled call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import lanterna as ln

from . import data


@dataclass(frozen=True)
class Config:
    batch: int = 100
    lr: float = 0.05
    dropout: float = 0.5

    @classmethod
    def small(cls, **kw: Any) -> Config:
        return replace(cls(batch=16, lr=0.1), **kw)


def init(rng: np.random.Generator, config: Config) -> dict[str, Any]:
    params = {
        "conv1": ln.nn.init_conv(rng, 1, 10, 5),
        "conv2": ln.nn.init_conv(rng, 10, 20, 5),
        "fc1": ln.nn.init_linear(rng, 320, 50),
        "fc2": ln.nn.init_linear(rng, 50, 10),
    }
    return {"params": params, "opt": ln.optim.sgd(config.lr).init(params)}


def forward(params: Any, images: Any, seed: Any, rate: float) -> Any:
    """Log-probabilities [batch, 10]; dropout with `rate` (0 at evaluation)."""
    h = ln.relu(ln.max_pool2d(ln.nn.conv2d_layer(params["conv1"], images), 2))
    h = ln.relu(ln.max_pool2d(ln.nn.conv2d_layer(params["conv2"], h), 2))
    h = ln.relu(ln.nn.linear(params["fc1"], ln.reshape(h, (images.shape[0], 320))))
    if rate > 0:
        h = ln.dropout(h, rate, seed)
    return ln.log_softmax(ln.nn.linear(params["fc2"], h))


def make_step(config: Config, backend: str | None = None) -> ln.Jitted:
    opt = ln.optim.sgd(config.lr)

    def loss_fn(params: Any, images: Any, labels: Any, seed: Any) -> Any:
        return ln.nll_loss(forward(params, images, seed, config.dropout), labels)

    @ln.jit(backend=backend)
    def cnn_step(state: Any, batch: Any) -> Any:
        loss, g = ln.value_and_grad(loss_fn)(
            state["params"], batch["images"], batch["labels"], batch["seed"]
        )
        params, opt_state = opt.update(g, state["opt"], state["params"])
        return loss, {"params": params, "opt": opt_state}

    return cnn_step


def batches(rng: np.random.Generator, config: Config) -> Iterator[dict[str, np.ndarray]]:
    return data.digit_batches(rng, config.batch)
