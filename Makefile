# The two commands in the README: `make book` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NOTEBOOK_DIRS := chapters assignments solutions

.PHONY: install book test lint unit notebooks book-smoke clean

# pip's notes about absent local mirror folders are filtered out; errors still show.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[book,dev]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(BIN)/python -c "import course_utils, torch, torchvision, jupyter_book, nbval"
	touch $@

install: $(STAMP)

# The site, with the profile chosen by the hardware (quick on a CPU, full on a GPU) unless
# COURSE_PROFILE says otherwise. Notebooks are executed and cached in _build/; progress bars
# are off because a static page would show them frozen.
book: install
	COURSE_PROGRESS=0 $(BIN)/jupyter-book build . -W --keep-going

# Also fails when the committed assignments/ differ from a fresh generation from solutions/.
lint: install
	$(BIN)/ruff check .
	$(BIN)/python -m course_utils.assign --check

unit: install
	COURSE_PROFILE=smoke $(BIN)/python -m pytest tests -q

notebooks: install
	COURSE_PROFILE=smoke $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env \
		-p no:cacheprovider $(NOTEBOOK_DIRS)

# The book build in the smoke profile, kept apart from `make book`'s cache so the two
# profiles' outputs never mix.
book-smoke: install
	COURSE_PROFILE=smoke COURSE_PROGRESS=0 $(BIN)/jupyter-book build . -W --keep-going \
		--path-output _build/smoke

test: lint unit notebooks book-smoke

clean:
	rm -rf _build
