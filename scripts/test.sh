#!/usr/bin/env bash
# The one test command (README "Test", and what .ci/run calls).
#
# Sets up NATS and PostgreSQL like scripts/run.sh, then runs every check CI enforces: format,
# clippy with warnings as errors, offline query metadata, and the whole test suite (unit tests
# plus integration tests against real NATS servers and real PostgreSQL databases).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_services
# A real CalDAV server for tests/calendar_caldav.rs; exports CALLER_TEST_RADICALE.
ensure_radicale

export SQLX_OFFLINE=true
export CALLER_TEST_DATABASE_URL=${CALLER_TEST_DATABASE_URL:-$CALLER_DB_URL}
export CALLER_TEST_APP_DATABASE_URL=${CALLER_TEST_APP_DATABASE_URL:-$CALLER_APP_DB_URL}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings (default features, then test-util)"
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --all-targets --features test-util -- -D warnings
echo "== sqlx offline metadata"
scripts/sqlx-prepare.sh --check
echo "== tests"
# Databases left behind by interrupted earlier runs.
for db in $(psql "$CALLER_TEST_DATABASE_URL" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'caller_test_%'"); do
  psql "$CALLER_TEST_DATABASE_URL" -qtAc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null || true
done
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --features test-util "$@"
else
  cargo test --no-fail-fast --features test-util "$@"
fi
