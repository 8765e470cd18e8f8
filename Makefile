# The course's commands. A fresh machine needs only Python 3.11 and make: every target creates .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision as served from this machine's local cache; pyproject.toml keeps ranges for elsewhere.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
CH ?= 1
# config overrides for `make train`, e.g. make train ARGS="seed=1 train.max_minutes=30"
ARGS ?=
NOTEBOOK_DIR := build/notebooks
PYTEST := $(PY) -m pytest
# JupyterLab settings shipped with the course: a chapter's .py opens as a notebook (jupytext), its kernel starts.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
LAB_DIR ?= chapters
LAB_ARGS ?=
# as root (a container's usual user) Jupyter refuses to start without --allow-root
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: help venv train test test-package test-notebooks test-site check hint exercises lab docs serve-docs record-demo bench lint clean

help:
	@echo "make train       generate the arena data set and train the detector on it (CPU or GPU); ARGS=\"seed=1\" overrides"
	@echo "make test        the whole test suite (lint, package, exercises, stubs, chapter sync, notebooks, site)"
	@echo "make check CH=N  the exercise tests of chapter N against YOUR notebook in chapters/"
	@echo "make hint EX=N.k the hints of exercise N.k, every level (the check cells show them level by level)"
	@echo "make lab         JupyterLab on chapters/ (jupytext opens the .py files as notebooks)"
	@echo "make exercises   regenerate chapters/ from solutions/ (maintainers: overwrites chapters/!)"
	@echo "make docs        build the course site into build/site; make serve-docs to browse it"
	@echo "make record-demo keep the last make train run (runs/arena_cpu) as the site's landing figures and picture"
	@echo "make bench       the benchmarks (speed and quality against the peers)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null  # the kernel runs .venv's python
	touch $(STAMP)

train: $(STAMP)
	$(VENV)/bin/detector train --config arena_cpu $(ARGS)

test: lint test-package test-notebooks test-site

test-package: $(STAMP)
	$(PYTEST) tests --ignore=tests/site

test-notebooks: $(STAMP)
	$(PY) -m course.notebooks ipynb $(NOTEBOOK_DIR) > /dev/null
	$(PYTEST) -p course.pytest_notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		-o addopts="" -q $(NOTEBOOK_DIR)

# the browser tests need Debian's chromium (.ci/run installs it); screenshots go to build/screenshots/
test-site: $(STAMP) $(LAB_SETTINGS)
	$(PYTEST) tests/site -q

check: $(STAMP)
	$(PYTEST) tests/chapters/test_$$(printf %02d $(CH))_*.py --impl chapters -q

hint: $(STAMP)
	@test -n "$(EX)" || { echo "usage: make hint EX=6.3 (an exercise id)"; exit 2; }
	@$(PY) -c 'import sys; from course.hints import main; sys.exit(main(sys.argv[1:]))' $(EX)

exercises: $(STAMP)
	$(PY) -m course.notebooks exercises

$(LAB_SETTINGS): course/jupyterlab/overrides.json $(STAMP)
	mkdir -p $(dir $@) && cp $< $@

lab: $(STAMP) $(LAB_SETTINGS)
	$(VENV)/bin/jupytext --set-kernel python3 --sync $(LAB_DIR)/[0-9][0-9]_*.py > /dev/null
	$(VENV)/bin/jupyter lab --notebook-dir=$(LAB_DIR) $(LAB_ROOT) $(LAB_ARGS)

docs: $(STAMP)
	$(PY) -m course.notebooks site
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

serve-docs: docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

record-demo: $(STAMP)
	$(PY) -m course.demo record runs/arena_cpu
	$(PY) -m course.demo batch data/arena

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

lint: $(STAMP)
	$(VENV)/bin/ruff format --check detector course tests benchmarks
	$(VENV)/bin/ruff check detector course tests benchmarks

clean:
	rm -rf build .cache .pytest_cache
