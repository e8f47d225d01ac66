"""The RNN char model in plain NumPy with a hand-written backward pass, as in
Karpathy's min-char-rnn (batched over columns): the paper's NumPy baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def build(name: str, config: Any, state: dict[str, Any]) -> Callable[[dict], float]:
    if name != "rnn":
        raise ValueError(f"numpy peer: only the rnn is written by hand, not {name!r}")
    p = {k: np.array(v) for k, v in state["params"].items()}
    mem = {k: np.array(v) for k, v in state["opt"].items()}
    h_state = [np.array(state["h"])]
    lr, clip, eps = config.lr, config.clip, 1e-8

    def step(batch: dict[str, np.ndarray]) -> float:
        inputs, targets = batch["inputs"], batch["targets"]
        seq, nb = inputs.shape
        hs = {-1: h_state[0]}
        probs = {}
        loss = 0.0
        for t in range(seq):
            hs[t] = np.tanh(p["wxh"][inputs[t]] + hs[t - 1] @ p["whh"] + p["bh"])
            logits = hs[t] @ p["why"] + p["by"]
            logits = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            probs[t] = e / e.sum(axis=1, keepdims=True)
            loss -= np.log(probs[t][np.arange(nb), targets[t]]).sum()
        g = {k: np.zeros_like(v) for k, v in p.items()}
        dh_next = np.zeros_like(hs[0])
        for t in reversed(range(seq)):
            dy = probs[t].copy()
            dy[np.arange(nb), targets[t]] -= 1.0
            dy /= nb
            g["why"] += hs[t].T @ dy
            g["by"] += dy.sum(axis=0)
            dh = dy @ p["why"].T + dh_next
            draw = (1.0 - hs[t] * hs[t]) * dh
            g["bh"] += draw.sum(axis=0)
            np.add.at(g["wxh"], inputs[t], draw)
            g["whh"] += hs[t - 1].T @ draw
            dh_next = draw @ p["whh"].T
        for k in p:
            gk = np.clip(g[k], -clip, clip)
            mem[k] += gk * gk
            p[k] -= lr * gk / np.sqrt(mem[k] + eps)
        h_state[0] = hs[seq - 1]
        return float(loss / nb)

    return step
