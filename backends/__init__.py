"""Backends and frontends live in subpackages."""
