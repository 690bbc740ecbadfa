# Uni-Perceiver v2 LARGE (paper Tab. 6: 446M parameters): as BASE with Swin-L (ImageNet-21k;
# the paper further pre-trains it on Objects365 detection).
_base_ = ['./uniperceiver-v2-base_swin-b_roberta-base.py']

swin = 'swin_large_patch4_window7_224'
model = dict(
    backbone=dict(model_name=swin, pretrained=f'timm:{swin}.ms_in22k'),
    global_tokens=dict(in_channels=1536),
    proposal_head=dict(in_channels=1536))
