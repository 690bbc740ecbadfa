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


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('layer_type', [MoEMlp, MixtureOfAttentionHeads])
def test_layer_of_top_k_experts_runs_dense_as_the_dispatch(layer_type, training):
    """A layer of k experts (every token uses all: no dispatch) gives the outputs and gradients
    of a layer of k + 2 experts whose router may pick the same k only (dispatch path)."""
    torch.manual_seed(0)
    k = 3
    kwargs = dict(num_heads=k) if layer_type is MixtureOfAttentionHeads else dict(top_k=k)
    wide = layer_type(24, num_experts=k + 2, **kwargs).train(training)
    for p in wide.parameters():
        torch.nn.init.normal_(p, std=0.5)
    wide.router.restrict(None, range(k))
    dense = layer_type(24, num_experts=k, **kwargs).train(training)
    dense.load_state_dict({name: first_experts(value, k + 2, k)
                           for name, value in wide.state_dict().items()})
    x = torch.randn(3, 5, 24)
    outs = []
    for layer in (wide, dense):
        out, _ = layer(x)
        out.square().sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for name, param in dense.named_parameters():
        torch.testing.assert_close(param.grad, first_experts(wide.get_parameter(name).grad,
                                                             k + 2, k), atol=1e-3, rtol=1e-3)
    assert torch.equal(dense.router.usage, wide.router.usage[:, :k])


def first_experts(tensor, num_experts, k):
    """``tensor`` with its expert axis (the first of size ``num_experts``) cut to ``k``."""
    axes = [i for i, size in enumerate(tensor.shape) if size == num_experts]
    return tensor.narrow(axes[0], 0, k) if axes else tensor


def reference_top_k_layer(layer, x):
    """A layer of E == k experts computed expert by expert: sum_e g_e expert_e(x), gates the
    renormalised router probabilities (every token uses every expert)."""
    tokens = x.reshape(-1, x.shape[-1])
    gates = (tokens @ layer.router.weight[0].t()).softmax(-1)  # [S, E]
    if isinstance(layer, MoEMlp):
        outs = [torch.nn.functional.gelu(tokens @ layer.fc1_weight[e] + layer.fc1_bias[e])
                @ layer.fc2_weight[e] + layer.fc2_bias[e] for e in range(layer.num_experts)]
    else:
        key, value = layer.kv(x).chunk(2, dim=-1)  # [B, N, d]
        outs = [(torch.softmax(x @ layer.q_weight[e] @ key.transpose(1, 2)
                               / layer.head_dims ** 0.5, -1) @ value
                 ).reshape(tokens.shape[0], -1) @ layer.out_weight[e]
                for e in range(layer.num_experts)]
    out = sum(gates[:, e:e + 1] * outs[e] for e in range(layer.num_experts))
    return out.view(x.shape)


@pytest.mark.parametrize('grad', [False, True])
@pytest.mark.parametrize('layer_type', [MoEMlp, MixtureOfAttentionHeads])
def test_layer_of_top_k_experts_equals_the_experts_one_by_one(layer_type, grad):
    """E == k: one product over the experts side by side, the gates on the hidden units
    (heads), a second product: the experts' outputs summed by their gates, to 1e-6 in fp32."""
    torch.manual_seed(0)
    kwargs = dict(num_heads=3) if layer_type is MixtureOfAttentionHeads else dict(top_k=3)
    layer = layer_type(24, num_experts=3, **kwargs).eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 5, 24)
    with torch.set_grad_enabled(grad):
        out, _ = layer(x)
        expected = reference_top_k_layer(layer, x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('layer_type', [MoEMlp, MixtureOfAttentionHeads])
def test_side_by_side_weights_are_cached_and_follow_weight_changes(layer_type):
    torch.manual_seed(0)
    kwargs = dict(num_heads=2) if layer_type is MixtureOfAttentionHeads else dict(top_k=2)
    layer = layer_type(16, num_experts=2, **kwargs).eval()
    name = 'q_weight' if layer_type is MixtureOfAttentionHeads else 'fc1_weight'
    side_by_side = getattr(layer, name.split('_')[0] + '_side_by_side')
    x = torch.randn(1, 4, 16)
    with torch.no_grad():
        layer(x)
        built = side_by_side.matrix
        layer(x)
        assert side_by_side.matrix is built  # inference: built once
        getattr(layer, name).mul_(-2.0)  # in place, as an optimizer step
        torch.testing.assert_close(layer(x)[0], reference_top_k_layer(layer, x))
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        state[name].normal_()
        layer.load_state_dict(state)
        torch.testing.assert_close(layer(x)[0], reference_top_k_layer(layer, x))
    # training: built anew each pass, the gradient reaches the experts' weights
    layer(x)[0].sum().backward()
    assert getattr(layer, name).grad.abs().sum() > 0
    # frozen experts: the cached copy serves autograd, one made in inference mode is not kept
    getattr(layer, name).requires_grad_(False).mul_(0.5)
    with torch.inference_mode():
        layer(x)
    tokens = x.clone().requires_grad_()
    layer(tokens)[0].sum().backward()
    assert tokens.grad.abs().sum() > 0


def test_kept_slot_gates_rank_experts_listed_in_expert_order_by_preference():
    # k = E = 2: the router lists the experts in expert order, not by preference; capacity 1:
    # expert 1 is token 0's first choice and token 1's second, so token 0 keeps it
    ranked = Routing(None, None, torch.tensor([[1, 0], [0, 1]]),
                     torch.tensor([[0.75, 0.25], [0.625, 0.375]]), 0)
    in_order = Routing(None, None, torch.tensor([[0, 1], [0, 1]]),
                       torch.tensor([[0.25, 0.75], [0.625, 0.375]]), 0)
    assert kept_slot_gates(ranked, 2, capacity=1).tolist() == [[0.75, 0.0], [0.625, 0.0]]
    assert kept_slot_gates(in_order, 2, capacity=1).tolist() == [[0.0, 0.75], [0.625, 0.0]]
