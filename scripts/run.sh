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
caller="$CARGO_TARGET_DIR/release/caller"

# The vendor simulator stands in for Twilio, ElevenLabs, HighLevel and Zoho (fixed, fake demo
# credentials; the demo client's providers point at it). Reused when already listening.
sim_port=${CALLER_SIM_PORT:-8090}
sim_pid=
if ! listening "$sim_port"; then
  "$caller" simulate --listen "127.0.0.1:$sim_port" &
  sim_pid=$!
  wait_for_port "$sim_port" "vendor simulator"
fi
# The platform's Zoho app, as the simulator knows it (token refresh of the demo client).
export CALLER__ZOHO__ACCOUNTS_URL=${CALLER__ZOHO__ACCOUNTS_URL:-http://127.0.0.1:$sim_port}
export CALLER__ZOHO__CLIENT_ID=${CALLER__ZOHO__CLIENT_ID:-1000.SIMCLIENTID}
export CALLER__ZOHO__CLIENT_SECRET=${CALLER__ZOHO__CLIENT_SECRET:-sim-zoho-client-secret}
# CRM notes written by crm_sync link to the call in the management API.
export CALLER__CRM_SYNC__APP_BASE_URL=${CALLER__CRM_SYNC__APP_BASE_URL:-http://127.0.0.1:8080}

# A demo tenant, once per machine: `demo-dental`, with webhook secrets and a `calls:write` API
# key generated here and kept in $CALLER_STATE_DIR (mode 600); docs/ingress.md uses them.
demo_dir="$CALLER_STATE_DIR/demo"
"$caller" migrate >/dev/null
if ! "$caller" tenant show demo-dental >/dev/null 2>&1; then
  mkdir -p "$demo_dir"
  (
    umask 077
    printf 'whsec_%s' "$(head -c 32 /dev/urandom | base64)" > "$demo_dir/custom-webhook-secret"
    for name in gohighlevel-webhook-secret zoho-webhook-secret zoho-channel-token; do
      printf 'wk_%s' "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" > "$demo_dir/$name"
    done
    sed -e "s|@CUSTOM_SECRET@|$(cat "$demo_dir/custom-webhook-secret")|" \
      -e "s|@GHL_SECRET@|$(cat "$demo_dir/gohighlevel-webhook-secret")|" \
      -e "s|@ZOHO_SECRET@|$(cat "$demo_dir/zoho-webhook-secret")|" \
      -e "s|@ZOHO_TOKEN@|$(cat "$demo_dir/zoho-channel-token")|" \
      -e "s|@SIM@|http://127.0.0.1:$sim_port|g" \
      scripts/demo-tenant.json > "$demo_dir/onboarding.json"
    "$caller" tenant create --config-file "$demo_dir/onboarding.json" >&2
    rm -f "$demo_dir/onboarding.json"
    "$caller" admin create-key --name demo --tenant demo-dental \
      --scope calls:write --scope clients:read --scope clients:admin > "$demo_dir/api-key"
  )
  echo "caller: demo tenant demo-dental created; its secrets and API key are in $demo_dir" >&2
fi
echo "caller: http://127.0.0.1:8080 (/healthz /readyz /metrics /v1 /webhooks); Ctrl-C to stop" >&2

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
