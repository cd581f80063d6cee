# capdsl — set-up and the two everyday commands (see README.md).
#   make sample   installs capdsl into .venv and evaluates the bundled sample panel
#   make test     installs everything the tests need (Python extras, PostgreSQL,
#                 Chromium, the VS Code extension's npm packages) and runs the suite

VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := test,spark,lsp,report,docs,fhir,x12

.PHONY: install sample test system-deps bench docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	$(PY) -m compileall -q capdsl  # an editable install has no bytecode; PYTHONDONTWRITEBYTECODE would keep it so
	touch $@

install: $(VENV)/.installed

sample: $(VENV)/.installed
	$(VENV)/bin/capdsl eval contracts/cz_vzp_2011_adult.cap \
	    --members examples/members.csv --practices examples/practices.csv \
	    --events examples/events.csv --measures examples/measures.csv --period 2011-03

system-deps:
	@bash scripts/system-deps.sh

test: $(VENV)/.installed system-deps
	$(VENV)/bin/pytest -n 2 -q

docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site .pytest_cache .hypothesis
