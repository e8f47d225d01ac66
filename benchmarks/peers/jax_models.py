"""The four benchmark models in JAX, each training step one `jax.jit` call,
starting from a lanterna model's initial state.

The sequence models loop with `lax.scan`. The TreeLSTM cannot recurse under
`jit` on data, so it walks the padded node arrays in reverse index order (a
node's children always have larger indices than the node) with `lax.scan`,
computing both the leaf and the inner-node update and selecting one: the usual
way to run a data-dependent tree in one compiled JAX program.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Tree = dict[str, Any]


def _ce_sum(logits: Any, targets: Any) -> Any:
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, targets[:, None], axis=1).sum()


def rnn_loss(p: Tree, h: Any, inputs: Any, targets: Any) -> Any:
    def body(h: Any, xt: Any) -> Any:
        x, t = xt
        h = jnp.tanh(p["wxh"][x] + h @ p["whh"] + p["bh"])
        return h, _ce_sum(h @ p["why"] + p["by"], t)

    h, losses = jax.lax.scan(body, h, (inputs, targets))
    return losses.sum() / inputs.shape[1], (h,)


def lstm_loss(p: Tree, h: Any, c: Any, inputs: Any, targets: Any) -> Any:
    cell, out = p["cell"], p["out"]
    hid = h.shape[1]

    def body(hc: Any, xt: Any) -> Any:
        h, c = hc
        x, t = xt
        z = cell["wx"][x] + h @ cell["wh"] + cell["b"]
        i, f, o = (jax.nn.sigmoid(z[:, k * hid : (k + 1) * hid]) for k in range(3))
        c = f * c + i * jnp.tanh(z[:, 3 * hid :])
        h = o * jnp.tanh(c)
        return (h, c), _ce_sum(h @ out["w"] + out["b"], t)

    (h, c), losses = jax.lax.scan(body, (h, c), (inputs, targets))
    return losses.sum() / inputs.shape[1], (h, c)


def tree_loss(p: Tree, embedding: Any, tree: Tree, used: Any) -> Any:
    hid = p["out"]["w"].shape[0]
    x = embedding[tree["words"]]
    cap = x.shape[0]

    def body(hc: Any, i: Any) -> Any:
        hs, cs = hc
        zl = x[i] @ p["leaf"]["w"] + p["leaf"]["b"]
        c_leaf = jax.nn.sigmoid(zl[:hid]) * jnp.tanh(zl[2 * hid :])
        h_leaf = jax.nn.sigmoid(zl[hid : 2 * hid]) * jnp.tanh(c_leaf)
        left, right = jnp.maximum(tree["left"][i], 0), jnp.maximum(tree["right"][i], 0)
        zn = jnp.concatenate([hs[left], hs[right]]) @ p["node"]["w"] + p["node"]["b"]
        c_node = (
            jax.nn.sigmoid(zn[:hid]) * jnp.tanh(zn[4 * hid :])
            + jax.nn.sigmoid(zn[hid : 2 * hid]) * cs[left]
            + jax.nn.sigmoid(zn[2 * hid : 3 * hid]) * cs[right]
        )
        h_node = jax.nn.sigmoid(zn[3 * hid : 4 * hid]) * jnp.tanh(c_node)
        leaf = tree["left"][i] < 0
        h, c = jnp.where(leaf, h_leaf, h_node), jnp.where(leaf, c_leaf, c_node)
        logp = jax.nn.log_softmax(h @ p["out"]["w"] + p["out"]["b"])
        loss = jnp.where(used[i], -logp[tree["labels"][i]], 0.0)
        return (hs.at[i].set(h), cs.at[i].set(c)), loss

    zeros = jnp.zeros((cap, hid), x.dtype)
    _, losses = jax.lax.scan(body, (zeros, zeros), jnp.arange(cap - 1, -1, -1))
    return losses.sum()


def cnn_loss(p: Tree, images: Any, labels: Any, key: Any, dropout: float) -> Any:
    def conv(x: Any, layer: Tree) -> Any:
        y = jax.lax.conv_general_dilated(x, layer["w"], (1, 1), "VALID")
        return y + layer["b"][None, :, None, None]

    def pool(x: Any) -> Any:
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    h = jax.nn.relu(pool(conv(images, p["conv1"])))
    h = jax.nn.relu(pool(conv(h, p["conv2"])))
    h = jax.nn.relu(h.reshape(images.shape[0], 320) @ p["fc1"]["w"] + p["fc1"]["b"])
    if dropout > 0:
        keep = jax.random.bernoulli(key, 1.0 - dropout, h.shape)
        h = jnp.where(keep, h / (1.0 - dropout), 0.0)
    logp = jax.nn.log_softmax(h @ p["fc2"]["w"] + p["fc2"]["b"])
    return -jnp.take_along_axis(logp, labels[:, None], axis=1).mean()


def _adagrad(lr: float, clip: float | None, params: Any, acc: Any, grads: Any) -> Any:
    if clip is not None:
        grads = jax.tree_util.tree_map(lambda g: jnp.clip(g, -clip, clip), grads)
    acc = jax.tree_util.tree_map(lambda m, g: m + g * g, acc, grads)
    params = jax.tree_util.tree_map(
        lambda x, g, m: x - lr * g / jnp.sqrt(m + 1e-8), params, grads, acc
    )
    return params, acc


@partial(jax.jit, static_argnums=(0, 1))
def _step(name: str, config: Any, params: Any, opt: Any, carry: Any, batch: Any) -> Any:
    if name == "cnn":
        loss, g = jax.value_and_grad(cnn_loss)(
            params, batch["images"], batch["labels"], batch["key"], config.dropout
        )
        params = jax.tree_util.tree_map(lambda x, g: x - config.lr * g, params, g)
        return loss, params, opt, carry
    if name == "treelstm":
        loss, g = jax.value_and_grad(tree_loss)(
            params, batch["embedding"], batch["tree"], batch["used"]
        )
        params, opt = _adagrad(config.lr, None, params, opt, g)
        return loss, params, opt, carry
    loss_fn = rnn_loss if name == "rnn" else lstm_loss
    (loss, carry), g = jax.value_and_grad(loss_fn, has_aux=True)(
        params, *carry, batch["inputs"], batch["targets"]
    )
    params, opt = _adagrad(config.lr, config.clip, params, opt, g)
    return loss, params, opt, carry


def build(name: str, config: Any, state: dict[str, Any]) -> Callable[[dict], float]:
    to_jax = partial(jax.tree_util.tree_map, jnp.asarray)
    held = {
        "params": to_jax(state["params"]),
        "opt": to_jax(state["opt"]) if name != "cnn" else (),
        "carry": tuple(jnp.asarray(state[k]) for k in ("h", "c") if k in state),
    }
    embedding: list[Any] = []

    def step(batch: dict[str, Any]) -> float:
        if name == "treelstm":
            if not embedding:  # the frozen table: one device copy, as the model shares one array
                embedding.append(jnp.asarray(batch["embedding"]))
            tree = batch["tree"]
            nodes = 2 * int((tree["left"] >= 0).sum()) + 1
            batch = {
                "tree": tree,
                "embedding": embedding[0],
                "used": np.arange(len(tree["left"])) < nodes,
            }
        elif name == "cnn":
            batch = {**batch, "key": jax.random.PRNGKey(int(batch["seed"]))}
            del batch["seed"]
        loss, held["params"], held["opt"], held["carry"] = _step(
            name, config, held["params"], held["opt"], held["carry"], batch
        )
        return float(loss)

    return step
