package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// tsMasterStep is one line of the TypeScript master's output.
type tsMasterStep struct {
	Step      string                `json:"step"`
	Spec      *workflows.WorkerSpec `json:"spec"`
	Heartbeat *workflows.Heartbeat  `json:"heartbeat"`
}

// nodeTools finds node and npm. Without them the test cannot run: in CI
// (`make tools` installs them) that is a failure, elsewhere a skip.
func nodeTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm", "npx"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is needed for the TypeScript master test: `make tools` installs Debian's nodejs and npm"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// inDir runs a command in dir and fails the test with its output if it fails.
func inDir(t *testing.T, dir string, env []string, timeout time.Duration, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	require.NoError(t, err, "%s %s failed\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), out.String(), errb.String())
	return out.String(), errb.String()
}

// TestTypeScriptMasterDrivesALifecycle runs examples/ts-master, a master
// written in TypeScript on Temporal's npm client, against the dev server:
// it spawns a sleeper, heartbeats it, reads its status and shuts it down,
// the system agrees with what it printed, and what it sent validates
// against the JSON Schemas.
func TestTypeScriptMasterDrivesALifecycle(t *testing.T) {
	nodeTools(t)
	dir := filepath.Join(h.root, "examples", "ts-master")
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		inDir(t, dir, nil, 5*time.Minute, "npm", "ci", "--no-audit", "--no-fund")
	}
	inDir(t, dir, nil, 2*time.Minute, "npx", "tsc")

	before := h.budget(t)
	id := newID("sleeper")
	const heartbeats = 3
	t.Cleanup(func() {
		// Only if the master stopped halfway; an ended worker refuses this.
		_, _, _ = h.starter(t, "kill", id)
	})
	stdout, stderr := inDir(t, dir, []string{
		"TEMPORAL_ADDRESS=" + h.address, "TEMPORAL_NAMESPACE=default",
		"WORKER_ID=" + id, "WORKER_TYPE=sleeper-worker", "TASK_ID=task-ts-master", "MASTER=ts-master",
		"BUDGET=1000", "HEARTBEATS=" + strconv.Itoa(heartbeats),
	}, 2*time.Minute, "node", "dist/master.js")
	t.Logf("master stderr:\n%s", stderr)

	// What the master printed: running, the heartbeats, then completed with
	// the whole budget refunded.
	var steps []string
	var running, final *workflows.WorkerSpec
	var lastTokens int64
	lines := bufio.NewScanner(strings.NewReader(stdout))
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var s tsMasterStep
		require.NoError(t, json.Unmarshal(lines.Bytes(), &s), "master output line: %s", lines.Text())
		steps = append(steps, s.Step)
		switch s.Step {
		case "running":
			running = s.Spec
		case "heartbeat":
			require.NotNil(t, s.Heartbeat)
			lastTokens = s.Heartbeat.TokensUsed
		case "final":
			final = s.Spec
		}
	}
	require.NoError(t, lines.Err())
	require.Equal(t, []string{"started", "running", "heartbeat", "heartbeat", "heartbeat", "status", "shutdown", "final"}, steps, "master output:\n%s", stdout)
	require.NotNil(t, running)
	require.Equal(t, workflows.StatusRunning, running.Status)
	require.NotNil(t, final)
	require.Equal(t, workflows.StatusCompleted, final.Status, "final spec: %+v", final)
	require.NotNil(t, final.Cleanup)
	require.EqualValues(t, 1000, final.Cleanup.Refunded)

	// What the system says.
	spec := h.status(t, id)
	require.Equal(t, workflows.StatusCompleted, spec.Status)
	require.Equal(t, "ts-master", spec.Master)
	require.Equal(t, "task-ts-master", spec.TaskID)
	require.EqualValues(t, heartbeats, spec.Heartbeat.Count)
	require.Equal(t, lastTokens, spec.TokenBudget.Used)
	require.NotZero(t, spec.PID)
	requireGone(t, spec.PID)
	require.Empty(t, workerProcesses(id))
	require.Equal(t, before, h.budget(t), "the budget is back")

	// What the master sent, as the server stored it, satisfies the schemas
	// the Go starter's payloads do (payloads_test.go): the contract holds
	// for a second language.
	var sent []wirePayload
	for _, p := range lifecyclePayloads(t, id) {
		if p.input {
			sent = append(sent, p)
		}
	}
	require.Equal(t, []string{"start", "start", "heartbeat-1", "heartbeat-2", "heartbeat-3", "shutdown-request"}, payloadNames(sent))
	checkPayloads(t, "ts-master", sent)
}
