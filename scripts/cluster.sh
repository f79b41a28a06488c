#!/usr/bin/env bash
# A production-shaped Temporal cluster on this machine, without Docker:
# PostgreSQL from Debian's packages, the Temporal server v1.29.1 and its SQL
# schema tool built from the Go module proxy, the schema set up, the four
# server services as four processes, all on loopback; then `starter setup`
# (namespace, search attributes, schedules) and, with --workers N, N worker
# programs with distinct host names.
#
#   scripts/cluster.sh up [--workers N]   start (or resume) the cluster
#   scripts/cluster.sh status             what runs, and `starter doctor`
#   scripts/cluster.sh down               stop everything, keep the data
#   scripts/cluster.sh destroy            stop everything, delete the data
#
# Environment: CLUSTER_DIR (state, default var/cluster), CLUSTER_PORT_BASE
# (default 17200: frontend gRPC on base+33, PostgreSQL on base-2768 = 14432),
# CLUSTER_PG_PORT, CLUSTER_HISTORY_SHARDS (default 4, fixed at the first up).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

SERVER_VERSION=v1.29.1
TOOLS="$ROOT/.tools/server-$SERVER_VERSION"
SERVER="$TOOLS/server"
SQLTOOL="$TOOLS/sql"
export CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/var/cluster}"
export CLUSTER_PORT_BASE="${CLUSTER_PORT_BASE:-17200}"
export CLUSTER_PG_PORT="${CLUSTER_PG_PORT:-$((CLUSTER_PORT_BASE - 2768))}"
export CLUSTER_PG_PASSWORD="${CLUSTER_PG_PASSWORD:-temporal}"
export CLUSTER_DYNAMIC_CONFIG="$ROOT/deploy/cluster/dynamicconfig.yaml"
ADDRESS="127.0.0.1:$((CLUSTER_PORT_BASE + 33))"
PGDATA="$CLUSTER_DIR/postgres"
LOGS="$CLUSTER_DIR/logs"
PIDS="$CLUSTER_DIR/pids"
SERVICES=(history matching frontend worker)

say() { echo "cluster: $*"; }
die() { echo "cluster: $*" >&2; exit 1; }
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -n "$d" ]] && echo "$d"
}

# as_pg runs a PostgreSQL program as the postgres user when we are root
# (initdb and the server refuse to run as root), as ourselves otherwise.
as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_tools() {
  if [[ -z "$(pg_bin)" ]]; then
    [[ $(id -u) == 0 ]] || die "PostgreSQL is missing: apt-get install postgresql (as root), then run this again"
    say "installing Debian's PostgreSQL..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # The package starts a cluster of its own on 5432; ours runs on its own port.
  fi
  if [[ ! -x "$SERVER" || ! -x "$SQLTOOL" ]]; then
    say "building the Temporal server $SERVER_VERSION and its SQL tool from the Go module proxy (3-5 minutes the first time)..."
    mkdir -p "$TOOLS"
    GOBIN="$TOOLS" GOFLAGS= go install "go.temporal.io/server/cmd/server@$SERVER_VERSION" "go.temporal.io/server/cmd/tools/sql@$SERVER_VERSION"
  fi
  go build -o "$ROOT/bin/" ./worker ./cmd/starter ./cmd/demo-agent
}

start_postgres() {
  local bin; bin=$(pg_bin)
  mkdir -p "$CLUSTER_DIR" "$LOGS" "$PIDS"
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    say "creating the database cluster in $PGDATA"
    mkdir -p "$PGDATA"
    local pwfile; pwfile=$(mktemp)
    echo "$CLUSTER_PG_PASSWORD" >"$pwfile"
    if [[ $(id -u) == 0 ]]; then
      chown postgres: "$PGDATA" "$LOGS" "$pwfile"
      # The server runs as postgres and must reach its folder through ours
      # (a mktemp folder is 0700).
      chmod o+x "$CLUSTER_DIR"
      runuser -u postgres -- test -w "$PGDATA" ||
        die "the postgres user cannot reach $PGDATA: let it through the folders above (chmod o+x), or set CLUSTER_DIR elsewhere"
    fi
    as_pg "$bin/initdb" -D "$PGDATA" -U temporal --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
  fi
  if as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    say "PostgreSQL already running on 127.0.0.1:$CLUSTER_PG_PORT"
    return
  fi
  say "starting PostgreSQL on 127.0.0.1:$CLUSTER_PG_PORT"
  as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 start \
    -o "-p $CLUSTER_PG_PORT -c listen_addresses=127.0.0.1 -k '$PGDATA' -c max_connections=200" >/dev/null
}

setup_schema() {
  say "setting up the schemas (temporal, temporal_visibility; log in $LOGS/schema.log)"
  local moddir
  moddir=$(GOFLAGS= go mod download -json "go.temporal.io/server@$SERVER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  SQL_TOOL="$SQLTOOL" SCHEMA_DIR="$moddir/schema" PG_HOST=127.0.0.1 PG_PORT="$CLUSTER_PG_PORT" \
    PG_USER=temporal PG_PASSWORD="$CLUSTER_PG_PASSWORD" deploy/schema.sh >>"$LOGS/schema.log" 2>&1 ||
    die "setting up the schemas failed; see $LOGS/schema.log"
}

# listening tells whether something accepts connections on a loopback port.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_service() {
  local svc=$1
  running "$PIDS/$svc.pid" && return
  say "starting the $svc service (log in $LOGS/$svc.log)"
  nohup "$SERVER" --root "$ROOT" --config deploy/cluster --env cluster --allow-no-auth \
    start --service "$svc" >>"$LOGS/$svc.log" 2>&1 &
  echo $! >"$PIDS/$svc.pid"
}

start_server() {
  # History first, alone: on a new database the first service to start
  # writes the cluster's metadata, and a second one racing it fails its
  # start ("SaveClusterMetadata encountered version mismatch").
  start_service history
  local port=$((CLUSTER_PORT_BASE + 34))
  for _ in $(seq 1 120); do
    listening "$port" && break
    running "$PIDS/history.pid" || die "the history service stopped; see $LOGS/history.log"
    sleep 0.5
  done
  listening "$port" || die "the history service did not listen on $port within a minute; see $LOGS/history.log"
  for svc in matching frontend worker; do start_service "$svc"; done
  say "waiting for the frontend on $ADDRESS, then setting up the namespace"
  "$ROOT/bin/starter" --address "$ADDRESS" setup --create-namespace --wait 3m ||
    die "the server did not become ready; see $LOGS/*.log"
  for svc in "${SERVICES[@]}"; do
    running "$PIDS/$svc.pid" || die "the $svc service stopped; see $LOGS/$svc.log"
  done
}

start_workers() {
  local n=$1
  mkdir -p "$CLUSTER_DIR/worker-logs"
  # The demo types of the image (docker-compose.yml), with this checkout's binary.
  sed "s#/usr/local/bin/demo-agent#$ROOT/bin/demo-agent#" deploy/worker-types.demo.json >"$CLUSTER_DIR/worker-types.json"
  for i in $(seq 1 "$n"); do
    local host="cluster-host-$i"
    if running "$PIDS/worker-$host.pid"; then continue; fi
    say "starting the worker program of $host (log in $LOGS/worker-$host.log)"
    nohup "$ROOT/bin/worker" --address "$ADDRESS" --host "$host" --worker-types "$CLUSTER_DIR/worker-types.json" \
      --log-dir "$CLUSTER_DIR/worker-logs" --state-dir "$CLUSTER_DIR/state/$host" --archive-dir "$CLUSTER_DIR/archive" \
      >>"$LOGS/worker-$host.log" 2>&1 &
    echo $! >"$PIDS/worker-$host.pid"
  done
}

stop_pid() {
  local f=$1
  running "$f" || { rm -f "$f"; return; }
  local pid; pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() {
  [[ -d "$PIDS" ]] || { say "nothing runs from $CLUSTER_DIR"; return; }
  for f in "$PIDS"/worker-*.pid; do [[ -e "$f" ]] && stop_pid "$f"; done
  # The frontend first, so that no new request reaches a history host that
  # is going away.
  for svc in frontend worker matching history; do stop_pid "$PIDS/$svc.pid"; done
  local bin; bin=$(pg_bin || true)
  if [[ -n "$bin" && -f "$PGDATA/PG_VERSION" ]] && as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  say "stopped"
}

case "${1:-}" in
  up)
    workers=0
    shift
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --workers) workers="${2:?--workers needs a number}"; shift 2 ;;
        *) die "unknown option $1 (up takes --workers N)" ;;
      esac
    done
    [[ "$workers" =~ ^[0-9]+$ ]] || die "--workers $workers is not a number"
    install_tools
    start_postgres
    setup_schema
    start_server
    start_workers "$workers"
    cat <<MSG
cluster: up. Temporal frontend $ADDRESS, PostgreSQL 127.0.0.1:$CLUSTER_PG_PORT, state in $CLUSTER_DIR
  export TEMPORAL_ADDRESS=$ADDRESS
  ./bin/starter doctor
  ./bin/starter spawn --type implementation-worker --task-id task-001 --master development-master
  scripts/cluster.sh down
MSG
    ;;
  status)
    for f in "$PIDS"/*.pid; do
      [[ -e "$f" ]] || continue
      if running "$f"; then echo "running $(basename "$f" .pid) (pid $(cat "$f"))"; else echo "stopped $(basename "$f" .pid)"; fi
    done
    "$ROOT/bin/starter" --address "$ADDRESS" doctor
    ;;
  down) down ;;
  destroy)
    # The agents outlive their worker programs by design (a restarted one
    # takes them back); with the state deleted nothing ever would, so they
    # are stopped through their lifecycles first.
    if running "$PIDS/frontend.pid" && compgen -G "$PIDS/worker-*.pid" >/dev/null; then
      "$ROOT/bin/starter" --address "$ADDRESS" shutdown --all || say "some lifecycles did not stop; see above"
    fi
    down
    rm -rf "$CLUSTER_DIR"
    say "deleted $CLUSTER_DIR"
    ;;
  *) die "usage: scripts/cluster.sh up [--workers N] | status | down | destroy" ;;
esac
