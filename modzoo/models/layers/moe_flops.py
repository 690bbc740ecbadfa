"""fvcore FLOP handles for the mixture-of-experts layers.

The expert matmuls of :mod:`moe_dispatch` run as one ``aten::_grouped_mm`` over the P
routed (token, expert) pairs only, so counting that op counts just the experts each token
uses (fvcore skips the op otherwise). Like fvcore, one multiply-add is one FLOP. Where
``F.grouped_mm`` cannot run (other dtypes, unaligned widths) the layers fall back to
per-expert ``matmul`` calls, which fvcore already counts. The every-expert forward of
:mod:`moe_export` runs its first product as ``aten::baddbmm`` (bias + batched product),
counted as the batched product.

Usage::

    flops = FlopCountAnalysis(model, inputs).set_op_handle(**MOE_FLOP_HANDLES)
"""
from typing import Any, List

from fvcore.nn.jit_handles import bmm_flop_jit, get_shape


def grouped_mm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``_grouped_mm(a, b, offs)``: the FLOPs of the output [P, N] (or [E, M, N])
    times the contracted width K. For the 2D x 2D weight-gradient form ([K, P] x [P, N]
    grouped along P into [E, K, N]) the groups split the contraction: K * P * N in all.
    """
    a_shape, b_shape = get_shape(inputs[0]), get_shape(inputs[1])
    if len(a_shape) == 2 and len(b_shape) == 2:
        return a_shape[0] * a_shape[1] * b_shape[1]
    out_shape = get_shape(outputs[0])
    macs = a_shape[-1]
    for size in out_shape:
        macs *= size
    return macs


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``baddbmm(bias, a [E, S, K], b [E, K, N])``: those of ``bmm(a, b)``."""
    return bmm_flop_jit(inputs[1:3], outputs)


MOE_FLOP_HANDLES = {'aten::_grouped_mm': grouped_mm_flop_jit, 'aten::baddbmm': baddbmm_flop_jit}
