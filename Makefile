# Neuro-DL Course — everyday commands. Run `make help` for the list.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# pytest-xdist: two workers, one whole notebook or test module per worker.
JOBS ?= 2

.PHONY: help setup test unit notebooks lesson lab app data cache results book book-test clean

help:
	@echo "make setup      create .venv and install the course with its test tools"
	@echo "make test       unit tests + every lesson under nbval (smoke profile)"
	@echo "make unit       unit tests only"
	@echo "make notebooks  every lesson under nbval (smoke profile)"
	@echo "make lesson L=08  run one lesson top to bottom (COURSE_PROFILE, default full; COURSE_SPLIT=official"
	@echo "                  for the dataset's own split, COURSE_SEED=1 for another seed); records its results"
	@echo "make lab        open the course in JupyterLab (lessons open as notebooks)"
	@echo "make app        the lesson-15 MRI classifier as a standalone web app (Voila) on http://127.0.0.1:8866"
	@echo "make data       download the MRI dataset into data/ and verify it (says so if it is already there)"
	@echo "make cache      decode the dataset once into data/cache/ (32, 96 and 160 px)"
	@echo "make results    render results/RESULTS.md from results/results.json"
	@echo "make book       the course as an HTML book in book/_build/html (COURSE_PROFILE, default full)"
	@echo "make book-test  open every page of the built book in Chromium and check it"
	@echo "make clean      remove the built book and pytest's cache (data/ and checkpoints/ stay)"

setup:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[test,book]"

test: unit notebooks

# With two pytest workers on a 2-core machine, each worker's PyTorch gets one thread:
# oversubscribed threads make small tensor operations many times slower.
PARALLEL_ENV := COURSE_THREADS=1 OMP_NUM_THREADS=1

unit:
	$(PARALLEL_ENV) $(PY) -m pytest tests -n $(JOBS) --dist loadscope

# Lessons 12 and later load the models that earlier lessons save, so they run second.
LESSONS := $(sort $(wildcard notebooks/[0-9][0-9]_*.md))
LATER_LESSONS := $(filter $(foreach n,12 13 14 15 16 17 18 19,notebooks/$(n)_%),$(LESSONS))
EARLY_LESSONS := $(filter-out $(LATER_LESSONS),$(LESSONS))
NBVAL := $(PARALLEL_ENV) COURSE_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env \
	--nbval-cell-timeout=900 -n $(JOBS) --dist loadscope

# Then the unit tests that need a trained smoke model, after the lessons that save one (they
# fail here instead of skipping).
notebooks:
	$(NBVAL) $(EARLY_LESSONS)
	$(if $(LATER_LESSONS),$(NBVAL) $(LATER_LESSONS))
	$(PARALLEL_ENV) COURSE_TESTS_NEED_CHECKPOINTS=1 $(PY) -m pytest tests/test_app_guard.py -k real_smoke_model

# How PyTorch's CPU threads wait for work (COURSE_OMP_WAIT; README, "Speed on a CPU"). OpenMP
# reads it once, when a kernel loads PyTorch. With `auto` (the default) every kernel imports
# course_utils when it starts (jupyter/ipython_kernel_config.py, copied into the environment)
# and chooses for itself; any other value is put into Jupyter's environment.
OPENMP_ENV = $(shell $(PY) -c "from course_utils.profiles import openmp_exports; print(openmp_exports())")
# Runs with nobody at the keyboard create no slider widgets (course_utils/widgets/live.py): nobody
# could move them, and the notebook runner can wait for ever on an interact cell (nbclient#312).
UNATTENDED_ENV := COURSE_LIVE_WIDGETS=0
KERNEL_CONFIG = mkdir -p $(VENV)/etc/ipython && cp jupyter/ipython_kernel_config.py $(VENV)/etc/ipython/

# One lesson, executed without JupyterLab, e.g. `make lesson L=08` or, to record the same
# lesson on the dataset's official split, `COURSE_SPLIT=official make lesson L=08`. The executed
# notebook is written to runs/ (ignored by git); full-profile results go to results/results.json.
lesson:
	@test -n "$(L)" || { echo "usage: make lesson L=08  [COURSE_SPLIT=official] [COURSE_SEED=1]"; exit 2; }
	@mkdir -p runs
	$(KERNEL_CONFIG)
	$(OPENMP_ENV) $(UNATTENDED_ENV) COURSE_PROFILE=$${COURSE_PROFILE:-full} $(BIN)/jupytext --to ipynb --execute \
		$(wildcard notebooks/$(L)_*.md) -o runs/$(L)-$${COURSE_PROFILE:-full}-$${COURSE_SPLIT:-grouped}-seed$${COURSE_SEED:-0}.ipynb

# Lessons are Markdown notebooks (jupytext); overrides.json makes JupyterLab open them as
# notebooks on double-click. The larger websocket limit lets the lesson-15 app receive
# uploads above the server's default 10 MiB (it refuses them itself, with a message).
lab:
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(KERNEL_CONFIG)
	$(OPENMP_ENV) $(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,) \
		--ServerApp.tornado_settings='{"websocket_max_message_size": 104857600}'

# The lesson-15 app alone, served by Voila (in COURSE_PROFILE, full unless set): it uses the
# models lessons 08, 10 and 11 saved in that profile.
app:
	$(PY) -m course_utils.app serve

data:
	$(PY) -m course_utils.data download

cache:
	$(PY) -m course_utils.data cache

results:
	$(PY) -m course_utils.results

# The book shows every lesson executed in COURSE_PROFILE (full unless set; CI sets smoke).
# A lesson that passed `make notebooks` in the same profile is shown as that run and not
# executed again; any other is executed by the build. Outputs are cached per profile in
# book/_build/.jupyter_cache: a rebuild re-runs only lessons whose code changed (after a
# change in course_utils alone, `make clean` or `make notebooks` first).
book:
	$(PY) book/make_toc.py
	bash book/fetch_assets.sh
	$(PY) -m course_utils.results
	$(KERNEL_CONFIG)
	$(OPENMP_ENV) $(UNATTENDED_ENV) COURSE_PROFILE=$${COURSE_PROFILE:-full} $(BIN)/jupyter-book build book -W -n --keep-going

# The built book and the Voila app in headless Chromium (run after `make notebooks` and `make book`).
book-test:
	$(PY) -m pytest tests/browser -v

clean:
	rm -rf book/_build .pytest_cache
