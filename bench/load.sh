#!/usr/bin/env bash
# Load test of Twofold: four scenarios with wrk, each request from a different user.
#
#   bench/load.sh                 starts target/release/twofold itself (fresh temp SQLite DB,
#                                 random JWT secret, 127.0.0.1:$PORT) and stops it on exit
#   bench/load.sh URL             against a running Twofold (loopback only); needs its JWT secret in
#                                 TWOFOLD_JWT_SECRET (or JWT_SECRET); RSS needs PID= (or is found
#                                 with `ss` from the URL's port)
#
# Scenarios (SCENARIOS, default all four, in this order):
#   storno-setup       POST /api/v1/me/mfa/totp/setup                 (secret + 300x300 QR PNG)
#   cloudreve-prepare  GET  /user/setting/2fa                         (secret only)
#   graphql-setup      POST /graphql  mutation { setupTotp { ... } }  (secret + QR, through GraphQL)
#   verify-wrong       POST /api/v1/me/mfa/verify {"code":"000000","type":"totp"} for users with 2FA
#                      enabled (seeded first through the API: Cloudreve prepare + Storno enable), one
#                      user after another, so each user takes 5 failures and is then locked (429):
#                      the path an attacker guessing codes drives.
# Each prints
#   RESULT scenario=... rps=... p50_ms=... p99_ms=... non2xx=... s401=... s429=... max_rss_kb=... ...
# plus wrk's "SAMPLE status= body=" lines for unexpected answers. When the script starts the server
# it also prints "RESULT server startup_ms=<exec -> first 200 of /healthz> idle_rss_kb=<2 s later>".
#
# Environment (defaults): DURATION=10 (<= 15 s per wrk run) WARMUP=2 (<= 5) CONNS=16 THREADS=1
#   SETUP_TOKENS=40000  minimum distinct users per measured setup/prepare run; raised to
#                       2 x (warm-up req/s x DURATION) so no user is reused, capped by MAX_TOKENS=300000
#   WRONG_USERS=2000    seeded users for verify-wrong (at most; SEED_SECONDS=6 per seeding phase): few
#                       enough that 5 x users wrong answers are done within the run and 429s show
#   PORT=18180 (self-started server), TWOFOLD_BIN=target/release/twofold, BUILD=1 builds it if missing
#   SAVE=1 also writes the output to bench/results/<date>-<time>-load.txt
#   WAIT_QUIET=1 waits before each measured run until other processes use < QUIET_CORES (0.15) cores
#   (at most QUIET_MAX_WAIT=300 s, then measures anyway with a warning)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

URL=${1:-}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}
SETUP_TOKENS=${SETUP_TOKENS:-40000}
MAX_TOKENS=${MAX_TOKENS:-300000}
WRONG_USERS=${WRONG_USERS:-2000}
SCENARIOS=${SCENARIOS:-storno-setup cloudreve-prepare graphql-setup verify-wrong}
PORT=${PORT:-18180}
PID=${PID:-}
SAVE=${SAVE:-1}

if (( DURATION > 15 || WARMUP > 5 || DURATION < 1 )); then
  echo "load.sh: keep 1 <= DURATION <= 15 and WARMUP <= 5 (bounded load)" >&2; exit 2
fi
ensure_wrk
ensure_node

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twofold-load.XXXXXX")
SERVER=
cleanup() {
  rss_sampler_stop > /dev/null 2>&1 || true
  if [[ -n "$SERVER" ]]; then
    kill "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $SAVE == 1 ]]; then
  mkdir -p "$BENCH_DIR/results"
  OUT="$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)-load.txt"
  exec > >(tee "$OUT") 2>&1
fi

RUN="load-$(date +%s)-$$"
echo "== bench/load.sh $(date -u +%FT%TZ) on $(nproc) cores; wrk -t$THREADS -c$CONNS, warm-up ${WARMUP}s, measured ${DURATION}s"

if [[ -z "$URL" ]]; then
  ensure_twofold_bin || exit 2
  port_free "$PORT" || { echo "load.sh: port $PORT is in use (set PORT=)" >&2; exit 2; }
  SECRET=$(random_secret)
  URL="http://127.0.0.1:$PORT"
  echo "binary: $TWOFOLD_BIN ($(stat -c %y "$TWOFOLD_BIN" | cut -d. -f1); git $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo ?))"
  t0=$(date +%s%N)
  ( cd "$TMP" && TWOFOLD_BIND=127.0.0.1:$PORT TWOFOLD_JWT_SECRET=$SECRET \
      TWOFOLD_DATABASE_URL="sqlite://$TMP/twofold.db" TWOFOLD_LOG=${TWOFOLD_LOG:-warn} \
      exec "$TWOFOLD_BIN" serve ) > "$TMP/server.log" 2>&1 &
  SERVER=$!
  PID=$SERVER
  if ! startup_ms=$(wait_200 "$URL/healthz" "$SERVER" "$t0"); then tail -20 "$TMP/server.log" >&2; exit 1; fi
  sleep 2
  echo "RESULT server startup_ms=$startup_ms idle_rss_kb=$(tree_rss_kb "$SERVER")"
else
  URL=${URL%/}
  require_loopback "$URL"
  SECRET=${TWOFOLD_JWT_SECRET:-${JWT_SECRET:-}}
  [[ -n "$SECRET" ]] || { echo "load.sh: set TWOFOLD_JWT_SECRET (or JWT_SECRET) to the server's HS256 key" >&2; exit 2; }
  if [[ -z "$PID" ]]; then
    port=$(sed -E 's#^http://[^/]*:([0-9]+).*#\1#' <<< "$URL")
    [[ $port =~ ^[0-9]+$ ]] || port=80
    PID=$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  fi
  if [[ -n "$PID" ]]; then echo "RESULT server idle_rss_kb=$(tree_rss_kb "$PID") pid=$PID (RSS before the first scenario)"
  else echo "note: server PID unknown (set PID=): no RSS figures"; fi
  code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true)
  [[ $code == 200 ]] || { echo "load.sh: $URL/healthz answered '$code', not 200" >&2; exit 1; }
fi

# run_wrk LABEL SECONDS TOKENS_FILE PATH METHOD BODY EXPECT -> the WRK line (+ SAMPLE lines) on stdout
run_wrk() {
  local label=$1 secs=$2 file=$3 path=$4
  TOKENS_FILE=$file BENCH_THREADS=$THREADS BENCH_METHOD=$5 BENCH_BODY=$6 BENCH_EXPECT=$7 \
    timeout $((secs + 20)) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s --latency \
    -s "$BENCH_DIR/tokens.lua" "$URL$path" > "$TMP/wrk-$label.out" 2>&1 \
    || { cat "$TMP/wrk-$label.out" >&2; return 1; }
  grep -E '^(WRK|SAMPLE) ' "$TMP/wrk-$label.out" || { cat "$TMP/wrk-$label.out" >&2; return 1; }
}
field() { grep -o "$1=[^ ]*" | head -1 | cut -d= -f2; }

# CPU clock ticks: of the server's process tree (utime + stime), and busy ticks of the whole machine.
tree_ticks() {
  local p s=0 v
  for p in $(tree_pids "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

# measured LABEL SCENARIO TOKENS PATH METHOD BODY EXPECT [EXTRA]: one measured run with the RSS sampler
# and CPU accounting (server_cpu_ms_per_req; machine_busy_cores includes wrk's own CPU and other jobs)
measured() {
  local label=$1 scenario=$2 file=$3 out max extra=${8:-} c0=0 c1=0 m0 m1 t0 t1 wrkline cpu=""
  [[ ${WAIT_QUIET:-1} == 1 ]] && wait_quiet
  [[ -n "$PID" ]] && { rss_sampler_start "$PID" "$TMP/rss-$label"; c0=$(tree_ticks "$PID"); }
  m0=$(machine_ticks); t0=$(date +%s%N)
  out=$(run_wrk "$label" "$DURATION" "$file" "$4" "$5" "$6" "$7") || { rss_sampler_stop > /dev/null; return 1; }
  m1=$(machine_ticks); t1=$(date +%s%N)
  max=n/a
  [[ -n "$PID" ]] && { c1=$(tree_ticks "$PID"); max=$(rss_sampler_stop); }
  wrkline=$(grep '^WRK ' <<< "$out" | sed 's/^WRK //')
  local hz n
  hz=$(getconf CLK_TCK)
  n=$(grep -o 'requests=[0-9]*' <<< "$wrkline" | cut -d= -f2)
  [[ -n "$PID" ]] && cpu=$(awk -v c=$((c1 - c0)) -v k="$hz" -v n="${n:-0}" -v t=$((t1 - t0)) \
    'BEGIN {printf "server_cpu_cores=%.2f server_cpu_ms_per_req=%.3f ", c / k / (t / 1e9), (n > 0 ? c / k * 1000 / n : 0)}')
  cpu+=$(awk -v m=$((m1 - m0)) -v k="$hz" -v t=$((t1 - t0)) 'BEGIN {printf "machine_busy_cores=%.2f", m / k / (t / 1e9)}')
  echo "RESULT scenario=$scenario $wrkline max_rss_kb=$max $cpu${extra:+ $extra}"
  grep '^SAMPLE ' <<< "$out" || true
}

# Setup-like scenario: warm-up with its own users, then a measured run with enough fresh users.
setup_like() { # SCENARIO PATH METHOD BODY EXPECT
  local scenario=$1 warm n rps
  node "$BENCH_DIR/tools.js" mint "$SECRET" 10000 "$RUN-$scenario-w" > "$TMP/warm.txt"
  warm=$(run_wrk "warm-$scenario" "$WARMUP" "$TMP/warm.txt" "$2" "$3" "$4" "$5") || return 1
  echo "warm-up: $(grep '^WRK ' <<< "$warm" | sed 's/^WRK //')"
  rps=$(grep '^WRK ' <<< "$warm" | field rps)
  n=$(awk -v r="${rps:-0}" -v d="$DURATION" -v lo="$SETUP_TOKENS" -v hi="$MAX_TOKENS" \
    'BEGIN {n = int(r * d * 2) + 1; if (n < lo) n = lo; if (n > hi) n = hi; print n}')
  node "$BENCH_DIR/tools.js" mint "$SECRET" "$n" "$RUN-$scenario-m" > "$TMP/main.txt"
  measured "$scenario" "$scenario" "$TMP/main.txt" "$2" "$3" "$4" "$5"
}

GQL='{"query":"mutation { setupTotp { __typename ... on TotpSetup { secret qrCode otpauthUri } } }"}'
for scenario in $SCENARIOS; do
  echo "-- $scenario ($(date +%T))"
  case $scenario in
    storno-setup)      setup_like "$scenario" /api/v1/me/mfa/totp/setup POST "" '"qrCode":"data:image/png;base64,' ;;
    cloudreve-prepare) setup_like "$scenario" /user/setting/2fa GET "" '"code":0' ;;
    graphql-setup)     setup_like "$scenario" /graphql POST "$GQL" '"__typename":"TotpSetup"' ;;
    verify-wrong)
      users=$(node "$BENCH_DIR/tools.js" seed "$URL" "$SECRET" "$RUN-wrong" "$WRONG_USERS" "$TMP/wrong.txt" "$CONNS" | field users)
      # No warm-up: every wrong answer counts toward the users' lockout. Expected: up to 5 x users
      # answers 401 (the 5th failure locks), every later one 429.
      measured verify-wrong verify-wrong "$TMP/wrong.txt" /api/v1/me/mfa/verify POST \
        '{"code":"000000","type":"totp"}' "" "users=$users expected_max_401=$((5 * users))" ;;
    *) echo "load.sh: unknown scenario $scenario" >&2; exit 2 ;;
  esac
done
if [[ -n "$SERVER" ]]; then
  echo "server log (TWOFOLD_LOG=${TWOFOLD_LOG:-warn}): $(grep -c . "$TMP/server.log" || true) lines," \
    "$(grep -ciE 'error|panic' "$TMP/server.log" || true) mentioning error/panic; first and last 2 lines:"
  { head -2 "$TMP/server.log"; tail -2 "$TMP/server.log"; } | sed $'s/\x1b\\[[0-9;]*m//g' | cut -c1-300 | sed 's/^/  | /'
  grep -iE 'error|panic' "$TMP/server.log" | head -3 | cut -c1-300 | sed 's/^/  ! /' || true
fi
[[ $SAVE == 1 ]] && echo "saved: $OUT"
exit 0
