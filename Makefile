# The two commands a newcomer needs: `make run` (the demo) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
IDP_NODE := deploy/dev-idp/node_modules/.bin/node
CHROMIUM := /usr/bin/chromium
PORT ?= 8000

# The demo runs on the embedded defaults: SQLite, eager Celery, DEBUG on.
DEMO_ENV := DEBUG=1

.PHONY: help install run test lint format schema messages clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The dev identity provider runs on Node 22, installed inside its folder by npm.
$(IDP_NODE): deploy/dev-idp/package-lock.json
	npm ci --prefix deploy/dev-idp --no-audit --no-fund
	touch $(IDP_NODE)

# Browser tests drive Debian's Chromium (never a downloaded browser build).
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

install: $(STAMP) $(IDP_NODE) ## Create the virtualenv and install pinned dependencies

run: $(STAMP) ## Migrate, seed the demo and start the app on http://127.0.0.1:8000/
	mkdir -p var
	$(DEMO_ENV) $(BIN)/python manage.py migrate --verbosity 0
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Console:  http://127.0.0.1:$(PORT)/console/   (pick a demo account to log in)"
	@echo "  API docs: http://127.0.0.1:$(PORT)/api/v1/docs/"
	@echo ""
	$(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

lint: $(STAMP) ## ruff lint and format check, migrations up to date
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

# tests/settings.py points the suite at this machine's PostgreSQL and Redis.
test: $(STAMP) $(IDP_NODE) $(CHROMIUM) lint ## Lint, then the whole suite on PostgreSQL and Redis
	$(BIN)/python -m pytest $(PYTEST_ARGS)

format: $(STAMP) ## Reformat the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(STAMP) ## Regenerate the committed OpenAPI schema
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python manage.py spectacular --lang en --validate --fail-on-warn --file docs/openapi.yaml

messages: $(STAMP) ## Refresh and compile the French and English translations
	DEBUG=1 $(BIN)/python manage.py makemessages -l fr -l en --ignore '.venv/*' --ignore 'node_modules/*'
	DEBUG=1 $(BIN)/python manage.py compilemessages --ignore '.venv/*'

clean: ## Remove the virtualenv and the demo database
	rm -rf $(VENV) var
