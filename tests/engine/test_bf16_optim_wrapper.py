"""BF16OptimWrapper: bf16 autocast in the step, fp32 weights; --amp picks a wrapper per device."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from modzoo.engine.optimizers import (BF16OptimWrapper, amp_optim_wrapper, bf16_optim_wrapper,
                                      bf16_support)

needs_bf16_cpu = pytest.mark.skipif(bool(bf16_support('cpu')), reason='CPU without bf16')


def build(model, **kwargs):
    with DefaultScope.overwrite_default_scope('modzoo'):
        return build_optim_wrapper(model, dict(type='BF16OptimWrapper', optimizer=dict(
            type='SGD', lr=0.1), **kwargs))


@needs_bf16_cpu
def test_step_runs_in_bf16_and_updates_fp32_weights():
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    wrapper = build(model)
    assert isinstance(wrapper, BF16OptimWrapper) and wrapper.device_type == 'cpu'
    x = torch.randn(5, 8)
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(x)
        assert out.dtype == torch.bfloat16
        loss = out.float().square().mean()
    wrapper.backward(loss)
    grad = model.weight.grad.clone()
    assert grad.dtype == torch.float32
    wrapper.step()
    assert model.weight.dtype == torch.float32
    torch.testing.assert_close(model.weight.detach(), before - 0.1 * grad)
    # outside the context nothing is autocast
    assert model(x).dtype == torch.float32


@needs_bf16_cpu
def test_gradient_matches_fp32_to_bf16_tolerance():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 1))
    x = torch.randn(64, 16)
    grads = {}
    for name, wrapper in (('fp32', None), ('bf16', build(model))):
        model.zero_grad()
        if wrapper is None:
            model(x).mean().backward()
        else:
            with wrapper.optim_context(model):
                loss = model(x).float().mean()
            wrapper.backward(loss)
        grads[name] = model[0].weight.grad.clone()
    assert grads['bf16'].dtype == torch.float32
    torch.testing.assert_close(grads['bf16'], grads['fp32'], rtol=0.05, atol=2e-3)


def test_refused_on_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(bf16_optim_wrapper, 'cpu_supports_bf16', lambda: False)
    with pytest.raises(RuntimeError, match='no bf16 support'):
        build(nn.Linear(2, 2))
    with pytest.raises(ValueError, match='--amp: this CPU has no bf16 support'):
        amp_optim_wrapper(dict(optimizer=dict(type='SGD', lr=0.1)), 'cpu')


def test_amp_config_per_device(monkeypatch):
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3), clip_grad=None)
    monkeypatch.setattr(bf16_optim_wrapper, 'cpu_supports_bf16', lambda: True)
    assert amp_optim_wrapper(cfg, 'cpu') == dict(cfg, type='BF16OptimWrapper')
    # a CUDA device without bf16 gets mmengine's fp16 wrapper with dynamic loss scaling
    monkeypatch.setattr(bf16_optim_wrapper, 'bf16_support', lambda device: 'no bf16')
    assert amp_optim_wrapper(cfg, 'cuda') == dict(cfg, type='AmpOptimWrapper', dtype='float16',
                                                  loss_scale='dynamic')
    # a wrapper that is already mixed precision stays; another type is the config's to set
    assert amp_optim_wrapper(dict(cfg, type='AmpOptimWrapper'), 'cuda')['type'] == \
        'AmpOptimWrapper'
    with pytest.raises(ValueError, match="'MyWrapper'"):
        amp_optim_wrapper(dict(cfg, type='MyWrapper'), 'cpu')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_autocast_dtype():
    model = nn.Linear(8, 4).to('cuda')
    cfg = amp_optim_wrapper(dict(optimizer=dict(type='SGD', lr=0.1)), 'cuda')
    with DefaultScope.overwrite_default_scope('modzoo'):
        wrapper = build_optim_wrapper(model, cfg)
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 8, device='cuda'))
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported(False) else torch.float16
    assert out.dtype == expected
    wrapper.update_params(out.float().sum())
