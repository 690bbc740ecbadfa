"""VisualPromptViT against the official VPT-deep forward, written out with timm blocks."""
import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from modzoo.models.backbones.visual_prompt_vit import VisualPromptViT
from modzoo.registry import MODELS

ARCH = dict(embed_dim=32, depth=3, num_heads=2)


def vpt_deep_reference(vit, x):
    """KMnP/vpt ``PromptedTransformer.forward_deep_prompt`` on the ViT's own modules:
    prompts after the class token, replaced by the next layer's before every block.
    Returns (the class token after the final norm [B, D], the patch tokens [B, N, D])."""
    tokens = vit._pos_embed(vit.patch_embed(x))                      # [B, 1 + N, D]
    prompts = vit.prompts.tokens.expand(x.shape[0], -1, -1, -1)      # [B, L, P, D]
    num_prompts = prompts.shape[2]
    hidden = torch.cat((tokens[:, :1], prompts[:, 0], tokens[:, 1:]), dim=1)
    for i, block in enumerate(vit.blocks):
        if i > 0:
            hidden = torch.cat((hidden[:, :1], prompts[:, i], hidden[:, 1 + num_prompts:]), dim=1)
        hidden = block(hidden)
    hidden = vit.norm(hidden)
    return hidden[:, 0], hidden[:, 1 + num_prompts:]


def test_matches_the_official_deep_prompt_forward():
    torch.manual_seed(0)
    vit = MODELS.build(dict(type='VisualPromptViT', arch=ARCH, img_size=32, patch_size=8,
                            num_prompts=4)).eval()
    x = torch.randn(2, 3, 32, 40)
    feats = vit(x)
    cls_token, patches = vpt_deep_reference(vit, x)
    torch.testing.assert_close(feats.cls_token, cls_token)
    torch.testing.assert_close(feats.maps[-1].flatten(2).transpose(1, 2), patches)
    assert feats.maps[-1].shape == (2, 32, 4, 5)
    vit.set_grad_checkpointing()
    torch.testing.assert_close(vit(x).cls_token, cls_token)


def test_prompts_learn_and_change_the_output():
    torch.manual_seed(0)
    vit = VisualPromptViT(num_prompts=2, arch=ARCH, img_size=16, patch_size=8)
    assert vit.prompts.tokens.shape == (3, 2, 32)
    bound = (6 / (3 * 8 * 8 + 32)) ** 0.5
    assert vit.prompts.tokens.abs().max() <= bound
    x = torch.randn(1, 3, 16, 16)
    vit(x).cls_token.pow(2).sum().backward()  # (a plain sum of a LayerNorm output is constant)
    assert vit.prompts.tokens.grad.abs().sum() > 0
    before = vit(x).cls_token.detach()
    with torch.no_grad():
        vit.prompts.tokens.zero_()
    assert not torch.allclose(vit(x).cls_token, before)


def test_timm_checkpoints_load_and_prompts_keep_their_init(tmp_path):
    torch.manual_seed(0)
    timm_vit = VisionTransformer(img_size=16, patch_size=8, num_classes=5, **ARCH)
    save_file(timm_vit.state_dict(), tmp_path / 'vit.safetensors')
    vit = VisualPromptViT(num_prompts=2, arch=ARCH, img_size=16, patch_size=8,
                          pretrained=str(tmp_path / 'vit.safetensors'))
    prompts = vit.prompts.tokens.detach().clone()
    vit.init_weights()
    torch.testing.assert_close(vit.blocks[1].attn.qkv.weight, timm_vit.blocks[1].attn.qkv.weight)
    assert torch.equal(vit.prompts.tokens, prompts)
    assert 'prompts.tokens' in vit.state_dict()


def test_bad_prompt_count_is_named():
    with pytest.raises(ValueError, match='num_prompts >= 1, got 0'):
        VisualPromptViT(num_prompts=0, arch=ARCH, img_size=16, patch_size=8)
