"""Caption metrics: BLEU-1..4 and CIDEr-D with pycocoevalcap's scorers."""
import re
from typing import List

from modzoo.registry import METRICS
from .base import TaskMetric

_TOKEN = re.compile(r"n't|'[^\W_]+|[^\W_]+")


def caption_tokens(text: str) -> List[str]:
    """Lower-cased words of a caption, as the COCO caption evaluation compares them.

    Replaces the Stanford PTBTokenizer (Java) of pycocoevalcap: a word is a run of Unicode
    letters and digits; punctuation, which PTBTokenizer drops too, is removed; clitics split
    off as PTB does ("don't" -> "do n't", "boy's" -> "boy 's"). Non-ASCII letters are kept.
    """
    return _TOKEN.findall(text.lower().replace("n't", " n't"))


def _scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as error:
        raise ImportError('CaptionMetric needs pycocoevalcap: pip install pycocoevalcap '
                          "(or pip install 'modzoo[uniperceiver]')") from error
    return Bleu(4), Cider()


@METRICS.register_module()
class CaptionMetric(TaskMetric):
    """BLEU-1..4 and CIDEr-D (x100) of ``pred_text`` (str) against ``gt_text`` (list[str]).

    Corpus-level scores of pycocoevalcap's ``Bleu(4)`` ('closest' reference length) and
    ``Cider`` (document frequencies from the references of the evaluated set), on captions
    tokenized by :func:`caption_tokens`. Empty references are skipped; an image left without
    a reference raises, naming it. Keys: ``<task>/BLEU-1`` .. ``BLEU-4``, ``<task>/CIDEr``.
    """

    def sample_stats(self, sample: dict) -> dict:
        refs = [' '.join(caption_tokens(t)) for t in self.field(sample, 'gt_text')]
        refs = [r for r in refs if r]
        if not refs:
            raise ValueError(f"CaptionMetric: the image {sample.get('img_path', '?')} of task "
                             f"'{self.task}' has no non-empty reference caption in gt_text")
        return dict(pred=' '.join(caption_tokens(self.field(sample, 'pred_text'))), refs=refs)

    def summarize(self, stats: list) -> dict:
        bleu, cider = _scorers()
        gts = {i: s['refs'] for i, s in enumerate(stats)}
        res = {i: [s['pred']] for i, s in enumerate(stats)}
        bleus, _ = bleu.compute_score(gts, res, verbose=0)
        cider_score, _ = cider.compute_score(gts, res)
        metrics = {f'BLEU-{n}': 100 * float(b) for n, b in enumerate(bleus, start=1)}
        metrics['CIDEr'] = 100 * float(cider_score)
        return metrics
