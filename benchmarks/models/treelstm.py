"""Binary TreeLSTM sentiment classifier (the paper's TreeLSTM, after Tai et al. 2015).

A leaf reads its word's frozen embedding; an inner node combines its children's
(h, c) with separate forget gates for the left and right child; every node
predicts one of 5 classes and the loss is the sum of the nodes' NLL.

Paper configuration: embedding 300 (frozen), hidden 150, 5 classes, Adagrad
lr 0.05, one tree per step. Trees are SST-like (5 to 50 words, generated; see
`data.py`) and come with the frozen embedding table in each batch, given as index arrays padded to one capacity, so a single compiled
program serves every tree. The model is one recursive `@ln.function`: the
generated code recurses over the tree instead of unrolling it, and the
backward pass runs as the recursion's callbacks return.
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
    embedding: int = 300
    hidden: int = 150
    classes: int = data.CLASSES
    vocab: int = 5000
    min_words: int = 5
    max_words: int = 50
    lr: float = 0.05

    @classmethod
    def small(cls, **kw: Any) -> Config:
        return replace(cls(embedding=16, hidden=12, vocab=40, min_words=3, max_words=8), **kw)


def init(rng: np.random.Generator, config: Config) -> dict[str, Any]:
    e, h = config.embedding, config.hidden
    params = {
        "leaf": ln.nn.init_linear(rng, e, 3 * h),  # i, o, u
        "node": ln.nn.init_linear(rng, 2 * h, 5 * h),  # i, f_left, f_right, o, u
        "out": ln.nn.init_linear(rng, h, config.classes),
    }
    opt = ln.optim.adagrad(config.lr)
    return {"params": params, "opt": opt.init(params)}


@ln.function
def tree_node(i: Any, tree: Any, x: Any, p: Any) -> Any:
    """(h, c, summed loss) of the subtree rooted at node `i`; `x` holds each
    node's word vector (looked up once per tree, outside the recursion)."""
    hid = p["out"]["w"].shape[0]
    if tree["left"][i] < 0:
        z = ln.nn.linear(p["leaf"], x[i])
        c = ln.sigmoid(z[:hid]) * ln.tanh(z[2 * hid :])
        h = ln.sigmoid(z[hid : 2 * hid]) * ln.tanh(c)
        below = 0.0
    else:
        hl, cl, loss_l = tree_node(tree["left"][i], tree, x, p)
        hr, cr, loss_r = tree_node(tree["right"][i], tree, x, p)
        z = ln.nn.linear(p["node"], ln.concatenate([hl, hr]))
        c = (
            ln.sigmoid(z[:hid]) * ln.tanh(z[4 * hid :])
            + ln.sigmoid(z[hid : 2 * hid]) * cl
            + ln.sigmoid(z[2 * hid : 3 * hid]) * cr
        )
        h = ln.sigmoid(z[3 * hid : 4 * hid]) * ln.tanh(c)
        below = loss_l + loss_r
    logp = ln.log_softmax(ln.nn.linear(p["out"], h))
    return h, c, below - logp[tree["labels"][i]]


def loss_fn(params: Any, embedding: Any, tree: Any) -> Any:
    x = ln.take(embedding, tree["words"], axis=0)
    _, _, loss = tree_node(ln.asarray(np.int64(0)), tree, x, params)
    return loss


def make_step(config: Config, backend: str | None = None) -> ln.Jitted:
    opt = ln.optim.adagrad(config.lr)

    @ln.jit(backend=backend)
    def treelstm_step(state: Any, batch: Any) -> Any:
        # The embedding is an argument but not differentiated: it stays frozen.
        loss, g = ln.value_and_grad(loss_fn)(state["params"], batch["embedding"], batch["tree"])
        params, opt_state = opt.update(g, state["opt"], state["params"])
        return loss, {"params": params, "opt": opt_state}

    return treelstm_step


def batches(rng: np.random.Generator, config: Config) -> Iterator[dict[str, Any]]:
    """`{"tree": index arrays, "embedding": the frozen [vocab, embedding] table}`.

    The table is data, not a parameter: it is made once here and every batch
    refers to the same array, so a step neither differentiates nor copies it.
    """
    table = data.embeddings(rng, config.vocab, config.embedding)
    for tree in data.tree_batches(rng, config.min_words, config.max_words, config.vocab):
        yield {"tree": tree, "embedding": table}
