#!/usr/bin/env bash
# CPU per verify of one Twofold binary, two ways, on a fresh SQLite database each:
#
#   bench/profile.sh [native|callgrind|both]      (default both)
#
# * native: the server's user and system CPU time (from /proc/PID/stat) over one verify run
#   (peers/bench.sh's load: wrk -t1 -c16, each seeded code sent once), divided by the requests.
#   The kernel's share (TCP, the WAL's writes, thread wake-ups) is in `sys`. Runs are short
#   (~1 s at 17k req/s) and move by about ±5 %; take several.
# * callgrind: the instructions the process executes per verify (user space only), with
#   valgrind's callgrind switched on just for the measured requests (`callgrind_control -i`).
#   Repeatable to a few per mille for the same binary whatever else the machine does, so it is the
#   number to compare builds with. Valgrind hides some CPU features (ADX, SHA-NI): crypto code
#   takes its portable paths there and counts more instructions than it runs natively. With
#   PROFILE_OUT=DIR the callgrind file stays in DIR for `callgrind_annotate --inclusive=yes`.
#
# Users are seeded through the public HTTP API (peers/tools/seed-verify.js, as bench.sh does).
#
# Environment (defaults): TWOFOLD_BIN=target/release/twofold (BUILD=1 builds it), PEERS_SRC=
#   <repo>/../shared/peers, PORT=18191, NATIVE_USERS=30000 (upper bound; SEED_SECONDS=6 bounds the
#   seeding), CALLGRIND_USERS=2000, RUNS=1 (native runs, each on a fresh database), PROFILE_OUT.
#   TWOFOLD_DB=postgres: native runs on a fresh PostgreSQL database each (PG_ADMIN, default
#   postgres://postgres@127.0.0.1:5432/postgres, created and dropped; sslmode=disable), and the
#   line adds `pg_us=…`: the CPU of every PostgreSQL process of the machine per verify.
# Prints `RESULT how=native user_us=… sys_us=… total_us=… requests=… rps=…` and
# `RESULT how=callgrind instructions_per_verify=… requests=…` lines.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HOW=${1:-both}
case "$HOW" in native|callgrind|both) ;; *) echo "usage: bench/profile.sh [native|callgrind|both]" >&2; exit 2 ;; esac
PEERS_SRC=${PEERS_SRC:-$REPO_DIR/../shared/peers}
PORT=${PORT:-18191}
NATIVE_USERS=${NATIVE_USERS:-30000}
CALLGRIND_USERS=${CALLGRIND_USERS:-2000}
RUNS=${RUNS:-1}
SECRET=twofold-bench-secret-0123456789abcdef
URL=http://127.0.0.1:$PORT

ensure_wrk
ensure_node
ensure_twofold_bin
[[ -f $PEERS_SRC/tools/seed-verify.js ]] || { echo "no peers at $PEERS_SRC (PEERS_SRC=...)" >&2; exit 2; }
if [[ $HOW != native ]]; then
  command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
    || { echo "callgrind needs valgrind (apt-get install valgrind)" >&2; exit 2; }
fi
port_free "$PORT" || { echo "port $PORT is taken (PORT=...)" >&2; exit 2; }
DB=${TWOFOLD_DB:-sqlite}
case "$DB" in
  sqlite) ;;
  postgres)
    [[ $HOW == native ]] || { echo "TWOFOLD_DB=postgres: native only" >&2; exit 2; }
    command -v psql >/dev/null || { echo "TWOFOLD_DB=postgres needs psql" >&2; exit 2; }
    PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
    ;;
  *) echo "TWOFOLD_DB is sqlite or postgres" >&2; exit 2 ;;
esac
PG_DBS=()

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twofold-profile.XXXXXX")
SRV=
stop_server() {
  if [[ -n "$SRV" ]]; then
    kill "$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
    SRV=
  fi
}
cleanup() {
  stop_server
  for db in "${PG_DBS[@]}"; do psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db" || true; done
  [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server DIR [wrapper...]: Twofold on a SQLite file in DIR (or a fresh PostgreSQL database),
# waits for /healthz (120 s: slow under valgrind).
start_server() {
  local dir=$1 db_env=()
  shift
  if [[ $DB == postgres ]]; then
    local name
    name=twofold_profile_$$_$(basename "$dir" | tr -c 'a-z0-9\n' _)
    psql -q "$PG_ADMIN" -c "CREATE DATABASE $name"
    PG_DBS+=("$name")
    db_env=("TWOFOLD_DATABASE_URL=${PG_ADMIN%/*}/$name?sslmode=disable"
      "TWOFOLD_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)")
  fi
  (cd "$dir" && exec env TWOFOLD_BIND="127.0.0.1:$PORT" TWOFOLD_JWT_SECRET="$SECRET" TWOFOLD_LOG=warn \
    "${db_env[@]}" "$@" "$TWOFOLD_BIN" serve) > "$dir/server.log" 2>&1 &
  SRV=$!
  for _ in $(seq 1 1200); do
    curl -sf "$URL/healthz" > /dev/null && return 0
    kill -0 "$SRV" 2>/dev/null || break
    sleep 0.1
  done
  echo "Twofold did not start:" >&2
  cat "$dir/server.log" >&2
  exit 1
}

seed() { # DIR USERS -> DIR/warm.txt, DIR/main.txt
  node "$PEERS_SRC/tools/seed-verify.js" "$URL" "$SECRET" "profile-$(basename "$1")" "$2" \
    "$1/warm.txt" "$1/main.txt" 16 >&2
}

verify_run() { # FILE SECONDS -> the RESULT line of bench.lua
  BENCH_MODE=verify BENCH_FILE=$1 BENCH_THREADS=1 wrk -t1 -c16 -d"$2s" --timeout 30s \
    -s "$PEERS_SRC/tools/bench.lua" "$URL/api/v1/me/mfa/verify" | grep '^RESULT'
}

field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<< "$2"; }

cpu_ticks() { sed 's/^.*) //' "/proc/$SRV/stat" | awk '{print $12, $13}'; }

# pg_ticks: user + system ticks of every PostgreSQL process (backends, WAL writer, checkpointer…).
pg_ticks() {
  local t=0 pid rest
  for pid in $(pgrep -x postgres || true); do
    rest=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
    t=$((t + $(awk '{print $12 + $13}' <<< "$rest")))
  done
  echo "$t"
}

native() {
  local dir=$TMP/native-$1 line u0 s0 u1 s1 p0 p1 n hz
  mkdir -p "$dir"
  start_server "$dir"
  seed "$dir" "$NATIVE_USERS"
  verify_run "$dir/warm.txt" 5 > /dev/null
  wait_quiet
  read -r u0 s0 <<< "$(cpu_ticks)"
  p0=$(pg_ticks)
  line=$(verify_run "$dir/main.txt" 12)
  read -r u1 s1 <<< "$(cpu_ticks)"
  p1=$(pg_ticks)
  stop_server
  n=$(field ok "$line")
  hz=$(getconf CLK_TCK)
  awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v p=$((p1 - p0)) -v db="$DB" -v n="$n" -v hz="$hz" \
    -v rps="$(field rps "$line")" 'BEGIN {
    k = 1e6 / hz / n
    pg = db == "postgres" ? sprintf(" pg_us=%.1f", p * k) : ""
    printf "RESULT how=native db=%s user_us=%.1f sys_us=%.1f total_us=%.1f%s requests=%d rps=%s\n", db, u * k, s * k, (u + s) * k, pg, n, rps
  }'
}

callgrind() {
  local dir=$TMP/callgrind line n out total
  mkdir -p "$dir"
  # Seeded through the server under valgrind too (instrumentation off: a few times slower than
  # native), so the codes are fresh when the measured run starts.
  start_server "$dir" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out"
  SEED_SECONDS=40 seed "$dir" "$CALLGRIND_USERS"
  # wrk runs for the whole -d; the codes stay valid for 30 s after seeding.
  verify_run "$dir/warm.txt" 4 > /dev/null
  callgrind_control -i on "$SRV" > /dev/null
  line=$(verify_run "$dir/main.txt" 20)
  callgrind_control -i off "$SRV" > /dev/null
  stop_server
  n=$(field ok "$line")
  total=$(callgrind_annotate "$dir/callgrind.out" | awk '/PROGRAM TOTALS/ && !t {gsub(",", "", $1); t = $1} END {print t}')
  [[ -n "$total" && "$n" -gt 0 && $(field non200 "$line") == 0 ]] \
    || { echo "callgrind: no total, or refused codes (a slow machine: lower CALLGRIND_USERS): $line" >&2; exit 1; }
  echo "RESULT how=callgrind instructions_per_verify=$((total / n)) requests=$n"
  if [[ -n "${PROFILE_OUT:-}" ]]; then
    mkdir -p "$PROFILE_OUT"
    out=$PROFILE_OUT/callgrind-$(date +%Y%m%d-%H%M%S).out
    cp "$dir/callgrind.out" "$out"
    log "callgrind file: $out"
  fi
}

log "profiling $TWOFOLD_BIN ($HOW)"
if [[ $HOW != callgrind ]]; then
  for i in $(seq 1 "$RUNS"); do native "$i"; done
fi
if [[ $HOW != native ]]; then callgrind; fi
