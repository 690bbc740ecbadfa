"""modzoo: a modular multi-task vision model zoo."""
__version__ = '0.1.0'
__all__ = ['get_model', 'inference', 'list_models']


def __getattr__(name):
    """The zoo API (``modzoo.list_models`` ...), imported on first use so that ``import
    modzoo`` stays light."""
    if name in __all__:
        from modzoo import zoo
        return getattr(zoo, name)
    raise AttributeError(f"module 'modzoo' has no attribute '{name}'")
