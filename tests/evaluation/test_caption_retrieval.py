"""Caption metrics against pycocoevalcap's own scorers; retrieval recall against brute force."""
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from modzoo.evaluation import CaptionMetric, RetrievalMetric
from modzoo.evaluation.metrics import caption_tokens, retrieval_ranks
from modzoo.structures import TaskDataSample

PAIRS = [
    ('A red sphere stands on the left.', ['A red sphere stands on the left of the image.',
                                          'A large red sphere is close to the camera.']),
    ('two objects under a blue sky', ['Two objects on a grey checkered ground under a blue sky.',
                                      'From left to right: a cube and a cone.']),
    ("The figure doesn't move.", ["The figure isn't moving.", 'A small figure stands.']),
    ('', ['A green cube is behind a blue cone.']),
    ('a small café', ['A small café on the corner.', 'Une petite café.']),
]


def caption_sample(i, pred, refs, task='caption'):
    sample = TaskDataSample(metainfo=dict(tasks=(task, ), img_path=f'{i}.png'))
    sample.pred_text, sample.gt_text = pred, refs
    return sample


def run(metric, samples):
    evaluator = Evaluator(metric)
    for i in range(0, len(samples), 2):
        evaluator.process(samples[i:i + 2])
    return evaluator.evaluate(len(samples))


def test_tokens_follow_ptb_conventions():
    assert caption_tokens("The boy's ball, don't!") == ['the', 'boy', "'s", 'ball', 'do', "n't"]
    assert caption_tokens('A CAFÉ -- 2 cups...') == ['a', 'café', '2', 'cups']
    assert caption_tokens('') == []


def test_caption_metric_equals_pycocoevalcap_scorers():
    samples = [caption_sample(i, p, r) for i, (p, r) in enumerate(PAIRS)]
    samples.append(caption_sample(99, 'ignored', ['other task'], task='cls'))
    got = run(CaptionMetric(task='caption'), samples)
    gts = {i: [' '.join(caption_tokens(r)) for r in refs] for i, (_, refs) in enumerate(PAIRS)}
    res = {i: [' '.join(caption_tokens(p))] for i, (p, _) in enumerate(PAIRS)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    for n in range(4):
        assert got[f'caption/BLEU-{n + 1}'] == pytest.approx(100 * bleu[n])
    assert got['caption/CIDEr'] == pytest.approx(100 * cider)
    assert 0 < got['caption/BLEU-4'] < got['caption/BLEU-1'] < 100


def test_caption_identical_to_reference_scores_bleu_100():
    samples = [caption_sample(i, refs[0], refs) for i, (_, refs) in enumerate(PAIRS)]
    got = run(CaptionMetric(task='caption'), samples)
    assert got['caption/BLEU-4'] == pytest.approx(100, abs=1e-4)


def test_caption_without_reference_names_the_image():
    with pytest.raises(ValueError, match='3.png'):
        run(CaptionMetric(task='caption'), [caption_sample(3, 'a cube', ['', '...'])])


def brute_force_recall(images, texts, owner, k):
    sims = torch.nn.functional.normalize(images, dim=1) @ \
        torch.nn.functional.normalize(texts, dim=1).t()
    i2t = [bool(np.isin(owner[sims[i].argsort(descending=True)[:k]], [i]).any())
           for i in range(len(images))]
    t2i = [owner[j].item() in sims[:, j].argsort(descending=True)[:k].tolist()
           for j in range(len(texts))]
    return 100 * np.mean(i2t), 100 * np.mean(t2i)


def test_ranks_by_hand():
    images = torch.tensor([[1., 0.], [0., 1.]])
    texts = torch.tensor([[0., 1.], [1., 0.1], [0.1, 1.]])   # image 0 owns 0, 1; image 1 owns 2
    i2t, t2i = retrieval_ranks(images, texts, torch.tensor([0, 0, 1]), chunk=1)
    assert i2t.tolist() == [0, 1]     # image 1's own caption 2 is beaten by caption 0
    assert t2i.tolist() == [1, 0, 0]  # caption 0 (of image 0) is closer to image 1


def test_retrieval_metric_equals_brute_force():
    torch.manual_seed(0)
    num_images, caps = 23, 3
    images, texts = torch.randn(num_images, 8), torch.randn(num_images * caps, 8)
    texts += images.repeat_interleave(caps, 0)     # correlated, so recall is non-trivial
    owner = torch.arange(num_images).repeat_interleave(caps)
    samples = []
    for i in range(num_images):
        sample = TaskDataSample(metainfo=dict(tasks=('retrieval', ), img_path=f'{i}.png'))
        sample.pred_image_embedding = images[i]
        sample.pred_text_embeddings = texts[i * caps:(i + 1) * caps]
        samples.append(sample)
    got = run(RetrievalMetric(task='retrieval'), samples)
    for k in (1, 5, 10):
        i2t, t2i = brute_force_recall(images, texts, owner, k)
        assert got[f'retrieval/i2t_R@{k}'] == pytest.approx(i2t)
        assert got[f'retrieval/t2i_R@{k}'] == pytest.approx(t2i)
    assert 0 < got['retrieval/i2t_R@1'] < 100
    i2t, t2i = retrieval_ranks(images, texts, owner, chunk=4)
    assert torch.equal(i2t, retrieval_ranks(images, texts, owner, chunk=1000)[0])


def test_retrieval_with_fewer_images_than_k_is_a_clear_error():
    sample = TaskDataSample(metainfo=dict(tasks=('retrieval', ), img_path='0.png'))
    sample.pred_image_embedding, sample.pred_text_embeddings = torch.ones(4), torch.ones(1, 4)
    with pytest.raises(ValueError, match='fewer than the largest K'):
        run(RetrievalMetric(task='retrieval'), [sample] * 3)
