#!/usr/bin/env bash
# The old system's budget update, as the worker-lifecycle runbook describes
# it ("Cleanup Single Zombie", "Validate Before Spawn"): read used and
# available from token-budget.json with jq, compute the new values in the
# shell, write them to a temporary file with jq and mv it over the budget
# file. There is no lock, so concurrent runs lose updates; cmd/bench runs one
# copy per master and counts what was lost.
#
# Usage: old-ledger.sh BUDGET_FILE ITERATIONS AMOUNT
# Each iteration reserves AMOUNT tokens. The temporary file is per process
# (the runbook's fixed /tmp/budget.json would also let two writers clobber
# each other's half-written file); only the read-modify-write race remains.
set -u
if [[ $# -ne 3 ]]; then
    echo "usage: $0 BUDGET_FILE ITERATIONS AMOUNT" >&2
    exit 2
fi
BUDGET_FILE=$1
ITERATIONS=$2
AMOUNT=$3
TMP="$BUDGET_FILE.tmp.$$"

for ((i = 0; i < ITERATIONS; i++)); do
    USED=$(jq -r '.used' "$BUDGET_FILE")
    AVAILABLE=$(jq -r '.available' "$BUDGET_FILE")
    if (( AVAILABLE < AMOUNT )); then
        echo "Insufficient budget: $AVAILABLE < $AMOUNT" >&2
        continue
    fi
    NEW_USED=$((USED + AMOUNT))
    NEW_AVAILABLE=$((AVAILABLE - AMOUNT))
    jq ".used = $NEW_USED | .available = $NEW_AVAILABLE" "$BUDGET_FILE" > "$TMP" && \
    mv "$TMP" "$BUDGET_FILE"
done
exit 0
