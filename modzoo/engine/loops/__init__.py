from .incremental_loop import IncrementalLoop

__all__ = ['IncrementalLoop']
