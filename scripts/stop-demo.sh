#!/usr/bin/env bash
# Stops what run-demo.sh started: live demo workers first (so their budget is
# refunded and their processes stopped), then the worker program and server.
set -uo pipefail
cd "$(dirname "$0")/.."
VAR="$PWD/var"
TEMPORAL="${TEMPORAL_CLI:-$PWD/.tools/bin/temporal}"
if [[ -f "$VAR/temporal.pid" ]] && kill -0 "$(cat "$VAR/temporal.pid")" 2>/dev/null; then
  for id in $("$TEMPORAL" workflow list --query 'WorkerStatus="running" OR WorkerStatus="idle" OR WorkerStatus="pending"' -o json 2>/dev/null \
      | grep -o '"workflowId": *"worker-lifecycle/[^"]*"' | sed 's/.*worker-lifecycle\///; s/"$//' | sort -u); do
    ./bin/starter shutdown "$id" || true
  done
fi
for name in worker temporal; do
  if [[ -f "$VAR/$name.pid" ]]; then
    kill "$(cat "$VAR/$name.pid")" 2>/dev/null && echo "stopped $name"
    rm -f "$VAR/$name.pid"
  fi
done
