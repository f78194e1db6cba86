# Shared helpers for bench/load.sh and bench/compare.sh (sourced, not run).
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
TWOFOLD_BIN=${TWOFOLD_BIN:-$REPO_DIR/target/release/twofold}

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Refuses anything but a loopback URL (the load is only ever aimed at this machine).
require_loopback() {
  case "$1" in
    http://127.*|http://localhost:*|http://localhost/*|http://localhost|http://\[::1\]*) ;;
    *) echo "refusing $1: only loopback targets (127.0.0.0/8, localhost, [::1])" >&2; exit 2 ;;
  esac
}

ensure_wrk() {
  command -v wrk >/dev/null && return 0
  log "installing wrk (apt-get)"
  # DPkg::Lock::Timeout waits for an apt-get that may already be running.
  apt-get -o DPkg::Lock::Timeout=600 install -y wrk >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get -o DPkg::Lock::Timeout=600 install -y wrk >/dev/null 2>&1; } \
    || { echo "wrk is required and could not be installed (apt-get install wrk)" >&2; exit 2; }
}

ensure_node() {
  command -v node >/dev/null || { echo "node (>= 18) is required for the token/seed tools" >&2; exit 2; }
}

# Fails unless the Twofold binary exists; builds it (cargo build --release) when BUILD=1.
ensure_twofold_bin() {
  if [[ ! -x "$TWOFOLD_BIN" && ${BUILD:-0} == 1 ]]; then
    log "building $TWOFOLD_BIN (cargo build --release)"
    (cd "$REPO_DIR" && cargo build --release) >&2 || return 1
  fi
  [[ -x "$TWOFOLD_BIN" ]] || { echo "no Twofold binary at $TWOFOLD_BIN (cargo build --release, or BUILD=1, or TWOFOLD_BIN=...)" >&2; return 1; }
}

# A port nobody listens on (bash /dev/tcp: a refused connect means free).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# RSS in kB of one process and all its descendants (sum of `ps -o rss`).
tree_pids() {
  local p=$1 c
  echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
}
tree_rss_kb() { ps -o rss= -p "$(tree_pids "$1" | paste -sd,)" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

# Background sampler of the max tree RSS every 0.5 s: rss_sampler_start PID FILE; rss_sampler_stop -> prints max kB.
RSS_SAMPLER=
RSS_FILE=
rss_sampler_start() {
  RSS_FILE=$2
  tree_rss_kb "$1" > "$RSS_FILE"
  ( max=0
    while kill -0 "$1" 2>/dev/null; do
      r=$(tree_rss_kb "$1")
      (( r > max )) && { max=$r; echo "$max" > "$RSS_FILE"; }
      sleep 0.5
    done ) &
  RSS_SAMPLER=$!
}
rss_sampler_stop() {
  if [[ -n "$RSS_SAMPLER" ]]; then
    kill "$RSS_SAMPLER" 2>/dev/null || true
    wait "$RSS_SAMPLER" 2>/dev/null || true
    RSS_SAMPLER=
  fi
  cat "$RSS_FILE" 2>/dev/null || echo 0
}

# Waits until the machine is quiet: busy CPU < QUIET_CORES (0.15) over 2 s, at most QUIET_MAX_WAIT
# (300) s, then goes on with a warning. Other jobs on a small machine skew every number.
wait_quiet() {
  local start a b cores
  start=$(date +%s)
  while true; do
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
    sleep 2
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
    cores=$(awk -v d=$((b - a)) -v k="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", d / k / 2}')
    if awk -v c="$cores" -v q="${QUIET_CORES:-0.15}" 'BEGIN {exit !(c < q)}'; then return 0; fi
    if (( $(date +%s) - start > ${QUIET_MAX_WAIT:-300} )); then
      log "warning: the machine is still busy ($cores cores used by others); measuring anyway"
      return 0
    fi
  done
}

# A random JWT secret of 48 characters.
random_secret() { head -c 36 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48; }

# Polls URL until it answers 200 or PID dies / 30 s pass. Prints ms since T0_NS (date +%s%N).
wait_200() { # URL PID T0_NS [METHOD] [TOKEN]
  local url=$1 pid=$2 t0=$3 method=${4:-GET} token=${5:-} code args=()
  [[ -n "$token" ]] && args=(-H "Authorization: Bearer $token")
  while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X "$method" "${args[@]}" "$url" || true)
    [[ $code == 200 ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "server (pid $pid) exited before answering 200" >&2; return 1; }
    (( ($(date +%s%N) - t0) / 1000000 > 30000 )) && { echo "no 200 from $url within 30 s" >&2; return 1; }
    sleep 0.005
  done
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
