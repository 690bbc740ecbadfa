"""The export-friendly MoE forward gives the sort-based dispatch's outputs in eval."""
import pytest
import torch

from modzoo.models.layers import MixtureOfAttentionHeads, MoEMlp
from modzoo.models.layers.moe_export import kept_slot_gates, set_export_dispatch
from modzoo.models.layers.moe_router import Routing


@pytest.mark.parametrize('capacity_factor', [None, 0.5])
@pytest.mark.parametrize('layer_type', [MoEMlp, MixtureOfAttentionHeads])
def test_export_forward_equals_sort_based_dispatch(layer_type, capacity_factor):
    torch.manual_seed(0)
    kwargs = dict(num_heads=2) if layer_type is MixtureOfAttentionHeads else dict(top_k=2)
    layer = layer_type(16, num_experts=6, tasks=['a', 'b'], capacity_factor=capacity_factor,
                       **kwargs).eval()
    for p in layer.parameters():  # biases too, and routers far from uniform
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        sorted_out, _ = layer(x, 'b')
        usage = layer.router.usage.clone()
        assert set_export_dispatch(layer) == 1
        export_out, aux = layer(x, 'b')
    assert aux == {}
    torch.testing.assert_close(export_out, sorted_out, atol=1e-5, rtol=1e-5)
    assert torch.equal(layer.router.usage, 2 * usage)  # eager: usage still counted


def test_kept_slot_gates_drop_as_plan_dispatch():
    # 3 tokens, k = 2, 2 experts, capacity 2: every token picks expert 0 first and expert 1
    # second, so each expert keeps the first two tokens and drops the third
    experts = torch.tensor([[0, 1], [0, 1], [0, 1]])
    gates = torch.full((3, 2), 0.5)
    routing = Routing(None, None, experts, gates, 0)
    kept = kept_slot_gates(routing, num_experts=2, capacity=2)
    assert kept.tolist() == [[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]]
