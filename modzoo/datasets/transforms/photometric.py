"""Colour augmentation: changes the image only, never a label."""
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from modzoo.registry import TRANSFORMS


def _affine(channel, alpha=1.0, beta=0.0):
    """uint8 ``channel * alpha + beta``, clipped to [0, 255]."""
    return np.clip(channel.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class PhotoMetricDistortion(BaseTransform):
    """mmseg's PhotoMetricDistortion on an RGB uint8 image.

    Each step happens with probability 1/2, in this order: brightness (add a value in
    ±``brightness_delta``), contrast (multiply by a factor in ``contrast_range``) either
    here or last, saturation (multiply S of HSV by a factor in ``saturation_range``), hue
    (shift H by an integer in ±``hue_delta``, in OpenCV's 0..180 hue units), contrast.
    """

    def __init__(self, brightness_delta=32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta=18):
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    def random_params(self):
        """Draw the distortion: a dict of factors (None where a step is skipped)."""
        def maybe(draw):
            return draw() if np.random.randint(2) else None

        return dict(
            brightness=maybe(lambda: np.random.uniform(-self.brightness_delta,
                                                       self.brightness_delta)),
            contrast_first=bool(np.random.randint(2)),
            contrast=maybe(lambda: np.random.uniform(*self.contrast_range)),
            saturation=maybe(lambda: np.random.uniform(*self.saturation_range)),
            hue=maybe(lambda: np.random.randint(-self.hue_delta, self.hue_delta)))

    @staticmethod
    def distort(img, brightness=None, contrast=None, contrast_first=True, saturation=None,
                hue=None):
        """Apply the distortion ``random_params`` describes to an RGB uint8 [H, W, 3]."""
        if brightness is not None:
            img = _affine(img, beta=brightness)
        if contrast is not None and contrast_first:
            img = _affine(img, alpha=contrast)
        if saturation is not None or hue is not None:
            hsv = mmcv.imconvert(img, 'rgb', 'hsv')
            if saturation is not None:
                hsv[..., 1] = _affine(hsv[..., 1], alpha=saturation)
            if hue is not None:
                hsv[..., 0] = (hsv[..., 0].astype(np.int64) + hue) % 180
            img = mmcv.imconvert(hsv, 'hsv', 'rgb')
        if contrast is not None and not contrast_first:
            img = _affine(img, alpha=contrast)
        return img

    def transform(self, results):
        results['img'] = self.distort(results['img'], **self.random_params())
        return results
