"""Model analysis and modularity tools: parameter/FLOP counting, expert extraction and
expansion of mixture-of-experts models."""
from .expansion import expand_model
from .extraction import extract_task, select_experts
from .flops import (FLOP_HANDLES, active_params, count_flops, count_params, model_summary,
                    sdpa_flop_jit)
from .task_data import keep_task_data

__all__ = [
    'expand_model', 'extract_task', 'select_experts', 'FLOP_HANDLES', 'active_params',
    'count_flops', 'count_params', 'keep_task_data', 'model_summary', 'sdpa_flop_jit'
]
