"""@ln.function: one func.func per signature, recursion over trees given as index
arrays (one recursive function, not an unrolled tree), and a TreeLSTM trained
through it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(7)
CAPACITY = 9  # trees of up to 5 leaves, padded to 9 nodes


def random_tree(leaves: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random binary tree as (left, right) child arrays; node 0 is the root,
    a leaf has left == right == -1, unused slots up to CAPACITY are leaves too."""
    left = np.full(CAPACITY, -1, np.int64)
    right = np.full(CAPACITY, -1, np.int64)
    count = 1

    def grow(node: int, n: int) -> None:
        nonlocal count
        if n == 1:
            return
        k = int(rng.integers(1, n))
        left[node], right[node] = count, count + 1
        count += 2
        grow(left[node], k)
        grow(right[node], n - k)

    grow(0, leaves)
    return left, right


def func_names(ir: str) -> list[str]:
    return re.findall(r"func\.func @(\w+)", ir)


# --- staged functions -----------------------------------------------------------------------


def test_one_func_per_signature_and_calls():
    @ln.function
    def affine(x, w, scale):
        return x @ w * scale

    @ln.jit
    def f(x, w, v):
        return affine(x, w, 2.0) + affine(x, w, 2.0) + affine(v, w, 3.0)

    x, w = RNG.standard_normal((2, 3)), RNG.standard_normal((3, 3))
    ir = str(f.lower(x, w, x))
    assert func_names(ir) == ["f", "affine", "affine_1"]  # 2.0 and 3.0 are static
    assert ir.count("func.call @affine(") == 2 and ir.count("func.call @affine_1(") == 1
    np.testing.assert_allclose(f(x, w, x), x @ w * 7.0)


def test_staged_function_outside_a_trace_is_jitted():
    @ln.function
    def double(x):
        return x * 2.0

    np.testing.assert_allclose(double(np.arange(3.0)), [0.0, 2.0, 4.0])


def test_staged_function_pytree_arguments_and_results():
    @ln.function
    def step(state, p):
        return {"h": ln.tanh(state["h"] @ p[0]), "n": state["n"] + 1}

    @ln.jit
    def f(h, w):
        s = step(step({"h": h, "n": np.int64(0)}, [w]), [w])
        return s["h"], s["n"]

    h, w = RNG.standard_normal(3), RNG.standard_normal((3, 3))
    out, n = f(h, w)
    np.testing.assert_allclose(out, np.tanh(np.tanh(h @ w) @ w))
    assert int(n) == 2


# --- recursion over a tree ------------------------------------------------------------------


@ln.function
def score(i, left, right, feat, w, u):
    """Leaves score u * feat[i]; inner nodes tanh(w * (left + right) + feat[i])."""
    if left[i] < 0:
        return feat[i] * u
    a = score(left[i], left, right, feat, w, u)
    b = score(right[i], left, right, feat, w, u)
    return ln.tanh((a + b) * w + feat[i])


def score_numpy(i, left, right, feat, w, u):
    if left[i] < 0:
        return feat[i] * u
    a = score_numpy(left[i], left, right, feat, w, u)
    b = score_numpy(right[i], left, right, feat, w, u)
    return np.tanh((a + b) * w + feat[i])


@ln.jit
def tree_score(feat, w, u, left, right):
    return score(ln.asarray(np.int64(0)), left, right, feat, w, u)


def test_recursion_is_one_recursive_function_serving_every_tree():
    feat, w, u = RNG.standard_normal(CAPACITY), np.array(0.7), np.array(1.3)
    trees = [random_tree(n, RNG) for n in (5, 3, 4, 1)]
    ir = str(tree_score.lower(feat, w, u, *trees[0]))
    assert func_names(ir) == ["tree_score", "score"]
    body = ir.split("func.func @score")[1]
    assert body.count("func.call @score(") == 2  # it calls itself: not unrolled
    for left, right in trees:
        got = float(tree_score(feat, w, u, left, right))
        assert got == pytest.approx(
            score_numpy(0, left, right, feat, float(w), float(u)), rel=1e-12
        )
    assert tree_score.trace_count == 1


def test_grad_through_recursion_matches_finite_differences():
    feat, w, u = RNG.standard_normal(CAPACITY), np.array(0.7), np.array(1.3)
    left, right = random_tree(5, RNG)
    ln.check_grads(tree_score, [feat, w, u, left, right], argnums=(0, 1, 2))


def test_nested_control_flow_loop_in_branch_in_recursion():
    @ln.function
    def walk(i, left, right, x, w):
        if left[i] < 0:
            h = x[i]
            while h * h < 4.0:  # a data-dependent loop inside a branch of a recursion
                h = h * w + 0.3
            return h
        else:
            a = walk(left[i], left, right, x, w)
            b = walk(right[i], left, right, x, w)
            return ln.tanh(a * 0.5 + b * w)

    @ln.jit
    def f(x, w, left, right):
        return walk(ln.asarray(np.int64(0)), left, right, x, w)

    left, right = random_tree(4, RNG)
    x, w = np.abs(RNG.standard_normal(CAPACITY)) * 0.5 + 0.1, np.array(1.7)
    ir = str(f.lower(x, w, left, right))
    assert "scf.while" in ir and ir.split("func.func @walk")[1].count("func.call @walk(") == 2
    ln.check_grads(f, [x, w, left, right], argnums=(0, 1))


def test_result_types_can_be_declared():
    @ln.function(result_shape=ln.ShapeDtypeStruct((), np.float64))
    def down(n, x):
        # Every path calls itself before its result is known: the probe cannot
        # find the types, the declaration gives them.
        y = down(n, x) if False else x
        return ln.cond(n > 0, lambda: down(n - 1, x * 2.0), lambda: y)

    @ln.jit
    def f(x, n):
        return down(n, x)

    assert float(f(np.array(1.5), np.int64(3))) == 12.0


def test_every_path_recursing_is_a_clear_error():
    @ln.function
    def forever(x):
        return forever(x * 2.0)

    with pytest.raises(ln.TraceError, match="result_shape"):
        ln.jit(lambda x: forever(x))(np.ones(2))


# --- a TreeLSTM -----------------------------------------------------------------------------

VOCAB, EMB, HID, CLASSES = 6, 3, 2, 3
PARAM_NAMES = ("emb", "w_leaf", "b_leaf", "u_node", "b_node", "w_out", "b_out")


def init_params(rng: np.random.Generator) -> list[np.ndarray]:
    shapes = [
        (VOCAB, EMB),
        (EMB, 3 * HID),
        (3 * HID,),
        (2 * HID, 5 * HID),
        (5 * HID,),
        (HID, CLASSES),
        (CLASSES,),
    ]
    return [rng.standard_normal(s) * 0.5 for s in shapes]


@ln.function
def tree_lstm(i, tree, p):
    """(h, c, loss) of the subtree at node i: a binary TreeLSTM with separate
    left and right forget gates, and a softmax + NLL loss at every node."""
    left, right, words, labels = tree
    if left[i] < 0:
        x = p["emb"][words[i]]
        g = x @ p["w_leaf"] + p["b_leaf"]
        c = ln.sigmoid(g[:HID]) * ln.tanh(g[2 * HID :])
        h = ln.sigmoid(g[HID : 2 * HID]) * ln.tanh(c)
        below = 0.0
    else:
        hl, cl, loss_l = tree_lstm(left[i], tree, p)
        hr, cr, loss_r = tree_lstm(right[i], tree, p)
        g = ln.concatenate([hl, hr]) @ p["u_node"] + p["b_node"]
        gate_in = ln.sigmoid(g[:HID])
        forget_l = ln.sigmoid(g[HID : 2 * HID])
        forget_r = ln.sigmoid(g[2 * HID : 3 * HID])
        gate_out = ln.sigmoid(g[3 * HID : 4 * HID])
        c = gate_in * ln.tanh(g[4 * HID :]) + forget_l * cl + forget_r * cr
        h = gate_out * ln.tanh(c)
        below = loss_l + loss_r
    logp = ln.log_softmax(h @ p["w_out"] + p["b_out"])
    return h, c, below - logp[labels[i]]


def treelstm_loss(emb, w_leaf, b_leaf, u_node, b_node, w_out, b_out, left, right, words, labels):
    p = dict(zip(PARAM_NAMES, (emb, w_leaf, b_leaf, u_node, b_node, w_out, b_out)))
    _, _, loss = tree_lstm(ln.asarray(np.int64(0)), (left, right, words, labels), p)
    return loss


def random_example(leaves: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Labels that can be learnt: a leaf's is its word mod CLASSES, an inner node's 0."""
    left, right = random_tree(leaves, rng)
    words = rng.integers(0, VOCAB, CAPACITY)
    labels = np.where(left < 0, words % CLASSES, 0)
    return [left, right, words, labels]


def test_treelstm_is_one_recursive_function():
    params, tree = init_params(RNG), random_example(4, RNG)
    ir = str(ln.jit(treelstm_loss).lower(*params, *tree))
    assert func_names(ir) == ["treelstm_loss", "tree_lstm"]
    assert ir.split("func.func @tree_lstm")[1].count("func.call @tree_lstm(") == 2


def test_treelstm_gradients_match_finite_differences():
    params, tree = init_params(RNG), random_example(4, RNG)
    ln.check_grads(treelstm_loss, [*params, *tree], argnums=tuple(range(len(params))))


def test_treelstm_sgd_lowers_the_loss():
    rng = np.random.default_rng(3)
    params = init_params(rng)
    trees = [random_example(n, rng) for n in (5, 3, 4)]
    step = ln.jit(ln.value_and_grad(treelstm_loss, argnums=tuple(range(len(params)))))
    losses = []
    for _ in range(10):
        total = 0.0
        for tree in trees:
            loss, grads = step(*params, *tree)
            total += float(loss)
            params = [p - 0.3 * g for p, g in zip(params, grads)]
        losses.append(total)
    assert losses[-1] < 0.7 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:3])
    assert step.trace_count == 1  # one compiled program for trees of every shape


def test_treelstm_on_the_cpu_backend_matches_the_interpreter():
    rng = np.random.default_rng(11)
    params, tree = init_params(rng), random_example(5, rng)
    argnums = tuple(range(len(params)))
    on_cpu = ln.jit(ln.value_and_grad(treelstm_loss, argnums=argnums), backend="cpu")
    on_interp = ln.jit(ln.value_and_grad(treelstm_loss, argnums=argnums), backend="interp")
    (loss_c, grads_c), (loss_i, grads_i) = on_cpu(*params, *tree), on_interp(*params, *tree)
    assert float(loss_c) == pytest.approx(float(loss_i), rel=1e-12)
    for gc, gi in zip(grads_c, grads_i):
        np.testing.assert_allclose(gc, gi, rtol=1e-10, atol=1e-12)
    # Another tree shape: the same compiled program.
    on_cpu(*params, *random_example(3, rng))
    assert on_cpu.trace_count == 1


def test_treelstm_cpp_has_a_recursive_function_not_an_unrolled_tree():
    import re

    from lanterna.backends.cpu_cpp import render_cpp
    from lanterna.passes import run_pipeline

    rng = np.random.default_rng(5)
    params, tree = init_params(rng), random_example(4, rng)
    argnums = tuple(range(len(params)))
    lowered = ln.jit(ln.value_and_grad(treelstm_loss, argnums=argnums), backend="cpu").lower(
        *params, *tree
    )
    module = lowered.module
    run_pipeline(module, "lower-continuations,cse,dce")
    source = render_cpp(module)
    recursive = []
    for chunk in source.split("\nstatic ")[1:]:
        header, _, body = chunk.partition("{")
        name = re.search(r"(fn_\w+)\(", header)
        if name and "{" in chunk and f"{name.group(1)}(" in body:
            recursive.append(name.group(1))
    assert recursive, "no generated C++ function calls itself"
    # The number of tanh calls does not grow with the tree: nothing is unrolled.
    bigger = ln.jit(ln.value_and_grad(treelstm_loss, argnums=argnums), backend="cpu").lower(
        *params, *random_example(2, np.random.default_rng(6))
    )
    run_pipeline(bigger.module, "lower-continuations,cse,dce")
    assert render_cpp(bigger.module).count("std::tanh") == source.count("std::tanh")
