"""IncrementalLoop: task-by-task training, masking, per-task optimizers, evaluation, resume;
and the class-incremental metrics it reports."""
import json
import os
import os.path as osp
import uuid

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from modzoo.datasets.class_incremental import split_classes
from modzoo.evaluation.metrics.incremental import (IncrementalAccuracy, IncrementalMultiLabelMetric,
                                                   incremental_summary)
from modzoo.structures import TaskDataSample

RUNTIME = osp.join(osp.dirname(__file__), '..', '..', 'configs', '_base_', 'default_runtime.py')
CLASSES = ('dog', 'cat', 'bird', 'ant', 'eel', 'fox')   # B2-C2: [ant bird] [cat dog] [eel fox]
CLASS_MASK = split_classes(CLASSES, base=2, increment=2)
# labels of the train images; every class appears, some images in two tasks
TRAIN = [(0, ), (1, ), (2, ), (3, ), (4, ), (5, ), (0, 4), (1, 3), (2, 5), (3, 5), (0, 2),
         (4, 1)]
VAL = [(0, ), (1, 4), (2, ), (3, 5), (4, ), (5, 0)]


def write_voc(root, split, labels):
    """VOC2007 layout: one 16x16 image per entry of ``labels`` (its class indices)."""
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(len(labels))
    ids = [f'{split}{i:03d}' for i in range(len(labels))]
    for image_id, classes in zip(ids, labels):
        img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        img[:, :, 0] = 40 * classes[0]                   # a hint of the first class
        cv2.imwrite(osp.join(root, 'JPEGImages', f'{image_id}.jpg'), img)
        objects = ''.join(f'<object><name>{CLASSES[c]}</name><difficult>0</difficult></object>'
                          for c in classes)
        with open(osp.join(root, 'Annotations', f'{image_id}.xml'), 'w') as f:
            f.write(f'<annotation>{objects}</annotation>')
    with open(osp.join(root, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    write_voc(root, 'train', TRAIN)
    write_voc(root, 'val', VAL)
    return root


def loader(root, split, shuffle):
    voc = dict(type='VOCDataset', data_root=root, split=split, metainfo=dict(classes=CLASSES),
               pipeline=[dict(type='LoadImage'), dict(type='PackTaskInputs')])
    return dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=shuffle),
                dataset=dict(type='MultiTaskDataset',
                             sources=dict(multilabel=dict(tasks=['multilabel'], dataset=voc))))


def multilane_cfg(root, work_dir, class_split=dict(base=2, increment=2), epochs=2):
    class_mask = split_classes(CLASSES, **class_split)
    cfg = Config.fromfile(RUNTIME)
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        experiment_name=f'incremental_{uuid.uuid4().hex[:8]}',  # default: unique per second
        model=dict(
            type='MultiLane',
            data_preprocessor=dict(type='ImgDataPreprocessor', mean=[0.] * 3, std=[255.] * 3),
            backbone=dict(type='MultiLaneViT', arch='vit_tiny_patch16_224',
                          vit_cfg=dict(img_size=16, patch_size=8, embed_dim=32, depth=2,
                                       num_heads=2),
                          num_tasks=len(class_mask), num_selectors=2, num_prompts=2,
                          num_prompt_layers=1),
            head=dict(type='PathwayHead', num_classes=len(CLASSES), class_mask=class_mask)),
        train_dataloader=loader(root, 'train', shuffle=True),
        val_dataloader=loader(root, 'val', shuffle=False),
        val_evaluator=[dict(type='IncrementalMultiLabelMetric', task='multilabel', thr=0.8)],
        val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=0.01)),
        param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs,
                              T_max=epochs)],
        train_cfg=dict(type='IncrementalLoop', class_split=class_split, epochs_per_task=epochs,
                       logits_module='head.fc'),
        default_hooks=dict(checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=10),
                           logger=dict(interval=1)),
        env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    return cfg


class Probe(Hook):
    """Records a copy of some model state when each task starts and after it is evaluated."""

    def __init__(self, fn):
        self.fn = fn
        self.at_start, self.at_end = {}, {}

    def before_train_epoch(self, runner):
        loop = runner.train_loop
        task, epoch = divmod(runner.epoch, loop.epochs_per_task)
        if epoch == 0:
            self.at_start[task] = self.fn(runner)

    def after_train_epoch(self, runner):
        loop = runner.train_loop
        task, epoch = divmod(runner.epoch, loop.epochs_per_task)
        if epoch == loop.epochs_per_task - 1:
            self.at_end[task] = self.fn(runner)


class EpochLog(Hook):
    """Records (epoch, model task) of every epoch trained."""

    def __init__(self):
        self.seen = []

    def before_train_epoch(self, runner):
        self.seen.append((runner.epoch, runner.model.task_id))


class StopAtEpoch(Hook):
    """Simulates a run killed at the start of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def before_train_epoch(self, runner):
        if runner.epoch == self.epoch:
            raise KeyboardInterrupt


def val_images():
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.random((3, 3, 16, 16), dtype=np.float32))


def train(cfg, *hooks):
    runner = Runner.from_cfg(cfg)
    for hook in hooks:
        runner.register_hook(hook)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def reference(voc_root, tmp_path_factory):
    """One uninterrupted MULTI-LANE run (3 tasks x 2 epochs) with a probe of its state at the
    start and end of each task: (runner, probe, work_dir)."""
    x = val_images()

    def state(runner):
        model = runner.model
        with torch.no_grad():
            logits = model(x) if model.task_id == runner.epoch // 2 else None
        return dict(selectors=model.backbone.selectors.tokens.detach().clone(),
                    task_id=model.task_id, logits=logits,
                    optimizer_state=len(runner.optim_wrapper.optimizer.state))

    work_dir = tmp_path_factory.mktemp('reference')
    probe = Probe(state)
    return train(multilane_cfg(voc_root, work_dir), probe), probe, work_dir


def test_multilane_trains_task_by_task(reference):
    runner, probe, work_dir = reference
    loop = runner.train_loop
    assert loop.class_mask == [[3, 2], [1, 0], [4, 5]] and loop.max_epochs == 6
    # the images of each task: at least one label of its classes
    assert [len(s) for s in loop.train_sets] == [6, 6, 6]
    assert loop.max_iters == 2 * (2 + 2 + 2)
    for task in (1, 2):
        start, end = probe.at_start[task], probe.at_end[task]
        assert start['task_id'] == task and start['optimizer_state'] == 0   # fresh Adam
        # pathway t starts from pathway t-1 as trained
        torch.testing.assert_close(start['selectors'][task], probe.at_end[task - 1]['selectors']
                                   [task - 1], rtol=0, atol=0)
        # training task t leaves the earlier pathways and the logits of their classes as they were
        torch.testing.assert_close(end['selectors'][:task], start['selectors'][:task],
                                   rtol=0, atol=0)
        old = [c for classes in CLASS_MASK[:task] for c in classes]
        torch.testing.assert_close(end['logits'][:, old], probe.at_end[task - 1]['logits'][:, old],
                                   rtol=0, atol=1e-6)
        assert not torch.equal(end['selectors'][task], start['selectors'][task])
    # evaluated after each task on the seen classes
    with open(osp.join(work_dir, 'incremental_results.json')) as f:
        results = json.load(f)
    assert results['split'] == 'B2-C2' and results['class_mask'] == CLASS_MASK
    assert [t['classes'] for t in results['tasks']] == [
        ['ant', 'bird'], ['cat', 'dog'], ['eel', 'fox']]
    maps = [t['metrics']['multilabel/mAP'] for t in results['tasks']]
    assert results['summary']['avg/multilabel/mAP'] == pytest.approx(np.mean(maps))
    assert results['summary']['last/multilabel/mAP'] == maps[-1]
    assert {'multilabel/CF1', 'multilabel/CF1_mean', 'multilabel/OF1'} <= \
        set(results['tasks'][0]['metrics'])
    with open(osp.join(work_dir, runner.timestamp, f'{runner.timestamp}.log')) as f:
        log = f.read()
    per_task = runner.model.params_per_task()
    assert per_task == 2 * 32 + 1 * 2 * 2 * 32
    assert f'task 3/3 of B2-C2: classes [\'eel\', \'fox\'], 6 training images; trainable ' \
           f'parameters per task: {per_task:,}' in log


def test_resume_inside_a_task_continues_as_if_never_stopped(reference, voc_root, tmp_path):
    cfg = multilane_cfg(voc_root, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, StopAtEpoch(3))                       # second epoch of task 2 (of 3)
    assert {'epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth'} <= set(os.listdir(tmp_path))
    assert 'epoch_4.pth' not in os.listdir(tmp_path)
    cfg.resume = True
    epochs = EpochLog()
    resumed = train(cfg, epochs)
    # it went on with the second epoch of task 2, its pathway still open, then task 3
    assert epochs.seen == [(3, 1), (4, 2), (5, 2)]
    for (key, value), ref in zip(resumed.model.state_dict().items(),
                                 reference[0].model.state_dict().values()):
        torch.testing.assert_close(value, ref, msg=key)
    results = []
    for work_dir in (reference[2], tmp_path):
        with open(osp.join(work_dir, 'incremental_results.json')) as f:
            results.append(json.load(f))
    assert len(results[1]['tasks']) == 3
    assert results[1]['summary'] == pytest.approx(results[0]['summary'])


def test_resuming_a_checkpoint_of_another_split_fails(reference, voc_root, tmp_path):
    other = multilane_cfg(voc_root, tmp_path, class_split=dict(base=4, increment=1))
    other.resume, other.load_from = True, str(reference[2] / 'epoch_3.pth')
    with pytest.raises(ValueError, match=r'trained on split B2-C2 with tasks \[\[3, 2\], '
                                         r'\[1, 0\], \[4, 5\]\], but this config gives B4-C1'):
        train(other)


def test_model_built_for_another_split_fails(voc_root, tmp_path):
    cfg = multilane_cfg(voc_root, tmp_path)
    cfg.model.head.class_mask = [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match=r'model.head.class_mask has tasks \[\[0, 1\], '
                                         r'\[2, 3\], \[4, 5\]\] but split B2-C2'):
        Runner.from_cfg(cfg).train_loop


def test_linear_probe_masks_the_logits_of_other_tasks(voc_root, tmp_path):
    """A plain model: the loop's logit mask and target mask keep inactive classes out."""
    cfg = multilane_cfg(voc_root, tmp_path, epochs=1)
    cfg.model = dict(
        type='MultiTaskModel', data_preprocessor=cfg.model.data_preprocessor,
        backbone=dict(type='ViT', arch=dict(embed_dim=32, depth=1, num_heads=2), img_size=16,
                      patch_size=8),
        heads=dict(multilabel=dict(type='MultiLabelClsHead', num_classes=6, in_channels=32)))
    cfg.optim_wrapper = dict(constructor='FreezeOptimWrapperConstructor',
                             optimizer=dict(type='Adam', lr=0.01),
                             paramwise_cfg=dict(frozen=['backbone.*']))
    cfg.train_cfg.logits_module = 'heads.multilabel.fc'

    def head(runner):
        fc = runner.model.heads.multilabel.fc
        return torch.cat((fc.weight, fc.bias[:, None]), dim=1).detach().clone()

    probe = Probe(head)
    runner = train(cfg, probe)
    for task, classes in enumerate(CLASS_MASK):
        others = [c for c in range(6) if c not in classes]
        torch.testing.assert_close(probe.at_end[task][others], probe.at_start[task][others],
                                   rtol=0, atol=0)
        assert (probe.at_end[task][classes] != probe.at_start[task][classes]).all()
    assert not any(p.requires_grad for p in runner.model.backbone.parameters())


def write_imagenet(root, split, labels):
    for i, label in enumerate(labels):
        folder = osp.join(root, split, CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        img = np.full((16, 16, 3), 40 * label, np.uint8)
        cv2.imwrite(osp.join(folder, f'{i}.jpg'), img)


def test_single_label_variant_reports_accuracy_per_task_and_forgetting(tmp_path):
    root = str(tmp_path / 'imagenet')
    write_imagenet(root, 'train', [0, 1, 2, 3, 4, 5] * 2)
    write_imagenet(root, 'val', [0, 1, 2, 3, 4, 5])
    cfg = multilane_cfg(root, tmp_path, epochs=1)
    cfg.model = dict(
        type='MultiTaskModel', data_preprocessor=cfg.model.data_preprocessor,
        backbone=dict(type='ViT', arch=dict(embed_dim=32, depth=1, num_heads=2), img_size=16,
                      patch_size=8),
        heads=dict(cls=dict(type='ClsHead', num_classes=6, in_channels=32)))
    for split in ('train', 'val'):
        dataset = cfg[f'{split}_dataloader'].dataset
        dataset.sources = dict(cls=dict(tasks=['cls'], dataset=dict(
            type='ImageNetDataset', data_root=root, split=split,
            metainfo=dict(classes=CLASSES),
            pipeline=[dict(type='LoadImage'), dict(type='PackTaskInputs')])))
    cfg.val_evaluator = [dict(type='IncrementalAccuracy', task='cls', topk=(1, ))]
    cfg.train_cfg.update(logits_module='heads.cls.fc', multi_label=False)
    runner = Runner.from_cfg(cfg)
    loop = runner.train_loop
    loop._set_active([3, 2])
    masked = loop._mask_logits(None, None, torch.zeros(2, 6)).softmax(dim=1)
    torch.testing.assert_close(masked, torch.tensor([[0, 0, .5, .5, 0, 0]] * 2))
    runner.train()
    summary = loop.results()['summary']
    last = [summary[f'last/cls/top1_task{t}'] for t in range(3)]
    assert summary['last/cls/top1_avg'] == pytest.approx(np.mean(last))
    history = [t['metrics'] for t in loop.results()['tasks']]
    assert summary == pytest.approx(incremental_summary(history))
    assert 'forgetting/cls/top1' in summary


# -- metrics ------------------------------------------------------------------------------
def multilabel_sample(scores, labels):
    sample = TaskDataSample(metainfo=dict(tasks=('multilabel', )))
    sample.pred_scores = torch.tensor(scores)
    sample.gt_labels = torch.tensor(labels, dtype=torch.float32)
    return sample.to_dict()


def test_multilabel_metric_counts_the_seen_classes_only():
    samples = [multilabel_sample([0.9, 0.5, 0.5], [1, 0, 0]),
               multilabel_sample([0.2, 0.5, 0.85], [1, 0, 1]),
               multilabel_sample([0.1, 0.5, 0.95], [0, 0, 0])]
    every_class = IncrementalMultiLabelMetric(task='multilabel', thr=0.8)   # no split set
    every_class.process(None, samples)
    # the class without positives or predictions has F1 0 and lowers the mean
    assert every_class.compute_metrics(every_class.results)['CF1_mean'] == pytest.approx(
        100 * (2 / 3 + 0 + 2 / 3) / 3)
    metric = IncrementalMultiLabelMetric(task='multilabel', thr=0.8)
    metric.set_tasks([[2, 0], [1]], task_id=0)
    assert metric.seen_classes == [0, 2]
    metric.process(None, samples)
    result = metric.compute_metrics(metric.results)
    # class 0: scores .9 .2 .1, positives 1 1 0 -> AP 1; class 2: .5 .85 .95 / 0 1 0 -> 1/2
    assert result['mAP'] == pytest.approx(75.)
    # at 0.8: class 0 TP 1 of 1 predicted, 2 true; class 2 TP 1 of 2 predicted, 1 true
    p, r = np.array([1, .5]), np.array([.5, 1])
    assert result['CF1_mean'] == pytest.approx(100 * np.mean(2 * p * r / (p + r)))
    assert result['CF1'] == pytest.approx(100 * 2 * .75 * .75 / 1.5)
    assert result['OF1'] == pytest.approx(100 * 2 / 3)       # TP 2, predicted 3, true 3
    classwise = IncrementalMultiLabelMetric(task='multilabel', thr=0.8, classwise=True)
    classwise.dataset_meta = dict(sources=dict(voc=dict(tasks=('multilabel', ),
                                                        classes=('ant', 'bee', 'cat'))))
    classwise.set_tasks([[2, 0], [1]], task_id=0)
    classwise.process(None, samples)
    result = classwise.compute_metrics(classwise.results)
    assert result['AP_ant'] == pytest.approx(100.) and result['AP_cat'] == pytest.approx(50.)
    assert 'AP_bee' not in result


def test_accuracy_per_task():
    metric = IncrementalAccuracy(task='cls', topk=(1, ))
    metric.set_tasks([[0, 1], [2]], task_id=1)
    samples = []
    for score, label in (([.9, .1, 0], 0), ([.9, .1, 0], 1), ([.1, .2, .7], 2),
                         ([.2, .3, .5], 1)):
        sample = TaskDataSample(metainfo=dict(tasks=('cls', )))
        sample.pred_score, sample.gt_label = torch.tensor(score), torch.tensor(label)
        samples.append(sample.to_dict())
    metric.process(None, samples)
    result = metric.compute_metrics(metric.results)
    assert result == pytest.approx(dict(top1=50., top1_task0=100 / 3, top1_task1=100.,
                                        top1_avg=(100 / 3 + 100) / 2))


def test_incremental_summary_average_last_forgetting():
    history = [
        {'ml/mAP': 80., 'ml/OF1': 50., 'cls/top1_task0': 90.},
        {'ml/mAP': 70., 'ml/OF1': 40., 'cls/top1_task0': 60., 'cls/top1_task1': 80.},
        {'ml/mAP': 60., 'ml/OF1': 30., 'cls/top1_task0': 70., 'cls/top1_task1': 50.,
         'cls/top1_task2': 75.},
    ]
    summary = incremental_summary(history)
    assert summary['avg/ml/mAP'] == pytest.approx(70.)
    assert 'avg/ml/OF1' not in summary and summary['last/ml/OF1'] == 30.
    # task 0: best 90, now 70; task 1: best 80, now 50
    assert summary['forgetting/cls/top1'] == pytest.approx((20 + 30) / 2)
    assert 'forgetting/cls/top1' not in incremental_summary(history[:1])
    assert incremental_summary([]) == {}


def test_testing_a_checkpoint_of_task_t_scores_the_classes_seen_up_to_t(reference, voc_root,
                                                                        tmp_path):
    _, _, work_dir = reference
    with open(osp.join(work_dir, 'incremental_results.json')) as f:
        after_task_2 = json.load(f)['tasks'][1]['metrics']
    cfg = multilane_cfg(voc_root, tmp_path)
    cfg.merge_from_dict(dict(test_dataloader=loader(voc_root, 'val', shuffle=False),
                             test_evaluator=cfg.val_evaluator,
                             test_cfg=dict(type='IncrementalTestLoop'),
                             load_from=str(work_dir / 'epoch_4.pth')))  # after task 2 of 3
    metrics = Runner.from_cfg(cfg).test()
    assert metrics == pytest.approx(after_task_2)
    # the plain test loop scores the unseen classes too
    cfg.test_cfg = dict(type='TestLoop')
    cfg.experiment_name += '_plain'
    plain = Runner.from_cfg(cfg).test()
    assert plain['multilabel/mAP'] != pytest.approx(after_task_2['multilabel/mAP'])
