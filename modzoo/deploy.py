"""One task of a trained model as a plain ``images -> prediction`` module, exported to ONNX or
a ``torch.export`` program (``tools/deploy/export.py``).

:class:`TaskPredictor` takes RGB images as the data preprocessor receives them (float
[B, 3, H, W], 0-255), normalises them as the config does and returns what the task's head
writes into ``pred_*``:

=====================  =======================================================
head                   output
=====================  =======================================================
ClsHead                scores [B, C] (softmax)
MultiLabelClsHead      scores [B, C] (sigmoid)
SemSegHead             class map [B, H, W] (int64)
DepthHead              depth [B, H, W] (metres)
NormalHead             unit normals [B, 3, H, W]
EdgeHead, SaliencyHead probabilities [B, H, W]
MultiLane              scores [B, C] of the seen classes (sigmoid, or softmax
                       for single-label)
=====================  =======================================================

MoE layers switch to their export-friendly forward (``moe_export.py``) and, as in the exported
graph, keep no statistics (the routers' usage counts stay as loaded). The batch size is a
dynamic dimension of the exported graph; the image size is fixed at the example's.
"""
from contextlib import contextmanager
from typing import Optional

import torch
from torch import Tensor, nn

from modzoo.heads.classification import ClsHead
from modzoo.heads.dense import DenseHead
from modzoo.heads.multilabel import MultiLabelClsHead
from modzoo.models.layers.moe_export import set_export_dispatch
from modzoo.models.layers.moe_router import statistics_paused
from modzoo.models.multilane import MultiLane

FORMATS = ('onnx', 'exported-program')


class ExportError(RuntimeError):
    """A model (or one of its layers) that cannot be exported."""


class TaskPredictor(nn.Module):
    """``images`` [B, 3, H, W] (RGB, 0-255) -> the prediction of ``task`` (module docstring).

    Args:
        model: a ``MultiTaskModel`` (dense, MoE, extracted MoE, TaskExpert) or ``MultiLane``.
        task: the task to predict; may be omitted for a one-task model and for MultiLane.
    """

    def __init__(self, model: nn.Module, task: Optional[str] = None):
        super().__init__()
        self.model = model.eval()
        if isinstance(model, MultiLane):
            self.task = None
            self.pathways = model.backbone.task_list()  # read once: traced as constants
        else:
            heads = getattr(model, 'heads', None)
            if heads is None:
                raise ExportError(f'{type(model).__name__} cannot be exported: TaskPredictor '
                                  'knows models with one head per task (MultiTaskModel) and '
                                  'MultiLane')
            if task is None and len(heads) == 1:
                task = next(iter(heads))
            if task not in heads:
                raise KeyError(f'the model has no head for task {task!r}; its tasks are '
                               f'{list(heads)}')
            head = heads[task]
            if not isinstance(head, (ClsHead, DenseHead)):
                raise ExportError(f'heads.{task} ({type(head).__name__}) has no export form: '
                                  'classification, multi-label and dense heads export')
            self.task = task
        set_export_dispatch(model, True)
        self.eval()

    def preprocess(self, images: Tensor) -> Tensor:
        """As the model's ``ImgDataPreprocessor``: channel swap, then (x - mean) / std."""
        pre = self.model.data_preprocessor
        if getattr(pre, '_channel_conversion', False):
            images = images[:, [2, 1, 0]]
        images = images.float()
        if getattr(pre, '_enable_normalize', False):
            images = (images - pre.mean) / pre.std
        return images

    def forward(self, images: Tensor) -> Tensor:
        with statistics_paused():
            return self._predict(self.preprocess(images))

    def _predict(self, x: Tensor) -> Tensor:
        if isinstance(self.model, MultiLane):
            head = self.model.head
            logits = head.seen_logits(self.model.backbone(x, self.pathways), self.pathways)
            return logits.sigmoid() if head.multi_label else logits.softmax(1)
        feats = self.model._task_features(x, (self.task, ))[0][self.task]
        head = self.model.heads[self.task]
        if isinstance(head, MultiLabelClsHead):
            return head(feats).sigmoid()
        if isinstance(head, ClsHead):
            return head(feats).softmax(1)
        return head.postprocess(head(feats, tuple(x.shape[-2:])))


@contextmanager
def blame_layer(model: nn.Module):
    """Turn an error raised while tracing ``model`` into an :class:`ExportError` naming the
    innermost layer of ``model`` whose ``forward`` was running when it was raised."""
    try:
        yield
    except Exception as error:
        layer = _innermost_layer(error, {m: n for n, m in model.named_modules()})
        raise ExportError(f'cannot export: layer {layer} does not trace: '
                          f'{type(error).__name__}: {str(error).splitlines()[0]}') from error


def _innermost_layer(error: BaseException, names: dict) -> str:
    """``'name (Type)'`` of the innermost module method on the tracebacks of ``error`` and of
    the errors it was raised from (the deepest one that has such a frame wins)."""
    culprit, seen = '(outside any layer)', set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb, found = error.__traceback__, None
        while tb is not None:
            owner = tb.tb_frame.f_locals.get('self')
            if isinstance(owner, nn.Module) and owner in names:
                found = f'{names[owner] or "(model)"} ({type(owner).__name__})'
            tb = tb.tb_next
        culprit = found or culprit
        error = error.__cause__ or error.__context__
    return culprit


def _dynamic_batch(images: Tensor) -> dict:
    return dict(images={0: torch.export.Dim('batch', min=1, max=1024)})


def export_program(predictor: TaskPredictor, images: Tensor, path: str):
    """Trace ``predictor`` on the example ``images`` with ``torch.export`` (batch dynamic)
    and save the program to ``path`` (``torch.export.load`` reads it)."""
    with blame_layer(predictor):
        program = torch.export.export(predictor, (images, ), strict=False,
                                      dynamic_shapes=_dynamic_batch(images))
    torch.export.save(program, path)
    return program


def export_onnx(predictor: TaskPredictor, images: Tensor, path: str, opset: int = 18):
    """Export ``predictor`` to the ONNX file ``path`` (input ``images``, output ``pred``,
    batch dynamic) with the ``torch.export``-based ONNX exporter."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as error:
        raise ImportError('ONNX export needs onnx and onnxscript: pip install "modzoo[deploy]"'
                          ) from error
    with blame_layer(predictor):
        program = torch.onnx.export(predictor, (images, ), path, dynamo=True, opset_version=opset,
                                    input_names=['images'], output_names=['pred'],
                                    dynamic_shapes=_dynamic_batch(images), external_data=False)
    return program
