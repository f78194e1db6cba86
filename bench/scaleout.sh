#!/usr/bin/env bash
# Scale-out on PostgreSQL: the same Storno setup load against one Twofold instance, then against
# two instances sharing the database (two wrk processes at once, 8 connections each vs 16 on one).
#   bench/scaleout.sh        (needs PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
SECRET=scaleout-bench-secret-0123456789abcdef
DB=twofold_scaleout
URL=postgres://postgres@127.0.0.1:5432/$DB
export TWOFOLD_ENCRYPTION_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
(cd "$ROOT" && cargo build --release --bin twofold >/dev/null 2>&1)
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$TMP";
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
start() { # port
  TWOFOLD_BIND=127.0.0.1:$1 TWOFOLD_JWT_SECRET=$SECRET TWOFOLD_DATABASE_URL=$URL TWOFOLD_LOG=warn \
    "$ROOT/target/release/twofold" serve >"$TMP/server-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.05; done
}
load() { # port conns tokens-file
  BENCH_MODE=setup BENCH_FILE=$3 BENCH_THREADS=1 wrk -t1 -c"$2" -d10s --latency -s "$PEERS/tools/bench.lua" \
    "http://127.0.0.1:$1/api/v1/me/mfa/totp/setup" | grep '^RESULT'
}
python3 "$HERE/scale.py" tokens "$SECRET" 60000 one- > "$TMP/t1.txt"
python3 "$HERE/scale.py" tokens "$SECRET" 40000 a- > "$TMP/ta.txt"
python3 "$HERE/scale.py" tokens "$SECRET" 40000 b- > "$TMP/tb.txt"
start 18201
one=$(load 18201 16 "$TMP/t1.txt")
echo "one instance:  $one"
start 18202
load 18201 8 "$TMP/ta.txt" > "$TMP/ra.txt" &
LOAD_A=$!
load 18202 8 "$TMP/tb.txt" > "$TMP/rb.txt"
wait "$LOAD_A"
echo "two instances: A $(cat "$TMP/ra.txt")"
echo "               B $(cat "$TMP/rb.txt")"
cat "$TMP/ra.txt" "$TMP/rb.txt" | sed 's/.*rps=\([0-9]*\).*/\1/' | paste -sd+ | bc \
  | awk -v one="$(sed 's/.*rps=\([0-9]*\).*/\1/' <<<"$one")" '{ printf "RESULT scaleout setup req/s one=%d two=%d ratio=%.2f\n", one, $1, $1 / one }'
