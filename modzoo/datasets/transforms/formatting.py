"""The last transform: numpy results -> model inputs and a TaskDataSample."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData

from modzoo.registry import TRANSFORMS
from modzoo.structures import DENSE_FIELDS, TaskDataSample


def _tensor(arr, dtype):
    return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype)


@TRANSFORMS.register_module()
class PackTaskInputs(BaseTransform):
    """Pack ``results`` into ``{'inputs': uint8 [3, H, W], 'data_samples': TaskDataSample}``.

    Ground truth becomes torch tensors in the ``TaskDataSample`` layouts: ``gt_label``
    long [], ``gt_labels`` float [C], integer dense maps long [H, W], ``gt_depth`` float
    [H, W], ``gt_normal`` float [3, H, W], boxes/labels/masks an ``InstanceData``
    (bboxes float [N, 4], labels long [N], masks uint8 [N, H, W]), ``gt_text`` as is.
    The ``meta_keys`` present in ``results`` become metainfo; ``pad_shape`` defaults to
    ``img_shape`` (no padding).
    """

    def __init__(self, meta_keys=('img_path', 'ori_shape', 'img_shape', 'pad_shape', 'flip',
                                  'scale_factor', 'tasks', 'sample_idx', 'img_id')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results):
        img = results['img']
        inputs = _tensor(img.transpose(2, 0, 1), torch.uint8)
        sample = TaskDataSample()
        if 'gt_label' in results:
            sample.gt_label = torch.tensor(int(results['gt_label']), dtype=torch.long)
        if 'gt_labels' in results:
            sample.gt_labels = _tensor(results['gt_labels'], torch.float32)
        for key, field in DENSE_FIELDS.items():
            if key in results:
                value = results[key]
                if key == 'gt_normal':
                    value = value.transpose(2, 0, 1)
                sample.set_field(_tensor(value, getattr(torch, field['dtype'])), key)
        if 'gt_bboxes' in results:
            instances = InstanceData()
            instances.bboxes = _tensor(results['gt_bboxes'].reshape(-1, 4), torch.float32)
            instances.labels = _tensor(results['gt_bboxes_labels'], torch.long)
            if 'gt_masks' in results:
                instances.masks = _tensor(results['gt_masks'], torch.uint8)
            sample.gt_instances = instances
        if 'gt_text' in results:
            sample.gt_text = list(results['gt_text'])
        results.setdefault('pad_shape', results['img_shape'])
        sample.set_metainfo({key: results[key] for key in self.meta_keys if key in results})
        return dict(inputs=inputs, data_samples=sample)
