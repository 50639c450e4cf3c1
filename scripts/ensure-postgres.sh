#!/usr/bin/env bash
# Make sure a PostgreSQL server answers for the tests and write its URL to var/test-pg-url.
# Order: $GOALPORT_TEST_PG_URL as given; the local server on 127.0.0.1:5432 (started with
# pg_ctlcluster if it is down); on a machine without PostgreSQL, Debian's package, installed
# and started here, with a password for the loopback connection.
set -euo pipefail
mkdir -p var
url_file=var/test-pg-url

if [ -n "${GOALPORT_TEST_PG_URL:-}" ]; then
  echo "$GOALPORT_TEST_PG_URL" > "$url_file"
  exit 0
fi

default_url="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

wait_ready() {
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.5
  done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
  return 1
}

if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "$default_url" > "$url_file"
  exit 0
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "PostgreSQL is not installed: installing Debian's package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL $version"
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
wait_ready

if psql -h 127.0.0.1 -U postgres -w -d postgres -c 'select 1' >/dev/null 2>&1; then
  echo "$default_url" > "$url_file"
else
  # A fresh Debian cluster asks for a password on TCP: give the postgres role one.
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'goalport'\""
  echo "postgresql+psycopg://postgres:goalport@127.0.0.1:5432/postgres" > "$url_file"
fi
