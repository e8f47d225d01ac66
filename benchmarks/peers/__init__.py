"""The benchmark models written for other frameworks (PyTorch, JAX, NumPy), each
built from a lanterna model's initial state so every framework starts from the
same weights: `build(name, config, state, **options) -> step(batch) -> loss`.

A peer's step keeps its own parameters and optimizer state between calls and
returns the loss as a float, which waits for the step to finish.
"""
