# Quick start: `make demo` (install, seed, chat) and `make test` (install, run every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench format i18n clean teams-package

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("cda-bot needs Python 3.11 or newer (set PYTHON=python3.11)") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cda-bot demo

test: $(STAMP)
	$(BIN)/python -m pytest

# One table of figures beside their targets, and JSON in bench/results/: the core at the program's size,
# coach views of 1,000 cities, scheduler passes up to 10,000 cities, and errbot as a peer; on SQLite, and
# on PostgreSQL too with TEST_DATABASE_URL. Generated programs are kept in bench/ and a `bench` database.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Refresh the message template and the Spanish and Portuguese catalogs after changing texts;
# then translate the new entries in bot/core/locale/*/LC_MESSAGES/messages.po.
i18n: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --sort-output --project cda-bot \
		-o bot/core/locale/messages.pot bot handlers adapters scheduler web
	$(BIN)/pybabel update -i bot/core/locale/messages.pot -d bot/core/locale --no-fuzzy-matching -w 110

# The Teams app package to upload (manifest and icons): MICROSOFT_APP_ID and PUBLIC_BASE_URL from the
# environment or .env fill in the manifest.
teams-package: $(STAMP)
	$(BIN)/python teams/package.py dist/cda-bot-teams.zip

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
