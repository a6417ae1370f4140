# Shop: `make run` serves the shop on http://127.0.0.1:5000 (SQLite, demo data);
# `make test` runs the whole suite (and again on MySQL when TEST_DATABASE_URL is set).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PYTEST_ARGS ?=
WORKERS ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test install install-dev worker bench lint e2e-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	touch $(VENV)/.runtime $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: install
	$(FLASK) db upgrade
	$(FLASK) seed-if-empty
	$(BIN)/gunicorn -c gunicorn.conf.py --bind 127.0.0.1:5000 wsgi:app

worker: install
	$(FLASK) worker

test: install-dev
	@echo "== Test suite on SQLite =="
	env -u TEST_DATABASE_URL $(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS)
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== Test suite on MySQL ($$(echo $$TEST_DATABASE_URL | sed 's#//[^@]*@#//***@#')) =="; \
		$(BIN)/pytest -n $(WORKERS) $(PYTEST_ARGS) -m "not e2e"; \
	else echo "TEST_DATABASE_URL is not set: skipped the MySQL run."; fi

bench: install-dev
	@command -v wrk >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	$(BIN)/python bench/run.py

lint: install-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache
