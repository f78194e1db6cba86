#!/usr/bin/env bash
# Flat cost as data grows: Storno setup and verify (valid codes) p99 on a database of N users with
# two-factor enabled and 10 recovery codes each, against a small one (SMALL users, the verify pool).
#
#   bench/scale.sh [sqlite|postgres] [N]        N defaults to 1000000, SMALL to 40000
#
# Seeds with examples/seed.rs (secrets derivable from the user index), starts the release binary
# on the seeded database, runs wrk (-t1 -c16, 10 s; the peers' tools/bench.lua) for setup (each
# request a new user) and verify (each line a seeded user's valid code, used once), prints the two
# p99s and their ratio. Loopback only; every server is stopped on exit. PostgreSQL: a database
# twofold_scale_<size> on 127.0.0.1 (user postgres, trust auth), dropped afterwards.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BACKEND=${1:-sqlite}
N=${2:-1000000}
SMALL=${SMALL:-40000}
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
PORT=${PORT:-18195}
SECRET=scale-bench-secret-0123456789abcdef0123
export TWOFOLD_ENCRYPTION_KEY=${TWOFOLD_ENCRYPTION_KEY:-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
[[ -f $PEERS/tools/bench.lua ]] || { echo "scale.sh: $PEERS/tools/bench.lua not found (PEERS_DIR=)" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --bin twofold --example seed >/dev/null 2>&1) \
  || { echo "scale.sh: cargo build --release failed" >&2; exit 1; }
TMP=$(mktemp -d)
PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

url_for() { # size
  if [[ $BACKEND == postgres ]]; then echo "postgres://postgres@127.0.0.1:5432/twofold_scale_$1"; else echo "sqlite://$TMP/db-$1/twofold.db"; fi
}

run_wrk() { # mode file route
  BENCH_MODE=$1 BENCH_FILE=$2 BENCH_THREADS=1 wrk -t1 -c16 -d10s --timeout 10s --latency \
    -s "$PEERS/tools/bench.lua" "http://127.0.0.1:$PORT$3" | grep '^RESULT'
}

declare -A P99
for size in "$SMALL" "$N"; do
  url=$(url_for "$size")
  if [[ $BACKEND == postgres ]]; then
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS twofold_scale_$size WITH (FORCE)" -c "CREATE DATABASE twofold_scale_$size"
  else
    mkdir -p "$TMP/db-$size"
  fi
  start=$(date +%s)
  TWOFOLD_DATABASE_URL=$url TWOFOLD_LOG=warn "$ROOT/target/release/examples/seed" "$size" 2>/dev/null
  echo "seeded $size users on $BACKEND in $(( $(date +%s) - start )) s"
  # Let the bulk load settle before measuring: statistics and a checkpoint (PostgreSQL), the WAL
  # folded into the database file (SQLite).
  if [[ $BACKEND == postgres ]]; then
    psql -h 127.0.0.1 -U postgres -d "twofold_scale_$size" -qc "VACUUM ANALYZE" -c "CHECKPOINT"
  else
    python3 -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')" "$TMP/db-$size/twofold.db"
  fi
  TWOFOLD_BIND=127.0.0.1:$PORT TWOFOLD_JWT_SECRET=$SECRET TWOFOLD_DATABASE_URL=$url TWOFOLD_LOG=warn \
    "$ROOT/target/release/twofold" serve >"$TMP/server-$size.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
  python3 "$HERE/scale.py" tokens "$SECRET" 60000 "fresh$size-" > "$TMP/setup-$size.txt"
  python3 "$HERE/scale.py" verify "$SECRET" "$size" "$SMALL" 7 > "$TMP/verify-$size.txt"
  setup=$(run_wrk setup "$TMP/setup-$size.txt" /api/v1/me/mfa/totp/setup)
  verify=$(run_wrk verify "$TMP/verify-$size.txt" /api/v1/me/mfa/verify)
  echo "users=$size setup: $setup"
  echo "users=$size verify: $verify"
  P99[setup-$size]=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$setup")
  P99[verify-$size]=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$verify")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  [[ $BACKEND == postgres ]] && psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS twofold_scale_$size WITH (FORCE)"
done
for op in setup verify; do
  awk -v op=$op -v a="${P99[$op-$SMALL]}" -v b="${P99[$op-$N]}" -v s="$SMALL" -v n="$N" -v be="$BACKEND" \
    'BEGIN { printf "RESULT backend=%s %s p99_ms %s users=%s, %s users=%s, ratio=%.2f\n", be, op, s, a, n, b, b / a }'
done
