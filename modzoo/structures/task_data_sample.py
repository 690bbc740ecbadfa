"""The sample that travels from a dataset through the model to the metrics."""
from mmengine.structures import BaseDataElement

# Dense label fields, their value when a pixel carries no label, and their layout.
# Every transform that moves pixels moves all of these together.
DENSE_FIELDS = {
    'gt_sem_seg': dict(ignore=255, dtype='int64'),    # [H, W] class index
    'gt_parts': dict(ignore=255, dtype='int64'),      # [H, W] part index (0 = background)
    'gt_depth': dict(ignore=0.0, dtype='float32'),    # [H, W] metres, 0 = no depth
    'gt_normal': dict(ignore=0.0, dtype='float32'),   # [H, W, 3] unit vectors, 0-vector = none
    'gt_edge': dict(ignore=255, dtype='int64'),       # [H, W] {0, 1}
    'gt_saliency': dict(ignore=255, dtype='int64'),   # [H, W] {0, 1}
}


class TaskDataSample(BaseDataElement):
    """One image with the labels of the tasks its dataset annotates.

    Metainfo: ``tasks`` (tuple of task names this sample is labelled for), ``source`` (name
    of its dataset in a :class:`MultiTaskDataset`), ``img_path``,
    ``ori_shape``, ``img_shape``, ``pad_shape`` (each ``(H, W)``), ``flip``, ``scale_factor``.

    Ground truth (set only where the dataset has it):
        gt_label    LongTensor []          class index (single-label classification)
        gt_labels   FloatTensor [C]        multi-hot labels (multi-label classification)
        gt_sem_seg  LongTensor [H, W]      255 = ignore
        gt_parts    LongTensor [H, W]      255 = ignore
        gt_depth    FloatTensor [H, W]     metres, 0 = no depth
        gt_normal   FloatTensor [3, H, W]  unit normals, 0-vector = no normal
        gt_edge     LongTensor [H, W]      {0, 1}, 255 = ignore
        gt_saliency LongTensor [H, W]      {0, 1}, 255 = ignore
        gt_instances InstanceData          bboxes [N, 4] xyxy, labels [N], masks [N, H, W]
        gt_text     list[str]              captions

    Predictions use the same names with ``pred_`` (``pred_score`` [C] for classification,
    ``pred_scores`` [C] for multi-label, ``pred_edge``/``pred_saliency`` as probabilities).
    """
