# The InvPT/TaskPrompter recipe (research/taskexpert.md §3): Adam, lr 2e-5, weight decay 1e-6,
# poly decay lr * (1 - it / 40000) ^ 0.9 stepped every iteration, 40k iterations, evaluation
# every 1000 (checkpoints every 1000, from default_runtime.py). InvPT trains with batch 2 per
# GPU on 3 GPUs (configs set the per-GPU batch; launch 3 processes for the paper's batch 6).
max_iters = 40000
val_interval = 1000

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=2e-5, weight_decay=1e-6))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
