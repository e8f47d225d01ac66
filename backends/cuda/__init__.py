"""The CUDA backend's package: reserved, and empty until that backend exists.

`ln.jit(..., backend="cuda")` is refused by the backend registry today
(`lanterna.backends`), not by this package.
"""
