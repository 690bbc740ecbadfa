"""The one weights loader: unwrapping, prefixes, conversion and the report by module."""
import pytest
import torch
from torch import nn

from modzoo.engine.checkpoint import save_checkpoint_atomic
from modzoo.weights import CheckpointMismatchError, load_state_dict, load_weights, unwrap


def two_layer():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


@pytest.mark.parametrize('wrap', [
    lambda sd: sd,
    lambda sd: dict(state_dict=sd, meta=dict(epoch=3)),                  # mmengine
    lambda sd: dict(model=sd, optimizer={}, epoch=3),                     # DeiT / MAE
    lambda sd: dict(state_dict={f'module.{k}': v for k, v in sd.items()}),  # DataParallel
])
def test_every_wrapping_loads_the_same_weights(tmp_path, wrap):
    source, target = two_layer(), nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    save_checkpoint_atomic(wrap(source.state_dict()), str(tmp_path / 'w.pth'))
    assert not load_weights(target, str(tmp_path / 'w.pth'))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_ema_weights_are_preferred_as_timm_does():
    plain, ema = {'w': torch.zeros(1)}, {'w': torch.ones(1)}
    assert unwrap(dict(state_dict=plain, state_dict_ema=ema))['w'] == 1
    assert unwrap(dict(model=plain, model_ema=ema))['w'] == 1
    with pytest.raises(ValueError, match="x.pth holds no state dict.*'state_dict'"):
        unwrap(dict(optimizer=dict(lr=0.1)), 'x.pth')


def test_prefix_and_convert(tmp_path):
    source = two_layer()
    whole = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    whole['head.weight'] = torch.zeros(1)
    save_checkpoint_atomic(whole, str(tmp_path / 'whole.safetensors'))
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    assert not load_weights(target, str(tmp_path / 'whole.safetensors'), prefix='backbone.')
    assert torch.equal(target[1].bias, source[1].bias)
    with pytest.raises(CheckpointMismatchError, match="whole.safetensors has no key starting "
                                                      "with prefix 'neck.'"):
        load_weights(target, str(tmp_path / 'whole.safetensors'), prefix='neck.')

    def halve(state):  # a conversion that maps names and values
        return {key: value / 2 for key, value in state.items()}
    load_weights(target, str(tmp_path / 'whole.safetensors'), prefix='backbone.', convert=halve)
    assert torch.equal(target[1].bias, source[1].bias / 2)


def test_report_groups_keys_by_module_and_strict_decides(tmp_path):
    state = two_layer().state_dict()
    del state['1.bias']
    state['0.weight'] = torch.zeros(5, 3)
    state['extra.table'] = torch.zeros(2)
    save_checkpoint_atomic(state, str(tmp_path / 'w.pth'))
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(CheckpointMismatchError) as error:
        load_weights(target, str(tmp_path / 'w.pth'))
    assert str(error.value).splitlines()[1:] == [
        'missing keys (in the model, not in the checkpoint):', '  1: bias',
        'unexpected keys (in the checkpoint, not in the model):', '  extra: table',
        'shape mismatches:', '  0: weight (5, 3) vs model (4, 3)',
        'Pass strict=False to load what fits.']
    report = load_weights(target, str(tmp_path / 'w.pth'), strict=False)
    assert report.missing == ['1.bias'] and report.unexpected == ['extra.table']
    assert torch.equal(target[1].weight, state['1.weight'])  # what fits was loaded
    state = two_layer().state_dict()
    state['extra.table'] = torch.zeros(2)
    save_checkpoint_atomic(state, str(tmp_path / 'more.pth'))
    assert load_weights(target, str(tmp_path / 'more.pth'), allow_unexpected=True).unexpected


def test_sources_resolve_by_the_hub_rules(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_state_dict(str(tmp_path / 'nowhere.pth'))


def test_load_hooks_of_the_modules_run(tmp_path):
    """A BiasSetBEiT fills its bias tables [n_sets, C] from a plain BEiT's biases [C] in a load
    hook: load_weights lets that hook run instead of calling the shapes a mismatch."""
    from modzoo.models.backbones.beit import BiasSetBEiT
    arch = dict(embed_dim=16, depth=1, num_heads=2)
    plain = BiasSetBEiT(arch, img_size=16, patch_size=8, out_indices=(0, ))
    save_checkpoint_atomic(plain.state_dict(), str(tmp_path / 'beit.pth'))
    sets = BiasSetBEiT(arch, img_size=16, patch_size=8, out_indices=(0, ), n_bias_sets=3,
                       pretrained=str(tmp_path / 'beit.pth'))
    sets.init_weights()
    bias = sets.blocks[0].mlp.fc1.bias
    assert bias.shape == (3, 64) and torch.equal(bias[2], plain.blocks[0].mlp.fc1.bias)
