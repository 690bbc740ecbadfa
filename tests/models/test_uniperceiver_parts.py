"""Uni-Perceiver v2 parts: decoder masks and attribute routing, image tokens, the objective,
caption search (beam 1 == greedy), and the cross-rank gather (2 gloo processes)."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.structures import InstanceData

from modzoo.heads.uniperceiver import check_class_names
from modzoo.models.uniperceiver import (GlobalImageTokens, LogitScale, RegionTokens, UnifiedDecoder,
                                        beam_search, box_encoding, contrastive_loss, greedy_search,
                                        prefix_causal_mask)
from modzoo.structures import Features


def test_caption_mask_image_visible_to_all_text_causal():
    # <SPE>, 2 image tokens, 3 text tokens; True = blocked
    mask = prefix_causal_mask(6, prefix=3).int().tolist()
    assert mask == [[0, 0, 0, 1, 1, 1],
                    [0, 0, 0, 1, 1, 1],
                    [0, 0, 0, 1, 1, 1],
                    [0, 0, 0, 0, 1, 1],
                    [0, 0, 0, 0, 0, 1],
                    [0, 0, 0, 0, 0, 0]]


def test_decoder_causal_text_and_padding():
    torch.manual_seed(0)
    dec = UnifiedDecoder(embed_dim=32, depth=2, num_heads=4, drop=0.0).eval()
    tokens = torch.randn(2, 5, 32)
    types = ['global', 'global', 'text', 'text', 'text']
    valid = torch.ones(2, 5, dtype=torch.bool)
    out, aux = dec(tokens, types, valid, 'captioning', causal_from=2)
    assert out.shape == (2, 6, 32) and aux == {}
    changed = tokens.clone()
    changed[:, 3] = torch.randn(32)        # a later text token changes ...
    out2, _ = dec(changed, types, valid, 'captioning', causal_from=2)
    torch.testing.assert_close(out[:, :4], out2[:, :4])     # ... nothing before it
    assert not torch.allclose(out[:, 4:], out2[:, 4:])
    valid[:, 1] = False                    # a padded token changes nothing that is valid
    padded, _ = dec(tokens, types, valid, 'classification')
    changed = tokens.clone()
    changed[:, 1] = torch.randn(32)
    again, _ = dec(changed, types, valid, 'classification')
    torch.testing.assert_close(padded[:, [0, 1, 3, 4, 5]], again[:, [0, 1, 3, 4, 5]])
    with pytest.raises(KeyError, match='family'):
        dec(tokens, types, valid, 'vqa')


def test_decoder_layers_are_pre_norm_as_v1():
    """x + attn(LN(x)), then + FFN(LN(x)) (v1's norm_first=True); False gives BERT's LN(x + .)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 32)
    for norm_first in (True, False):
        layer = UnifiedDecoder(embed_dim=32, depth=1, num_heads=4, drop=0.0,
                               norm_first=norm_first).layers[0]
        with torch.no_grad():
            layer.norm1.weight.uniform_(0.5, 1.5)
            layer.norm2.bias.normal_()

        def attn(h):
            return layer.attn(h, h, h, need_weights=False)[0]
        if norm_first:
            h = x + attn(layer.norm1(x))
            expected = h + layer.ffn(layer.norm2(h))
        else:
            h = layer.norm1(x + attn(x))
            expected = layer.norm2(h + layer.ffn(h))
        out, _ = layer(x, None, torch.zeros(2, 4, dtype=torch.bool), None)
        torch.testing.assert_close(out, expected)


def test_attribute_routing_sends_equal_attributes_to_equal_experts():
    torch.manual_seed(0)
    dec = UnifiedDecoder(embed_dim=32, depth=1, num_heads=4, drop=0.0,
                         moe=dict(num_experts=4, top_k=1, balance_weight=0.01), attr_dims=8)
    tokens = torch.randn(3, 4, 32)
    out, aux = dec(tokens, ['global'] * 2 + ['region'] * 2, torch.ones(3, 4, dtype=torch.bool),
                   'detection')
    assert out.shape == (3, 5, 32) and set(aux) == {'loss_moe_balance'}
    router = dec.layers[0].ffn.router
    # routing depends on the attributes only: 3 kinds of token here (spe, global, region),
    # each kind on one expert whatever the token's content
    assert (router.usage > 0).sum() <= 3 and router.usage.sum() == 3 * 5
    out.sum().backward()
    assert dec.attr_family.weight.grad is not None


def test_global_and_region_tokens():
    torch.manual_seed(0)
    glob = GlobalImageTokens(in_channels=16, embed_dim=24, num_pools=3, num_heads=4)
    assert glob(Features((torch.randn(2, 16, 4, 5), ))).shape == (2, 3 + 20, 24)
    region = RegionTokens(in_channels=10, embed_dim=24, num_freqs=4)
    props = [InstanceData(bboxes=torch.tensor([[0., 0., 32., 16.], [8., 8., 16., 16.]]),
                          embeddings=torch.randn(2, 10), mask_logits=torch.randn(2, 28, 28)),
             InstanceData(bboxes=torch.zeros(0, 4), embeddings=torch.zeros(0, 10),
                          mask_logits=torch.zeros(0, 28, 28))]
    tokens, valid = region(props, [(32, 64), (32, 64)])
    assert tokens.shape == (2, 2, 24) and valid.tolist() == [[True, True], [False, False]]
    enc = box_encoding(torch.tensor([[0., 0., 64., 32.]]), (32, 64), num_freqs=1)
    # normalised (0, 0, 1, 1) at frequency pi: sin = (0, 0, 0, 0)-ish, cos = (1, 1, -1, -1)
    torch.testing.assert_close(enc[0, 1::2], torch.tensor([1., 1., -1., -1.]))


def test_logit_scale_is_capped():
    scale = LogitScale(0.07, max_scale=100)
    assert scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert scale().item() == pytest.approx(100.0)


def test_class_names_must_be_distinct():
    assert check_class_names('H', ['red_sphere', 'cube']) == ['red sphere', 'cube']
    with pytest.raises(ValueError, match="'red sphere' twice"):
        check_class_names('H', ['red_sphere', 'red sphere'])
    with pytest.raises(ValueError, match='non-empty'):
        check_class_names('H', ['cube', ''])


def toy_step(vocab=7, seed=0):
    """Next-token log-probs that depend on the whole prefix and the image row."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(4, vocab, vocab, generator=g) * 2

    def step(ids, rows):
        logits = table[rows, ids[:, -1]] + 0.3 * ids.float().sum(1, keepdim=True).sin()
        return logits.log_softmax(-1)
    return step


def test_beam_one_is_greedy_and_wider_beams_score_at_least_as_well():
    step = toy_step()
    common = dict(bos=0, eos=1, pad=2, max_length=8, banned=(0, 2))
    greedy = greedy_search(step, 4, **common)
    assert torch.equal(beam_search(step, 4, 1, **common), greedy)
    assert (greedy[:, 0] == 0).all()

    def score(ids):
        total = torch.zeros(len(ids))
        for t in range(1, ids.shape[1]):
            logp = step(ids[:, :t], torch.arange(len(ids)))
            live = ids[:, t - 1] != 1
            if t > 1:
                live &= ids[:, t - 1] != 2
            total += torch.where(live, logp.gather(1, ids[:, t:t + 1])[:, 0],
                                 torch.zeros(len(ids)))
        return total
    wide = beam_search(step, 4, 4, **common)
    assert (score(wide) >= score(greedy) - 1e-5).all()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _gather_worker(rank, port, world, images, texts, weight, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        w = weight.clone().requires_grad_()
        b = images.shape[0] // world
        mine = slice(rank * b, (rank + 1) * b)
        loss = contrastive_loss(images[mine] @ w, texts[mine] @ w, torch.tensor(10.0))
        loss.backward()
        grad = w.grad.clone()
        dist.all_reduce(grad)        # DDP's average of the gradients
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            torch.save(dict(loss=total / world, grad=grad / world), out)
    finally:
        dist.destroy_process_group()


def test_two_process_gathered_loss_equals_one_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    images, texts, weight = torch.randn(6, 5), torch.randn(6, 5), torch.randn(5, 4)
    out = str(tmp_path / 'rank0.pt')
    mp.spawn(_gather_worker, args=(_free_port(), 2, images, texts, weight, out), nprocs=2)
    got = torch.load(out, weights_only=True)
    w = weight.clone().requires_grad_()
    loss = contrastive_loss(images @ w, texts @ w, torch.tensor(10.0))
    loss.backward()
    torch.testing.assert_close(got['loss'], loss.detach())
    torch.testing.assert_close(got['grad'], w.grad)
    # without the gather each rank would see only its own 3 pairs: a different loss
    local = sum(contrastive_loss(images[s] @ weight, texts[s] @ weight, torch.tensor(10.0),
                                 gather=False) for s in (slice(0, 3), slice(3, 6))) / 2
    assert not torch.isclose(local, loss.detach())
