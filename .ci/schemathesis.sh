#!/usr/bin/env bash
# Schemathesis against a running Twofold: the REST dialects through /openapi.json (every phase:
# examples, coverage, fuzzing, and stateful where the document has links) and the GraphQL API
# through /graphql (schemathesis builds queries from the introspected schema). Checks: no 5xx
# (`not_a_server_error`) and, for REST, answers that match the OpenAPI document
# (`response_schema_conformance`). Bounded in time (SCHEMATHESIS_SECONDS per API, default 50 s,
# about two minutes in all). Exits non-zero on any failure and prints schemathesis' summary.
#
#   .ci/schemathesis.sh                      # builds target/debug/twofold if missing
#   TWOFOLD_BIN=target/release/twofold .ci/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SCHEMATHESIS_SECONDS:-50}"

if ! python3 -c 'import schemathesis' 2>/dev/null; then
  python3 -m pip install -q schemathesis \
    || { echo "FATAL: could not install schemathesis from PyPI" >&2; exit 1; }
fi

bin="${TWOFOLD_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --quiet --bin twofold
  # Wherever cargo builds (CARGO_TARGET_DIR or a config may move it from ./target).
  target_dir="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  bin="$target_dir/debug/twofold"
fi

work="$(mktemp -d)"
# Run from the scratch directory: schemathesis and hypothesis keep caches in the working directory.
st() { (cd "$work" && python3 -m schemathesis.cli "$@"); }
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh database and settings of its own; no other TWOFOLD_* variable leaks in.
for v in $(env | grep -o '^TWOFOLD_[A-Z_]*' || true); do unset "$v"; done
export TWOFOLD_DATABASE_URL="sqlite://$work/schemathesis.db"
export TWOFOLD_JWT_SECRET="schemathesis-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export TWOFOLD_ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)"
export TWOFOLD_BIND=127.0.0.1:0
export TWOFOLD_LOG=warn

"$bin" serve >"$work/server.log" 2>&1 &
server=$!
addr=""
for _ in $(seq 1 300); do
  addr="$(sed -n 's|^Twofold is listening on http://||p' "$work/server.log" | head -n1)"
  [ -n "$addr" ] && curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; echo "FATAL: twofold exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/server.log" >&2; echo "FATAL: twofold did not start" >&2; exit 1; }
base="http://$addr"
# A token for one user; with the admin scope, the admin fields are exercised too.
token="$("$bin" token --sub schemathesis --email schemathesis@example.com --scope twofold:admin)"

status=0
echo "== schemathesis: REST ($base/openapi.json)"
st run "$base/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-time "$seconds" --workers 2 --seed 1 \
  --suppress-health-check too_slow \
  || status=1

echo "== schemathesis: GraphQL ($base/graphql)"
st run "$base/graphql" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error \
  --max-time "$seconds" --workers 2 --seed 1 \
  --suppress-health-check too_slow \
  || status=1

if ! kill -0 "$server" 2>/dev/null; then
  echo "FAIL: twofold is no longer running" >&2
  status=1
fi
if grep -Eq 'panicked|handler panicked' "$work/server.log"; then
  echo "FAIL: the server log shows a panic:" >&2
  grep -E 'panicked' "$work/server.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "== server log (last 40 lines)" >&2
  tail -n 40 "$work/server.log" >&2
  echo "FAIL: schemathesis found failures" >&2
else
  echo "OK: no 5xx and no schema violation"
fi
exit "$status"
