# The "no parallel pathways" ablation of multilane-tiny_synth-voc-b3c2.py: a task identifier
# (one key per task, cosine to the frozen CLS) picks one pathway per image, which scores
# every class.
_base_ = ['./multilane-tiny_synth-voc-b3c2.py']

model = dict(head=dict(mode='task'))
