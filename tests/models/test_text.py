"""Text side: BPE tokenizer trained on captions, the small text encoder, the RoBERTa backend."""
import json
import os

import pytest
import torch

from modzoo.hub import WeightsNotFoundError
from modzoo.models.text import BPETokenizer, RobertaTextEncoder, TransformerTextEncoder

CAPTIONS = ['Three objects on a brown checkered ground under a blue sky.',
            'A large green cylinder is left of a large figure.',
            'From left to right: a small red sphere and a large blue box.',
            'A small figure is close to the camera.'] * 5


@pytest.fixture
def captions_file(tmp_path):
    path = tmp_path / 'captions_train2017.json'
    path.write_text(json.dumps(dict(annotations=[
        dict(id=i, image_id=i, caption=c) for i, c in enumerate(CAPTIONS)])))
    return str(path)


def test_bpe_trains_on_captions_once_and_round_trips(captions_file, tmp_path):
    vocab = str(tmp_path / 'vocab' / 'bpe.json')
    tok = BPETokenizer(vocab, captions=captions_file, vocab_size=300, max_length=32)
    assert os.path.isfile(vocab) and tok.vocab_size <= 300
    assert BPETokenizer(vocab).tokenizer.to_str() == tok.tokenizer.to_str()   # read, not retrained
    ids, mask = tok.encode(['A large green cylinder.', '', 'Ünïcödé ☃ café'])
    assert ids.shape[0] == 3 and mask.dtype == torch.bool
    assert ids[0, 0] == tok.bos_id and ids[1, :2].tolist() == [tok.bos_id, tok.eos_id]
    assert mask[1].sum() == 2 and (ids[1, 2:] == tok.pad_id).all()
    assert tok.decode(ids[0].tolist()) == 'a large green cylinder.'    # lower-cased
    assert tok.decode(ids[2].tolist()) == 'ünïcödé ☃ café'              # bytes: no OOV
    long_ids, _ = tok.encode([' '.join(['sphere'] * 40)])
    assert long_ids.shape[1] == 32 and long_ids[0, -1] == tok.eos_id


def test_bpe_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='pass `captions`'):
        BPETokenizer(str(tmp_path / 'missing.json'))
    with pytest.raises(FileNotFoundError, match='nope.json'):
        BPETokenizer(str(tmp_path / 'v.json'), captions=str(tmp_path / 'nope.json'))


def test_causal_text_encoder_sees_only_the_past():
    torch.manual_seed(0)
    enc = TransformerTextEncoder(vocab_size=50, embed_dim=32, depth=2, num_heads=4,
                                 max_length=8).eval()
    ids = torch.randint(4, 50, (2, 6))
    mask = torch.ones_like(ids, dtype=torch.bool)
    changed = ids.clone()
    changed[:, 4] = 3
    a, b = enc.encode(ids, mask, causal=True), enc.encode(changed, mask, causal=True)
    assert a.shape == (2, 6, 32)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    full = enc.encode(ids, mask)
    assert not torch.allclose(full[:, :4], enc.encode(changed, mask)[:, :4])
    with pytest.raises(ValueError, match='max_length'):
        enc.encode(torch.zeros(1, 9, dtype=torch.long), torch.ones(1, 9, dtype=torch.bool))


def tiny_roberta(folder):
    transformers = pytest.importorskip('transformers')
    from safetensors.torch import save_file
    config = transformers.RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64,
                                        max_position_embeddings=40)
    model = transformers.RobertaModel(config, add_pooling_layer=False).eval()
    os.makedirs(folder, exist_ok=True)
    config.to_json_file(os.path.join(folder, 'config.json'))
    state = {f'roberta.{k}': v.contiguous() for k, v in model.state_dict().items()}
    # as in FacebookAI/roberta-base: an MLM head, a pooler and the position_ids buffer too
    state.update({'lm_head.bias': torch.zeros(60), 'roberta.pooler.dense.bias': torch.zeros(32),
                  'roberta.embeddings.position_ids': torch.arange(40)[None]})
    save_file(state, os.path.join(folder, 'model.safetensors'))
    return model


def test_roberta_backend_loads_weights_and_matches_transformers(tmp_path):
    reference = tiny_roberta(tmp_path / 'roberta')
    enc = RobertaTextEncoder(str(tmp_path / 'roberta')).eval()
    ids = torch.randint(3, 60, (2, 7))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 5:] = False
    ids[1, 5:] = 1
    with torch.no_grad():
        ours = enc.encode(ids, mask)
        theirs = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        torch.testing.assert_close(ours[mask], theirs[mask])
        causal = enc.encode(ids, mask, causal=True)
        changed = ids.clone()
        changed[:, 4] = 5
        torch.testing.assert_close(causal[:, :4], enc.encode(changed, mask, causal=True)[:, :4])


def test_roberta_offline_names_what_to_download(monkeypatch, tmp_path):
    pytest.importorskip('transformers')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
    monkeypatch.setattr('huggingface_hub.constants.HF_HUB_OFFLINE', True)
    monkeypatch.setattr('huggingface_hub.constants.HF_HUB_CACHE', str(tmp_path / 'hf'))
    with pytest.raises(WeightsNotFoundError,
                       match='hf download FacebookAI/roberta-base config.json'):
        RobertaTextEncoder('FacebookAI/roberta-base')
