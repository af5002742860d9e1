# Shared by the load scripts in benches/ (sourced, not run): one payd per database, driven by payd-load.
# The caller sets BIN, PORT, OUT and LOG_PREFIX before sourcing; every run is ledger only (relay,
# consumers, rate limits and the statistics job off), release build.
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_SERVER__PORT=$PORT PAYD_CONFIG_DIR=$PWD/config \
  PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false PAYD_RATE_LIMITS__ENABLED=false \
  PAYD_STATS__INTERVAL_MS=0
BASE=http://127.0.0.1:$PORT
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap stop EXIT

# serve DB: a payd on database DB (created and migrated on start), once it answers /readyz.
serve() {
  stop
  export PAYD_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$1"
  "$BIN/payd" serve >"target/$LOG_PREFIX-$1.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.5; done
}

# load NAME payd-load-arguments…: one payd-load run, its summary lines prefixed with NAME into OUT.
load() {
  local name=$1; shift
  echo "== $(date +%T) $name: $* (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "$BASE" --no-verify "$@" 2>&1 \
    | grep -E '^(requests|retries|throughput|latency|by status)|history:|  error' | sed "s/^/[$name] /" | tee -a "$OUT"
}
