#!/usr/bin/env bash
# Starts the whole system on this machine and shows a lifecycle working:
# the Temporal dev server (SQLite file, Web UI on :8233, our search
# attributes), the worker program, and one demo worker that heartbeats.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR="$PWD/var"
mkdir -p "$VAR"
TEMPORAL="${TEMPORAL_CLI:-$PWD/.tools/bin/temporal}"
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-localhost:7233}"
export TEMPORAL_NAMESPACE="${TEMPORAL_NAMESPACE:-default}"

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if running "$VAR/temporal.pid"; then
  echo "dev server already running (pid $(cat "$VAR/temporal.pid"))"
else
  echo "starting the Temporal dev server (state in var/temporal.db, log in var/temporal.log)"
  attrs=()
  for a in WorkerStatus WorkerType Master TaskId Priority; do attrs+=(--search-attribute "$a=Keyword"); done
  nohup "$TEMPORAL" server start-dev --db-filename "$VAR/temporal.db" --ip 127.0.0.1 \
    --port 7233 --ui-port 8233 --log-level warn "${attrs[@]}" \
    --dynamic-config-value history.maxInFlightUpdates=500 \
    --dynamic-config-value matching.numTaskqueueReadPartitions=1 \
    --dynamic-config-value matching.numTaskqueueWritePartitions=1 \
    --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal >"$VAR/temporal.log" 2>&1 &
  echo $! >"$VAR/temporal.pid"
fi
for _ in $(seq 1 60); do
  "$TEMPORAL" operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1 && break
  sleep 1
done
"$TEMPORAL" operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null || { echo "dev server did not come up; see var/temporal.log"; exit 1; }

# The demo runs every built-in type as demo-agent, a stand-in for a coding
# agent that heartbeats, works for a minute and then reports idle.
# (deploy/worker-types.demo.json, the image's, with this checkout's binary)
sed "s#/usr/local/bin/demo-agent#$PWD/bin/demo-agent#" deploy/worker-types.demo.json >"$VAR/demo-worker-types.json"
export WORKER_TYPES_FILE="$VAR/demo-worker-types.json"

if running "$VAR/worker.pid"; then
  echo "worker program already running (pid $(cat "$VAR/worker.pid"))"
else
  echo "starting the worker program (log in var/worker.log)"
  nohup ./bin/worker --log-dir "$VAR/logs/workers" --host "$(hostname)" >"$VAR/worker.log" 2>&1 &
  echo $! >"$VAR/worker.pid"
fi

echo
# The namespace, search attributes and schedules; the dev server keeps
# histories a day, the archival needs them for 8.
./bin/starter setup --update-retention
./bin/starter budget show
echo
echo "\$ starter spawn --type implementation-worker --task-id task-demo-001 --master development-master --priority high --repo owner/repo --idle-after 2m --sample-every 5s"
id=$(./bin/starter spawn --type implementation-worker --task-id task-demo-001 \
  --master development-master --priority high --repo owner/repo --idle-after 2m --sample-every 5s)
echo "$id"
echo "$id" >"$VAR/demo-worker-id"
sleep 8
echo
echo "\$ starter status $id"
./bin/starter status "$id"
echo
./bin/starter budget show
cat <<MSG

The system is up:
  Web UI      http://localhost:8233  (workflow worker-lifecycle/$id;
              filter with: WorkerStatus IN ("running", "idle"); the Schedules page shows
              worker-archival and zombie-sweep)
  dashboard   ./bin/starter list --watch
  status      ./bin/starter status $id
  shut down   ./bin/starter shutdown $id   (it also ends by itself: idle limit 2m)
  more        ./bin/starter spawn --type scan-worker --task-id task-002 --master security-master
  stop all    make stop
The demo worker works for a minute, reports idle, and is shut down
gracefully after 2 minutes idle, its budget refunded.
MSG
