#!/usr/bin/env bash
# Builds the GraphiQL playground and the REST docs page into playground/dist/ (committed, and
# embedded into the Rust binary). Needs Node.js >= 20.19 and the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
