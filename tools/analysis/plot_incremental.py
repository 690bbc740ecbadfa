"""Plot a metric after each task of class-incremental runs, and tabulate their summaries.

    python tools/analysis/plot_incremental.py RUN [RUN ...] [--labels NAME ...]
        [--key multilabel/mAP] [--out curve.png] [--table-keys mAP CF1_mean CF1 OF1]

Each RUN is a work dir (or the file itself) holding the ``incremental_results.json`` that
``IncrementalLoop`` writes. The plot has one line per run: ``--key`` after each task, over
the number of classes seen. The markdown table printed has, per run, the average over tasks
(``avg/``) of the averaged keys and the values after the last task (``last/``).
"""
import argparse
import json
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

RESULTS_FILE = 'incremental_results.json'


def load_results(path):
    """The results dict of a run dir or results file."""
    file = osp.join(path, RESULTS_FILE) if osp.isdir(path) else path
    if not osp.isfile(file):
        raise FileNotFoundError(f"'{file}' not found: expected a work dir of an "
                                f'IncrementalLoop run (it writes {RESULTS_FILE}) or the file')
    with open(file) as f:
        results = json.load(f)
    if not results.get('tasks'):
        raise ValueError(f"'{file}' holds no evaluated task yet")
    return results


def curve(results, key):
    """(classes seen, value of ``key``) after each task."""
    seen, xs, ys = 0, [], []
    for task in results['tasks']:
        if key not in task['metrics']:
            raise KeyError(f"metric '{key}' not in the results of task {task['task']}; "
                           f"there are {sorted(task['metrics'])}")
        seen += len(task['classes'])
        xs.append(seen)
        ys.append(task['metrics'][key])
    return xs, ys


def plot(runs, labels, key, out):
    fig, ax = plt.subplots(figsize=(7.5, 3.5), dpi=120)
    for results, label in zip(runs, labels):
        xs, ys = curve(results, key)
        ax.plot(xs, ys, marker='o', label=label)
    ax.set_xlabel('classes seen')
    ax.set_ylabel(key)
    ax.set_title(f"{key} after each task ({runs[0]['split']})")
    ax.grid(alpha=0.3)
    ax.legend(loc='upper left', bbox_to_anchor=(1.02, 1), fontsize='small')
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def table(runs, labels, prefix, keys):
    """Markdown rows: avg/<prefix>/mAP then last/<prefix>/<key> for each key."""
    header = ['run', f'avg {keys[0]}'] + [f'last {k}' for k in keys]
    rows = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for results, label in zip(runs, labels):
        summary = results['summary']
        values = [summary.get(f'avg/{prefix}/{keys[0]}')] + \
            [summary.get(f'last/{prefix}/{k}') for k in keys]
        rows.append('| ' + ' | '.join([label] + [
            '-' if v is None else f'{v:.1f}' for v in values]) + ' |')
    return '\n'.join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='work dirs or incremental_results.json files')
    parser.add_argument('--labels', nargs='+', help='one name per run (default: the paths)')
    parser.add_argument('--key', default='multilabel/mAP', help='metric plotted')
    parser.add_argument('--table-keys', nargs='+', default=['mAP', 'CF1_mean', 'CF1', 'OF1'],
                        help='metric names tabulated (the first also averaged over tasks)')
    parser.add_argument('--out', help='PNG file of the plot (default: no plot)')
    args = parser.parse_args()
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        parser.error(f'--labels names {len(labels)} runs but {len(args.runs)} were given')
    runs = [load_results(path) for path in args.runs]
    if args.out:
        plot(runs, labels, args.key, args.out)
        print(f'wrote {args.out}')
    print(table(runs, labels, args.key.rsplit('/', 1)[0], args.table_keys))


if __name__ == '__main__':
    main()
