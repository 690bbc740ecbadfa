# Ablation (paper Tab. 2 'Global only'): each image is only its global tokens (attention pools
# and the last map); no proposal network, hence no region tokens and no detection task
# (the paper's row has no detection either). Classification, captioning and retrieval as in
# the tiny config, each sampled for a third of the batches.
_base_ = ['./uniperceiver-tiny_synth.py']

model = dict(proposal_head=None, region_tokens=None,
             heads=dict(_delete_=True, cls={{_base_.model.heads.cls}},
                        caption={{_base_.model.heads.caption}},
                        retrieval={{_base_.model.heads.retrieval}}))
train_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True, cls={{_base_.sources.train.cls}}, caption={{_base_.sources.train.caption}},
    retrieval={{_base_.sources.train.retrieval}})))
val_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True, cls={{_base_.sources.val.cls}}, caption={{_base_.sources.val.caption}},
    retrieval={{_base_.sources.val.retrieval}})))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='CaptionMetric', task='caption'),
    dict(type='RetrievalMetric', task='retrieval'),
]
test_evaluator = val_evaluator
