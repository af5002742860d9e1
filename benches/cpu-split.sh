#!/usr/bin/env bash
# Where the two cores go: CPU time per request, by process, for uniform transfers and merchant
# payments (one payd, ledger only or the default configuration), and per transaction for pgbench
# TPC-B on the same server. On this machine every run is CPU-bound (2 cores shared by payd,
# PostgreSQL, Redis and the load generator), so throughput ≈ 2 cores ÷ total CPU per request, and the
# ratio of two runs is the inverse ratio of their CPU per request.
#
# A sampler reads, once a second, the CPU ticks (utime + stime, /proc/PID/stat) of payd, of every
# PostgreSQL process, of redis-server, and of the whole machine (/proc/stat), and payd's request
# counter (`payd_http_requests_total` of POSTs and `payd_grpc_requests_total`, summed) from /metrics;
# the steady window is the seconds whose request rate is at least 80 % of the run's best second (setup
# and warm-up fall outside it). The generator is payd-load (or pgbench); what the machine spent beyond
# these four is other processes (on a shared machine: other people's builds).
#
#   cargo build --release --bins && benches/cpu-split.sh          # results in target/cpu-split.txt
#   CONFIG=default benches/cpu-split.sh                           # relay and consumers on
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18095}
GRPC_PORT=${BENCH_GRPC_PORT:-18096}
OUT=${OUT:-target/cpu-split.txt}
SECS=${SECS:-12s}
CARDS_N=${CARDS_N:-2000}
CONFIG=${CONFIG:-ledger}
PG=${PAYD_TEST_PG:-postgres://postgres@127.0.0.1:5432}
db=payd_bench_cpu_$(date +%s)
export PAYD_DATABASE__URL="$PG/$db?sslmode=disable"
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_SERVER__PORT=$PORT PAYD_GRPC__PORT=$GRPC_PORT PAYD_CONFIG_DIR=$PWD/config PAYD_RATE_LIMITS__ENABLED=false \
  PAYD_STATS__INTERVAL_MS=0
if [ "$CONFIG" = ledger ]; then
  export PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false
else
  export PAYD_EVENTS__RELAY_ENABLED=true PAYD_EVENTS__CONSUMERS_ENABLED=true
fi
mkdir -p target
HZ=$(getconf CLK_TCK)

ticks_of() { # PID… → utime+stime summed (processes that vanished count 0)
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo "$t"
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
requests() {
  curl -sf "http://127.0.0.1:$PORT/metrics" 2>/dev/null \
    | awk '/^payd_http_requests_total\{.*method="POST"/ || /^payd_grpc_requests_total\{/ {s += $NF} END {printf "%d\n", s}'
}

# sample FILE PAYD_PID: one line per second until killed.
sample() {
  local file=$1 payd=$2
  while true; do
    echo "$(date +%s.%N) $(requests || echo 0) $(ticks_of "$payd") $(ticks_of $(pgrep -x postgres)) \
$(ticks_of $(pgrep -x redis-server)) $(ticks_of $(pgrep -x payd-load) $(pgrep -x pgbench)) $(machine_ticks)" >>"$file"
    sleep 1
  done
}

# summarise NAME FILE [pgbench]: CPU ms per request in the steady window.
summarise() {
  python3 - "$1" "$2" "$HZ" "${3:-}" <<'EOF' | tee -a "$OUT"
import sys
name, path, hz, pgb = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [list(map(float, l.split())) for l in open(path) if len(l.split()) == 7]
if pgb:
    # pgbench: no request counter; the window is the whole file, transactions from pgbench's output.
    tx = float(pgb)
    a, b = rows[1], rows[-2]
    n = tx * (b[0] - a[0])
else:
    rate = [(rows[i + 1][1] - rows[i][1]) / (rows[i + 1][0] - rows[i][0]) for i in range(len(rows) - 1)]
    best = max(rate)
    steady = [i for i, r in enumerate(rate) if r >= 0.8 * best]
    a, b = rows[steady[0]], rows[steady[-1] + 1]
    n = b[1] - a[1]
secs = b[0] - a[0]
ms = lambda col: (b[col] - a[col]) * 1000.0 / hz / n
payd, pg, redis, gen, machine = ms(2), ms(3), ms(4), ms(5), ms(6)
own = payd + pg + redis + gen
print(f"[{name}] {n / secs:,.0f}/s over {secs:.0f} s steady; CPU ms per request: payd {payd:.3f}, "
      f"postgres {pg:.3f}, redis {redis:.3f}, generator {gen:.3f}, sum {own:.3f}; "
      f"machine busy {100 * (b[6] - a[6]) / hz / secs / 2:.0f} % of 2 cores, "
      f"{100 * (machine - own) / machine:.0f} % of it other processes")
EOF
}

"$BIN/payd" serve >"target/cpu-split-payd.log" 2>&1 </dev/null &
pid=$!
spid=""
trap 'kill $spid 2>/dev/null || true; kill $pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
echo "== $(date -u +%FT%TZ) cpu-split: $CONFIG configuration, $CARDS_N cards, $SECS per run (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
CARDS=target/cpu-split-cards-$db.txt
L=("$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --no-verify)
"${L[@]}" --scenario uniform --cards "$CARDS_N" --cards-file "$CARDS" --requests 1 >/dev/null 2>&1

run() { # NAME payd-load arguments…
  local name=$1; shift
  local file=target/cpu-split-$name.samples
  : >"$file"
  sample "$file" "$pid" & spid=$!
  "${L[@]}" "$@" 2>&1 | grep -E '^(throughput|latency)' | sed "s/^/    [$name] /" | tee -a "$OUT"
  kill $spid; wait $spid 2>/dev/null || true; spid=""
  summarise "$name" "$file"
}
run "uniform-$CONFIG" --scenario uniform --cards "$CARDS_N" --cards-file "$CARDS" --duration "$SECS" --connections 256 --warmup 3s
run "merchant-$CONFIG" --scenario merchant --cards 1000 --duration "$SECS" --connections 256 --warmup 3s
# The same uniform transfers over gRPC (one HTTP/2 connection per worker, 64 as benches/grpc.sh), and
# over HTTP/JSON at 64 connections for the pair.
run "uniform-http64-$CONFIG" --scenario uniform --cards "$CARDS_N" --cards-file "$CARDS" --duration "$SECS" --connections 64 --warmup 3s
run "uniform-grpc64-$CONFIG" --scenario uniform --cards "$CARDS_N" --cards-file "$CARDS" --duration "$SECS" --connections 64 --warmup 3s \
  --transport grpc --grpc-url "http://127.0.0.1:$GRPC_PORT"

# pgbench TPC-B alone on the same server (payd idle), as payd-load --pgbench runs it.
pgdb=payd_pgbench
if [ "$(psql "$PG/postgres" -XAtc "SELECT count(*) FROM pg_database WHERE datname = '$pgdb'")" = 0 ]; then
  psql "$PG/postgres" -Xqc "CREATE DATABASE $pgdb"
fi
[ "$(psql "$PG/$pgdb" -XAtc 'SELECT count(*) FROM pgbench_branches' 2>/dev/null || echo 0)" = 16 ] \
  || pgbench -i -q -s 16 "$PG/$pgdb" >/dev/null 2>&1
file=target/cpu-split-pgbench.samples
: >"$file"
sample "$file" "$pid" & spid=$!
tps=$(pgbench -M prepared -c 16 -j 2 -T "${SECS%s}" "$PG/$pgdb" 2>/dev/null | awk '/^tps/ {print $3; exit}')
kill $spid; wait $spid 2>/dev/null || true; spid=""
echo "    [pgbench] tps $tps (pgbench -M prepared -c 16 -j 2 -T ${SECS%s}, scale 16)" | tee -a "$OUT"
summarise pgbench "$file" "$tps"
echo "results in $OUT"
