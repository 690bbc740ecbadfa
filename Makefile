# Every target sets itself up in .venv and skips the install when setup.py has not changed.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install test lint demo data

install: $(INSTALLED)

$(INSTALLED): setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q -e '.[test]'
	touch $(INSTALLED)

test: install
	$(PYTHON) -m pytest -q -n 2 --durations=15 tests

lint: install
	$(PYTHON) -m flake8 modzoo tools tests setup.py
	$(PYTHON) -m isort --check-only --diff modzoo tools tests setup.py

demo: install
	$(PYTHON) tools/demo.py configs/quickstart/vit-tiny_synth_mtl.py

data: install
	$(PYTHON) tools/make_synth_data.py --out data/synth
