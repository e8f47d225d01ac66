"""Training data for the benchmark models, made without the network.

- Characters: `benchmarks/data/text.txt`, a few KB of plain prose bundled with
  the repository, read min-char-rnn style (inputs and next-character targets).
- Trees: generated SST-like binary parse trees of 5 to 50 words, as index
  arrays (children, words, labels) padded to one capacity so every tree runs
  through one compiled program. Each word has a hidden polarity and a node's
  label (5 classes) is its subtree's mean polarity, bucketed: composing
  children is needed to get inner nodes right, as in sentiment treebanks.
  The frozen 300-d embeddings are random vectors with the polarity mixed in.
- Digits: generated 28x28 grayscale images of seven-segment-style digits 0-9
  with random placement, size, stroke width and noise (not MNIST; no
  package that ships MNIST is assumed).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

TEXT_PATH = Path(__file__).resolve().parents[1] / "data" / "text.txt"


# --- characters ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def text() -> tuple[str, tuple[str, ...]]:
    """The bundled text and its sorted alphabet."""
    data = TEXT_PATH.read_text(encoding="utf-8")
    return data, tuple(sorted(set(data)))


def vocab_size() -> int:
    return len(text()[1])


def encoded_text() -> np.ndarray:
    data, chars = text()
    index = {c: i for i, c in enumerate(chars)}
    return np.array([index[c] for c in data], np.int64)


def char_batches(rng: np.random.Generator, seq: int, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """`{"inputs", "targets"}` of shape [seq, batch]: column b reads the text from
    its own random start, seq characters per step, wrapping around at the end
    (min-char-rnn's pointer, one per batch column)."""
    codes = encoded_text()
    n = len(codes) - 1
    pos = rng.integers(0, n, batch)
    offsets = np.arange(seq)[:, None]
    while True:
        idx = (pos[None, :] + offsets) % n
        yield {"inputs": codes[idx], "targets": codes[idx + 1]}
        pos = (pos + seq) % n


# --- trees --------------------------------------------------------------------------------

CLASSES = 5


def tree_capacity(max_words: int) -> int:
    return 2 * max_words - 1


def polarity(vocab: int) -> np.ndarray:
    """Each word's hidden sentiment in [-1, 1]; fixed, independent of the run's seed."""
    return np.random.default_rng(12345).uniform(-1.0, 1.0, vocab)


def embeddings(rng: np.random.Generator, vocab: int, dim: int) -> np.ndarray:
    """Frozen word vectors: noise plus the word's polarity along one direction."""
    e = rng.standard_normal((vocab, dim)) * 0.3
    e[:, 0] += polarity(vocab) * 1.0
    return e.astype(np.float32)


def random_tree(
    rng: np.random.Generator, words: int, capacity: int, vocab: int
) -> dict[str, np.ndarray]:
    """A random binary tree over `words` leaves: node 0 is the root, a leaf has
    left == right == -1, slots past the tree are unused leaves."""
    left = np.full(capacity, -1, np.int64)
    right = np.full(capacity, -1, np.int64)
    word = np.zeros(capacity, np.int64)
    label = np.zeros(capacity, np.int64)
    pol = polarity(vocab)
    count = 1
    stack = [(0, words)]
    order = []
    while stack:
        node, n = stack.pop()
        order.append(node)
        if n == 1:
            word[node] = rng.integers(0, vocab)
            continue
        k = int(rng.integers(1, n))
        left[node], right[node] = count, count + 1
        count += 2
        stack += [(int(left[node]), k), (int(right[node]), n - k)]
    # Labels bottom-up: the mean polarity of the words below, in 5 buckets.
    total = np.zeros(capacity)
    size = np.zeros(capacity)
    for node in reversed(order):
        if left[node] < 0:
            total[node], size[node] = pol[word[node]], 1
        else:
            total[node] = total[left[node]] + total[right[node]]
            size[node] = size[left[node]] + size[right[node]]
    mean = np.divide(total, size, out=np.zeros(capacity), where=size > 0)
    label[:] = np.digitize(mean, [-0.3, -0.1, 0.1, 0.3])
    return {"left": left, "right": right, "words": word, "labels": label}


def tree_batches(
    rng: np.random.Generator, min_words: int, max_words: int, vocab: int
) -> Iterator[dict[str, np.ndarray]]:
    capacity = tree_capacity(max_words)
    while True:
        yield random_tree(rng, int(rng.integers(min_words, max_words + 1)), capacity, vocab)


# --- digits -------------------------------------------------------------------------------

# Segments a..g: top, top-right, bottom-right, bottom, bottom-left, top-left, middle.
_SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def digit_image(rng: np.random.Generator, digit: int) -> np.ndarray:
    """One 28x28 image, standardized as MNIST usually is ((x - 0.13) / 0.31 of a [0, 1] image)."""
    img = np.zeros((28, 28), np.float32)
    w = int(rng.integers(8, 13))
    h = int(rng.integers(14, 20))
    x0 = int(rng.integers(3, 28 - w - 3))
    y0 = int(rng.integers(3, 28 - h - 3))
    t = int(rng.integers(2, 4))
    mid = y0 + h // 2
    boxes = {
        "a": (y0, y0 + t, x0, x0 + w),
        "d": (y0 + h - t, y0 + h, x0, x0 + w),
        "g": (mid - t // 2, mid - t // 2 + t, x0, x0 + w),
        "f": (y0, mid, x0, x0 + t),
        "e": (mid, y0 + h, x0, x0 + t),
        "b": (y0, mid, x0 + w - t, x0 + w),
        "c": (mid, y0 + h, x0 + w - t, x0 + w),
    }
    for seg in _SEGMENTS[digit]:
        r0, r1, c0, c1 = boxes[seg]
        img[r0:r1, c0:c1] = 1.0
    img += rng.normal(0.0, 0.15, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) - 0.13) / 0.31


def digit_batches(rng: np.random.Generator, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """`{"images": [batch, 1, 28, 28] f32, "labels": [batch] i64, "seed": i64}`;
    the seed drives the step's dropout mask."""
    while True:
        labels = rng.integers(0, 10, batch)
        images = np.stack([digit_image(rng, int(d)) for d in labels])[:, None]
        seed = np.asarray(rng.integers(0, 2**31), np.int64)
        yield {"images": images, "labels": labels.astype(np.int64), "seed": seed}
