# hwsim: two commands set everything up on a fresh machine with Python 3.11 and make.
#   make demo   builds .venv if needed, then writes the main report to out/
#   make test   builds .venv if needed, then runs the full pytest suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint docs clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hwsim report --out out
	@echo "explore what-ifs in the browser: $(BIN)/hwsim app   (http://127.0.0.1:8050/, docs/app.md)"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python -m pytest -m bench -p no:randomly -s

lint: $(STAMP)
	$(BIN)/ruff check hwsim tests
	$(BIN)/mypy hwsim

# the docs site: installs the docs extra into .venv, then builds site/ offline; --strict turns
# every warning (broken link, failed generator) into an error. Figures are computed by hwsim.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf out .pytest_cache .mypy_cache .hypothesis
