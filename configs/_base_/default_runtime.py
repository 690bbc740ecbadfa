default_scope = 'modzoo'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # resumes under torch.load(weights_only=True); written atomically
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# LocalVisBackend writes <work_dir>/<timestamp>/vis_data/scalars.json, which
# tools/analysis/plot_curves.py plots. For TensorBoard as well (pip install tensorboard):
#   vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
# or --cfg-options "visualizer.vis_backends=[dict(type='LocalVisBackend'),dict(type='TensorboardVisBackend')]"
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)

log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

# heterogeneous batches train one task's head at a time: DDP must allow unused parameters
find_unused_parameters = True

# dropout/drop-path draw the same numbers after --resume as without the stop
custom_hooks = [dict(type='RandomStateHook')]
