"""`Tensor.__getitem__` against numpy's indexing on the same keys."""

from __future__ import annotations

import numpy as np
import pytest

import lanterna as ln

X = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
IDX = np.array([[3, 0], [-1, 2]])

KEYS = [
    1,
    -1,
    (1, 2),
    (0, -2, 3),
    slice(None),
    (slice(None), slice(1, 4)),
    (slice(None), slice(None, None, 2)),
    (slice(None), slice(-3, None), slice(1, -1)),
    (slice(None), slice(10, 20)),
    (slice(None), slice(None, None, -1)),
    (slice(None), slice(4, 0, -2), slice(None, None, -3)),
    (Ellipsis, 1),
    (0, Ellipsis),
    (None, 0),
    (slice(None), None, 1),
    (Ellipsis, None),
    (1, IDX),
    (slice(None), IDX),
    (np.array([1, -2, 0]), 1),
    (0, slice(None), IDX),  # non-adjacent: numpy moves the index dimensions first
    (slice(None), [0, 2, 2], 1),
    (1, slice(1, 3), [1, 1]),
]


@pytest.mark.parametrize("key", KEYS, ids=[str(k) for k in KEYS])
def test_matches_numpy(key):
    got = ln.jit(lambda x: x[key])(X)
    want = X[key]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_staged_index_array_gathers():
    @ln.jit
    def lookup(table, ids):
        return table[ids], table[:, ids[0]]

    table = np.arange(12, dtype=np.float64).reshape(4, 3)
    ids = np.array([[2, 0], [1, 1]], np.int32)
    rows, cols = lookup(table, ids)
    np.testing.assert_array_equal(rows, table[ids])
    np.testing.assert_array_equal(cols, table[:, ids[0]])
    assert "ln.gather" in lookup.lower(table, ids).as_text()


def test_one_op_per_kind():
    text = ln.jit(lambda x: x[1, 1:4:2, None]).lower(X).as_text()
    ops = [w for w in text.split() if w.startswith("ln.")]
    assert ops == ["ln.slice", "ln.reshape"]
    assert "ln." not in ln.jit(lambda x: x[...]).lower(X).as_text()


def test_iterating_unrolls_over_the_first_axis():
    got = ln.jit(lambda x: [row.sum() for row in x])(X)
    np.testing.assert_allclose(got, [r.sum() for r in X])


@pytest.mark.parametrize(
    "key,message",
    [
        (5, r"index 5 is out of bounds for axis 0 with size 2"),
        ((0, 0, 0, 0), r"too many indices"),
        ((Ellipsis, Ellipsis), r"single ellipsis"),
        (X[0] > 3, r"boolean masks"),
        ((IDX, IDX), r"more than one index array"),
        ((slice(None), np.array([0, 7])), r"index 7 is out of bounds for axis 1"),
        ("a", r"unsupported index 'a'"),
    ],
)
def test_bad_indices(key, message):
    with pytest.raises(ln.TraceError, match=message) as info:
        ln.jit(lambda x: x[key])(X)
    assert info.value.filename == __file__


def test_assignment_is_an_error():
    def f(x):
        x[0] = 1.0
        return x

    with pytest.raises(ln.TraceError, match="immutable"):
        ln.jit(f)(X)
