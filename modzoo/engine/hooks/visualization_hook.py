"""Draw validation / test predictions through the runner's visualizer."""
import os.path as osp

from mmengine.hooks import Hook

from modzoo.registry import HOOKS


@HOOKS.register_module()
class TaskVisualizationHook(Hook):
    """Every ``interval`` val / test batches, draw the first sample of the batch (its input
    image cropped to ``img_shape``, gt and predictions) with ``runner.visualizer`` (a
    :class:`TaskVisualizer` in the config's ``visualizer``), which writes it to its vis
    backends as ``<phase>_<source>_<image name>`` at the current training iteration.
    """
    priority = 'NORMAL'

    def __init__(self, interval: int = 50):
        if interval < 1:
            raise ValueError(f'TaskVisualizationHook interval must be >= 1, got {interval}')
        self.interval = interval

    def _draw(self, runner, phase, batch_idx, data_batch, outputs):
        if batch_idx % self.interval or not outputs:
            return
        sample = outputs[0]
        h, w = sample.img_shape[:2]
        image = data_batch['inputs'][0].permute(1, 2, 0).cpu().numpy()[:h, :w]
        stem = osp.splitext(osp.basename(sample.metainfo.get('img_path', str(batch_idx))))[0]
        name = f"{phase}_{sample.metainfo.get('source', 'data')}_{stem}"
        runner.visualizer.add_datasample(name, image, sample, step=runner.iter)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._draw(runner, 'val', batch_idx, data_batch, outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._draw(runner, 'test', batch_idx, data_batch, outputs)
