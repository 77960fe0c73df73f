# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo dashboard test lint typecheck unit browser screenshots bench faults clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -m "not integration and not browser"

# Only the dashboard's browser tests (headless Chromium; they skip, saying so, without it).
browser: install
	$(BIN)/pytest tests/browser

# The dashboard's screenshots in docs/screenshots/ (needs Chromium, like the browser tests).
screenshots: install
	$(BIN)/python -m tests.browser.screenshots

# make demo DEMO_ARGS="--keep-running" keeps the service and sandboxes up until Ctrl-C.
DEMO_ARGS ?=
demo: install
	$(BIN)/python demo.py $(DEMO_ARGS)

# The dashboard on its own: both sandboxes and the service with seeded Salesforce contacts,
# nothing connected; it prints the address and the admin token, then serves until Ctrl-C.
dashboard: install
	$(BIN)/python demo.py --dashboard

bench: install
	$(BIN)/python bench/sandbox_throughput.py

# The fault matrix (~10-15 min on 2 cores): one row per fault, each from nothing; needs
# redis-server on PATH (a private one per row, never the system Redis). Narrow it with e.g.
# make faults FAULTS_ARGS="--faults cc_5xx,duplicate --events 100".
FAULTS_ARGS ?=
faults: install
	$(BIN)/python -m bench.faults $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
