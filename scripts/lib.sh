# shellcheck shell=bash
# Shared set-up for scripts/run.sh and scripts/test.sh; source it, don't run it.
#
# ensure_services installs what is missing (nats-server and postgresql from Debian's
# packages), reuses servers already listening on 127.0.0.1:4222 / :5432, otherwise starts them
# on loopback, and makes sure the `caller` role and database exist. Idempotent.

CALLER_STATE_DIR=${CALLER_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/caller}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/caller/target}
# The schema owner (migrations, test databases) and the application role, which owns nothing
# and is subject to row-level security.
export CALLER_DB_URL=${CALLER_DB_URL:-postgres://caller:caller@127.0.0.1:5432/caller}
export CALLER_APP_DB_URL=${CALLER_APP_DB_URL:-postgres://caller_app:caller_app@127.0.0.1:5432/caller}
export CALLER_NATS_URL=${CALLER_NATS_URL:-nats://127.0.0.1:4222}

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 what=$2
  for _ in $(seq 1 100); do
    listening "$port" && return 0
    sleep 0.2
  done
  say "$what did not start listening on 127.0.0.1:$port"
  return 1
}

apt_updated=false
apt_install() {
  if ! $apt_updated; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

nats_server_bin() {
  command -v nats-server 2>/dev/null || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true
}

ensure_nats() {
  if [ -z "$(nats_server_bin)" ]; then
    say "installing nats-server (Debian package)"
    apt_install nats-server
  fi
  export NATS_SERVER_BIN
  NATS_SERVER_BIN=$(nats_server_bin)
  if listening 4222; then
    say "reusing the NATS server on 127.0.0.1:4222"
    return
  fi
  mkdir -p "$CALLER_STATE_DIR/nats"
  say "starting nats-server with JetStream on 127.0.0.1:4222 (store: $CALLER_STATE_DIR/nats)"
  setsid "$NATS_SERVER_BIN" -a 127.0.0.1 -p 4222 -js -sd "$CALLER_STATE_DIR/nats" \
    -l "$CALLER_STATE_DIR/nats.log" </dev/null >/dev/null 2>&1 &
  wait_for_port 4222 nats-server
}

ensure_postgres() {
  if ! command -v psql >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if ! listening 5432; then
      say "installing postgresql (Debian package)"
      apt_install postgresql postgresql-client
    elif ! command -v psql >/dev/null; then
      apt_install postgresql-client
    fi
  fi
  if ! listening 5432; then
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
      say "creating PostgreSQL $version cluster"
      as_root pg_createcluster "$version" main >/dev/null
    fi
    local cluster
    cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
    say "starting PostgreSQL cluster $cluster on 127.0.0.1:5432"
    # pg_ctlcluster runs the server as the postgres OS user (it refuses to run as root).
    as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
    wait_for_port 5432 PostgreSQL
  else
    say "reusing the PostgreSQL server on 127.0.0.1:5432"
  fi
  local roles_ok
  roles_ok=$(psql "$CALLER_DB_URL" -qtAc "SELECT count(*) FROM pg_roles
      WHERE (rolname = 'caller' AND rolcreatedb AND rolcreaterole)
         OR (rolname = 'caller_app' AND rolcanlogin AND NOT rolsuper)" 2>/dev/null || true)
  if [ "$roles_ok" = "2" ] && psql "$CALLER_APP_DB_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    return
  fi
  say "creating roles \`caller\` (schema owner) and \`caller_app\` (application) and database \`caller\`"
  local create_roles="DO \$\$BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'caller') THEN
        CREATE ROLE caller LOGIN PASSWORD 'caller' CREATEDB CREATEROLE;
      END IF;
      ALTER ROLE caller CREATEDB CREATEROLE;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'caller_app') THEN
        CREATE ROLE caller_app LOGIN PASSWORD 'caller_app';
      END IF;
      ALTER ROLE caller_app LOGIN PASSWORD 'caller_app' NOSUPERUSER NOBYPASSRLS;
      GRANT caller_app TO caller WITH ADMIN OPTION;
    END\$\$;"
  local admin
  if psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT 1' >/dev/null 2>&1; then
    admin=(psql -h 127.0.0.1 -U postgres -d postgres)            # trust auth on loopback
  else
    admin=(as_root runuser -u postgres -- psql -d postgres)       # peer auth on the socket
  fi
  "${admin[@]}" -qtAc "$create_roles" >/dev/null
  "${admin[@]}" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'caller'" | grep -q 1 \
    || "${admin[@]}" -qtAc "CREATE DATABASE caller OWNER caller" >/dev/null
  psql "$CALLER_DB_URL" -qtAc 'SELECT 1' >/dev/null
}

ensure_services() {
  command -v cargo >/dev/null || { say "cargo is required (Rust 1.95+)"; return 1; }
  ensure_nats
  ensure_postgres
}

# An URL with the right to create databases (test and scratch databases).
pg_admin_url() { echo "$CALLER_DB_URL"; }

# A Radicale CalDAV server for the CalDAV adapter's tests (tests/calendar_caldav.rs), from
# PyPI in a venv reused across runs. Not Debian's package: bookworm's 3.1.8 answers
# free-busy-query with a 207 listing instead of RFC 4791's text/calendar VFREEBUSY.
# Exports CALLER_TEST_RADICALE (the venv's python); each test binary starts its own server.
CALLER_RADICALE_VENV=${CALLER_RADICALE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/caller/radicale-venv}

ensure_radicale() {
  local python="$CALLER_RADICALE_VENV/bin/python"
  if [ -x "$python" ] && "$python" -c 'import radicale, sys; sys.exit(0 if radicale.VERSION.startswith("3.") else 1)' 2>/dev/null; then
    say "reusing Radicale $("$python" -c 'import radicale; print(radicale.VERSION)') in $CALLER_RADICALE_VENV"
  else
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      say "installing python3-venv (Debian package)"
      apt_install python3-venv
    fi
    say "installing Radicale 3 from PyPI into $CALLER_RADICALE_VENV"
    rm -rf "$CALLER_RADICALE_VENV"
    python3 -m venv "$CALLER_RADICALE_VENV"
    "$python" -m pip install --quiet --disable-pip-version-check 'radicale==3.*'
  fi
  export CALLER_TEST_RADICALE="$python"
}
