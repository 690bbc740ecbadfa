"""What the official-weights converters (``tools/model_converters/*_official.py``) share:
their command line (``SRC DST [--verify] [--tol T]``), the report of the differences to the
official outputs stored in SRC, and the atomic write of the converted checkpoint."""
import argparse
from typing import Dict, Optional

from torch import nn

from modzoo.engine.checkpoint import save_checkpoint_atomic


def converter_parser(description: str, src_help: str, verify_help: str,
                     tol: float = 1e-4) -> argparse.ArgumentParser:
    """The arguments every converter takes: src, dst, --verify and --tol (default ``tol``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help='where to write the modzoo checkpoint')
    parser.add_argument('--verify', action='store_true', help=verify_help)
    parser.add_argument('--tol', type=float, default=tol,
                        help=f'largest allowed absolute difference (default {tol:.0e})')
    return parser


def write_converted(model: nn.Module, cfg: dict, dst: str,
                    diffs: Optional[Dict[str, float]], tol: float) -> int:
    """Print ``max |NAME - official NAME| = D`` for each verified output, write ``dst``
    (``state_dict`` and ``meta.model``, the config that builds the model) unless a difference
    exceeds ``tol``, and end with the largest difference on the last line.

    ``diffs``: {output name: largest absolute difference}, or None without ``--verify``.
    Returns the exit status: 1 when a difference exceeds ``tol`` (nothing written), else 0.
    """
    largest = max(diffs.values()) if diffs else None
    for name, diff in (diffs or {}).items():
        print(f'max |{name} - official {name}| = {diff:.3e}')
    if largest is not None and not largest <= tol:
        print(f'not written: {dst} (the output differs from the official one)')
    else:
        save_checkpoint_atomic(dict(state_dict=model.state_dict(), meta=dict(model=cfg)), dst)
        print(f'wrote {dst}')
    if largest is None:
        return 0
    print(f'largest difference to the official outputs = {largest:.3e} (tolerance {tol:.0e})')
    return int(not largest <= tol)
