"""SynthEpisodes: episode layout, task indices, leave-out families, label maps; a few
meta-training steps on one episode lower its loss."""
import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper

from modzoo.datasets import SynthEpisodes
from modzoo.datasets.synth import make_scene
from modzoo.datasets.synth.dense_tasks import (FAMILIES, FAMILY_INDEX, FIRST_TASK, NUM_TASKS,
                                               family_labels, joint_pixels)
from modzoo.models.chameleon import LOSS_TYPES
from modzoo.registry import MODELS


@pytest.fixture(scope='module')
def episodes():
    return SynthEpisodes(num_scenes=40, size=32, channels=3, shot=2, query=2, length=50)


def test_episode_layout_and_indices(episodes):
    ep = episodes[0]
    assert ep['x_s'].shape == (3, 2, 3, 32, 32) and ep['y_s'].shape == (3, 2, 1, 32, 32)
    assert ep['x_q'].shape == (3, 2, 3, 32, 32) and ep['mask'].shape == (3, 2, 1, 32, 32)
    fam = FAMILIES[FAMILY_INDEX[ep['task_name']]]
    assert (ep['g_idx'] == FAMILY_INDEX[fam.name]).all()
    assert ((ep['t_idx'] >= FIRST_TASK[fam.name])
            & (ep['t_idx'] < FIRST_TASK[fam.name] + fam.channels)).all()
    assert (ep['loss_type'] == LOSS_TYPES[fam.loss]).all()
    assert 0 <= ep['x_s'].min() and ep['x_s'].max() <= 1
    # reproducible per index
    torch.testing.assert_close(episodes[7]['y_q'], episodes[7]['y_q'])
    assert NUM_TASKS == 48 and len(FAMILIES) == 11


def test_semseg_support_holds_the_class_and_leave_out(episodes):
    rng = np.random.default_rng(0)
    ep = episodes.episode('semseg', rng, channels=[5, 9])
    assert (ep['y_s'].flatten(2).amax(-1) == 1).all()     # each support image shows its class
    assert (ep['t_idx'] == torch.tensor([FIRST_TASK['semseg'] + 5,
                                         FIRST_TASK['semseg'] + 9])).all()
    held = SynthEpisodes(num_scenes=20, size=32, families=['depth', 'normals', 'semseg'],
                         exclude_families=['semseg'], length=30)
    assert {held[i]['task_name'] for i in range(30)} == {'depth', 'normals'}
    with pytest.raises(ValueError, match='unknown task families'):
        SynthEpisodes(num_scenes=2, families=['segm'])


def test_keypoints_project_onto_the_figure():
    for i in range(40):
        scene, rendering = make_scene(0, i, 48)
        joints = joint_pixels(scene)
        if 'head' in joints:
            break
    r, c = (int(round(v)) for v in joints['head'])
    assert rendering.part[r, c] == 1          # the head joint lies on the head
    labels = family_labels(scene, rendering)
    peaks, _ = labels['keypoints_semantic']
    assert peaks[0, r, c] == 1 and peaks[0].sum() == 1


def test_meta_training_steps_lower_the_episode_loss(episodes):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='Chameleon', n_tasks=NUM_TASKS, n_task_groups=len(FAMILIES),
        image_encoder=dict(type='BiasSetBEiT', arch=dict(embed_dim=32, depth=4, num_heads=2),
                           img_size=32, patch_size=8, out_indices=[0, 1, 2, 3],
                           init_values=0.1),
        label_encoder=dict(type='ViT', arch=dict(embed_dim=16, depth=4, num_heads=2),
                           img_size=32, patch_size=8, out_indices=[0, 1, 2, 3],
                           final_norm=False),
        matching=dict(type='TokenMatching', num_heads=2, attn_drop=0.),
        decoder=dict(type='DPTLabelDecoder', hidden_channels=[8, 8, 16, 16], features=16)))
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=3e-3))
    batch = [episodes.episode('depth', np.random.default_rng(1))]
    losses = [sum(model.train_step(batch, optim).values()).item() for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses
