import pytest
from mmengine.registry import DefaultScope

from modzoo.registry import DATASETS, MODELS


def test_unknown_type_names_registry_and_closest_names():
    with pytest.raises(KeyError) as err:
        MODELS.build(dict(type='MultiTaskModle', backbone={}, heads={}))
    msg = str(err.value)
    assert "'model' registry" in msg and 'MultiTaskModel' in msg


def test_registries_fill_themselves_from_locations():
    # no explicit import of modzoo.models: the registry's `locations` import it
    assert MODELS.get('MultiTaskModel') is not None
    assert DATASETS.get('MultiTaskDataset') is not None


def test_default_scope_finds_modzoo_children():
    from mmengine.registry import MODELS as ROOT_MODELS

    # what the Runner does with default_scope='modzoo': the root hands over to our child
    with DefaultScope.overwrite_default_scope('modzoo'):
        with ROOT_MODELS.switch_scope_and_registry('modzoo') as registry:
            assert registry is MODELS
