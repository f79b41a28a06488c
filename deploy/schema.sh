#!/bin/sh
# Creates the two databases of the Temporal server on PostgreSQL and brings
# their schemas to the version the server needs. Safe to run again: an
# existing database is kept and update-schema applies only what is missing.
# Run by scripts/cluster.sh (with the schema files of the server's Go module)
# and by docker-compose.yml (in temporalio/admin-tools, files in
# /etc/temporal/schema).
#
# Environment: SQL_TOOL (temporal-sql-tool), SCHEMA_DIR (.../schema),
# PG_HOST, PG_PORT, PG_USER, PG_PASSWORD.
set -eu
: "${SQL_TOOL:=temporal-sql-tool}" "${SCHEMA_DIR:=/etc/temporal/schema}"
: "${PG_HOST:=127.0.0.1}" "${PG_PORT:=5432}" "${PG_USER:=temporal}" "${PG_PASSWORD:=temporal}"

for pair in temporal:temporal temporal_visibility:visibility; do
  db=${pair%%:*}
  dir="$SCHEMA_DIR/postgresql/v12/${pair#*:}/versioned"
  [ -d "$dir" ] || { echo "schema: $dir is missing" >&2; exit 1; }
  set -- "$SQL_TOOL" --plugin postgres12 --ep "$PG_HOST" -p "$PG_PORT" -u "$PG_USER" --pw "$PG_PASSWORD" --db "$db"
  # A second run finds the database there; a wrong address or password
  # fails in setup-schema, with the tool's message.
  "$@" create-database >/dev/null 2>&1 || true
  "$@" setup-schema -v 0.0
  "$@" update-schema -d "$dir"
  echo "schema: $db is up to date"
done
