"""Chameleon: bias sets, level mix, chunked support, several input images, resolution change,
the official losses and clear errors."""
import pytest
import torch

from modzoo.models.backbones.beit import relative_position_index, table_size
from modzoo.models.chameleon import LOSS_BCE, LOSS_L1, LOSS_SPATIAL_SOFTMAX, episode_losses
from modzoo.registry import MODELS


def tiny_cfg(img=32, n_tasks=4, n_groups=2, n_input_images=1, **kw):
    return dict(
        type='Chameleon', n_tasks=n_tasks, n_task_groups=n_groups,
        image_encoder=dict(type='BiasSetBEiT', arch=dict(embed_dim=32, depth=4, num_heads=2),
                           img_size=img, patch_size=8, out_indices=[0, 1, 2, 3],
                           n_input_images=n_input_images, init_values=0.1),
        label_encoder=dict(type='ViT', arch=dict(embed_dim=16, depth=4, num_heads=2),
                           img_size=img, patch_size=8, out_indices=[0, 1, 2, 3],
                           final_norm=False),
        matching=dict(type='TokenMatching', num_heads=2, attn_drop=0.),
        decoder=dict(type='DPTLabelDecoder', hidden_channels=[8, 8, 16, 16], features=16), **kw)


def episode(B=1, T=2, N=3, M=2, size=32, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(x_s=torch.randn(B, T, N, channels, size, size, generator=g),
                y_s=torch.rand(B, T, N, 1, size, size, generator=g),
                x_q=torch.randn(B, T, M, channels, size, size, generator=g),
                t_idx=torch.arange(T).repeat(B, 1), g_idx=torch.zeros(B, T, dtype=torch.long))


def randomize_biases(model):
    """Bias tables start equal across rows; make every row distinct."""
    with torch.no_grad():
        for _, p in model.task_parameters():
            p.normal_(0, 0.1)


def test_chunked_support_encoding_matches_all_at_once():
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg()).eval()
    ep = episode(N=5)
    with torch.no_grad():
        whole = model.encode_support(ep['x_s'], ep['y_s'], ep['t_idx'], ep['g_idx'])
        chunked = model.encode_support(ep['x_s'], ep['y_s'], ep['t_idx'], ep['g_idx'],
                                       chunk_size=2)
        a = model.predict_query(whole, ep['x_q'])
        b = model.predict_query(chunked, ep['x_q'])
    assert all(w.shape[2] == 5 for w in chunked.w + chunked.z)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_relative_position_index_3d():
    idx = relative_position_index((2, 2, 3))
    assert idx.shape == (13, 13) and idx.max() == table_size((2, 2, 3)) - 1
    # the same offset between two tokens gives the same entry, in either image
    tok = lambda d, h, w: 1 + d * 6 + h * 3 + w  # noqa: E731
    assert idx[tok(0, 0, 0), tok(0, 1, 2)] == idx[tok(1, 0, 0), tok(1, 1, 2)]
    assert idx[tok(0, 0, 0), tok(1, 0, 0)] != idx[tok(0, 0, 0), tok(0, 0, 0)]
    # one image: timm's BEiT index
    from timm.models.beit import gen_relative_position_index
    torch.testing.assert_close(relative_position_index((1, 3, 4)),
                               gen_relative_position_index((3, 4)))


def test_two_input_images_and_one_image_weights_load():
    torch.manual_seed(0)
    one = MODELS.build(tiny_cfg())
    two = MODELS.build(tiny_cfg(n_input_images=2)).eval()
    two.load_state_dict(one.state_dict())      # tables extrapolated from 1 to 2 images
    t1 = one.image_encoder.blocks[0].attn.relative_position_bias_table
    t2 = two.image_encoder.blocks[0].attn.relative_position_bias_table
    assert t2.shape[0] == table_size((2, 4, 4))
    # the same-image plane and the class-token entries are copied, cross-image offsets are 0
    torch.testing.assert_close(t2[49:98], t1[:49])
    torch.testing.assert_close(t2[-3:], t1[-3:])
    assert t2[:49].abs().sum() == 0
    ep = episode(channels=6)
    out = two.forward_episode(ep['x_s'], ep['y_s'], ep['x_q'], ep['t_idx'], ep['g_idx'])
    assert out.shape == (1, 2, 2, 1, 32, 32)
    x = ep['x_q'][0, :, 0]                     # [2, 6, 32, 32]: two images per sample
    changed = x.clone()
    changed[:, 3:] = 0                         # change only the second image
    maps = two.image_encoder(x, ep['t_idx'][0]).maps
    maps2 = two.image_encoder(changed, ep['t_idx'][0]).maps
    assert maps[0].shape == (2, 32, 4, 4)      # the first image's tokens only
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(maps, maps2))


def test_resolution_change_resamples_tables():
    torch.manual_seed(0)
    small = MODELS.build(tiny_cfg(img=32))
    big = MODELS.build(tiny_cfg(img=48)).eval()
    big.load_state_dict(small.state_dict())
    assert big.image_encoder.blocks[0].attn.relative_position_bias_table.shape[0] == \
        table_size((1, 6, 6))
    ep = episode(size=48)
    out = big.forward_episode(ep['x_s'], ep['y_s'], ep['x_q'], ep['t_idx'], ep['g_idx'])
    assert out.shape[-2:] == (48, 48) and torch.isfinite(out).all()


def test_plain_bias_loads_into_every_set():
    torch.manual_seed(0)
    plain = MODELS.build(tiny_cfg(n_tasks=0, separate_alpha=False))
    sets = MODELS.build(tiny_cfg(n_tasks=3))
    sets.load_state_dict(plain.state_dict(), strict=False)
    b = plain.image_encoder.blocks[1].mlp.fc1.bias
    assert torch.equal(sets.image_encoder.blocks[1].mlp.fc1.bias, b.expand(3, -1))


def test_losses_by_type():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 1, 4, 4)
    labels = torch.rand(1, 3, 2, 1, 4, 4)
    kinds = torch.tensor([[LOSS_BCE, LOSS_L1, LOSS_SPATIAL_SOFTMAX]])
    losses = episode_losses(logits, labels, kinds)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 0], labels[0, 0])
    l1 = (logits[0, 1].sigmoid() - labels[0, 1]).abs().mean()
    # spatial softmax: cross entropy over the 16 pixels of each map, soft targets
    x, y = logits[0, 2].flatten(1), labels[0, 2].flatten(1)
    ssl = -(y * x.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(losses['loss_bce'], bce)
    torch.testing.assert_close(losses['loss_con'], l1)
    torch.testing.assert_close(losses['loss_ssl'], ssl)


@pytest.mark.parametrize('change, message', [
    (lambda e: e.update(x_q=e['x_q'][..., :24, :24]), 'query images'),
    (lambda e: e.update(y_s=e['y_s'].repeat(1, 1, 1, 2, 1, 1)), '1 channel'),
    (lambda e: e.update(x_s=e['x_s'][:, :, :0], y_s=e['y_s'][:, :, :0]), 'N=0'),
    (lambda e: e.update(t_idx=e['t_idx'][:, :1]), 't_idx'),
])
def test_bad_episodes_raise_clear_errors(change, message):
    model = MODELS.build(tiny_cfg())
    ep = episode()
    change(ep)
    with pytest.raises(ValueError, match=message):
        model.forward_episode(ep['x_s'], ep['y_s'], ep['x_q'], ep['t_idx'], ep['g_idx'])


def test_add_task_starts_from_the_mean_and_sliding_window_covers():
    from modzoo.models.chameleon_adaptation import add_task, predict_sliding, window_starts
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg()).eval()
    randomize_biases(model)
    old = model.image_encoder.blocks[0].mlp.fc1.bias.detach().clone()
    t_idx, g_idx = add_task(model, 2)
    assert t_idx.tolist() == [4, 5] and g_idx.tolist() == [2, 2] and model.n_tasks == 6
    new = model.image_encoder.blocks[0].mlp.fc1.bias
    torch.testing.assert_close(new[4], old.mean(0))
    assert torch.equal(new[:4], old)
    assert model.matching.alpha[0].shape[0] == 3
    # one window: sliding prediction is the plain prediction
    ep = episode(T=2)
    with torch.no_grad():
        support = model.encode_support(ep['x_s'], ep['y_s'], t_idx[None], g_idx[None])
        plain = model.predict_query(support, ep['x_q'])[0]
    torch.testing.assert_close(predict_sliding(model, support, ep['x_q'][0]), plain)
    assert window_starts(48, 32, 16) == [0, 16] and window_starts(50, 32, 16) == [0, 9, 18]
