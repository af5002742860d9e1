#!/usr/bin/env bash
# Browser test of the console: Playwright (Python) driving Debian's Chromium against a live payd, as
# tools/contract.sh starts it (free port, fresh database, own Redis prefix, development environment
# with the bootstrap admin). The events workers stay on: e-mail (verification codes) is delivered to
# the development mailbox by them.
#
# Usage: tools/browser.sh PAYD_BINARY PYTHON [--screenshots DIR]
# Env: PAYD_TEST_PG (server URL without database), CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
payd=$1 py=$2
shift 2
pg=${PAYD_TEST_PG:-postgres://postgres@127.0.0.1:5432}

tag=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
db=payd_browser_$tag
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "$pg/postgres" -XAtq -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

admin_email=admin@browser.local admin_pass=admin-pass-123
PAYD_ENV=development PAYD_CONFIG_DIR="$PWD/config" \
PAYD_SERVER__PORT=$port PAYD_SERVER__WORKERS=2 \
PAYD_DATABASE__URL="$pg/$db" PAYD_REDIS__PREFIX="payd:browser:$tag:" \
PAYD_BOOTSTRAP_ADMIN_EMAIL=$admin_email PAYD_BOOTSTRAP_ADMIN_PASSWORD=$admin_pass \
PAYD_GRPC__ENABLED=false PAYD_TELEMETRY__LOG_LEVEL=warn \
  "$payd" serve >"$work/payd.log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 120); do curl -sf "$base/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -sf "$base/readyz" >/dev/null || { echo "browser: payd did not become ready" >&2; tail -n 30 "$work/payd.log" >&2; exit 1; }

status=0
PAYD_BASE=$base PAYD_ADMIN_EMAIL=$admin_email PAYD_ADMIN_PASSWORD=$admin_pass \
  "$py" tools/browser_test.py "$@" || status=$?
if [ "$status" -ne 0 ]; then echo "browser: payd log (last lines):" >&2; tail -n 20 "$work/payd.log" >&2; fi
grep -E 'panicked' "$work/payd.log" | head -n 5 >&2 || true
exit "$status"
