package integration

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func TestArchiveOnDemand(t *testing.T) {
	var ids []string
	for i := 0; i < 2; i++ {
		id := newID("finisher")
		h.starterOK(t, "spawn", "--type", "finisher-worker", "--task-id", "task-archive", "--master", "archive-master", "--worker-id", id, "--wait=false")
		h.waitStatus(t, id, workflows.StatusCompleted, 30*time.Second)
		ids = append(ids, id)
	}
	archived := func(id string) []string {
		files, err := filepath.Glob(filepath.Join(h.dir, "archive", id+"_*.json"))
		require.NoError(t, err)
		return files
	}
	require.Eventually(t, func() bool {
		r := starterJSON[workflows.ArchiveReport](t, "archive", "--older-than", "1ms", "--dry-run")
		return len(r.Archived) >= 2
	}, 10*time.Second, 300*time.Millisecond, "visibility lists the ended workers")
	dry := starterJSON[workflows.ArchiveReport](t, "archive", "--older-than", "1ms", "--dry-run")
	require.Subset(t, dry.Archived, ids)
	require.Empty(t, archived(ids[0]), "a dry run writes nothing")

	report := starterJSON[workflows.ArchiveReport](t, "archive", "--older-than", "1ms")
	require.Subset(t, report.Archived, ids)
	for _, id := range ids {
		files := archived(id)
		require.Len(t, files, 1)
		data, err := os.ReadFile(files[0])
		require.NoError(t, err)
		require.Contains(t, string(data), `"status": "completed"`)
		require.Contains(t, string(data), `"worker_id": "`+id+`"`)
	}

	again := starterJSON[workflows.ArchiveReport](t, "archive", "--older-than", "1ms")
	require.NotContains(t, again.Archived, ids[0], "nothing is archived twice")
	require.GreaterOrEqual(t, again.AlreadyArchived, 2)

	recent := starterJSON[workflows.ArchiveReport](t, "archive")
	require.NotContains(t, recent.Archived, ids[0], "with the default 7 days, a worker that just ended stays")

	_, errOut, code := h.starter(t, "archive", "--older-than", "0s")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "retention 0s must be positive")
	h.recordLatest(t, "archival", "ArchiveCompleted")
}

func TestArchivalSchedule(t *testing.T) {
	t.Cleanup(func() { _, _, _ = h.starter(t, "schedule", "delete") })
	t.Cleanup(func() { _, _, _ = h.starter(t, "schedule", "delete", "--schedule", "sweep") })
	out := h.starterOK(t, "schedule", "install")
	require.Contains(t, out, "installed schedule worker-archival (0 2 * * *, retention 168h0m0s)")
	require.Contains(t, out, "installed schedule zombie-sweep (0 * * * *)")
	require.Contains(t, h.starterOK(t, "schedule", "install", "--archive-at", "30 3 * * *"), "was installed already; updated to 30 3 * * *")

	// The server keeps a cron as a calendar; the next runs show it took.
	nextRun := func(args ...string) time.Time {
		var d struct {
			Paused   bool        `json:"paused"`
			NextRuns []time.Time `json:"next_runs"`
		}
		require.Eventually(t, func() bool {
			d = starterJSON[struct {
				Paused   bool        `json:"paused"`
				NextRuns []time.Time `json:"next_runs"`
			}](t, append([]string{"schedule", "describe"}, args...)...)
			return len(d.NextRuns) > 0 && (d.NextRuns[0].UTC().Hour() == 3 || args != nil)
		}, 10*time.Second, 200*time.Millisecond)
		require.False(t, d.Paused)
		return d.NextRuns[0].UTC()
	}
	next := nextRun()
	require.Equal(t, []int{3, 30}, []int{next.Hour(), next.Minute()}, "updated to 30 3 * * *")

	h.starterOK(t, "schedule", "trigger")
	require.Eventually(t, func() bool {
		resp, err := h.client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: `WorkflowType = "ArchiveCompleted" AND WorkflowId STARTS_WITH "worker-archival-2" AND ExecutionStatus = "Completed"`})
		return err == nil && len(resp.Executions) >= 1
	}, 20*time.Second, 300*time.Millisecond, "the triggered archival runs to completion")

	h.starterOK(t, "schedule", "pause")
	require.Equal(t, true, starterJSON[map[string]any](t, "schedule", "describe")["paused"])
	h.starterOK(t, "schedule", "unpause")
	require.Equal(t, false, starterJSON[map[string]any](t, "schedule", "describe")["paused"])
	require.Contains(t, h.starterOK(t, "doctor"), "worker-archival, zombie-sweep")
	require.Zero(t, nextRun("--schedule", "sweep").Minute(), "the sweep runs hourly on the hour")

	_, errOut, code := h.starter(t, "schedule", "install", "--archive-at", "every day")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `schedule "every day" must be a cron expression of five fields`)
	_, errOut, code = h.starter(t, "schedule", "install", "--retention", "-1h")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "retention -1h0m0s must be positive")

	h.starterOK(t, "schedule", "delete")
	_, errOut, code = h.starter(t, "schedule", "describe")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "install it with `starter schedule install`")
}

// TestSweepFindsAZombieAndAnOrphan loses a host's worker program while it
// runs two workers: one is killed during the outage (its stop cannot run, so
// it waits in zombie), the other is given up as lost (its process lives on,
// owned by nobody). When the host is back, one sweep settles both.
func TestSweepFindsAZombieAndAnOrphan(t *testing.T) {
	before := h.budget(t)
	require.NoError(t, h.startWorker("it-host-d"))
	t.Cleanup(func() { h.stopWorker("it-host-d", syscall.SIGTERM) })
	spawn := func(watch string) (string, int) {
		id := newID("sleeper")
		h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-sweep", "--master", "sweep-master",
			"--worker-id", id, "--host", "it-host-d", "--host-loss-after", "3s", "--watch-heartbeat", watch)
		t.Cleanup(func() { killAll(workerProcesses(id)) })
		return id, h.status(t, id).PID
	}
	zombie, zombiePID := spawn("60s")
	orphan, orphanPID := spawn("2s")

	h.crashWorker(t, "it-host-d")
	h.starterOK(t, "kill", zombie, "--wait=false")
	h.waitStatus(t, zombie, workflows.StatusZombie, 30*time.Second)
	lost := h.waitStatus(t, orphan, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, workflows.ProcessLost, lost.Cleanup.Process)
	require.True(t, procfs.Alive(orphanPID) && procfs.Alive(zombiePID), "nobody could stop either")

	require.NoError(t, h.startWorker("it-host-d"))
	report := starterJSON[workflows.SweepReport](t, "sweep")
	require.Contains(t, report.Zombies, activities.ZombieResult{WorkerID: zombie, Status: "completed"})
	require.Contains(t, report.Orphans, activities.Orphan{WorkerID: orphan, Host: "it-host-d", PID: orphanPID, Stopped: true})
	requireGone(t, zombiePID)
	requireGone(t, orphanPID)
	require.Equal(t, before, h.budget(t))

	again := starterJSON[workflows.SweepReport](t, "sweep")
	require.Empty(t, again.Zombies)
	require.Empty(t, again.Orphans, "a second sweep finds nothing")
	h.recordLatest(t, "sweep", "SweepFleet")
}
