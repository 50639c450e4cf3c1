#!/usr/bin/env bash
# Make sure a PostgreSQL server answers for the tests and write its URL to var/test-pg-url.
# Order: $GOALPORT_TEST_PG_URL as given; the local server on 127.0.0.1:5432 (started with
# pg_ctlcluster if it is down and we may); on a machine without PostgreSQL, Debian's
# package, installed here (root only). Never changes an existing role's password: where
# the postgres role needs one on TCP, a role of goalport's own (goalport_test) is made.
set -euo pipefail
mkdir -p var
url_file=var/test-pg-url

if [ -n "${GOALPORT_TEST_PG_URL:-}" ]; then
  echo "$GOALPORT_TEST_PG_URL" > "$url_file"
  exit 0
fi

default_url="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
is_root() { [ "$(id -u)" = 0 ]; }

wait_ready() {
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.5
  done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
  return 1
}

if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  if psql -h 127.0.0.1 -U postgres -w -d postgres -c 'select 1' >/dev/null 2>&1; then
    echo "$default_url" > "$url_file"
    exit 0
  fi
  if [ -s "$url_file" ]; then
    exit 0  # a URL made earlier (goalport_test's) is still there
  fi
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  if ! is_root; then
    echo "No PostgreSQL here and not root: start one and set GOALPORT_TEST_PG_URL" \
      "(e.g. postgresql+psycopg://user:password@127.0.0.1:5432/postgres; the role needs CREATEDB)" >&2
    exit 1
  fi
  echo "PostgreSQL is not installed: installing Debian's package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version"
  if is_root || [ -O "/var/lib/postgresql/$version/main" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  else
    echo "PostgreSQL $version is down and this user cannot start it: start it, or set" \
      "GOALPORT_TEST_PG_URL to a server you can use" >&2
    exit 1
  fi
  wait_ready
fi

if psql -h 127.0.0.1 -U postgres -w -d postgres -c 'select 1' >/dev/null 2>&1; then
  echo "$default_url" > "$url_file"
  exit 0
fi

# A fresh Debian cluster asks for a password on TCP. Leave the postgres role alone and make
# a role of our own (as the postgres OS user, which needs root).
if ! is_root; then
  echo "PostgreSQL asks for a password: set GOALPORT_TEST_PG_URL to a role that may create" \
    "databases" >&2
  exit 1
fi
password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<SQL
DO \$\$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'goalport_test') THEN
    ALTER ROLE goalport_test LOGIN CREATEDB PASSWORD '$password';
  ELSE
    CREATE ROLE goalport_test LOGIN CREATEDB PASSWORD '$password';
  END IF;
END \$\$;
SQL
(umask 077 && echo "postgresql+psycopg://goalport_test:$password@127.0.0.1:5432/postgres" > "$url_file")
