import pytest

from modzoo.datasets.synth import generate_synth_scenes


@pytest.fixture(scope='session')
def tiny_synth(tmp_path_factory):
    """SynthScenes of 32 px: 16 train and 8 val scenes, rendered once per session."""
    root = str(tmp_path_factory.mktemp('synth') / 'data')
    return generate_synth_scenes(root, num_train=16, num_val=8, size=32, seed=0, workers=1,
                                 progress=False)
