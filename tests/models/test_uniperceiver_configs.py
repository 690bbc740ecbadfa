"""The paper-size Uni-Perceiver v2 configs: built, parameter counts beside the paper's, and a
forward pass of every task on one image (random weights; RoBERTa-base's architecture from its
config.json, written here: nothing is downloaded)."""
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from modzoo.models.text import train_bpe
from modzoo.registry import MODELS
from modzoo.structures import TaskDataSample

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs/uniperceiver'
# FacebookAI/roberta-base config.json (the fields that set the architecture)
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                    type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2)


def offline_cfg(name, tmp_path):
    """The config with random weights and a local RoBERTa-base config and small BPE."""
    (tmp_path / 'roberta').mkdir(exist_ok=True)
    (tmp_path / 'roberta/config.json').write_text(json.dumps(ROBERTA_BASE))
    vocab = tmp_path / 'bpe.json'
    if not vocab.exists():
        train_bpe(['a red sphere left of a blue box'], 300, ('<s>', '<pad>', '</s>', '<unk>'))\
            .save(str(vocab))
    cfg = Config.fromfile(str(CONFIGS / name))
    cfg.model.backbone.pretrained = None
    cfg.model.text_encoder.update(model=str(tmp_path / 'roberta'), pretrained=False,
                                  vocab_size=None)
    cfg.model.tokenizer = dict(type='BPETokenizer', vocab_file=str(vocab), max_length=8)
    return cfg


def build(cfg, device=None):
    with DefaultScope.overwrite_default_scope('modzoo'), torch.device(device or 'cpu'):
        return MODELS.build(cfg.model)


@pytest.mark.parametrize('name,paper', [
    ('uniperceiver-v2-base_swin-b_roberta-base.py', 308e6),
    ('uniperceiver-v2-large_swin-l_roberta-base.py', 446e6)])
def test_parameter_counts_beside_the_paper(name, paper, tmp_path):
    counts = build(offline_cfg(name, tmp_path), 'meta').parameter_counts()
    # active parameters (2 of the 8 experts of every decoder FFN) within 5% of the paper's
    assert abs(counts['active'] - paper) / paper < 0.05, counts
    assert counts['parts']['text'][0] == pytest.approx(124.6e6, rel=1e-3)   # RoBERTa-base
    assert counts['parts']['decoder'][0] > 3 * counts['parts']['decoder'][1]


def test_base_config_runs_every_task_forward(tmp_path):
    torch.manual_seed(0)
    cfg = offline_cfg('uniperceiver-v2-base_swin-b_roberta-base.py', tmp_path)
    cfg.model.heads.caption.update(beam_size=2, max_length=3)
    cfg.model.proposal_head.roi_cfg.detections_per_img = 5
    model = build(cfg).eval()
    inputs = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = model.backbone(inputs)
        assert feats.maps[-1].shape == (1, 1024, 7, 7)
        for task in ('cls', 'det', 'caption', 'retrieval'):
            sample = TaskDataSample(metainfo=dict(tasks=(task, ), img_shape=(224, 224),
                                                  ori_shape=(224, 224)))
            sample.gt_text = ['a red sphere']
            model.head_predict(task, feats, [sample])
    assert sample.pred_text_embeddings.shape == (1, 768)
