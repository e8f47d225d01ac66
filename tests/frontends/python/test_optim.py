"""ln.optim: each optimizer's update against a numpy transcription of its rule,
clipping against numpy, and every optimizer lowering a loss when forward,
backward and update are one jitted call."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln

RNG = np.random.default_rng(17)


def params_and_grads(step: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(100 + step)
    p = {"w": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2)]}
    g = {"w": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2)]}
    return p, g


def numpy_reference(name: str, steps: list[np.ndarray], p: np.ndarray) -> np.ndarray:
    """The textbook rules, one leaf at a time."""
    lr = 0.1
    v = np.zeros_like(p)
    m2 = np.zeros_like(p)
    for t, g in enumerate(steps, start=1):
        if name == "sgd":
            p = p - lr * g
        elif name == "momentum":
            v = 0.9 * v + g
            p = p - lr * v
        elif name == "adagrad":
            m2 = m2 + g * g
            p = p - lr * g / np.sqrt(m2 + 1e-8)
        elif name == "adam":
            v = 0.9 * v + 0.1 * g
            m2 = 0.999 * m2 + 0.001 * g * g
            p = p - lr * (v / (1 - 0.9**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
    return p


OPTIMIZERS = {
    "sgd": lambda: ln.optim.sgd(0.1),
    "momentum": lambda: ln.optim.momentum(0.1, beta=0.9),
    "adagrad": lambda: ln.optim.adagrad(0.1, eps=1e-8),
    "adam": lambda: ln.optim.adam(0.1, b1=0.9, b2=0.999, eps=1e-8),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("backend", ["eager", "interp", "cpu"])
def test_update_matches_numpy_for_a_few_steps(name, backend):
    opt = OPTIMIZERS[name]()
    params, _ = params_and_grads(0)
    start = {"w": params["w"].copy(), "b": [params["b"][0].copy()]}
    state = opt.init(params)
    update = opt.update if backend == "eager" else ln.jit(opt.update, backend=backend)
    grads = [params_and_grads(k + 1)[1] for k in range(4)]
    for g in grads:
        params, state = update(g, state, params)
    if backend != "eager":
        assert update.trace_count == 1  # the state keeps its shapes and dtypes
    np.testing.assert_allclose(
        params["w"], numpy_reference(name, [g["w"] for g in grads], start["w"]), rtol=1e-12
    )
    np.testing.assert_allclose(
        params["b"][0],
        numpy_reference(name, [g["b"][0] for g in grads], start["b"][0]),
        rtol=1e-12,
    )


def test_state_has_the_parameters_structure_and_dtypes():
    p = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
    s = ln.optim.adam(0.1).init(p)
    assert s["mu"]["w"].shape == (2, 2) and s["nu"]["b"].dtype == np.float32
    assert ln.optim.sgd(0.1).init(p) == ()
    new, s2 = ln.jit(ln.optim.adam(0.1).update, backend="interp")(p, s, p)
    assert new["w"].dtype == np.float32 and int(s2["count"]) == 1


def test_mismatched_trees_are_an_error():
    opt = ln.optim.momentum(0.1)
    p = {"w": np.ones(2)}
    with pytest.raises(ln.TraceError, match="structure"):
        opt.update({"v": np.ones(2)}, opt.init(p), p)


@pytest.mark.parametrize("backend", ["eager", "cpu"])
def test_clip_by_value_matches_numpy(backend):
    g = {"a": RNG.standard_normal((4, 3)) * 4, "b": (RNG.standard_normal(5) * 4,)}
    clip = (
        (lambda t: ln.optim.clip_by_value(t, 2.5))
        if backend == "eager"
        else ln.jit(lambda t: ln.optim.clip_by_value(t, 2.5), backend=backend)
    )
    out = clip(g)
    np.testing.assert_array_equal(out["a"], np.clip(g["a"], -2.5, 2.5))
    np.testing.assert_array_equal(out["b"][0], np.clip(g["b"][0], -2.5, 2.5))


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_by_global_norm_matches_numpy(max_norm):
    g = {"a": RNG.standard_normal((4, 3)), "b": RNG.standard_normal(5)}
    norm = np.sqrt(np.sum(g["a"] ** 2) + np.sum(g["b"] ** 2))
    scale = min(1.0, max_norm / norm)
    out = ln.jit(lambda t: ln.optim.clip_by_global_norm(t, max_norm), backend="cpu")(g)
    np.testing.assert_allclose(out["a"], g["a"] * scale, rtol=1e-12)
    np.testing.assert_allclose(out["b"], g["b"] * scale, rtol=1e-12)
    clipped = np.sqrt(np.sum(out["a"] ** 2) + np.sum(out["b"] ** 2))
    assert clipped == pytest.approx(min(norm, max_norm), rel=1e-12)


def quadratic(p, a, target):
    r = a @ p["x"] + p["y"] - target
    return ln.sum(r * r)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_one_compiled_step_lowers_a_quadratic(name, backend):
    opt = {
        "sgd": ln.optim.sgd(0.02),
        "momentum": ln.optim.momentum(0.01),
        "adagrad": ln.optim.adagrad(0.3),
        "adam": ln.optim.adam(0.1),
    }[name]
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 4)).astype(np.float32)
    target = rng.standard_normal(6).astype(np.float32)
    params = {"x": np.zeros(4, np.float32), "y": np.zeros((), np.float32)}

    @ln.jit(backend=backend)
    def step(p, s, a, target):
        loss, g = ln.value_and_grad(quadratic)(p, a, target)
        p, s = opt.update(ln.optim.clip_by_global_norm(g, 10.0), s, p)
        return loss, p, s

    state = opt.init(params)
    losses = []
    for _ in range(30):
        loss, params, state = step(params, state, a, target)
        losses.append(float(loss))
    assert step.trace_count == 1
    assert params["x"].dtype == np.float32
    assert losses[-1] < 0.5 * losses[0], losses
