# The two commands in the README: `make book` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NOTEBOOK_DIRS := chapters assignments solutions
# `make test` runs every notebook once, under nbval, on JOBS pytest-xdist workers with one
# thread each (JOBS=1: one process). nbval saves each executed notebook in EXECUTED; the smoke
# book build renders those instead of executing anything (see tests/README.md).
JOBS ?= 2
EXECUTED := _build/executed
TIMINGS := _build/timings
SMOKE_SRC := _build/smoke-src
PYTEST := COURSE_PROFILE=smoke COURSE_PROGRESS=0 OMP_NUM_THREADS=1 PYTHONPATH=tools \
	$(BIN)/python -m pytest -p course_pytest -p no:cacheprovider
XDIST = $(if $(filter 1,$(JOBS)),-p no:xdist,-n $(JOBS) --dist $(1))
# A notebook over this many seconds in `smoke` fails the suite (a `full`-size run in CI).
NOTEBOOK_LIMIT := 90

.PHONY: install book test lint unit notebooks book-smoke publish release clean

# pip's notes about absent local mirror folders are filtered out; errors still show.
# The packages are installed with uv (from PyPI, into the same venv) when it installs: on CI's
# 2 cores a fresh install took 55 s with uv and 370 s with pip (PyTorch's wheels are GBs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv 2>&1 | { grep -v "^WARNING: Location" || true; }
	if [ -x $(BIN)/uv ]; then \
		$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[book,dev]'; \
	else \
		$(BIN)/python -m pip install --quiet -e '.[book,dev]' 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	fi
	$(BIN)/python -c "import course_utils, torch, torchvision, jupyter_book, nbval"
	touch $@

install: $(STAMP)

# The site, with the profile chosen by the hardware (quick on a CPU, full on a GPU) unless
# COURSE_PROFILE says otherwise. Notebooks are executed and cached in _build/; progress bars
# are off because a static page would show them frozen.
book: install
	COURSE_PROGRESS=0 $(BIN)/jupyter-book build . -W --keep-going
	$(BIN)/python tools/check_site.py _build/html

# Also fails when the committed assignments/ differ from a fresh generation from solutions/,
# when a notebook's Colab cell or a link names another repository than _config.yml, and when
# the GitHub Actions workflows are malformed (schema, offline) or unsafe (zizmor, offline).
lint: install
	$(BIN)/ruff check .
	$(BIN)/python -m course_utils.assign --check
	$(BIN)/python tools/repo_url.py --check
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows/

unit: install
	$(PYTEST) -q $(call XDIST,worksteal) --timings-json=$(TIMINGS)/unit.json tests

# Each notebook runs once, in its own kernel; --dist loadfile keeps a notebook's cells on one
# worker, in order. The executed copies go to $(EXECUTED) for book-smoke.
# tools/kernel_checks.py runs at the start of every kernel (an IPython startup file).
notebooks: install
	rm -rf $(EXECUTED)
	mkdir -p _build/ipython/profile_default/startup
	cp tools/kernel_checks.py _build/ipython/profile_default/startup/00-course-checks.py
	IPYTHONDIR=$(CURDIR)/_build/ipython \
	$(PYTEST) -q $(call XDIST,loadfile) --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=$(NOTEBOOK_LIMIT) --notebook-limit=$(NOTEBOOK_LIMIT) \
		--executed-dir=$(EXECUTED) --timings-json=$(TIMINGS)/notebooks.json $(NOTEBOOK_DIRS)

# The book, built in the smoke profile from the notebooks `make notebooks` just executed (no
# execution here), kept apart from `make book`'s cache. Fails on any Sphinx warning (broken
# reference or citation, bad markup); then tools/check_site.py checks the HTML.
book-smoke: notebooks
	$(BIN)/python tools/stage_book.py --executed $(EXECUTED) --to $(SMOKE_SRC)
	@mkdir -p $(TIMINGS); echo "jupyter-book build $(SMOKE_SRC) (execution off)"; SECONDS=0; \
	COURSE_PROFILE=smoke COURSE_PROGRESS=0 $(BIN)/jupyter-book build $(SMOKE_SRC) -W \
		--keep-going --path-output _build/smoke; rc=$$?; \
	echo '{"steps": {"book build, execution off": '$$SECONDS'}}' > $(TIMINGS)/book.json; \
	exit $$rc
	$(BIN)/python tools/check_site.py _build/smoke/_build/html

# Ends with the timing table, so growth shows in every CI log (budget: tests/README.md).
test: lint unit notebooks book-smoke
	@$(BIN)/python tools/course_pytest.py $(TIMINGS)/unit.json $(TIMINGS)/notebooks.json \
		$(TIMINGS)/book.json

# Publish the site you built (`make book`; on a GPU machine for the `full` results) to the
# gh-pages branch of the `origin` remote, which GitHub Pages serves.
publish: install
	@test -f _build/html/index.html || { echo "No site in _build/html: run 'make book' first."; exit 1; }
	$(BIN)/ghp-import --no-jekyll --push --force \
		--message "Publish the site built from $$(git rev-parse --short HEAD)" _build/html

# The student-facing course (no solutions/, no solution-bearing tests, no instructor page),
# for the public repository students open on Colab and Binder (see the instructor page).
RELEASE_DIR ?= _build/release
release: install
	$(BIN)/python -m course_utils.assign --release $(RELEASE_DIR)

clean:
	rm -rf _build
