"""The four benchmark models in PyTorch (eager, or with `torch.compile` over the
whole training step), starting from a lanterna model's initial state.

Same equations and update rules as benchmarks/models: Adagrad as min-char-rnn
(`m += g*g; p -= lr * g / sqrt(m + 1e-8)`), clipping by value, plain SGD for the
CNN. The TreeLSTM recurses over the tree in Python, as a PyTorch user writes it;
`torch.compile` is not offered for it (every tree shape would be a new graph).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Tree = dict[str, Any]


def _tensors(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _tensors(v) for k, v in tree.items()}
    return torch.tensor(np.asarray(tree))


def _leaves(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _leaves(tree[k])]
    return [tree]


def rnn_loss(p: Tree, h: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
    loss = torch.zeros(())
    for t in range(inputs.shape[0]):
        h = torch.tanh(p["wxh"][inputs[t]] + h @ p["whh"] + p["bh"])
        loss = loss + F.cross_entropy(h @ p["why"] + p["by"], targets[t], reduction="sum")
    return loss / inputs.shape[1], (h,)


def lstm_loss(p: Tree, h: torch.Tensor, c: torch.Tensor, inputs: Any, targets: Any) -> Any:
    cell, out = p["cell"], p["out"]
    hid = h.shape[1]
    loss = torch.zeros(())
    for t in range(inputs.shape[0]):
        z = cell["wx"][inputs[t]] + h @ cell["wh"] + cell["b"]  # one-hot @ wx is a row lookup
        i, f, o = (torch.sigmoid(z[:, k * hid : (k + 1) * hid]) for k in range(3))
        c = f * c + i * torch.tanh(z[:, 3 * hid :])
        h = o * torch.tanh(c)
        loss = loss + F.cross_entropy(h @ out["w"] + out["b"], targets[t], reduction="sum")
    return loss / inputs.shape[1], (h, c)


def tree_node(i: int, tree: dict[str, np.ndarray], x: torch.Tensor, p: Tree) -> Any:
    hid = p["out"]["w"].shape[0]
    if tree["left"][i] < 0:
        z = x[i] @ p["leaf"]["w"] + p["leaf"]["b"]
        c = torch.sigmoid(z[:hid]) * torch.tanh(z[2 * hid :])
        h = torch.sigmoid(z[hid : 2 * hid]) * torch.tanh(c)
        below = 0.0
    else:
        hl, cl, loss_l = tree_node(int(tree["left"][i]), tree, x, p)
        hr, cr, loss_r = tree_node(int(tree["right"][i]), tree, x, p)
        z = torch.cat([hl, hr]) @ p["node"]["w"] + p["node"]["b"]
        c = (
            torch.sigmoid(z[:hid]) * torch.tanh(z[4 * hid :])
            + torch.sigmoid(z[hid : 2 * hid]) * cl
            + torch.sigmoid(z[2 * hid : 3 * hid]) * cr
        )
        h = torch.sigmoid(z[3 * hid : 4 * hid]) * torch.tanh(c)
        below = loss_l + loss_r
    logp = torch.log_softmax(h @ p["out"]["w"] + p["out"]["b"], dim=0)
    return h, c, below - logp[int(tree["labels"][i])]


def cnn_loss(p: Tree, images: torch.Tensor, labels: torch.Tensor, dropout: float) -> Any:
    h = F.relu(F.max_pool2d(F.conv2d(images, p["conv1"]["w"], p["conv1"]["b"]), 2))
    h = F.relu(F.max_pool2d(F.conv2d(h, p["conv2"]["w"], p["conv2"]["b"]), 2))
    h = F.relu(h.reshape(images.shape[0], 320) @ p["fc1"]["w"] + p["fc1"]["b"])
    h = F.dropout(h, dropout, training=dropout > 0)
    return F.nll_loss(torch.log_softmax(h @ p["fc2"]["w"] + p["fc2"]["b"], dim=1), labels)


def build(
    name: str, config: Any, state: dict[str, Any], compile: bool = False
) -> Callable[[dict], float]:
    params = _tensors(state["params"])
    leaves = _leaves(params)
    for x in leaves:
        x.requires_grad_(True)
    acc = [torch.zeros_like(x) for x in leaves]
    carry = [torch.tensor(np.asarray(state[k])) for k in ("h", "c") if k in state]

    def update(grads: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for x, g, m in zip(leaves, grads, acc):
                if name == "cnn":
                    x -= config.lr * g
                    continue
                if name in ("rnn", "lstm"):
                    g = g.clamp(-config.clip, config.clip)
                m += g * g
                x -= config.lr * g / torch.sqrt(m + 1e-8)

    def train_step(*args: torch.Tensor) -> Any:
        if name == "rnn":
            loss, new = rnn_loss(params, *args)
        elif name == "lstm":
            loss, new = lstm_loss(params, *args)
        else:
            images, labels = args
            loss, new = cnn_loss(params, images, labels, config.dropout), ()
        grads = torch.autograd.grad(loss, leaves)
        update(list(grads))
        return loss.detach(), tuple(x.detach() for x in new)

    if compile:
        if name == "treelstm":
            raise NotImplementedError("torch.compile: a new graph per tree shape")
        train_step = torch.compile(train_step)

    def step(batch: dict[str, Any]) -> float:
        if name == "treelstm":
            tree = batch["tree"]
            x = torch.from_numpy(batch["embedding"])[torch.from_numpy(tree["words"])]
            _, _, loss = tree_node(0, tree, x, params)
            update(list(torch.autograd.grad(loss, leaves)))
            return float(loss.detach())
        if name == "cnn":
            args = (torch.from_numpy(batch["images"]), torch.from_numpy(batch["labels"]))
        else:
            args = (*carry, torch.from_numpy(batch["inputs"]), torch.from_numpy(batch["targets"]))
        loss, new = train_step(*args)
        carry[:] = list(new)
        return float(loss)

    return step
