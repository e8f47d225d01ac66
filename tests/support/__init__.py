"""Shared test support, importable as `support` from every test file.

pyproject.toml's `[tool.pytest.ini_options] pythonpath = ["tests"]` puts the
`tests` folder on `sys.path`, so test modules write `from support import
op_cases` instead of taking helpers from fixtures or loading files by path.

* `op_cases`: the one table of `ln`/`ad` op records read by the round-trip,
  `evaluate`, interpreter, finite-difference and cpu emitter tests.
* `references`: the samplers and independent numpy references the table uses.
* `programs`: the textual IR inputs of tests/passes/inputs and the one list of
  differentiation programs the pass and emitter tests run.
* `checks`: running IR on the interpreter, central finite differences, op counts
  and comparing with a float64 reference.
"""
