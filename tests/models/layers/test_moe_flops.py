import torch
from fvcore.nn import FlopCountAnalysis
from timm.layers import Mlp

from modzoo.models.layers.mixture_of_attention import MixtureOfAttentionHeads
from modzoo.models.layers.moe_flops import MOE_FLOP_HANDLES
from modzoo.models.layers.moe_mlp import MoEMlp


def _count(model, x):
    return FlopCountAnalysis(model, (x,)).set_op_handle(**MOE_FLOP_HANDLES).by_operator()


def test_moe_mlp_counts_only_the_active_experts():
    # S = 16 tokens, k = 2 of E = 8 experts, D = 32, H = 64
    x = torch.randn(2, 8, 32)
    counts = _count(MoEMlp(32, num_experts=8, top_k=2, hidden_dims=64).eval(), x)
    assert counts['_grouped_mm'] == 16 * 2 * (32 * 64 + 64 * 32)
    assert counts['mm'] == 16 * 32 * 8  # the router
    # the experts cost what a dense MLP of hidden k * H costs
    dense = _count(Mlp(32, 2 * 64).eval(), x)
    assert counts['_grouped_mm'] == dense['linear']


def test_dropped_choices_are_not_counted():
    x = torch.randn(2, 8, 32)
    moe = MoEMlp(32, num_experts=8, top_k=2, hidden_dims=64, capacity_factor=0.5).eval()
    pairs = 8 * 2  # capacity ceil(0.5 * 16 * 2 / 8) = 2 pairs for each of 8 experts
    assert _count(moe, x)['_grouped_mm'] <= pairs * 2 * 32 * 64


def test_moa_counts_the_routed_query_and_output_projections():
    x = torch.randn(2, 8, 32)
    moa = MixtureOfAttentionHeads(32, num_experts=6, num_heads=4, head_dims=16).eval()
    counts = _count(moa, x)
    assert counts['_grouped_mm'] == 16 * 4 * (32 * 16 + 16 * 32)
    assert counts['mm'] == 16 * 32 * 6  # the router
    assert counts['linear'] == 16 * 32 * 32  # the shared key/value
