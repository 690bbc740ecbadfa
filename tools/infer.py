"""Predict images with a trained model and write every task's prediction as files.

    python tools/infer.py CONFIG CKPT INPUT... [--task NAME ...] --out-dir DIR
                          [--batch-size N] [--device cpu|cuda]

INPUT is an image, a folder (its images, recursively) or a quoted glob. Each image gets one
prediction per task under ``DIR/<task>/<image stem>.<ext>`` in the formats of
:mod:`modzoo.predictions` (classification and multi-label json, detection json with COCO
boxes and RLE masks, palette png, 16-bit depth png + npy, normals png, ...). Models with one
head per task (``MultiTaskModel``: dense, MoE, extracted, TaskExpert) and MULTI-LANE (the
classes seen so far) predict; each task sees its own test pipeline (e.g. detection at its own
resolution). An image that cannot be decoded is skipped with a warning naming it. The last
line is a JSON summary (images, skipped, seconds, images/s).
"""
import argparse
import glob
import json
import os.path as osp
import sys
import time
import warnings
from collections import Counter

import torch
from mmengine.utils import ProgressBar

from modzoo.datasets.transforms.loading import read_image
from modzoo.heads.pathway_head import PathwayHead
from modzoo.predictions import pred_field, save_prediction
from modzoo.zoo import inference, init_model, pipeline_groups, task_heads

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Predict images with a modzoo model')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint (path, URL, hf://, zoo name)')
    parser.add_argument('inputs', nargs='+', help='images, folders or globs')
    parser.add_argument('--task', nargs='+', dest='tasks',
                        help='tasks to predict (default: every task of the model)')
    parser.add_argument('--out-dir', required=True, help='where the predictions go')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='multi-label classes listed when their score is at least this')
    return parser.parse_args(argv)


def find_images(inputs):
    """Image paths of files, folders (recursive, by extension) and globs, in order, once each."""
    paths = []
    for item in inputs:
        if osp.isdir(item):
            paths += sorted(p for p in glob.glob(osp.join(item, '**', '*'), recursive=True)
                            if p.lower().endswith(IMAGE_EXTENSIONS))
        elif osp.isfile(item):
            paths.append(item)
        else:
            matches = sorted(p for p in glob.glob(item, recursive=True) if osp.isfile(p))
            if not matches:
                raise FileNotFoundError(f"input '{item}' is not a file, a folder or a glob "
                                        'that matches files')
            paths += matches
    return list(dict.fromkeys(paths))


def unique_stems(paths):
    """File stems, ``_2``, ``_3``... appended where two inputs share one."""
    seen, stems = Counter(), []
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        seen[stem] += 1
        stems.append(stem if seen[stem] == 1 else f'{stem}_{seen[stem]}')
    return stems


def task_rounds(model, tasks):
    """Split ``tasks`` into rounds, each one :func:`inference` call: tasks of one test
    pipeline whose heads write different ``pred_*`` fields, so that one sample holds every
    prediction of a round (two classification tasks: two rounds)."""
    heads, rounds = task_heads(model), []
    for group in pipeline_groups(model.cfg, tasks):
        group_rounds = []
        for task in group:
            field = pred_field(heads[task])
            for fields in group_rounds:
                if field not in fields.values():
                    fields[task] = field
                    break
            else:
                group_rounds.append({task: field})
        rounds += [tuple(fields) for fields in group_rounds]
    return rounds


def listed_classes(model, head):
    """The classes a multi-label json may list: MULTI-LANE's seen so far; None: all."""
    if not isinstance(head, PathwayHead):
        return None
    return set(torch.nonzero(head.class_mask[:model.task_id + 1].any(0)).flatten().tolist())


def task_metainfo(cfg, task):
    """``(classes, palette)`` of the first test source labelling ``task`` (None if unset)."""
    dataset = cfg.test_dataloader.dataset
    sources = dataset.get('sources', {'': dict(tasks=None, dataset=dataset)})
    for source in sources.values():
        if source.get('tasks') is None or task in source['tasks']:
            metainfo = source['dataset'].get('metainfo') or {}
            return metainfo.get('classes'), metainfo.get('palette')
    return None, None


def main(argv=None):
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f'--batch-size must be at least 1, got {args.batch_size}')
    model = init_model(args.config, args.checkpoint, device=args.device)
    try:
        heads = task_heads(model)
    except TypeError as error:
        raise SystemExit(f'tools/infer.py cannot predict with this model: {error}') from None
    tasks = args.tasks or list(heads)
    unknown = [task for task in tasks if task not in heads]
    if unknown:
        raise SystemExit(f'the model has no head for task(s) {unknown}; its tasks are '
                         f'{list(heads)}')
    rounds = task_rounds(model, tasks)
    meta = {task: task_metainfo(model.cfg, task) for task in tasks}
    candidates = {task: listed_classes(model, heads[task]) for task in tasks}
    paths = find_images(args.inputs)
    stems = dict(zip(paths, unique_stems(paths)))
    progress = ProgressBar(len(paths), file=sys.stderr)
    done, skipped, written, model_seconds = 0, [], 0, 0.0
    start = time.perf_counter()
    for first in range(0, len(paths), args.batch_size):
        batch = []
        for path in paths[first:first + args.batch_size]:
            try:
                batch.append((path, read_image(path)))
            except OSError as error:
                warnings.warn(f'skipped {path}: {error}')
                skipped.append(path)
        for round_tasks in rounds if batch else ():
            tic = time.perf_counter()
            samples = inference(model, [image for _, image in batch], round_tasks)
            model_seconds += time.perf_counter() - tic
            for (path, _), sample in zip(batch, samples):
                for task in round_tasks:
                    classes, palette = meta[task]
                    written += len(save_prediction(sample, task, heads[task], args.out_dir,
                                                   stems[path], classes, palette,
                                                   score_thr=args.score_thr,
                                                   candidates=candidates[task]))
        done += len(batch)
        for _ in range(len(paths[first:first + args.batch_size])):
            progress.update()
    seconds = time.perf_counter() - start
    summary = dict(images=done, skipped=len(skipped), tasks=tasks, files=written,
                   seconds=round(seconds, 3), images_per_s=round(done / max(seconds, 1e-9), 2),
                   model_images_per_s=round(done / max(model_seconds, 1e-9), 2),
                   device=str(torch.device(args.device)), out_dir=args.out_dir)
    print(file=sys.stderr)
    print(json.dumps(summary))
    return summary


if __name__ == '__main__':
    main()
