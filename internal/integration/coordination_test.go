package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// The runbook's "Monitor Heartbeats" and "Monitor Token Usage" loops,
// copied as they are.
const runbookHeartbeats = `for spec in $COMMIT_RELAY_HOME/coordination/worker-specs/active/worker-*.json; do
    if [[ -f "$spec" ]]; then
        ID=$(jq -r '.worker_id' "$spec")
        HEALTH=$(jq -r '.heartbeat.health_score // 0' "$spec")
        LAST=$(jq -r '.heartbeat.last_seen // "never"' "$spec")
        echo "$HEALTH% | $ID | $LAST"
    fi
done | sort -rn`

const runbookTokens = `for spec in $COMMIT_RELAY_HOME/coordination/worker-specs/active/worker-*.json; do
    if [[ -f "$spec" ]]; then
        ID=$(jq -r '.worker_id' "$spec")
        ALLOCATED=$(jq -r '.token_budget.allocated // 0' "$spec")
        USED=$(jq -r '.token_budget.used // 0' "$spec")
        PCT=$((USED * 100 / (ALLOCATED + 1)))
        echo "$PCT% | $ID | $USED/$ALLOCATED"
    fi
done | sort -rn | head -10`

func TestCoordinationFilesForTheOldScripts(t *testing.T) {
	home := filepath.Join(h.dir, "relay")
	dir := filepath.Join(home, "coordination")
	worker := exec.Command(filepath.Join(h.dir, "bin", "worker"), "--address", h.address, "--worker-types", h.typesFile,
		"--log-dir", h.logDir, "--state-dir", filepath.Join(h.dir, "state", "it-host-e"), "--host", "it-host-e", "--coordination-dir", home)
	logFile, err := os.Create(filepath.Join(h.dir, "worker-it-host-e.log"))
	require.NoError(t, err)
	worker.Stdout, worker.Stderr = logFile, logFile
	require.NoError(t, worker.Start())
	t.Cleanup(func() { _ = worker.Process.Signal(syscall.SIGTERM); _ = worker.Wait(); logFile.Close() })

	// Readers parse every spec file again and again while 50 lifecycles
	// change: a half-written file would fail to parse.
	var torn, reads atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			files, _ := filepath.Glob(filepath.Join(dir, "worker-specs", "*", "worker-*.json"))
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					continue // moved between folders meanwhile
				}
				reads.Add(1)
				if !json.Valid(data) {
					torn.Add(1)
				}
			}
		}
	}()

	ids := spawnMany(t, 50, "coord-master", nil)
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", "--all", "--yes", "--master", "coord-master") })
	for i, id := range ids[:3] {
		h.starterOK(t, "heartbeat", id, "--tokens-used", fmt.Sprint(900-100*i))
	}
	shell := func(script string) string {
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), "COMMIT_RELAY_HOME="+home)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	require.Eventually(t, func() bool {
		return strings.Contains(shell(runbookTokens), "89% | "+ids[0]+" | 900/1000")
	}, 90*time.Second, 500*time.Millisecond, "the token loop sees the mirrored specs")
	tokens := shell(runbookTokens)
	require.Contains(t, tokens, "79% | "+ids[1]+" | 800/1000")
	hb := shell(runbookHeartbeats)
	for _, id := range ids {
		require.Regexp(t, `(?m)^\d+% \| `+id+` \| `, hb, "every live worker is listed")
	}
	require.Regexp(t, `(?m)^100% \| `+ids[3]+` \| never$`, hb)
	require.Regexp(t, `(?m)^\d+% \| `+ids[0]+` \| 20\d\d-\d\d-\d\dT`, hb, "last_seen is a timestamp")

	budget, err := os.ReadFile(filepath.Join(dir, "token-budget.json"))
	require.NoError(t, err)
	var b map[string]any
	require.NoError(t, json.Unmarshal(budget, &b))
	require.Subset(t, mapKeys(b), []string{"total_budget", "available", "used", "allocations", "pools"})

	h.starterOK(t, "kill", "--all", "--yes", "--master", "coord-master")
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(dir, "worker-specs", "completed", id+".json")); err != nil {
				return false
			}
		}
		return true
	}, 90*time.Second, 500*time.Millisecond, "stopped workers move to completed/")
	close(stop)
	readers.Wait()
	require.Zero(t, torn.Load(), "no reader saw a half-written spec (%d reads)", reads.Load())
	require.Greater(t, reads.Load(), int64(100))
	for _, id := range ids {
		for _, st := range []string{"active", "zombie", "archived"} {
			require.NoFileExists(t, filepath.Join(dir, "worker-specs", st, id+".json"), "a spec lives in one folder")
		}
	}

	events, err := os.ReadFile(filepath.Join(dir, "dashboard-events.jsonl"))
	require.NoError(t, err)
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(events)), "\n") {
		var e struct {
			ID, Type, Source string
			Timestamp        time.Time
			Data             map[string]any
		}
		require.NoError(t, json.Unmarshal([]byte(line), &e), "every line is one whole event: %q", line)
		if id, _ := e.Data["worker_id"].(string); strings.HasPrefix(id, "worker-sleeper-") && e.Data["master"] == "coord-master" {
			counts[e.Type]++
		}
	}
	require.Equal(t, 50, counts["worker_spawned"])
	require.Equal(t, 50, counts["worker_started"])
	require.Eventually(t, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "dashboard-events.jsonl"))
		return strings.Count(string(data), `"type":"worker_completed"`) >= 50
	}, 10*time.Second, 500*time.Millisecond)

	// A spec file the old scripts broke is moved aside, with an event.
	corrupt := filepath.Join(dir, "worker-specs", "active", "worker-old-broken1.json")
	require.NoError(t, os.WriteFile(corrupt, []byte(`{"worker_id": "worker-old-broken1", "status": `), 0o644))
	require.Eventually(t, func() bool {
		_, err := os.Stat(corrupt)
		return os.IsNotExist(err)
	}, 10*time.Second, 200*time.Millisecond)
	moved, _ := filepath.Glob(filepath.Join(dir, "corrupt", "worker-old-broken1.json.*"))
	require.Len(t, moved, 1)

	// The archival, run by this worker program (the other one is down),
	// moves the specs to archived/ and records it.
	h.crashWorker(t, "it-host-a")
	report := starterJSON[workflows.ArchiveReport](t, "archive", "--older-than", "1ms")
	require.Subset(t, report.Archived, ids)
	require.NoError(t, h.startWorker("it-host-a"))
	time.Sleep(3 * time.Second) // a mirror pass after the move must not undo it
	for _, id := range ids {
		require.FileExists(t, filepath.Join(dir, "worker-specs", "archived", id+".json"))
		require.NoFileExists(t, filepath.Join(dir, "worker-specs", "completed", id+".json"))
	}
	data, err := os.ReadFile(filepath.Join(dir, "dashboard-events.jsonl"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, strings.Count(string(data), `"type":"worker_archived"`), 50)
	require.Contains(t, string(data), `"type":"spec_moved_aside"`)
}
