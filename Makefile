# `make demo` and `make test` each set up .venv when needed, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.impasto-installed

.PHONY: install demo test bench clean

install: $(STAMP)

# Re-install only when the project's metadata changes; the editable install picks up code
# changes by itself.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m impasto demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/nst.py

clean:
	rm -rf demo_out .pytest_cache build *.egg-info src/*.egg-info
