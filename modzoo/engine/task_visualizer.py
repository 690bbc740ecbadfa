"""An mmengine ``Visualizer`` for ``TaskDataSample``s: instances and every dense task."""
from typing import Optional, Sequence

import mmcv
import numpy as np
from mmengine.dist import master_only
from mmengine.visualization import Visualizer

from modzoo.registry import VISUALIZERS
from .visualization import PALETTE, render

# the fields drawn, in panel order (gt_<field> / pred_<field>)
FIELDS = ('instances', 'sem_seg', 'parts', 'depth', 'normal', 'edge', 'saliency')


@VISUALIZERS.register_module()
class TaskVisualizer(Visualizer):
    """Draws a sample's ground truth and predictions next to its image.

    Instances: masks blended in their class colour (VOC palette, label + 1), boxes and
    ``<class> <score>`` labels, predictions under ``score_thr`` left out. Class maps
    (sem_seg, parts) are blended over the image with ``alpha``; depth, normals, edges and
    saliency are drawn as maps (``modzoo.engine.visualization.render``). Every panel is
    resized to the image's size and the panels are put side by side: image, then the gt
    and prediction of each field the sample has.

    ``add_datasample`` writes to ``out_file`` when given, else to the vis backends
    (``LocalVisBackend``, ``TensorboardVisBackend`` when tensorboard is installed), as
    mmdet's visualizer does.

    Args:
        score_thr: lowest score of a drawn predicted instance.
        alpha: opacity of masks and class maps.
        classes: class names of the instances (default: ``dataset_meta['classes']``, else the
            label numbers).
        **kwargs: ``name``, ``vis_backends``, ``save_dir`` of mmengine's ``Visualizer``.
    """

    def __init__(self, name: str = 'visualizer', score_thr: float = 0.3, alpha: float = 0.5,
                 classes: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.score_thr = score_thr
        self.alpha = alpha
        self.classes = classes

    def _class_name(self, label: int) -> str:
        classes = self.classes or (self.dataset_meta or {}).get('classes')
        return classes[label] if classes and label < len(classes) else str(label)

    def draw_instances(self, image: np.ndarray, instances) -> np.ndarray:
        """RGB uint8 [H, W, 3] of ``instances`` (bboxes [N, 4], labels [N], masks [N, H, W],
        optional scores [N]) over ``image``, resized to the masks' size when they differ."""
        masks = instances.get('masks')
        if masks is not None and tuple(masks.shape[1:]) != image.shape[:2]:
            image = mmcv.imresize(image, (masks.shape[2], masks.shape[1]))
        self.set_image(image)
        scores = instances.get('scores')
        keep = slice(None) if scores is None else (scores >= self.score_thr).cpu().numpy()
        labels = instances.labels.cpu().numpy()[keep]
        if len(labels) == 0:
            return self.get_image()
        colors = [tuple(int(c) for c in PALETTE[label + 1]) for label in labels]
        if masks is not None:
            self.draw_binary_masks(masks.cpu().numpy()[keep].astype(bool), colors=colors,
                                   alphas=self.alpha)
        boxes = instances.bboxes.detach().cpu().numpy()[keep]
        self.draw_bboxes(boxes, edge_colors=colors, line_widths=1)
        texts = [self._class_name(int(label)) for label in labels]
        if scores is not None:
            texts = [f'{t} {s:.2f}' for t, s in zip(texts, scores.cpu().numpy()[keep])]
        self.draw_texts(texts, boxes[:, :2], colors=colors, font_sizes=8,
                        vertical_alignments='bottom')
        return self.get_image()

    def draw_field(self, image: np.ndarray, field: str, value, depth_max: float) -> np.ndarray:
        """RGB uint8 of one gt or prediction (``field`` without ``gt_``/``pred_``)."""
        if field == 'instances':
            return self.draw_instances(image, value)
        drawn = render(field, value, depth_max)
        if field in ('sem_seg', 'parts'):
            base = mmcv.imresize(image, (drawn.shape[1], drawn.shape[0]))
            drawn = (base * (1 - self.alpha) + drawn * self.alpha).astype(np.uint8)
        return drawn

    @master_only  # mmengine draws on rank 0 only
    def add_datasample(self, name: str, image: np.ndarray, data_sample=None,
                       draw_gt: bool = True, draw_pred: bool = True, show: bool = False,
                       wait_time: float = 0, out_file: Optional[str] = None,
                       step: int = 0) -> np.ndarray:
        """Draw ``data_sample`` beside ``image`` (RGB uint8 [H, W, 3]); returns the drawing."""
        h, w = image.shape[:2]
        panels = [image]
        prefixes = [p for p, on in (('gt', draw_gt), ('pred', draw_pred)) if on]
        for field in FIELDS:
            values = {p: data_sample.get(f'{p}_{field}') for p in prefixes} \
                if data_sample is not None else {}
            values = {p: v for p, v in values.items() if v is not None}
            depth_max = max((float(v.max()) for v in values.values()), default=1.0) \
                if field == 'depth' else 1.0
            for value in values.values():
                drawn = self.draw_field(image, field, value, depth_max)
                panels.append(mmcv.imresize(drawn, (w, h), interpolation='nearest'))
        drawing = np.concatenate(panels, axis=1)
        if show:
            self.show(drawing, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(np.ascontiguousarray(drawing[..., ::-1]), out_file)
        else:
            self.add_image(name, drawing, step)
        return drawing
