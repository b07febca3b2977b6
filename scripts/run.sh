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
# A development master key, generated once per machine (mode 600); production sets its own
# keyring through CALLER__CRYPTO__ACTIVE_KEY and CALLER__CRYPTO__KEYS__<ID>.
key_file="$CALLER_STATE_DIR/master-key.dev"
if [ ! -s "$key_file" ]; then
  mkdir -p "$CALLER_STATE_DIR"
  (umask 077; head -c 32 /dev/urandom | base64 > "$key_file")
fi
export CALLER__CRYPTO__ACTIVE_KEY=${CALLER__CRYPTO__ACTIVE_KEY:-dev}
export CALLER__CRYPTO__KEYS__DEV=${CALLER__CRYPTO__KEYS__DEV:-$(cat "$key_file")}
echo "caller: http://127.0.0.1:8080 (/healthz /readyz /metrics); Ctrl-C to stop" >&2
exec "$CARGO_TARGET_DIR/release/caller" all "$@"
