"""Pytrees: nested tuples, lists, dicts and None around leaves.

`ln.jit` and (later) `ln.grad` accept and return pytrees of arrays, as JAX does.
`flatten` splits a tree into its leaves and a hashable `TreeDef` describing the
containers; `unflatten` rebuilds a tree of the same structure from new leaves.
Dict entries are visited in sorted key order, so two dicts with the same keys
flatten the same way whatever order they were built in. `None` is an empty
container, not a leaf.

    leaves, tree = flatten({"w": w, "b": (b0, b1)})   # leaves == [b0, b1, w]
    unflatten(tree, leaves) == {"b": (b0, b1), "w": w}
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# The kinds of node; a leaf has no children.
LEAF = "leaf"
NONE = "none"
TUPLE = "tuple"
LIST = "list"
DICT = "dict"


@dataclass(frozen=True)
class TreeDef:
    """The structure of a pytree without its leaves; hashable and comparable.

    `keys` holds a dict's sorted keys; `children` the sub-structures in the order
    their leaves are flattened.
    """

    kind: str
    children: tuple[TreeDef, ...] = ()
    keys: tuple[Hashable, ...] = ()

    def __hash__(self) -> int:
        # Tree structures key every jitted call: hash once per structure.
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.kind, self.children, self.keys))
            object.__setattr__(self, "_hash", h)
        return h

    @property
    def num_leaves(self) -> int:
        n = self.__dict__.get("_num_leaves")
        if n is None:
            n = 1 if self.kind == LEAF else sum(c.num_leaves for c in self.children)
            object.__setattr__(self, "_num_leaves", n)
        return n

    def __str__(self) -> str:
        if self.kind == LEAF:
            return "*"
        if self.kind == NONE:
            return "None"
        inner = [str(c) for c in self.children]
        if self.kind == TUPLE:
            return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"
        if self.kind == LIST:
            return "[" + ", ".join(inner) + "]"
        return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.keys, inner)) + "}"


LEAF_DEF = TreeDef(LEAF)
NONE_DEF = TreeDef(NONE)
_INTERNED: dict[tuple[Any, ...], TreeDef] = {}


def _interned(kind: str, children: tuple[TreeDef, ...], keys: tuple[Hashable, ...]) -> TreeDef:
    """One TreeDef object per structure, so comparing keys of calls with the same
    structure is an identity check. Looked up by the children's identities (they
    are interned too, and live as long as this table)."""
    probe = (kind, tuple(map(id, children)), keys)
    found = _INTERNED.get(probe)
    if found is None:
        found = _INTERNED[probe] = TreeDef(kind, children, keys)
    return found


def _sorted_keys(d: dict[Any, Any]) -> list[Any]:
    try:
        return sorted(d)
    except TypeError:
        raise TypeError(f"pytree dict keys must be mutually orderable, got {list(d)!r}") from None


def _children(tree: Any) -> tuple[str, list[Any], tuple[Hashable, ...]] | None:
    """The node kind, children and dict keys of a container; None for a leaf."""
    if tree is None:
        return NONE, [], ()
    # Exact type checks: namedtuples and dict subclasses are leaves, not silently
    # rebuilt as plain tuples and dicts.
    if type(tree) is tuple:
        return TUPLE, list(tree), ()
    if type(tree) is list:
        return LIST, list(tree), ()
    if type(tree) is dict:
        keys = _sorted_keys(tree)
        return DICT, [tree[k] for k in keys], tuple(keys)
    return None


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves of `tree` (depth first, dict keys sorted) and its structure."""
    leaves: list[Any] = []
    treedef = _flatten(tree, leaves.append)
    return leaves, treedef


# The walks below are module-level functions, not closures that call themselves: such a
# closure is a reference cycle, and through its cells it would keep the leaves (a call's
# argument and result arrays) alive until the garbage collector next runs.
def _flatten(node: Any, append: Callable[[Any], None]) -> TreeDef:
    # The same cases as `_children`, inlined: this runs on every jitted call.
    t = type(node)
    if t is dict:
        keys = _sorted_keys(node)
        return _interned(DICT, tuple([_flatten(node[k], append) for k in keys]), tuple(keys))
    if t is tuple:
        return _interned(TUPLE, tuple([_flatten(c, append) for c in node]), ())
    if t is list:
        return _interned(LIST, tuple([_flatten(c, append) for c in node]), ())
    if node is None:
        return NONE_DEF
    append(node)
    return LEAF_DEF


def unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> Any:
    """Rebuild a tree of structure `treedef` from `leaves` (in flatten's order)."""
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"tree {treedef} has {treedef.num_leaves} leaves, got {len(leaves)}")
    return _build(treedef, iter(leaves))


def _build(td: TreeDef, it: Iterator[Any]) -> Any:
    if td.kind == LEAF:
        return next(it)
    if td.kind == NONE:
        return None
    children = [_build(c, it) for c in td.children]
    if td.kind == TUPLE:
        return tuple(children)
    if td.kind == LIST:
        return children
    return dict(zip(td.keys, children))


def leaf_paths(tree: Any) -> list[tuple[Hashable, ...]]:
    """The path (tuple of indices and keys) to each leaf, in flatten's order."""
    paths: list[tuple[Hashable, ...]] = []
    _leaf_paths(tree, (), paths)
    return paths


def _leaf_paths(node: Any, path: tuple[Hashable, ...], paths: list[tuple[Hashable, ...]]) -> None:
    split = _children(node)
    if split is None:
        paths.append(path)
        return
    _, children, keys = split
    labels: Sequence[Hashable] = keys if keys else range(len(children))
    for label, child in zip(labels, children):
        _leaf_paths(child, (*path, label), paths)


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """`tree` with every leaf replaced by `fn(leaf)`."""
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [fn(leaf) for leaf in leaves])


def tree_leaves(tree: Any) -> list[Any]:
    return flatten(tree)[0]
