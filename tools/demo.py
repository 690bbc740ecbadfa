"""Train a config on SynthScenes, evaluate it and compare each task with its training prior.

``python tools/demo.py configs/quickstart/vit-tiny_synth_mtl.py`` (what ``make demo`` runs)
generates the data when missing, trains, evaluates on the validation sets and prints one row
per metric: the trained model beside :class:`PriorBaseline` (majority class, mean depth, ...).
The console shows only the progress (data generation, training with its ETA, evaluation) and
the table; the whole log (config, environment, optimizer groups) goes to a file in the work
dir, whose path is printed (``--verbose`` shows everything).

torch is imported in ``main()`` after the config's ``type=`` names passed the torch-free check
(:func:`~modzoo.type_names.load_checked_config`), so a typo fails at once.
"""
import argparse
import json
import logging
import os.path as osp
import re
import time

from mmengine.config import DictAction

from modzoo.type_names import load_checked_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--work-dir', help='default: ./work_dirs/demo_<config name>')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--amp', action='store_true',
                        help='train in mixed precision, as tools/train.py --amp')
    parser.add_argument('--verbose', action='store_true',
                        help='print the whole log (config, environment, ...) to the console')
    return parser.parse_args()


class ProgressOnly(logging.Filter):
    """Console filter: the train/val progress lines (``Iter(train) [50/600] ... eta: ...``),
    the SynthScenes generation notice and warnings."""
    PROGRESS = re.compile(r'(Iter|Epoch)\((train|val|test)\)|SynthScenes')

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or bool(self.PROGRESS.match(record.getMessage()))


def build_runner(cfg, quiet: bool):
    """The Runner of ``cfg``; when ``quiet``, its console shows only what
    :class:`ProgressOnly` lets through and its log file (``log_dir/<timestamp>.log``) keeps
    everything."""
    from mmengine.runner import Runner

    class QuietRunner(Runner):

        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            for handler in logger.handlers:
                if not isinstance(handler, logging.FileHandler):
                    handler.addFilter(ProgressOnly())
            return logger

    return (QuietRunner if quiet else Runner).from_cfg(cfg)


def evaluate_baseline(runner, baseline):
    evaluator = runner.build_evaluator(runner.cfg.val_evaluator)
    loader = runner.val_dataloader
    for batch in loader:
        evaluator.process(baseline.predict(batch['data_samples']), batch)
    return evaluator.evaluate(len(loader.dataset))


def merge_args(cfg, args):
    """Apply the command line to the config."""
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.amp:
        from modzoo.engine.optimizers import use_amp
        use_amp(cfg, args.config)
    cfg.work_dir = args.work_dir or osp.join(
        'work_dirs', 'demo_' + osp.splitext(osp.basename(args.config))[0])
    return cfg


def main():
    args = parse_args()
    cfg = load_checked_config(args, merge_args)
    from modzoo.engine import check_tasks
    from modzoo.engine.cpu_memory import apply_env_cfg
    from modzoo.evaluation import PriorBaseline
    check_tasks(cfg)
    apply_env_cfg(cfg)
    runner = build_runner(cfg, quiet=not args.verbose)
    log_file = osp.join(runner.log_dir, f'{runner.timestamp}.log')

    start = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - start
    model_metrics = runner.val()

    baseline = PriorBaseline(runner.model.heads).fit(runner.train_dataloader.dataset)
    baseline_metrics = evaluate_baseline(runner, baseline)

    print(f'\nTrained {cfg.train_cfg.max_iters} iterations in {train_seconds:.0f} s '
          f'(work dir: {cfg.work_dir}; full log: {log_file})\n')
    print(f'{"metric":<28}{"model":>10}{"prior baseline":>16}')
    for key in sorted(model_metrics):
        prior = baseline_metrics.get(key, float('nan'))
        print(f'{key:<28}{model_metrics[key]:>10.3f}{prior:>16.3f}')
    with open(osp.join(cfg.work_dir, 'demo_metrics.json'), 'w') as f:
        json.dump(dict(train_seconds=train_seconds, amp=args.amp, model=model_metrics,
                       prior_baseline=baseline_metrics), f, indent=2, default=float)


if __name__ == '__main__':
    main()
