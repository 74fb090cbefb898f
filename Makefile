# Neuro-DL Course — everyday commands. Run `make help` for the list.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# pytest-xdist: two workers, one whole notebook or test module per worker.
JOBS ?= 2

.PHONY: help setup test unit notebooks lab data cache results clean

help:
	@echo "make setup      create .venv and install the course with its test tools"
	@echo "make test       unit tests + every lesson under nbval (smoke profile)"
	@echo "make unit       unit tests only"
	@echo "make notebooks  every lesson under nbval (smoke profile)"
	@echo "make lab        open the course in JupyterLab (lessons open as notebooks)"
	@echo "make data       download the MRI dataset into data/ and verify it"
	@echo "make results    render results/RESULTS.md from results/results.json"

setup:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[test]"

test: unit notebooks

# With two pytest workers on a 2-core machine, each worker's PyTorch gets one thread:
# oversubscribed threads make small tensor operations many times slower.
PARALLEL_ENV := COURSE_THREADS=1 OMP_NUM_THREADS=1

unit:
	$(PARALLEL_ENV) $(PY) -m pytest tests -n $(JOBS) --dist loadscope

notebooks:
	$(PARALLEL_ENV) COURSE_PROFILE=smoke $(PY) -m pytest notebooks --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=900 -n $(JOBS) --dist loadscope

# Lessons are Markdown notebooks (jupytext); overrides.json makes JupyterLab open them as
# notebooks on double-click.
lab:
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

data:
	$(PY) -m course_utils.data download

cache:
	$(PY) -m course_utils.data cache

results:
	$(PY) -m course_utils.results

clean:
	rm -rf book/_build .pytest_cache
