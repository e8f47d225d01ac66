"""The four benchmark models in DyNet (2.1.2), starting from a lanterna model's
initial state: a new computation graph per step, built by Python code as a
DyNet user writes it, then forward, backward and the trainer's update.

Installing DyNet (not in the `[bench]` extra: it builds from source and needs
Eigen's headers and the build environment below, which a plain
`pip install` does not give it):

    apt-get install -y libeigen3-dev          # /usr/include/eigen3
    pip install "cython<3" wheel
    EIGEN3_INCLUDE_DIR=/usr/include/eigen3 pip install --no-build-isolation dynet

(about 5 minutes on 2 cores; its Cython sources predate Cython 3, and it
builds against NumPy 2). The build is CPU-only, without OpenMP or BLAS: DyNet
runs every op on one thread whatever the thread setting.

Layouts: DyNet computes `W x` with column vectors, so a lanterna weight used as
`x @ w` is loaded transposed; the character tables are lookup parameters (the
one-hot input times the table is a row lookup, as in the other peers). Images
go in as (width, height, channels) with the filters swapped to match, so that
flattening DyNet's column-major conv output gives PyTorch's (C, H, W) order
and `fc1` takes lanterna's weights unchanged.

Optimizers: DyNet's own trainers. `AdagradTrainer` applies
`m += g*g; p -= lr * g / sqrt(m + eps)`, as the other peers, once its epsilon
is set to theirs (1e-8; DyNet's default is 1e-20). DyNet's trainers clip by the
global gradient norm (on by default, at 5), not per element: that is turned
off everywhere, and the RNN and LSTM are not clipped per element (see `note`).
That changes a step only where a gradient element passes 5, which the RNN at
batch 1 reaches within its first 20 steps; its losses then part from the
others' as they already do through Adagrad's sign flips (see run.py).
The CNN uses `SimpleSGDTrainer`. The TreeLSTM's graphs are autobatched
(`renew_cg(autobatching=True)`), DyNet's answer to tree-shaped models.

Memory: DyNet allocates and touches its memory pools at import (512 MB by
default); they grow on demand, so this module starts them small and a row's
peak RSS shows what the model used rather than the default reservation.
Importing this module configures DyNet, so it must come before any other
import of `dynet` in the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dynet_config
import numpy as np

# Must precede `import dynet`, which initializes DyNet with these settings.
dynet_config.set(mem="32", random_seed=1, autobatch=0)

import dynet

# `dynet` re-exports a Cython extension without type information: check calls into it as Any.
dy: Any = dynet

ADAGRAD_EPS = 1e-8
Tree = dict[str, Any]


def note(name: str) -> str:
    """What this peer does differently from the others, for the results row."""
    if name in ("rnn", "lstm"):
        return "no per-element clipping: DyNet's trainers clip by global norm only (off here)"
    if name == "treelstm":
        return "autobatching on"
    return ""


def _transposed(pc: Any, tree: Tree) -> Tree:
    """Lanterna parameters as DyNet parameters, matrices transposed (`W x == x @ w`)."""
    return {k: pc.parameters_from_numpy(np.ascontiguousarray(v.T)) for k, v in tree.items()}


def _batched(arr: np.ndarray) -> Any:
    """A DyNet input whose last dimension is the batch. `inputTensor(batched=True)`
    rejects a batch of one, so that goes in unbatched, which DyNet treats the same."""
    if arr.shape[-1] == 1:
        return dy.inputTensor(np.ascontiguousarray(arr[..., 0]))
    return dy.inputTensor(np.ascontiguousarray(arr), batched=True)


def _trained(param: Any) -> Any:
    """The parameter in the current graph; DyNet 2.1's `expr()` defaults to a constant."""
    return param.expr(update=True)


def _no_global_clip(trainer: Any) -> Any:
    trainer.set_clip_threshold(0)  # <= 0 turns DyNet's global-norm clipping off
    return trainer


class CharLM:
    """The RNN or LSTM character model, batched: one `lookup_batch` per time step
    for the whole batch, which rides in DyNet's batch dimension. The object holds
    the ParameterCollection: DyNet's trainer does not keep it alive by itself."""

    def __init__(self, name: str, config: Any, state: dict[str, Any]) -> None:
        self.name, self.hid = name, config.hidden
        self.pc = dy.ParameterCollection()
        p = state["params"]
        if name == "rnn":
            self.table = self.pc.lookup_parameters_from_numpy(p["wxh"])
            inner = {"wh": p["whh"], "b": p["bh"], "w_out": p["why"], "b_out": p["by"]}
        else:
            self.table = self.pc.lookup_parameters_from_numpy(p["cell"]["wx"])
            cell, out = p["cell"], p["out"]
            inner = {"wh": cell["wh"], "b": cell["b"], "w_out": out["w"], "b_out": out["b"]}
        self.w = _transposed(self.pc, inner)
        self.trainer = _no_global_clip(dy.AdagradTrainer(self.pc, config.lr, ADAGRAD_EPS))
        # Carried [hidden, batch]: the last dimension of a batched DyNet input is the batch.
        self.carry = [state[k].T for k in ("h", "c") if k in state]

    def cell(self, x: Any, h: Any, c: Any, e: Tree) -> tuple[Any, Any]:
        z = x + dy.affine_transform([e["b"], e["wh"], h])
        if self.name == "rnn":
            return dy.tanh(z), None
        hid = self.hid
        i, f, o = (dy.logistic(dy.pick_range(z, k * hid, (k + 1) * hid)) for k in range(3))
        c = dy.cmult(f, c) + dy.cmult(i, dy.tanh(dy.pick_range(z, 3 * hid, 4 * hid)))
        return dy.cmult(o, dy.tanh(c)), c

    def __call__(self, batch: dict[str, np.ndarray]) -> float:
        dy.renew_cg()
        inputs, targets = batch["inputs"].tolist(), batch["targets"].tolist()
        nb = len(inputs[0])
        e = {k: _trained(v) for k, v in self.w.items()}
        h = _batched(self.carry[0])
        c = _batched(self.carry[1]) if self.name == "lstm" else None
        losses = []
        for x_t, y_t in zip(inputs, targets):
            h, c = self.cell(dy.lookup_batch(self.table, x_t), h, c, e)
            logits = dy.affine_transform([e["b_out"], e["w_out"], h])
            losses.append(dy.pickneglogsoftmax_batch(logits, y_t))
        loss = dy.sum_batches(dy.esum(losses)) * (1.0 / nb)
        value = loss.value()
        self.carry = [x.npvalue().reshape(self.hid, nb) for x in (h, c) if x is not None]
        loss.backward()
        self.trainer.update()
        return value


class TreeLSTM:
    """The binary TreeLSTM, built by recursing over the tree in Python; DyNet's
    autobatching groups the nodes' ops. The frozen embedding table is a lookup
    parameter outside the trained collection, read with `update=False`."""

    def __init__(self, config: Any, state: dict[str, Any]) -> None:
        self.hid = config.hidden
        self.pc = dy.ParameterCollection()
        self.w = {
            layer: _transposed(self.pc, state["params"][layer]) for layer in ("leaf", "node", "out")
        }
        self.trainer = _no_global_clip(dy.AdagradTrainer(self.pc, config.lr, ADAGRAD_EPS))
        self.frozen = dy.ParameterCollection()
        self.table: Any = None

    def node(self, i: int, tree: dict[str, list[int]], e: Tree, losses: list[Any]) -> Any:
        hid = self.hid

        def gate(z: Any, k: int) -> Any:
            return dy.pick_range(z, k * hid, (k + 1) * hid)

        left = tree["left"][i]
        if left < 0:
            x = dy.lookup(self.table, tree["words"][i], update=False)
            z = dy.affine_transform([e["leaf"]["b"], e["leaf"]["w"], x])
            c = dy.cmult(dy.logistic(gate(z, 0)), dy.tanh(gate(z, 2)))
            h = dy.cmult(dy.logistic(gate(z, 1)), dy.tanh(c))
        else:
            hl, cl = self.node(left, tree, e, losses)
            hr, cr = self.node(tree["right"][i], tree, e, losses)
            z = dy.affine_transform([e["node"]["b"], e["node"]["w"], dy.concatenate([hl, hr])])
            c = (
                dy.cmult(dy.logistic(gate(z, 0)), dy.tanh(gate(z, 4)))
                + dy.cmult(dy.logistic(gate(z, 1)), cl)
                + dy.cmult(dy.logistic(gate(z, 2)), cr)
            )
            h = dy.cmult(dy.logistic(gate(z, 3)), dy.tanh(c))
        logits = dy.affine_transform([e["out"]["b"], e["out"]["w"], h])
        losses.append(dy.pickneglogsoftmax(logits, tree["labels"][i]))
        return h, c

    def __call__(self, batch: dict[str, Any]) -> float:
        if self.table is None:  # the frozen table: loaded once, as the model shares one array
            self.table = self.frozen.lookup_parameters_from_numpy(batch["embedding"])
        dy.renew_cg(autobatching=True)
        tree = {k: v.tolist() for k, v in batch["tree"].items()}
        e = {layer: {k: _trained(v) for k, v in ps.items()} for layer, ps in self.w.items()}
        losses: list[Any] = []
        self.node(0, tree, e, losses)
        loss = dy.esum(losses)
        value = loss.value()
        loss.backward()
        self.trainer.update()
        return value


class CNN:
    """The digit CNN with `conv2d_bias` and `maxpooling2d`, trained by plain SGD."""

    def __init__(self, config: Any, state: dict[str, Any]) -> None:
        self.dropout = config.dropout
        self.pc = dy.ParameterCollection()
        p = state["params"]
        # Images enter as (W, H, C), so the filters are (kW, kH, C_in, C_out): lanterna's
        # OIHW reversed; see the module docstring.
        self.w = {
            layer: {
                "w": self.pc.parameters_from_numpy(np.ascontiguousarray(p[layer]["w"].T)),
                "b": self.pc.parameters_from_numpy(p[layer]["b"]),
            }
            for layer in ("conv1", "conv2")
        }
        self.w.update({layer: _transposed(self.pc, p[layer]) for layer in ("fc1", "fc2")})
        self.trainer = _no_global_clip(dy.SimpleSGDTrainer(self.pc, config.lr))

    def __call__(self, batch: dict[str, np.ndarray]) -> float:
        dy.renew_cg()
        e = {layer: {k: _trained(v) for k, v in ps.items()} for layer, ps in self.w.items()}
        images = batch["images"]  # [N, C, H, W]
        nb = images.shape[0]
        h = _batched(images.transpose(3, 2, 1, 0))
        for layer in ("conv1", "conv2"):
            h = dy.conv2d_bias(h, e[layer]["w"], e[layer]["b"], [1, 1], is_valid=True)
            h = dy.rectify(dy.maxpooling2d(h, [2, 2], [2, 2], is_valid=True))
        h = dy.reshape(h, (320,), batch_size=nb)
        h = dy.rectify(dy.affine_transform([e["fc1"]["b"], e["fc1"]["w"], h]))
        if self.dropout > 0:
            h = dy.dropout(h, self.dropout)  # inverted: kept units scaled by 1 / (1 - p)
        logits = dy.affine_transform([e["fc2"]["b"], e["fc2"]["w"], h])
        loss = dy.sum_batches(dy.pickneglogsoftmax_batch(logits, batch["labels"].tolist()))
        loss = loss * (1.0 / nb)
        value = loss.value()
        loss.backward()
        self.trainer.update()
        return value


def build(name: str, config: Any, state: dict[str, Any]) -> Callable[[dict], float]:
    if name in ("rnn", "lstm"):
        return CharLM(name, config, state)
    if name == "treelstm":
        return TreeLSTM(config, state)
    if name == "cnn":
        return CNN(config, state)
    raise ValueError(f"dynet peer: no model {name!r}")
