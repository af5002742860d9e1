# Sourced by tools/contract.sh and tools/browser.sh: one live payd for a test run.
#
# `live_payd NAME PAYD_BINARY [VAR=VALUE ...]` starts `PAYD_BINARY serve` as the development
# environment with a bootstrap admin, on a free port, with a fresh database (`payd_NAME_<random>`)
# and its own Redis prefix, plus the extra PAYD_* settings given; it waits until /readyz answers and
# stops the server and drops the database when the script exits. It sets `base` (the server's URL),
# `work` (a temporary folder holding `payd.log`), `pid`, `admin_email` and `admin_pass`.
# Env: PAYD_TEST_PG (server URL without database).
live_payd() {
  local name=$1 bin=$2
  shift 2
  pg=${PAYD_TEST_PG:-postgres://postgres@127.0.0.1:5432}
  local tag
  tag=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
  db=payd_${name}_$tag
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base=http://127.0.0.1:$port
  work=$(mktemp -d)
  pid=""
  trap live_payd_stop EXIT
  admin_email=admin@$name.local admin_pass=admin-pass-123
  env PAYD_ENV=development PAYD_CONFIG_DIR="$PWD/config" \
    PAYD_SERVER__PORT="$port" PAYD_SERVER__WORKERS=2 \
    PAYD_DATABASE__URL="$pg/$db" PAYD_REDIS__PREFIX="payd:$name:$tag:" \
    PAYD_BOOTSTRAP_ADMIN_EMAIL="$admin_email" PAYD_BOOTSTRAP_ADMIN_PASSWORD="$admin_pass" \
    PAYD_GRPC__ENABLED=false PAYD_TELEMETRY__LOG_LEVEL=warn \
    "$@" "$bin" serve >"$work/payd.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "$base/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -sf "$base/readyz" >/dev/null || {
    echo "$name: payd did not become ready" >&2
    tail -n 30 "$work/payd.log" >&2
    exit 1
  }
}

live_payd_stop() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "$pg/postgres" -XAtq -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
