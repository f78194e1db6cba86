#!/usr/bin/env bash
# The operator surface at scale (SPEC §8): on a database of N enabled users (examples/seed.rs,
# 10 recovery codes each; 1 % of them locked and 1 % pending, set by SQL after seeding), times
#
#   * adminTwoFactors(first: 100): the first page, a page deep in the list (after a cursor near
#     the end) and a filtered page (state: LOCKED), each with totalCount; and totalCount alone;
#   * twofold admin import of IMPORT rows (default 100,000) into that database, as rows/s.
#
#   bench/admin_scale.sh [sqlite|postgres] [N]      N defaults to 1000000
#
# Each GraphQL timing is the median of 5 requests with curl (loopback, one at a time). The server
# and database are removed on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BACKEND=${1:-sqlite}
N=${2:-1000000}
IMPORT=${IMPORT:-100000}
PORT=${PORT:-18196}
SECRET=admin-bench-secret-0123456789abcdef0123
export TWOFOLD_ENCRYPTION_KEY=${TWOFOLD_ENCRYPTION_KEY:-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}
export TWOFOLD_JWT_SECRET=$SECRET TWOFOLD_LOG=warn
(cd "$ROOT" && cargo build --release --bin twofold --example seed >/dev/null 2>&1) \
  || { echo "admin_scale.sh: cargo build --release failed" >&2; exit 1; }
TMP=$(mktemp -d)
PID=
DB=twofold_admin_scale_$N
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null
  wait 2>/dev/null
  [[ $BACKEND == postgres ]] && psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

if [[ $BACKEND == postgres ]]; then
  export TWOFOLD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  sql() { psql -h 127.0.0.1 -U postgres -d "$DB" -qAtc "$1"; }
else
  export TWOFOLD_DATABASE_URL=sqlite://$TMP/twofold.db
  sql() { python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()" "$TMP/twofold.db" "$1"; }
fi
start=$(date +%s)
"$ROOT/target/release/examples/seed" "$N" >/dev/null 2>&1
echo "seeded $N users on $BACKEND in $(( $(date +%s) - start )) s"
FAR=$(( $(date +%s) * 1000 + 86400000 ))
# Every 100th user locked, every 100th (offset 50) pending: the filters have something to find.
sql "UPDATE totp_credentials SET locked_until = $FAR WHERE CAST(SUBSTR(user_id, 5) AS INTEGER) % 100 = 0;
     UPDATE totp_credentials SET enabled = FALSE, enabled_at = NULL, pending_expires_at = $FAR
       WHERE CAST(SUBSTR(user_id, 5) AS INTEGER) % 100 = 50;"
if [[ $BACKEND == postgres ]]; then sql "VACUUM ANALYZE"; else sql "PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;"; fi

TWOFOLD_BIND=127.0.0.1:$PORT "$ROOT/target/release/twofold" serve >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
TOKEN=$("$ROOT/target/release/twofold" token --sub ops --scope twofold:admin)

gql() { # query → seconds of the median of 5
  local body times=()
  body=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$1")
  for _ in 1 2 3 4 5; do
    times+=("$(curl -s -o "$TMP/out.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
      -H 'content-type: application/json' --data "$body" "http://127.0.0.1:$PORT/graphql")")
  done
  grep -q '"errors"' "$TMP/out.json" && { echo "GraphQL error: $(head -c 300 "$TMP/out.json")" >&2; exit 1; }
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}
ms() { python3 -c "import sys; print(f'{float(sys.argv[1])*1000:.1f} ms')" "$1"; }
# A cursor near the end of the list (user ids sort as text: seed999… come last).
DEEP=$(python3 -c 'import base64; print("c1." + base64.urlsafe_b64encode(b"seed99").decode().rstrip("="))')
echo "RESULT backend=$BACKEND users=$N adminTwoFactors(first:100) first page+totalCount: $(ms "$(gql '{ adminTwoFactors(first: 100) { totalCount edges { node { userId state } } } }')")"
echo "RESULT backend=$BACKEND users=$N adminTwoFactors(first:100) deep page+totalCount: $(ms "$(gql "{ adminTwoFactors(first: 100, after: \"$DEEP\") { totalCount edges { node { userId state } } } }")")"
echo "RESULT backend=$BACKEND users=$N adminTwoFactors(first:100, state: LOCKED)+totalCount: $(ms "$(gql '{ adminTwoFactors(first: 100, state: LOCKED) { totalCount edges { node { userId } } } }')")"
echo "RESULT backend=$BACKEND users=$N totalCount alone: $(ms "$(gql '{ adminTwoFactors(first: 1) { totalCount } }')")"
echo "RESULT backend=$BACKEND users=$N adminTwoFactors(first:100) without totalCount: $(ms "$(gql '{ adminTwoFactors(first: 100) { edges { node { userId state } } } }')")"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

python3 - "$IMPORT" >"$TMP/import.csv" <<'PY'
import base64, os, sys
print("user_id,secret")
for i in range(int(sys.argv[1])):
    print(f"imported{i},{base64.b32encode(os.urandom(20)).decode()}")
PY
start=$(date +%s.%N)
"$ROOT/target/release/twofold" admin import "$TMP/import.csv" >/dev/null
end=$(date +%s.%N)
python3 -c "import sys; n=int(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2]); print(f'RESULT backend=$BACKEND import rows={n} seconds={s:.1f} rows_per_s={n/s:,.0f}')" "$IMPORT" "$start" "$end"
