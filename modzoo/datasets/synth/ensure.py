"""Generate SynthScenes on first use, once, also in distributed runs."""
import os.path as osp

from mmengine.dist import barrier, get_rank
from mmengine.logging import print_log


def ensure_synth_data(root, **generate_kwargs):
    """Make sure ``root`` holds a complete SynthScenes set; render it when missing.

    The generator renames its temporary folder to ``root`` only when every file is
    written, so an existing ``root`` is complete. Rank 0 renders; the others wait.
    """
    if not osp.isdir(root):
        if get_rank() == 0:
            from modzoo.datasets.synth import generate_synth_scenes
            print_log(f'SynthScenes data not found at {root}: generating it '
                      f'(python tools/make_synth_data.py --out {root} does the same)',
                      logger='current')
            generate_synth_scenes(root, **generate_kwargs)
        barrier()
    return root
