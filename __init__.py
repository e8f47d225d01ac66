"""lanterna: differentiable programming for Python, compiled."""
