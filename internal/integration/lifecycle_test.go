package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func statuses(spec workflows.WorkerSpec) []workflows.Status {
	out := make([]workflows.Status, len(spec.Transitions))
	for i, tr := range spec.Transitions {
		out[i] = tr.Status
	}
	return out
}

func TestLifecycleEndToEnd(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")

	out := h.spawnOK(t, id, "--type", "sleeper-worker", "--task-id", "task-e2e-1", "--master", "development-master",
		"--priority", "high", "--repo", "owner/repo", "--budget", "1234")
	require.Equal(t, id, strings.TrimSpace(out))

	spec := h.status(t, id)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.True(t, procfs.Alive(spec.PID), "the worker's process must run")
	require.Equal(t, "sleep 300", procfs.Cmdline(spec.PID))
	require.Equal(t, "it-host-a", spec.Host)
	require.Equal(t, filepath.Join(h.logDir, id, "worker.log"), spec.LogPath)
	require.FileExists(t, spec.LogPath)
	require.Equal(t, before.Available-1234, h.budget(t).Available, "the spawn reserves its budget")

	// The Web UI and `temporal workflow list` find it by its search attributes.
	requireListed(t, fmt.Sprintf(`WorkflowId = %q AND WorkerStatus = "running" AND WorkerType = "sleeper-worker" AND Master = "development-master" AND TaskId = "task-e2e-1" AND Priority = "high"`, workflows.WorkflowID(id)))

	for i, tokens := range []string{"100", "250", "400"} {
		h.starterOK(t, "heartbeat", id, "--tokens-used", tokens, "--health-score", fmt.Sprint(95-i))
	}
	spec = starterJSON[workflows.WorkerSpec](t, "status", id)
	require.Equal(t, int64(3), spec.Heartbeat.Count)
	require.Equal(t, int64(400), spec.TokenBudget.Used)
	require.Equal(t, int64(1234), spec.TokenBudget.Allocated)
	require.Equal(t, 93, *spec.Heartbeat.ReportedHealthScore)
	require.Equal(t, 100, spec.Heartbeat.HealthScore, "computed from the sampled tree and the tokens left")
	require.NotNil(t, spec.Heartbeat.LastSeen)
	text := h.starterOK(t, "status", id)
	require.Contains(t, text, "RUNNING")
	require.Contains(t, text, "tokens 400/1234 (32%)")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id, "--grace", "2s")
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusShuttingDown, workflows.StatusCompleted}, statuses(final))
	require.Equal(t, int64(1234), final.Cleanup.Refunded)
	require.NotNil(t, final.CompletedAt)
	require.NotNil(t, final.ExitCode)
	require.Equal(t, 143, *final.ExitCode, "sleep ends on SIGTERM within the grace")
	requireGone(t, spec.PID)
	require.Equal(t, before, h.budget(t), "the budget is back where it started")
	requireListed(t, fmt.Sprintf(`WorkflowId = %q AND WorkerStatus = "completed"`, workflows.WorkflowID(id)))

	// A heartbeat, shutdown or kill after the end is refused and changes nothing.
	_, errOut, code := h.starter(t, "heartbeat", id, "--tokens-used", "1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "has already ended")
	require.Contains(t, errOut, "completed")
	for _, cmd := range []string{"shutdown", "kill"} {
		_, errOut, code = h.starter(t, cmd, id)
		require.Equal(t, 1, code, cmd)
		require.Contains(t, errOut, id+" (status completed)", cmd)
	}
	require.Equal(t, int64(3), h.status(t, id).Heartbeat.Count)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-shutdown", workflows.WorkflowID(id))
}

func TestZombieIsCleanedUp(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")
	h.spawnOK(t, id, "--type", "sleeper-worker", "--task-id", "task-zombie", "--master", "development-master",
		"--zombie-after", "4s")
	spec := h.status(t, id)
	require.True(t, procfs.Alive(spec.PID))
	h.starterOK(t, "heartbeat", id, "--tokens-used", "10")

	// Heartbeats stop: warning, critical, then zombie and cleanup.
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Contains(t, final.Cleanup.Reason, "no heartbeat for")
	require.True(t, final.Cleanup.Automated)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	requireGone(t, spec.PID)
	require.Equal(t, before, h.budget(t))

	// Staleness ran from the last heartbeat, by the workflow's clock.
	zombieAt := final.Transitions[2].At
	require.WithinDuration(t, final.Heartbeat.LastSeen.Add(4*time.Second), zombieAt, 3*time.Second)
	h.recordHistory(t, "lifecycle-zombie", workflows.WorkflowID(id))
}

func TestBudgetRefusedStartsNothing(t *testing.T) {
	before := h.budget(t)
	// Leave room for 100 tokens only.
	h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Used+100))
	t.Cleanup(func() { h.starterOK(t, "budget", "set", "--total", fmt.Sprint(before.Total)) })

	id := newID("sleeper")
	_, errOut, code := h.spawn(t, id, "--type", "sleeper-worker", "--task-id", "task-poor", "--master", "development-master",
		"--budget", "500")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "insufficient budget: available 100 < required 500")

	spec := h.status(t, id)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusFailed}, statuses(spec))
	require.Zero(t, spec.PID, "no process may be started")
	require.NoDirExists(t, filepath.Join(h.logDir, id))
	after := h.budget(t)
	require.Equal(t, before.Used, after.Used)
	require.Equal(t, int64(100), after.Available)
	h.recordHistory(t, "lifecycle-budget-refused", workflows.WorkflowID(id))
}

func TestCrashIsCompensated(t *testing.T) {
	before := h.budget(t)
	id := newID("crasher")
	h.spawnOK(t, id, "--type", "crasher-worker", "--task-id", "task-crash", "--master", "cicd-master")
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Equal(t, "process exited with code 3", final.Cleanup.Reason)
	require.Equal(t, 3, *final.ExitCode)
	require.Equal(t, int64(700), final.Cleanup.Refunded)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-crash", workflows.WorkflowID(id))
}

func TestCleanExitCompletes(t *testing.T) {
	before := h.budget(t)
	id := newID("finisher")
	h.spawnOK(t, id, "--type", "finisher-worker", "--task-id", "task-quick", "--master", "cicd-master", "--wait=false")
	final := h.waitStatus(t, id, workflows.StatusCompleted, 30*time.Second)
	require.Equal(t, 0, *final.ExitCode)
	require.Equal(t, "process exited with code 0", final.Cleanup.Reason)
	log, err := os.ReadFile(final.LogPath)
	require.NoError(t, err)
	require.Equal(t, "done with task-quick\n", string(log), "the task id reaches the process, and its output the log")
	require.Equal(t, before, h.budget(t), "normal completion releases the allocation")
}

func TestSpawnFailureIsCompensated(t *testing.T) {
	before := h.budget(t)
	id := newID("missing")
	_, errOut, code := h.spawn(t, id, "--type", "missing-worker", "--task-id", "task-x", "--master", "cicd-master")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "spawn failed")
	require.Contains(t, errOut, "/nonexistent/agent")
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final))
	require.Equal(t, int64(500), final.Cleanup.Refunded)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-spawn-failed", workflows.WorkflowID(id))
}

func TestKillStopsAtOnce(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")
	h.spawnOK(t, id, "--type", "sleeper-worker", "--task-id", "task-kill", "--master", "security-master")
	pid := h.status(t, id).PID
	out := h.starterOK(t, "kill", id, "--reason", "runaway")
	require.Contains(t, out, id+" completed (runaway; refunded 1000 tokens)")
	final := h.status(t, id)
	require.NotNil(t, final.ExitCode, "the exit code is recorded")
	require.Equal(t, 137, *final.ExitCode, "no grace: SIGKILL")
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-kill", workflows.WorkflowID(id))
}

func TestIdleWorkerIsShutDown(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")
	h.spawnOK(t, id, "--type", "sleeper-worker", "--master", "inventory-master", "--idle-after", "2s")
	final := h.waitStatus(t, id, workflows.StatusCompleted, 30*time.Second)
	require.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusRunning, workflows.StatusIdle, workflows.StatusShuttingDown, workflows.StatusCompleted}, statuses(final))
	require.Equal(t, "idle for 2s", final.Cleanup.Reason)
	require.Equal(t, before, h.budget(t))
}

func TestBadInputChangesNothing(t *testing.T) {
	before := h.budget(t)
	live := newID("sleeper")
	h.spawnOK(t, live, "--type", "sleeper-worker", "--task-id", "task-live", "--master", "development-master")
	t.Cleanup(func() { h.starterOK(t, "kill", live) })
	withLive := h.budget(t)
	require.Equal(t, before.Available-1000, withLive.Available)

	spawn := func(extra ...string) []string {
		args := map[string]string{"--type": "sleeper-worker", "--task-id": "task-1", "--master": "development-master", "--worker-id": newID("bad")}
		for i := 0; i < len(extra); i += 2 {
			args[extra[i]] = extra[i+1]
		}
		out := []string{"spawn"}
		for k, v := range args {
			out = append(out, k, v)
		}
		return out
	}
	unknown := newID("ghost")
	ended := newID("finisher")
	h.spawnOK(t, ended, "--type", "finisher-worker", "--task-id", "task-ended", "--master", "development-master")
	h.waitStatus(t, ended, workflows.StatusCompleted, 30*time.Second)
	bigSpec := filepath.Join(t.TempDir(), "big.json")
	require.NoError(t, os.WriteFile(bigSpec, []byte(`{"worker_id": "worker-x-1", "worker_type": "sleeper-worker", "master": "m", "task_id": "task-1", "repo": "`+strings.Repeat("r", 70<<10)+`"}`), 0o644))
	badSpec := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(badSpec, []byte(`{"worker_type": "sleeper-worker", "token_budget": "lots"`), 0o644))
	huge := "99999999999999999999"
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown type", spawn("--type", "astrologer-worker"), 2, `unknown worker type "astrologer-worker"`},
		{"task id", spawn("--task-id", "job-7"), 2, `task id "job-7" must match`},
		{"priority", spawn("--priority", "urgent"), 2, `priority "urgent" must be one of low, medium, high, critical`},
		{"repo", spawn("--repo", "just-a-name"), 2, `repo "just-a-name" must be owner/name`},
		{"budget zero", spawn("--budget", "0"), 2, "budget"},
		{"budget too big", spawn("--budget", "200001"), 2, "budget 200001 is not in 1..200000"},
		{"budget negative", spawn("--budget", "-5"), 2, "budget -5 is not in 1..200000"},
		{"worker id path", spawn("--worker-id", "worker-x-../../etc"), 2, "worker id"},
		{"worker id shell", spawn("--worker-id", "worker-x-$(reboot)"), 2, "worker id"},
		{"missing type", []string{"spawn", "--master", "m"}, 2, "missing required flags: --type (or give --from-spec FILE, or run on a terminal for the wizard)"},
		{"missing both", []string{"spawn", "--task-id", "task-1"}, 2, "missing required flags: --type, --master"},
		{"live duplicate", spawn("--worker-id", live), 1, live + " is running; spawn refused"},
		{"heartbeat unknown", []string{"heartbeat", unknown}, 1, "no worker with id " + unknown},
		{"heartbeat bad health", []string{"heartbeat", live, "--health-score", "250"}, 2, "health_score 250 is not in 0..100"},
		{"heartbeat bad status", []string{"heartbeat", live, "--status", "asleep"}, 2, `status "asleep" must be busy, idle, blocked or awaiting_input`},
		{"shutdown unknown", []string{"shutdown", unknown}, 1, "no worker with id " + unknown},
		{"status unknown", []string{"status", unknown}, 1, "no worker with id " + unknown},
		{"kill unknown", []string{"kill", unknown}, 1, "no worker with id " + unknown},
		{"status bad id", []string{"status", "../etc/passwd"}, 2, "worker id"},
		{"shutdown negative grace", []string{"shutdown", live, "--grace", "-1s"}, 2, "grace -1s is not in 0..1h"},
		{"budget set negative", []string{"budget", "set", "--total", "-1"}, 2, "--total -1 must not be negative"},
		{"budget set below used", []string{"budget", "set", "--total", "1"}, 1, "below the"},
		{"bad output", []string{"status", live, "-o", "yaml"}, 2, `--output "yaml" must be text or json`},
		{"extra argument", []string{"status", live, "extra"}, 2, "expected WORKER_ID"},
		{"worker id with spaces", spawn("--worker-id", "worker x 1"), 2, "worker id"},
		{"oversized repo", spawn("--repo", strings.Repeat("r", 70<<10)), 2, `repo "rrrr`},
		{"oversized type", spawn("--type", strings.Repeat("t", 70<<10)), 2, "unknown worker type"},
		{"huge tokens", []string{"heartbeat", live, "--tokens-used", huge}, 2, "invalid argument"},
		{"oversized message", []string{"heartbeat", live, "--message", strings.Repeat("m", 70<<10)}, 2, "message must be valid UTF-8 of at most 4096 bytes"},
		{"huge total", []string{"budget", "set", "--total", huge}, 2, "invalid argument"},
		{"recalc extra argument", []string{"budget", "recalc", "now"}, 2, "expected no arguments"},
		{"list bad status", []string{"list", "--status", "sleeping"}, 2, `unknown status "sleeping"`},
		{"list bad master", []string{"list", "--master", "m;rm -rf /"}, 2, "master"},
		{"list bad query", []string{"list", "--query", "WorkerStatus = "}, 2, "listing workers with"},
		{"logs unknown", []string{"logs", unknown}, 1, "no worker with id " + unknown},
		{"logs bad lines", []string{"logs", live, "-n", "-1"}, 2, "-n -1 is not in 1..10000"},
		{"logs shell id", []string{"logs", "worker-x-$(id)"}, 2, "worker id"},
		{"cleanup unknown", []string{"cleanup", unknown}, 1, "no worker with id " + unknown},
		{"cleanup both", []string{"cleanup", live, "--zombies"}, 2, "give a WORKER_ID or --zombies, not both"},
		{"shutdown ended", []string{"shutdown", ended}, 1, "worker has already ended: " + ended + " (status completed)"},
		{"kill ended", []string{"kill", ended}, 1, "worker has already ended: " + ended + " (status completed)"},
		{"heartbeat ended", []string{"heartbeat", ended}, 1, "worker has already ended: " + ended + " (status completed)"},
		{"shutdown all and id", []string{"shutdown", live, "--all"}, 2, "give a WORKER_ID or --all, not both"},
		{"archive negative age", []string{"archive", "--older-than", "-1h"}, 2, "retention -1h0m0s must be positive"},
		{"sweep extra argument", []string{"sweep", "now"}, 2, "expected no arguments"},
		{"schedule bad cron", []string{"schedule", "install", "--archive-at", "61 * * * *"}, 2, "61 * * * *"},
		{"schedule unknown", []string{"schedule", "describe", "--schedule", "payroll"}, 2, "payroll"},
		{"validate missing file", []string{"validate", "/nonexistent/spec.json"}, 2, "/nonexistent/spec.json"},
		{"validate malformed", []string{"validate", badSpec}, 2, "is not a valid worker spec"},
		{"spawn oversized spec", []string{"spawn", "--from-spec", bigSpec}, 2, "... (71680 bytes) must be owner/name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.starter(t, tc.args...)
			assert.Equal(t, tc.code, code, "stdout %q stderr %q", out, errOut)
			assert.Contains(t, errOut, tc.want)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one line of error: %.300q", errOut)
			assert.Less(t, len(errOut), 2048, "an error does not echo a huge input: %.300q", errOut)
		})
	}
	// Nothing was reserved, spawned or changed.
	require.Equal(t, withLive, h.budget(t))
	spec := h.status(t, live)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.Zero(t, spec.Heartbeat.Count)
	resp, err := h.client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: `WorkflowId STARTS_WITH "worker-lifecycle/worker-bad-" OR WorkflowId STARTS_WITH "worker-lifecycle/worker-x-"`})
	require.NoError(t, err)
	require.Empty(t, resp.Executions, "no lifecycle may be started by bad input")
}

// requireListed waits for visibility to show a workflow matching query.
func requireListed(t *testing.T, query string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := h.client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		require.NoError(t, err)
		if len(resp.Executions) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no workflow matches %s", query)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestContinueAsNewLosesNoHeartbeat floods a lifecycle whose runs hold 20
// heartbeats each: every heartbeat must be counted across the runs, and the
// lifecycle must still stop cleanly afterwards.
func TestContinueAsNewLosesNoHeartbeat(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	id := newID("sleeper")
	_, err := h.fleet.Spawn(ctx, workflows.SpawnRequest{
		WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-flood", Master: "development-master",
		Limits: workflows.Limits{MaxSignalsPerRun: 20},
	})
	require.NoError(t, err)

	const senders, each = 5, 30
	errs := make(chan error, senders)
	for s := 0; s < senders; s++ {
		go func() {
			var err error
			for i := 0; i < each && err == nil; i++ {
				err = h.fleet.Heartbeat(ctx, id, workflows.Heartbeat{TokensUsed: 1})
			}
			errs <- err
		}()
	}
	for s := 0; s < senders; s++ {
		require.NoError(t, <-errs)
	}
	require.Eventually(t, func() bool {
		spec, err := h.fleet.Status(ctx, id)
		return err == nil && spec.Heartbeat.Count == senders*each
	}, 30*time.Second, 200*time.Millisecond, "every heartbeat must be recorded")

	desc, err := h.client.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
	require.NoError(t, err)
	require.NotEqual(t, desc.WorkflowExecutionInfo.Execution.RunId, desc.WorkflowExecutionInfo.FirstRunId, "the lifecycle must have continued as new")
	require.Less(t, desc.WorkflowExecutionInfo.HistoryLength, int64(200), "one run's history stays bounded")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id)
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, int64(senders*each), final.Heartbeat.Count)
	require.Equal(t, int64(1000), final.Cleanup.Refunded, "the refund follows the lease across runs")
	require.Equal(t, before, h.budget(t))
}
