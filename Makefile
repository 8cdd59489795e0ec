# The commands the README names. `make book` and `make test` are the quick start.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
MATHJAX_VERSION := 3.2.2
MATHJAX := _assets/mathjax/tex-chtml.js
# BokehJS, the interactive figures' JavaScript, from the pinned bokeh wheel (see below)
BOKEH_VERSION := $(shell sed -n 's/^bokeh==\([^ ;\#]*\).*/\1/p' requirements.txt)
BOKEHJS := _assets/bokeh/bokeh-$(BOKEH_VERSION).min.js
CHAPTERS := $(wildcard book/[0-9]*.md)
# the modules the chapters show, formatted to the book's line length (pyproject.toml)
SHOWN := $(shell python3 -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['tool']['ruff']['format']['exclude']))")
BOOK_LINE := 74

export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0

.PHONY: help install book student-book test check lint lint-book format-book format serve notebooks chapter clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

install: $(STAMP)  ## create .venv and install the pinned requirements

# MathJax is served with the book (no CDN), so every page reads offline.
$(MATHJAX):
	@mkdir -p .cache/npm _assets
	npm install --silent --no-audit --no-fund --no-save --prefix .cache/npm mathjax@$(MATHJAX_VERSION)
	rm -rf _assets/mathjax && cp -r .cache/npm/node_modules/mathjax/es5 _assets/mathjax

# BokehJS is served with the book too, once for every page that has an interactive figure
# (book_tools/bokeh_figures.py): copied from the installed bokeh wheel, the version that wrote
# the figures, into _assets/bokeh/.
$(BOKEHJS): $(STAMP)
	rm -rf _assets/bokeh
	$(BIN)/python -m book_tools.bokeh_figures _assets

book: $(STAMP) $(MATHJAX) $(BOKEHJS)  ## install what is needed and build the HTML book, every notebook executed
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo
	@echo "The book is built: open file://$(abspath _build/html/index.html)"
	@echo "or serve it with: make serve   (then http://127.0.0.1:8000)"

student-book: $(STAMP) $(MATHJAX) $(BOKEHJS)  ## the book without solutions, for students, in _build/students/ (after make book)
	@mkdir -p _build
	$(BIN)/python -m book_tools.student_config > _build/students-config.yml
	$(BIN)/jupyter-book build . --config _build/students-config.yml --path-output _build/students --all -W -n --keep-going
	@echo "The students' copy is built: open file://$(abspath _build/students/_build/html/index.html)"

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check mini_attn tests scripts _ext book_tools
	$(BIN)/ruff format --check mini_attn tests scripts _ext book_tools
	$(BIN)/ruff format --check --line-length $(BOOK_LINE) $(SHOWN)
	$(BIN)/python -m book_tools.lint

format-book: $(STAMP)  ## format the chapters' code cells (ruff format at the book's line length)
	$(BIN)/python -m book_tools.lint --format

lint-book: $(STAMP)  ## ruff's rules on the chapters' code cells, errors at book/NN-name.md:line
	$(BIN)/python -m book_tools.lint

format: $(STAMP)  ## format the code with ruff
	$(BIN)/ruff format mini_attn tests scripts _ext book_tools
	$(BIN)/ruff format --line-length $(BOOK_LINE) $(SHOWN)
	$(BIN)/ruff check --fix mini_attn tests scripts _ext book_tools

test: book lint  ## run every test (package, checkers, built book in a real browser)
	$(BIN)/python -m pytest

check: $(STAMP)  ## the fast loop: lint and the package's tests, without the book
	$(BIN)/ruff check mini_attn tests book_tools
	$(BIN)/python -m pytest -q -m "not book and not slow"

serve:  ## serve the built book on http://127.0.0.1:8000
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _build/html 8000

notebooks: $(STAMP)  ## write every chapter as student, instructor and nbgrader notebooks under _build/notebooks/
	$(BIN)/python -m book_tools.export

chapter: $(STAMP)  ## execute chapters and time them: make chapter CH=book/01-what-is-attention.md
	$(BIN)/python -m book_tools.run_chapter $(or $(CH),$(CHAPTERS))

clean:  ## remove the built book (keeps .venv)
	rm -rf _build
