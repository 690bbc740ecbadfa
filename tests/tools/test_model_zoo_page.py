"""model_zoo.md is generated from the metafiles and must be current."""
import importlib.util
from pathlib import Path

import pytest

from modzoo import model_index as zoo

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location('gen_model_zoo',
                                              ROOT / 'tools' / 'gen_model_zoo.py')
gen_model_zoo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_model_zoo)


def test_model_zoo_page_is_current():
    page = gen_model_zoo.render(zoo.load_metafiles())
    assert (ROOT / 'model_zoo.md').read_text() == page, \
        'model_zoo.md is stale: run python tools/gen_model_zoo.py'


METAFILE = """
Models:
  - Name: moe-b_fetched
    Config: configs/fam/a.py
    Metadata:
      Tasks: [semseg, depth]
      Parameters: 123456789
      Active Parameters: {semseg: 45600000, depth: 47800000}
      FLOPs: 17500000000
      Resolution: [448, 576]
      Schedule: 40k iters
      Init: timm:vit_base_patch16_224.augreg2_in21k_ft_in1k
      Experts: 16
      Top-K: 4
    Results:
      - Task: semseg
        Dataset: NYUD-v2
        Metrics: {mIoU: 51.234567, pixel_acc: 77}
        Command: python tools/test.py configs/fam/a.py a.pth
    Weights: hf://org/repo/dir/a.safetensors
    Sha256: 'abcdef0123456789'
    Converted From:
      Weights: https://example.org/official.pth
      Code: https://github.com/org/official
  - Name: tiny_trained
    Config: configs/fam/a.py
    Results:
      - Task: cls
        Metrics: {top1: 10.5}
"""


def test_rows_say_how_to_get_the_weights(tmp_path, monkeypatch):
    (tmp_path / 'configs' / 'fam').mkdir(parents=True)
    (tmp_path / 'configs' / 'fam' / 'a.py').write_text('model = dict()\n')
    (tmp_path / 'configs' / 'fam' / 'metafile.yml').write_text(METAFILE)
    monkeypatch.setattr(zoo, 'CONFIGS_DIR', str(tmp_path / 'configs'))
    page = gen_model_zoo.render(zoo.load_metafiles())
    rows = [line for line in page.splitlines() if line.startswith('| [')]
    assert rows[0] == (
        '| [moe-b_fetched](configs/fam/a.py) | semseg, depth | '
        '`timm:vit_base_patch16_224.augreg2_in21k_ft_in1k` | 16 / 4 | '
        '123.46 / semseg 45.60, depth 47.80 | 17.50 | 448×576 | 40k iters | '
        'semseg: mIoU 51.23, pixel_acc 77 | fetch: '
        '[weights](https://huggingface.co/org/repo/blob/main/dir/a.safetensors) '
        '(sha256 `abcdef01`), converted from [these](https://example.org/official.pth) |')
    assert rows[1] == ('| [tiny_trained](configs/fam/a.py) | cls | — | — | — / — | — | — | — | '
                       'cls: top1 10.5 | train: `python tools/train.py configs/fam/a.py` |')
    assert '- moe-b_fetched, semseg on NYUD-v2: `python tools/test.py configs/fam/a.py a.pth`' \
        in page.splitlines()
    assert gen_model_zoo.main(['--check']) == 1  # tmp_path has no model_zoo.md
    assert gen_model_zoo.main([]) == 0 and gen_model_zoo.main(['--check']) == 0


@pytest.mark.parametrize('weights', ['work_dirs/a.pth', 's3://bucket/a.pth'])
def test_weights_that_cannot_be_fetched_are_refused(tmp_path, monkeypatch, weights):
    (tmp_path / 'configs' / 'fam').mkdir(parents=True)
    (tmp_path / 'configs' / 'fam' / 'a.py').write_text('model = dict()\n')
    (tmp_path / 'configs' / 'fam' / 'metafile.yml').write_text(
        METAFILE.replace('hf://org/repo/dir/a.safetensors', weights))
    monkeypatch.setattr(zoo, 'CONFIGS_DIR', str(tmp_path / 'configs'))
    with pytest.raises(ValueError, match=f'Weights {weights} must be a URL that can be fetched'):
        gen_model_zoo.main(['--check'])
