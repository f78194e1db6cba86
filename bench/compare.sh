#!/usr/bin/env bash
# Twofold vs the Node and Python peers (shared/peers), same load, same machine, one run.
#
#   bench/compare.sh
#
# 1. Copies shared/peers (read-only) to PEERS_DIR (${TMPDIR:-/tmp}/twofold-peers) and installs the
#    peers there if not yet installed (node: npm ci, ~75 s the first time for better-sqlite3;
#    python: venv + pip). A peer that fails to install is reported and left out.
# 2. Startup: peers/startup.sh KIND STARTUP_RUNS (exec -> first 200 of Storno setup on a fresh DB,
#    then idle RSS 2 s later), median of the runs.
# 3. Starts Twofold (release binary), node (JWT_KEY_OBJECT=1, its fastest form), go and python
#    (2 uvicorn workers), each on its own port with a fresh DB, and runs peers/bench.sh against each
#    (setup, then verify with valid codes; PID= so RSS/CPU are sampled), waiting for a quiet machine
#    before each run and repeating a run (NOISE_RETRIES) when other processes used >= NOISE_CORES.
# 4. QR data-URI size: a real Storno setup for a user whose token carries alice@example.com (the
#    otpauth URI then has the same 131 bytes as the peers' anchor URI; only the secret differs).
# 5. Prints a Markdown table and writes it, with the raw output, to bench/results/<date>-<time>-compare.md.
#
# Environment (defaults): JWT_SECRET (a fixed bench key), TARGETS="twofold node python go",
#   STARTUP_RUNS=3, PEERS_SRC=<repo>/../shared/peers, PEERS_DIR=${TMPDIR:-/tmp}/twofold-peers,
#   TWOFOLD_BIN=target/release/twofold (BUILD=1 builds it when missing), PORT_BASE=18181 (twofold,
#   node, python, go on +0, +1, +2, +3; startup runs on 18190), QUIET_CORES=0.15, QUIET_MAX_WAIT=300,
#   NOISE_CORES=0.3, NOISE_RETRIES=1, plus bench.sh's DURATION (10), WARMUP (2), CONNS (16), THREADS (1).
#   TWOFOLD_DB=postgres runs Twofold on a fresh PostgreSQL database (PG_ADMIN, default
#   postgres://postgres@127.0.0.1:5432/postgres, creates and drops it; PGSSLMODE, default disable on loopback).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export JWT_SECRET=${JWT_SECRET:-twofold-bench-secret-0123456789abcdef}
TARGETS=${TARGETS:-twofold node python go}
STARTUP_RUNS=${STARTUP_RUNS:-3}
PEERS_SRC=${PEERS_SRC:-$REPO_DIR/../shared/peers}
PEERS_DIR=${PEERS_DIR:-${TMPDIR:-/tmp}/twofold-peers}
PORT_BASE=${PORT_BASE:-18181}
NOISE_CORES=${NOISE_CORES:-0.3}
NOISE_RETRIES=${NOISE_RETRIES:-1}
if (( ${DURATION:-10} > 13 || ${WARMUP:-2} > 5 )); then
  echo "compare.sh: keep DURATION <= 13 and WARMUP <= 5 (bounded load)" >&2; exit 2
fi

ensure_wrk
ensure_node
mkdir -p "$BENCH_DIR/results"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$BENCH_DIR/results/$STAMP-compare.md"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twofold-compare.XXXXXX")
RAW="$TMP/raw.txt"
declare -A PIDS=() PORTS=() VARS=() SKIP=() R=()
cleanup() {
  local k p
  for k in "${!PIDS[@]}"; do
    p=${PIDS[$k]}
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
  if [[ -n "${PG_DB:-}" ]]; then psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$*" | tee -a "$RAW"; }
VARS[twofold]=""
TWOFOLD_LABEL=twofold
if [[ ${TWOFOLD_DB:-sqlite} == postgres ]]; then
  # Twofold on a fresh PostgreSQL database (dropped on exit); TLS off on loopback unless PGSSLMODE says otherwise.
  command -v psql >/dev/null || { echo "compare.sh: TWOFOLD_DB=postgres needs psql" >&2; exit 2; }
  PG_DB="twofold_compare_${STAMP//-/_}"
  PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
  psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" || { echo "compare.sh: cannot create database $PG_DB" >&2; exit 2; }
  VARS[twofold]="TWOFOLD_DATABASE_URL=${PG_ADMIN%/*}/$PG_DB?sslmode=${PGSSLMODE:-disable} TWOFOLD_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)"
  TWOFOLD_LABEL="twofold (PostgreSQL)"
fi
VARS[node]="JWT_KEY_OBJECT=1"
VARS[python]="WORKERS=2"
VARS[go]=""
i=0
for k in twofold node python go; do PORTS[$k]=$((PORT_BASE + i)); i=$((i + 1)); done

# --- 1. peers: copy and install ---------------------------------------------------------------------
[[ -d "$PEERS_SRC" ]] || { echo "compare.sh: no peers at $PEERS_SRC (set PEERS_SRC)" >&2; exit 2; }
mkdir -p "$PEERS_DIR"
cp -rf "$PEERS_SRC"/. "$PEERS_DIR"/
find "$PEERS_DIR" \( -path "$PEERS_DIR/node/node_modules" -o -path "$PEERS_DIR/python/.venv" \) -prune \
  -o -exec chmod u+w {} +
sha() { sha256sum "$1" | cut -c1-16; }

install_node() {
  local stamp
  stamp="$(sha "$PEERS_DIR/node/package-lock.json") $(node --version)"
  [[ -d "$PEERS_DIR/node/node_modules" && "$(cat "$PEERS_DIR/node/.installed" 2>/dev/null)" == "$stamp" ]] && return 0
  command -v npm >/dev/null || { echo "npm not found"; return 1; }
  log "node peer: npm ci in $PEERS_DIR/node (compiles better-sqlite3, ~75 s)"
  rm -rf "$PEERS_DIR/node/node_modules" "$PEERS_DIR/node/.installed"
  (cd "$PEERS_DIR/node" && npm ci --no-audit --no-fund) > "$TMP/npm.log" 2>&1 \
    || { echo "npm ci failed: $(grep -iE "error|ERR!" "$TMP/npm.log" | head -3 | tr '\n' ' ')"; return 1; }
  echo "$stamp" > "$PEERS_DIR/node/.installed"
}
install_python() {
  local stamp
  command -v python3 >/dev/null || { echo "python3 not found"; return 1; }
  stamp="$(sha "$PEERS_DIR/python/requirements.txt") $(python3 --version 2>&1)"
  [[ -x "$PEERS_DIR/python/.venv/bin/uvicorn" && "$(cat "$PEERS_DIR/python/.venv/.installed" 2>/dev/null)" == "$stamp" ]] && return 0
  log "python peer: venv + pip install in $PEERS_DIR/python"
  rm -rf "$PEERS_DIR/python/.venv"
  { python3 -m venv "$PEERS_DIR/python/.venv" \
      && "$PEERS_DIR/python/.venv/bin/pip" install -q -r "$PEERS_DIR/python/requirements.txt"; } > "$TMP/pip.log" 2>&1 \
    || { echo "venv/pip failed: $(tail -5 "$TMP/pip.log" | tr '\n' ' ')"; return 1; }
  echo "$stamp" > "$PEERS_DIR/python/.venv/.installed"
}

# The Go peer: Debian's Go packages and a GOPATH build (peers/go/build.sh; quick when built).
install_go() {
  [[ -x "$PEERS_DIR/go/build.sh" ]] || { echo "no $PEERS_DIR/go/build.sh"; return 1; }
  [[ -x "$PEERS_DIR/go/peer-go" ]] && return 0
  log "go peer: peers/go/build.sh in $PEERS_DIR/go (installs Debian's Go packages the first time)"
  "$PEERS_DIR/go/build.sh" > "$TMP/go-build.log" 2>&1 || { tail -3 "$TMP/go-build.log"; return 1; }
}

for k in $TARGETS; do
  case $k in
    twofold) why=$(ensure_twofold_bin 2>&1) || SKIP[$k]="binary missing: $why" ;;
    node)    why=$(install_node) || SKIP[$k]="install failed: $why" ;;
    python)  why=$(install_python) || SKIP[$k]="install failed: $why" ;;
    go)      why=$(install_go) || SKIP[$k]="install failed: $why" ;;
    *) echo "compare.sh: unknown target $k" >&2; exit 2 ;;
  esac
  if [[ -n "${SKIP[$k]:-}" ]]; then log "SKIPPING $k: ${SKIP[$k]}"; fi
done
ACTIVE=()
for k in $TARGETS; do [[ -z "${SKIP[$k]:-}" ]] && ACTIVE+=("$k"); done
(( ${#ACTIVE[@]} > 0 )) || { echo "compare.sh: nothing to measure" >&2; exit 1; }

say "== bench/compare.sh $(date -u +%FT%TZ): $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), node $(node --version), $(python3 --version 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
[[ " ${ACTIVE[*]} " == *" twofold "* ]] && say "twofold: $TWOFOLD_BIN (built $(stat -c %y "$TWOFOLD_BIN" | cut -d. -f1); repo HEAD $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo ?))"
say "peers: $PEERS_DIR (from $PEERS_SRC); node with ${VARS[node]}, python with ${VARS[python]}"

median() { tr ' ' '\n' | grep -E '^[0-9]+$' | sort -n | awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else print (NR % 2 ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2))}'; }
val() { grep -o "$1=[^ ]*" | head -1 | cut -d= -f2; }

# --- 2. startup --------------------------------------------------------------------------------------
for k in "${ACTIVE[@]}"; do
  wait_quiet
  say "-- startup $k ($STARTUP_RUNS runs)"
  if out=$(env ${VARS[$k]} PORT=18190 TWOFOLD_BIN="$TWOFOLD_BIN" "$PEERS_DIR/startup.sh" "$k" "$STARTUP_RUNS" 2>&1); then
    say "$out"
    R[$k.startup]=$(grep -o 'first_200_ms=[0-9]*' <<< "$out" | cut -d= -f2 | paste -sd' ' | median)
    R[$k.startup_all]=$(grep -o 'first_200_ms=[0-9]*' <<< "$out" | cut -d= -f2 | paste -sd/)
    R[$k.idle]=$(grep -o 'idle_rss_kb=[0-9]*' <<< "$out" | cut -d= -f2 | paste -sd' ' | median)
  else
    say "$out"; say "startup of $k failed"
  fi
done

# --- 3. servers + load -------------------------------------------------------------------------------
for k in "${ACTIVE[@]}"; do
  port=${PORTS[$k]}
  if ! port_free "$port"; then SKIP[$k]="port $port in use"; log "SKIPPING $k: port $port in use"; continue; fi
  mkdir -p "$TMP/$k"
  env ${VARS[$k]} PORT="$port" DB_PATH="$TMP/$k/peer.db" TWOFOLD_BIN="$TWOFOLD_BIN" \
    "$PEERS_DIR/serve.sh" "$k" > "$TMP/$k/server.log" 2>&1 &
  PIDS[$k]=$!
done
for k in "${ACTIVE[@]}"; do
  [[ -n "${PIDS[$k]:-}" ]] || continue
  if ! wait_200 "http://127.0.0.1:${PORTS[$k]}/healthz" "${PIDS[$k]}" "$(date +%s%N)" > /dev/null; then
    SKIP[$k]="server did not start: $(tail -3 "$TMP/$k/server.log" | tr '\n' ' ')"
    log "SKIPPING $k: ${SKIP[$k]}"
  fi
done

bench_run() { # KIND MODE -> sets R[KIND.MODE.*]
  local k=$1 mode=$2 try out other
  for try in $(seq 0 "$NOISE_RETRIES"); do
    wait_quiet
    out=$(PID=${PIDS[$k]} "$PEERS_DIR/bench.sh" "http://127.0.0.1:${PORTS[$k]}" "$JWT_SECRET" "$mode" 2>&1) || true
    other=$(val other_cpu_cores <<< "$out")
    say "-- $k $mode (attempt $((try + 1)))"
    say "$out"
    awk -v o="${other:-9}" -v n="$NOISE_CORES" 'BEGIN {exit !(o < n)}' && break
    if (( try < NOISE_RETRIES )); then say "   (noisy: other processes used ${other:-?} cores; repeating)"; fi
  done
  local line
  line=$(grep "^RESULT mode=$mode" <<< "$out" | tail -1 || true)
  R[$k.$mode.rps]=$(val rps <<< "$line")
  R[$k.$mode.p99]=$(val p99_ms <<< "$line")
  R[$k.$mode.non2xx]=$(grep -oE '(non2xx|non200)=[0-9]+' <<< "$line" | cut -d= -f2)
  R[$k.$mode.requests]=$(val requests <<< "$line")
  R[$k.$mode.maxrss]=$(val rss_under_load_max_kb <<< "$out")
  R[$k.$mode.other]=$other
}

for mode in setup verify; do
  for k in "${ACTIVE[@]}"; do
    [[ -z "${SKIP[$k]:-}" ]] || continue
    bench_run "$k" "$mode"
  done
done

# --- 4. QR size --------------------------------------------------------------------------------------
for k in "${ACTIVE[@]}"; do
  [[ -z "${SKIP[$k]:-}" ]] || continue
  out=$(node "$BENCH_DIR/tools.js" qr "http://127.0.0.1:${PORTS[$k]}" "$JWT_SECRET" "alice-$STAMP" alice@example.com 2>&1) || true
  say "-- qr $k: $out"
  R[$k.qr]=$(val qr_data_uri_bytes <<< "$out")
  R[$k.qrinfo]=$(sed -E 's/^qr_data_uri_bytes=[0-9]+ //; s/ status=[0-9]+$//' <<< "$out")
done

for k in "${ACTIVE[@]}"; do
  [[ -n "${PIDS[$k]:-}" ]] || continue
  errs=$(grep -ciE 'error|panic|exception|traceback' "$TMP/$k/server.log" || true)
  say "-- $k server log: $(wc -l < "$TMP/$k/server.log") lines, $errs mentioning error/panic"
  grep -iE 'error|panic|exception|traceback' "$TMP/$k/server.log" | head -3 | tee -a "$RAW" || true
done

# --- 5. table ----------------------------------------------------------------------------------------
mb() { [[ $1 =~ ^[0-9]+$ ]] && awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1000}' || echo "n/a"; }
maxof() { local a=${1:-} b=${2:-}; [[ $a =~ ^[0-9]+$ ]] || a=0; [[ $b =~ ^[0-9]+$ ]] || b=0; (( a > b )) && echo "$a" || { (( b > 0 )) && echo "$b" || echo ""; }; }
for k in twofold node python go; do R[$k.maxrss]=$(maxof "${R[$k.setup.maxrss]:-}" "${R[$k.verify.maxrss]:-}"); done
ratio() { # A B -> A/B with 2 decimals
  awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "n/a"}'
}
cell() { local v=${R[$1]:-}; [[ -n "$v" ]] && echo "$v" || echo "n/a"; }
row() { # LABEL KEY HIGHER_IS_BETTER FORMAT
  local label=$1 key=$2 hib=$3 fmt=${4:-plain} t n p g rn rp rg
  t=$(cell "twofold.$key"); n=$(cell "node.$key"); p=$(cell "python.$key"); g=$(cell "go.$key")
  if [[ $hib == 1 ]]; then rn=$(ratio "$t" "$n"); rp=$(ratio "$t" "$p"); rg=$(ratio "$t" "$g")
  else rn=$(ratio "$n" "$t"); rp=$(ratio "$p" "$t"); rg=$(ratio "$g" "$t"); fi
  if [[ $fmt == mb ]]; then t=$(mb "$t"); n=$(mb "$n"); p=$(mb "$p"); g=$(mb "$g"); fi
  echo "| $label | $t | $n | $p | $g | $rn | $rp | $rg |"
}
TABLE=$(
  echo "| $STAMP | $TWOFOLD_LABEL | node (JWT_KEY_OBJECT=1) | python (2 workers) | go | twofold vs node | twofold vs python | twofold vs go |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  row "setup req/s" setup.rps 1
  row "setup p99 ms" setup.p99 0
  row "verify req/s (valid codes)" verify.rps 1
  row "verify p99 ms" verify.p99 0
  row "idle RSS (2 s after first 200)" idle 0 mb
  row "max RSS under load (setup, verify)" maxrss 0 mb
  row "startup ms (exec → first 200 of setup, median)" startup 0
  row "QR data-URI bytes (alice@example.com)" qr 0
)
NOTES=$(
  echo "Ratios: req/s = twofold ÷ peer; latency, memory, startup and bytes = peer ÷ twofold; so **> 1 means Twofold is better** in every row."
  echo "Load: peers/bench.sh (wrk -t${THREADS:-1} -c${CONNS:-16}, ${WARMUP:-2} s warm-up + ${DURATION:-10} s; setup = a different user per request; verify = seeded users, each code once, run ends when the pool is used up)."
  for k in "${ACTIVE[@]}"; do
    if [[ -n "${SKIP[$k]:-}" ]]; then echo "* $k: not measured: ${SKIP[$k]}"; continue; fi
    echo "* $k: setup ${R[$k.setup.requests]:-?} req, non-2xx ${R[$k.setup.non2xx]:-?}, others used ${R[$k.setup.other]:-?} cores;" \
      "verify ${R[$k.verify.requests]:-?} req, non-200 ${R[$k.verify.non2xx]:-?}, others ${R[$k.verify.other]:-?} cores;" \
      "max RSS setup/verify $(mb "${R[$k.setup.maxrss]:-}")/$(mb "${R[$k.verify.maxrss]:-}");" \
      "startup runs ${R[$k.startup_all]:-?} ms; QR ${R[$k.qrinfo]:-?}"
  done
  for k in $TARGETS; do [[ " ${ACTIVE[*]} " == *" $k "* ]] || echo "* $k: not measured: ${SKIP[$k]:-?}"; done
)
echo
echo "$TABLE"
echo
echo "$NOTES"
{
  echo "# Twofold vs peers — $STAMP"
  echo
  echo "$TABLE"
  echo
  echo "$NOTES"
  echo
  echo "## Raw output"
  echo
  echo '```'
  cat "$RAW"
  echo '```'
} > "$OUT"
echo
echo "written: $OUT"
