"""tools/analysis/benchmark_inference.py: images/s per model, backend and batch, as JSON."""
import pytest

from tool_runner import REPO, load_tool

bench = load_tool('analysis/benchmark_inference.py')


def small_moe_config(tmp_path):
    path = tmp_path / 'moe.py'
    path.write_text(f'''
_base_ = ['{REPO}/configs/moe_vit/moe-vit-tiny_synth_hetero.py']
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dim=32, depth=2, num_heads=2),
                           img_size=32, out_indices=(1, ), moa_experts=4, mlp_experts=6,
                           mlp_top_k=2),
             heads=dict(cls=dict(in_channels=32), semseg=dict(in_channels=32, in_index=(0, )),
                        depth=dict(in_channels=32, in_index=(0, )),
                        normals=dict(in_channels=32, in_index=(0, ))))
''')
    return str(path)


@pytest.mark.parametrize('keep_top_k', [False, True])
def test_extracted_model_beside_its_dense_twin(tmp_path, keep_top_k):
    result = bench.main([small_moe_config(tmp_path), '--task', 'semseg', '--extract',
                         '--batch-sizes', '1', '2', '--repeats', '1', '--backends', 'eager']
                        + ['--keep-top-k'] * keep_top_k)
    speeds = result['images_per_s']
    assert set(speeds) == {'model', 'extracted', 'dense'}
    assert all(speeds[m]['eager'][b] > 0 for m in speeds for b in (1, 2))
    ratio = result['extracted_vs_dense']['eager'][2]  # one round: the ratio of the speeds
    assert ratio == pytest.approx(speeds['extracted']['eager'][2] / speeds['dense']['eager'][2],
                                  rel=0.01)
    params = result['parameters']
    assert params['dense'] < params['model'] and params['extracted'] < params['model']
    kept = result['extraction']['kept_experts']
    assert len(kept) == 2 and result['extraction']['keep_top_k'] == keep_top_k
    if keep_top_k:  # MoA: the 2 heads, MLP: top-2
        assert set(kept.values()) == {2}


def test_onnxruntime_backend(tmp_path):
    result = bench.main([small_moe_config(tmp_path), '--task', 'cls', '--batch-sizes', '2',
                         '--repeats', '1', '--backends', 'onnxruntime'])
    assert result['images_per_s']['model']['onnxruntime'][2] > 0
