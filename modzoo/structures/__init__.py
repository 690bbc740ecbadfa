from .features import Features
from .task_data_sample import DENSE_FIELDS, TaskDataSample

__all__ = ['Features', 'TaskDataSample', 'DENSE_FIELDS']
