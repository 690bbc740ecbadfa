"""The first transforms of every pipeline: read the image, decode the labels."""
import mmcv
from mmcv.transforms import BaseTransform
from mmengine import fileio

from modzoo.registry import TRANSFORMS
from modzoo.structures import DENSE_FIELDS


def read_image(path, flag='color', backend='cv2', backend_args=None):
    """Read an image file with mmengine fileio + mmcv.

    flag 'color' gives RGB uint8 [H, W, 3]; 'unchanged' gives the stored values (use it
    with backend 'pillow' for single-channel label pngs: palette pngs then give indices).
    Raises FileNotFoundError / OSError naming the file when it is missing or undecodable.
    """
    content = fileio.get(path, backend_args=backend_args)
    try:
        img = mmcv.imfrombytes(content, flag=flag, channel_order='rgb', backend=backend)
    except Exception as error:  # each decoder fails in its own way on a corrupt file
        raise OSError(f"cannot decode image file '{path}': {error}") from error
    if img is None or img.size == 0:
        raise OSError(f"cannot decode image file '{path}': not a valid image "
                      f'({len(content)} bytes)')
    return img


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Read ``results['img_path']`` into ``img`` (RGB uint8 [H, W, 3]).

    Sets ``img_shape`` and ``ori_shape`` ((H, W)). A missing or corrupt file raises an
    error naming it.

    Args:
        imdecode_backend (str): mmcv decoding backend ('cv2', 'pillow', 'turbojpeg').
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self, imdecode_backend='cv2', backend_args=None):
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args

    def transform(self, results):
        img = read_image(results['img_path'], 'color', self.imdecode_backend, self.backend_args)
        results['img'] = img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadTaskAnnotations(BaseTransform):
    """Decode a sample's labels with its dataset's decoder; must follow ``LoadImage``.

    modzoo datasets put their decoder in ``results['ann_decoder']`` (see
    ``modzoo.datasets.base``); it returns the gt arrays (``gt_sem_seg``, ``gt_depth``,
    ``gt_bboxes``, ``gt_masks``, ...), which are checked to have the image's size (the
    error names the label file and both sizes) and added to ``results``. Samples whose
    labels come with the data list (``gt_label``, ``gt_labels``) have no decoder and pass
    through unchanged.
    """

    def transform(self, results):
        decoder = results.pop('ann_decoder', None)
        if decoder is None:
            return results
        if 'img' not in results:
            raise KeyError('LoadTaskAnnotations needs the image: put LoadImage before it')
        labels = decoder(results)
        img_hw = tuple(results['img'].shape[:2])
        for key, value in labels.items():
            if key not in DENSE_FIELDS and key != 'gt_masks':
                continue
            label_hw = tuple(value.shape[1:3] if key == 'gt_masks' else value.shape[:2])
            if label_hw != img_hw:
                source = results.get('ann_paths', {}).get(key, key)
                raise ValueError(f"{key} read from '{source}' has size {label_hw} (H, W) but "
                                 f"its image '{results['img_path']}' has size {img_hw}")
        results.update(labels)
        return results
