"""Pytrees: flatten order, round trips and hashable structure."""

from __future__ import annotations

from collections import namedtuple

import pytest

from lanterna.frontends.python.pytree import flatten, leaf_paths, tree_map, unflatten


def test_flatten_sorts_dict_keys_and_round_trips():
    tree = {"w": 1, "b": (2, [3, None, 4]), "a": {"z": 5, "y": 6}}
    leaves, td = flatten(tree)
    assert leaves == [6, 5, 2, 3, 4, 1]
    assert unflatten(td, leaves) == tree
    assert td.num_leaves == 6
    assert leaf_paths(tree) == [("a", "y"), ("a", "z"), ("b", 0), ("b", 1, 0), ("b", 1, 2), ("w",)]


def test_treedef_is_hashable_and_structural():
    _, a = flatten({"x": 1, "y": [2, 3]})
    _, b = flatten({"y": [7, 8], "x": 9})
    _, c = flatten({"x": 1, "y": (2, 3)})
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert str(c) == "{'x': *, 'y': (*, *)}"


def test_none_is_empty_and_other_objects_are_leaves():
    Point = namedtuple("Point", "x y")
    leaves, td = flatten([None, Point(1, 2)])
    assert leaves == [Point(1, 2)]
    assert unflatten(td, leaves) == [None, Point(1, 2)]
    assert flatten(None)[0] == []


def test_unflatten_checks_the_leaf_count():
    _, td = flatten((1, 2))
    with pytest.raises(ValueError, match="2 leaves, got 3"):
        unflatten(td, [1, 2, 3])


def test_tree_map():
    assert tree_map(lambda v: v * 10, {"a": (1, 2), "b": [3]}) == {"a": (10, 20), "b": [30]}


def test_flatten_and_unflatten_hold_no_leaf_once_they_return():
    # A jitted call flattens its arguments and unflattens its results: neither may
    # keep an array alive until the garbage collector runs (it may not run for long).
    import gc
    import weakref

    import numpy as np

    gc.disable()
    try:
        a, b = np.ones(3), np.zeros(2)
        refs = weakref.ref(a), weakref.ref(b)
        leaves, td = flatten({"a": a, "b": [b, None]})
        tree = unflatten(td, leaves)
        assert tree["a"] is a and tree["b"][0] is b
        del a, b, leaves, tree
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()
