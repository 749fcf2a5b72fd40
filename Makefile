# The whole set-up on a fresh machine is `make run` (the console with demo data on the
# embedded default) and `make test`. Both create .venv with a Python >= 3.12 and install the
# locked dependencies (uv.lock) with uv.

PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --python $(BIN)/python --quiet

.PHONY: run test drills bench lint format messages check-migrations clean

$(BIN)/python:
	"$$(scripts/find-python)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.deps-run: $(BIN)/python uv.lock pyproject.toml
	$(SYNC)
	touch $@

$(VENV)/.deps-test: $(BIN)/python uv.lock pyproject.toml
	$(SYNC) --extra test
	touch $@ $(VENV)/.deps-run

## make run: migrate, seed the demo once, serve on 127.0.0.1:$(PORT) with a Celery worker and beat.
run: $(VENV)/.deps-run
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	@$(BIN)/python manage.py seed_demo
	@echo "Console: http://127.0.0.1:$(PORT)/   (Ctrl-C stops web, worker and beat)"
	SITE_URL=$${SITE_URL:-http://127.0.0.1:$(PORT)} $(BIN)/honcho -f Procfile.dev start --port $(PORT)

## make test: the suite (PostgreSQL when DATABASE_URL is set, Redis when REDIS_URL is set).
test: $(VENV)/.deps-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make drills: processes killed and dependencies restarted under load, against uvicorn and
## Celery in subprocesses (PostgreSQL and Redis required; docs/drills.md). At most 20 minutes;
## the harness sets Django up itself, hence -p no:django.
drills: $(VENV)/.deps-test
	timeout --kill-after=30 1200 $(BIN)/python -m pytest drills -p no:cacheprovider -p no:django -q $(DRILL_ARGS)

## make bench: every benchmark in bench/ on real PostgreSQL and Redis, one after another
## (BENCH_SCALE=quick or full; DATABASE_URL names the server). Writes bench/results/; about
## 15 minutes in full on 2 cores once the seeds are cached (docs/performance.md).
bench: $(VENV)/.deps-test
	$(BIN)/python bench/run.py

## make lint: ruff, and the apps' layers (import-linter's contract in pyproject.toml).
lint: $(VENV)/.deps-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(VENV)/.deps-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## make messages: refresh the translation catalogues (needs GNU gettext) and compile them.
messages: $(VENV)/.deps-test
	$(BIN)/python manage.py makemessages -l zh_Hans --no-obsolete --ignore=.venv --ignore=var --ignore=tests --ignore=bench --ignore=drills
	$(BIN)/python manage.py compilemessages -l zh_Hans --ignore=.venv

check-migrations: $(VENV)/.deps-test
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var
