from .incremental_loop import IncrementalLoop, IncrementalTestLoop

__all__ = ['IncrementalLoop', 'IncrementalTestLoop']
