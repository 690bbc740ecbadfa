"""Task-Balanced Gradient Normalization: parameter updates against hand-computed values."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement

from modzoo.engine import SampledTaskHook, TBGNAdamW


def step(optimizer, param, grad, task):
    param.grad = torch.as_tensor(grad, dtype=param.dtype)
    optimizer.set_task(task)
    optimizer.step()


def test_first_step_by_hand():
    """grad (3, 4): unit (0.6, 0.8); m = 0.1/s*u, v = 0.001/s*u^2; after bias correction
    m_hat/sqrt(v_hat) = u/(|u| sqrt(s)) = 1/sqrt(s) per coordinate -> lr/sqrt(s) step."""
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = TBGNAdamW([p], lr=0.1, betas=(0.9, 0.999), eps=0.0, weight_decay=0.0,
                    sampling_ratios=dict(a=0.5, b=0.5))
    step(opt, p, [3.0, 4.0], 'a')
    expected = -0.1 / math.sqrt(0.5)
    assert torch.allclose(p.data, torch.tensor([expected, expected], dtype=torch.float64))
    state = opt.state[p]
    assert torch.allclose(state['exp_avg'], torch.tensor([0.12, 0.16], dtype=torch.float64))
    assert torch.allclose(state['exp_avg_sq'],
                          torch.tensor([0.00072, 0.00128], dtype=torch.float64))


def reference_updates(grads_by_task, sequence, ratios, weights, lr, betas, eps, wd, p0):
    """TBGN written out step by step in numpy (PyTorch beta convention)."""
    p, m, v = np.array(p0, float), np.zeros(len(p0)), np.zeros(len(p0))
    (b1, b2), out = betas, []
    for t, task in enumerate(sequence, start=1):
        g = np.asarray(grads_by_task[task], float)
        g = weights[task] * g / np.linalg.norm(g)
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) / ratios[task] * g
        v = b2 * v + (1 - b2) / ratios[task] * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(p.copy())
    return out


def test_two_tasks_several_steps():
    grads = dict(det=[1.0, -2.0, 2.0], cap=[0.0, 0.3, -0.4])
    ratios, weights = dict(det=0.75, cap=0.25), dict(det=1.0, cap=2.0)
    sequence = ['det', 'det', 'cap', 'det', 'cap', 'cap']
    p = torch.nn.Parameter(torch.tensor([0.5, -0.5, 1.0], dtype=torch.float64))
    opt = TBGNAdamW([p], lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.1,
                    sampling_ratios=dict(det=3, cap=1), task_weights=weights)
    expected = reference_updates(grads, sequence, ratios, weights, 0.01, (0.8, 0.99), 1e-8,
                                 0.1, [0.5, -0.5, 1.0])
    for task, want in zip(sequence, expected):
        step(opt, p, grads[task], task)
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-12, atol=1e-15)


def test_norm_is_global_over_parameters_and_groups():
    """Two parameters in two groups share one norm: |(3, 4)| = 5, not per-parameter norms."""
    a = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = TBGNAdamW([dict(params=[a]), dict(params=[b], lr=0.2)], lr=0.1, eps=0.0,
                    weight_decay=0.0, sampling_ratios=dict(x=1.0))
    a.grad, b.grad = torch.tensor([3.0], dtype=a.dtype), torch.tensor([4.0], dtype=a.dtype)
    opt.set_task('x')
    opt.step()
    assert opt.state[a]['exp_avg'].item() == pytest.approx(0.1 * 0.6)
    assert opt.state[b]['exp_avg'].item() == pytest.approx(0.1 * 0.8)
    assert a.item() == pytest.approx(-0.1) and b.item() == pytest.approx(-0.2)


def test_one_task_with_ratio_one_and_weight_norm_is_adamw():
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    ref = torch.nn.Parameter(ours.detach().clone())
    opt = TBGNAdamW([ours], lr=0.05, weight_decay=0.3, sampling_ratios=dict(t=1.0))
    adamw = torch.optim.AdamW([ref], lr=0.05, weight_decay=0.3)
    for _ in range(4):
        grad = torch.randn(5, dtype=torch.float64)
        opt.task_weights['t'] = float(grad.norm())  # normalised and scaled back: the raw grad
        step(opt, ours, grad, 't')
        ref.grad = grad.clone()
        adamw.step()
        torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-12, atol=1e-12)


def test_errors_name_the_problem():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = TBGNAdamW([p], sampling_ratios=dict(a=1.0))
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match='SampledTaskHook'):
        opt.step()
    opt.set_task('b')
    with pytest.raises(KeyError, match="task 'b' has no sampling ratio"):
        opt.step()
    with pytest.raises(KeyError, match='no sampling ratio'):
        TBGNAdamW([p], sampling_ratios=dict(a=1.0), task_weights=dict(z=1.0))
    with pytest.raises(ValueError, match='positive'):
        TBGNAdamW([p], sampling_ratios=dict(a=0.0))


def sample(source):
    return BaseDataElement(metainfo=dict(source=source, tasks=(source, )))


def test_hook_sets_ratios_from_sampler_and_task_per_batch():
    p = torch.nn.Parameter(torch.zeros(2))
    with DefaultScope.overwrite_default_scope('modzoo'):
        wrapper = build_optim_wrapper(torch.nn.Linear(1, 1), dict(
            optimizer=dict(type='TBGNAdamW', lr=0.1)))
    wrapper.optimizer.param_groups[0]['params'] = [p]
    runner = SimpleNamespace(optim_wrapper=wrapper, train_dataloader=SimpleNamespace(
        batch_sampler=SimpleNamespace(weights=np.array([0.2, 0.8])),
        dataset=SimpleNamespace(source_names=['cls', 'cap'])))
    hook = SampledTaskHook()
    hook.before_train(runner)
    assert wrapper.optimizer.sampling_ratios == pytest.approx(dict(cls=0.2, cap=0.8))
    hook.before_train_iter(runner, 0, dict(data_samples=[sample('cap'), sample('cap')]))
    assert wrapper.optimizer.task == 'cap'
    with pytest.raises(ValueError, match='one source'):
        hook.before_train_iter(runner, 1, dict(data_samples=[sample('cap'), sample('cls')]))
