"""``torch.compile`` runs the MoE layers (fp32 on the CPU: the per-expert loop, with a graph
break where the group sizes are read) and gives eager's outputs."""
import pytest
import torch

from modzoo.models.layers import MixtureOfAttentionHeads, MoEMlp


@pytest.mark.parametrize('layer_type', [MoEMlp, MixtureOfAttentionHeads])
def test_compiled_moe_layer_equals_eager(layer_type):
    torch.manual_seed(0)
    kwargs = dict(num_heads=2) if layer_type is MixtureOfAttentionHeads else dict(top_k=2)
    layer = layer_type(16, num_experts=6, **kwargs).eval()
    x = torch.randn(2, 5, 16)
    compiled = torch.compile(lambda tokens: layer(tokens)[0], backend='eager')  # dynamo only
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layer(x)[0], atol=1e-5, rtol=1e-5)
