"""modzoo: a modular multi-task vision model zoo."""
__version__ = '0.1.0'
__all__ = ['find_model', 'get_model', 'inference', 'list_models']


def __getattr__(name):
    """The zoo API (``modzoo.list_models`` ...), imported on first use so that ``import
    modzoo`` stays light; the index (``list_models``, ``find_model``) imports no torch."""
    if name in ('find_model', 'list_models'):
        from modzoo import model_index
        return getattr(model_index, name)
    if name in __all__:
        from modzoo import zoo
        return getattr(zoo, name)
    raise AttributeError(f"module 'modzoo' has no attribute '{name}'")
