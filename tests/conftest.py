import pytest


@pytest.fixture(autouse=True)
def modzoo_home(tmp_path, monkeypatch):
    """Every test downloads into its own cache, never into ~/.cache/modzoo."""
    home = tmp_path / 'modzoo_home'
    monkeypatch.setenv('MODZOO_HOME', str(home))
    return home
