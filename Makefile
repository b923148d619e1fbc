# The two commands a newcomer needs: `make run` (the demo) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
IDP_NODE := deploy/dev-idp/node_modules/.bin/node
CHROMIUM := /usr/bin/chromium
PORT ?= 8000

# Some machines export PYTHONDONTWRITEBYTECODE=1: then every start compiles the whole
# project again (and pytest rewrites every test module and plugin), about 4 s of each
# test run. Bytecode caches are written under __pycache__ (ignored by git).
unexport PYTHONDONTWRITEBYTECODE

# The demo runs on the embedded defaults: eager Celery, DEBUG on, and (unless
# DATABASE_URL is set) the embedded PostgreSQL with its data in $(PG_DATA).
DEMO_ENV := DEBUG=1
PG_DATA ?= var/postgres
EMBEDDED_PG := $(BIN)/python -m devtools.embedded_postgres

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

# The demo's identity provider (deploy/dev-idp, a dev tool) and its one client.
IDP_PORT ?= 9000
IDP_SECRET := visio-dev-secret-not-for-production
IDP_CLIENTS := [{"client_id":"visio-dev","client_secret":"$(IDP_SECRET)",\
"redirect_uris":["http://127.0.0.1:$(PORT)/oidc/callback/"],\
"post_logout_redirect_uris":["http://127.0.0.1:$(PORT)/oidc/logout/callback/"],\
"userinfo_signed_response_alg":"RS256"}]
DEMO_OIDC := OIDC_OP_DISCOVERY_URL=http://127.0.0.1:$(IDP_PORT)/api/v2/.well-known/openid-configuration \
             OIDC_RP_CLIENT_ID=visio-dev OIDC_RP_CLIENT_SECRET=$(IDP_SECRET)

# Simulated LiveKit nodes for the demo (devtools/livekit_sim.py, a dev tool).
SIM_ARGS := --key devkey --secret demo-node-secret-not-for-production-0000 \
            --webhook-url http://127.0.0.1:$(PORT)/hooks/livekit/

# One shell, so that its EXIT trap stops whatever the demo started, however it ends:
# Ctrl-C, SIGTERM to make's process group, or a failing step (set -e). The embedded
# PostgreSQL (devtools/embedded_postgres.py, a dev tool) is stopped only when this run
# started it; a second run reuses its data. With DATABASE_URL set, nothing is started.
run: $(STAMP) $(IDP_NODE) ## Migrate, seed the demo, start the identity provider and the app on http://127.0.0.1:8000/
	@set -euo pipefail; \
	mkdir -p var; \
	children=""; pg_started=0; \
	stop_all() { \
		[ -z "$$children" ] || kill $$children 2>/dev/null || true; \
		[ "$$pg_started" = 0 ] || $(EMBEDDED_PG) stop --data '$(PG_DATA)'; \
	}; \
	trap stop_all EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	if [ -z "$${DATABASE_URL:-}" ]; then \
		server=$$($(EMBEDDED_PG) start --data '$(PG_DATA)' --shell); \
		eval "$$server"; pg_started=$$EMBEDDED_POSTGRES_STARTED; export DATABASE_URL; \
	fi; \
	$(DEMO_ENV) $(BIN)/python manage.py migrate --verbosity 0; \
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo; \
	echo ""; \
	echo "  Console:  http://127.0.0.1:$(PORT)/console/   (ProConnect button, or pick a demo account)"; \
	echo "  Identity provider (dev tool): http://127.0.0.1:$(IDP_PORT)/api/v2"; \
	echo "  API docs: http://127.0.0.1:$(PORT)/api/v1/docs/"; \
	echo "  Simulated media nodes (dev tool): paris 7880-7881, lyon 7890-7891"; \
	echo ""; \
	PORT=$(IDP_PORT) CLIENTS='$(IDP_CLIENTS)' $(IDP_NODE) deploy/dev-idp/server.mjs & \
	children="$$children $$!"; \
	$(BIN)/python -m devtools.livekit_sim --nodes 2 --region paris --base-port 7880 $(SIM_ARGS) & \
	children="$$children $$!"; \
	$(BIN)/python -m devtools.livekit_sim --nodes 2 --region lyon --base-port 7890 $(SIM_ARGS) & \
	children="$$children $$!"; \
	$(DEMO_ENV) $(DEMO_OIDC) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

lint: $(STAMP) ## ruff lint and format check, the import layers, migrations up to date
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
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

clean: ## Stop the demo's embedded PostgreSQL, remove the virtualenv and var/ (demo database)
	[ ! -x $(BIN)/python ] || $(EMBEDDED_PG) stop --data '$(PG_DATA)'
	rm -rf $(VENV) var
