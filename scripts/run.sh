#!/usr/bin/env bash
# The one command that runs the product (README "Run").
#
# Installs what is missing, starts (or reuses) NATS and PostgreSQL on loopback, builds caller,
# then `caller all` migrates, provisions nats/ and runs ingress and every stage until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_services

export SQLX_OFFLINE=true
cargo build --release --quiet
export CALLER__DATABASE__URL=${CALLER__DATABASE__URL:-$CALLER_APP_DB_URL}
export CALLER__DATABASE__OWNER_URL=${CALLER__DATABASE__OWNER_URL:-$CALLER_DB_URL}
export CALLER__NATS__URL=${CALLER__NATS__URL:-$CALLER_NATS_URL}
export CALLER__LOG__FORMAT=${CALLER__LOG__FORMAT:-pretty}
echo "caller: http://127.0.0.1:8080 (/healthz /readyz /metrics); Ctrl-C to stop" >&2
exec "$CARGO_TARGET_DIR/release/caller" all "$@"
