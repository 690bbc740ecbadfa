"""modzoo: a modular multi-task vision model zoo."""
__version__ = '0.1.0'
