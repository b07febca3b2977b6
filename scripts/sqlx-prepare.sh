#!/usr/bin/env bash
# Regenerates `.sqlx/` (offline query metadata) so that a build needs no database.
#
#   scripts/sqlx-prepare.sh          rewrite .sqlx/ from the current queries
#   scripts/sqlx-prepare.sh --check  fail when .sqlx/ is stale (CI)
#
# It applies migrations/ to a scratch database with psql and lets the sqlx macros write their
# metadata (SQLX_OFFLINE_DIR), which is what `cargo sqlx prepare` does, without installing
# sqlx-cli. The scratch database lives only for type-checking.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

check=false
[ "${1:-}" = "--check" ] && check=true

admin_url=$(pg_admin_url)
scratch=caller_sqlx_prepare_$$
psql "$admin_url" -qtAc "DROP DATABASE IF EXISTS $scratch" >/dev/null
psql "$admin_url" -qtAc "CREATE DATABASE $scratch" >/dev/null
scratch_url="${admin_url%/*}/$scratch"
# The same bookkeeping table sqlx keeps, so queries that read it type-check.
psql "$scratch_url" -q -v ON_ERROR_STOP=1 -c "CREATE TABLE _sqlx_migrations (
  version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
  success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
for migration in migrations/*.sql; do
  psql "$scratch_url" -q -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Touch the crate so every query macro re-expands, then build online with the writer enabled.
touch src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$scratch_url" \
  cargo check --quiet --all-targets --all-features
psql "$admin_url" -qtAc "DROP DATABASE IF EXISTS $scratch" >/dev/null

if $check; then
  if ! diff -r -q "$out" .sqlx >/dev/null 2>&1; then
    echo "sqlx-prepare: .sqlx/ is stale; run scripts/sqlx-prepare.sh and commit it" >&2
    diff -r "$out" .sqlx >&2 || true
    exit 1
  fi
  echo "sqlx-prepare: .sqlx/ is up to date"
else
  rm -rf .sqlx && mkdir -p .sqlx && cp "$out"/*.json .sqlx/
  echo "sqlx-prepare: wrote $(ls .sqlx | wc -l) query files to .sqlx/"
fi
