#!/usr/bin/env bash
# Transfers and merchant payments over HTTP and over gRPC (docs/benchmarks.md, "gRPC"): the same
# payd, cards, connections and run length, the two transports alternating so both see the same
# machine. Ledger only (relay and consumers off), release build, one payd, a fresh database.
#
#   cargo build --release --bins && benches/grpc.sh        # results in target/grpc.txt
#
# Needs PostgreSQL and Redis as `make services` starts them; about 4 minutes. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18095}
GRPC_PORT=${BENCH_GRPC_PORT:-50095}
OUT=${OUT:-target/grpc.txt}
SECS=${SECS:-15s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
LOG_PREFIX=grpc
export PAYD_GRPC__PORT=$GRPC_PORT
. benches/lib.sh
GRPC=(--transport grpc --grpc-url "http://127.0.0.1:$GRPC_PORT")

mkdir -p target
DB=payd_grpc_$(date +%s)
CARDS=target/grpc-cards-$DB.txt
serve "$DB"
load setup --scenario uniform --cards 2000 --cards-file "$CARDS" --requests 1
for round in $(seq 1 "$ROUNDS"); do
  load "transfers-http-$round" --scenario uniform --cards 2000 --cards-file "$CARDS" --duration "$SECS" \
    --connections "$CONNS" --warmup 2s
  load "transfers-grpc-$round" --scenario uniform --cards 2000 --cards-file "$CARDS" --duration "$SECS" \
    --connections "$CONNS" --warmup 2s "${GRPC[@]}"
done
load merchant-http --scenario merchant --cards 500 --duration "$SECS" --connections "$CONNS" --warmup 2s
load merchant-grpc --scenario merchant --cards 500 --duration "$SECS" --connections "$CONNS" --warmup 2s "${GRPC[@]}"
echo "results in $OUT"
