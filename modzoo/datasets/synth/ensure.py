"""Generate SynthScenes on first use, once, also in distributed runs, only where asked."""
import os
import os.path as osp
from typing import Sequence

from mmengine.dist import barrier, get_rank
from mmengine.logging import print_log

# Where SynthScenes is rendered on first use unless a config names another folder.
DEFAULT_SYNTH_ROOT = 'data/synth'


def ensure_synth_data(root: str, render_at: str = DEFAULT_SYNTH_ROOT,
                      needed: Sequence[str] = (), **generate_kwargs) -> str:
    """Make sure ``root`` holds a SynthScenes set; render it when missing, but only when
    ``root`` is ``render_at`` (the default location, or a folder the config marks as
    SynthScenes), so a mistyped path never fills itself with synthetic data.

    Args:
        root: the folder the data is read from.
        render_at: the one folder that may be rendered into.
        needed: the source folders under ``root`` that the error message names.

    The generator renames its temporary folder to ``root`` only when every file is written,
    so an existing, non-empty ``root`` is complete. Rank 0 renders; the others wait.

    Raises:
        FileNotFoundError: ``root`` is missing (or empty) and is not ``render_at``; the message
            names each missing folder and the command that renders SynthScenes there.
    """
    if osp.isdir(root) and os.listdir(root):
        return root
    if osp.abspath(root) != osp.abspath(render_at):
        missing = [path for path in needed if not osp.exists(path)] or [root]
        raise FileNotFoundError(
            f'no data at {root}: missing {", ".join(missing)}. SynthScenes is rendered on first '
            f'use only at {render_at}; to render it here run `python tools/make_synth_data.py '
            f'--out {root}`, or point data_root at your dataset')
    if get_rank() == 0:
        from modzoo.datasets.synth import generate_synth_scenes
        print_log(f'SynthScenes data not found at {root}: generating it '
                  f'(python tools/make_synth_data.py --out {root} does the same)',
                  logger='current')
        generate_synth_scenes(root, **generate_kwargs)
    barrier()
    return root
