#!/usr/bin/env bash
# The one command that runs the product (README "Run").
#
#   scripts/run.sh          the platform until Ctrl-C (`caller all` and the vendor simulator)
#   scripts/run.sh demo     the same set-up, then `caller demo`: leads, live calls, a summary
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
caller="$CARGO_TARGET_DIR/release/caller"
export CALLER_STATE_DIR
sim_port=${CALLER_SIM_PORT:-8090}
# The platform's Zoho app, as the simulator knows it (token refresh of the demo client).
export CALLER__ZOHO__ACCOUNTS_URL=${CALLER__ZOHO__ACCOUNTS_URL:-http://127.0.0.1:$sim_port}
export CALLER__ZOHO__CLIENT_ID=${CALLER__ZOHO__CLIENT_ID:-1000.SIMCLIENTID}
export CALLER__ZOHO__CLIENT_SECRET=${CALLER__ZOHO__CLIENT_SECRET:-sim-zoho-client-secret}
# CRM notes written by crm_sync link to the call in the management API.
export CALLER__CRM_SYNC__APP_BASE_URL=${CALLER__CRM_SYNC__APP_BASE_URL:-http://127.0.0.1:8080}

if [ "${1:-}" = "demo" ]; then
  shift
  # `caller demo` starts the simulator and the pipeline itself unless they already answer
  # (another `scripts/run.sh` in a second terminal), onboards demo-dental and runs the calls.
  exec "$caller" demo --simulator "127.0.0.1:$sim_port" "$@"
fi

# The vendor simulator stands in for Twilio, ElevenLabs, HighLevel and Zoho (fixed, fake demo
# credentials; the demo client's providers point at it). Reused when already listening.
sim_pid=
if ! listening "$sim_port"; then
  "$caller" simulate --listen "127.0.0.1:$sim_port" &
  sim_pid=$!
  wait_for_port "$sim_port" "vendor simulator"
fi

# The demo client `demo-dental`, created once per machine by the same code as `caller demo`
# (from scripts/demo-tenant.json), its webhook secrets and a `calls:write` API key generated
# and kept in $CALLER_STATE_DIR/demo (mode 600); docs/ingress.md uses them.
"$caller" demo --setup-only --simulator "127.0.0.1:$sim_port" >&2
echo "caller: http://127.0.0.1:8080 (/healthz /readyz /metrics /v1 /webhooks); Ctrl-C to stop" >&2
echo "caller: to watch calls end to end, run \`scripts/run.sh demo\` in another terminal" >&2

# Run until Ctrl-C or SIGTERM: forward it, wait for the drain, then stop the simulator.
"$caller" all "$@" &
caller_pid=$!
trap 'kill -TERM "$caller_pid" 2>/dev/null || true' INT TERM
status=0
while kill -0 "$caller_pid" 2>/dev/null; do
  wait "$caller_pid" || status=$?
done
if [ -n "$sim_pid" ]; then
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
fi
exit "$status"
