"""Every differentiable op's gradient program gives the interpreter's numbers on the
cpu backend.

The cases are the rows of the op table that reverse mode differentiates
(support.gradients.GRAD_CASES, the ones tests/ir/test_adjoint_rules.py checks
against finite differences). All gradient functions go into one module behind
one entry that calls each of them, so the whole table costs a single compile.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Region

from lanterna.backends.cpu_cpp.backend import CpuBackend
from lanterna.ir.context import make_context
from lanterna.ir.interpreter import Interpreter
from lanterna.passes import run_pipeline
from lanterna.passes.reverse_ad import ReverseAD

from support.gradients import GRAD_CASES, build_loss, loss_inputs


def test_every_rule_on_cpu_matches_the_interpreter(cache_dir):
    combined = ModuleOp([])
    entry_args, calls, all_inputs = [], [], []
    for n, case in enumerate(GRAD_CASES):
        module = build_loss(case)
        ReverseAD(func="f", argnums=case.grad_args(), out="f_grad").apply(make_context(), module)
        for op in list(module.ops):
            op.detach()
            old = op.sym_name.data
            op.sym_name = type(op.sym_name)(f"c{n}_{old}")
            for inner in op.walk():
                if isinstance(inner, func.CallOp):
                    inner.callee = type(inner.callee)(f"c{n}_{inner.callee.string_value()}")
            combined.body.block.add_op(op)
        grad_fn = next(o for o in combined.ops if o.sym_name.data == f"c{n}_f_grad")
        calls.append(grad_fn)
        entry_args.extend(grad_fn.function_type.inputs.data)
        all_inputs.extend(loss_inputs(case))

    block = Block(arg_types=entry_args)
    results, pos = [], 0
    for fn in calls:
        k = len(fn.function_type.inputs.data)
        call = func.CallOp(
            fn.sym_name.data, list(block.args[pos : pos + k]), list(fn.function_type.outputs.data)
        )
        block.add_op(call)
        results.extend(call.res)
        pos += k
    block.add_op(func.ReturnOp(*results))
    combined.body.block.add_op(
        func.FuncOp("all_grads", (entry_args, [r.type for r in results]), Region(block))
    )
    combined.verify()

    expected = Interpreter(combined).call("all_grads", *all_inputs)
    run_pipeline(combined, CpuBackend.default_pipeline)
    got = CpuBackend().compile(combined, "all_grads")(*all_inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
