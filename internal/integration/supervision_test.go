package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/internal/adapters"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// workerProcesses lists the live processes that belong to a worker: those
// whose environment names it. Every descendant inherits that environment.
func workerProcesses(workerID string) []int {
	all, _ := procfs.PIDs()
	var pids []int
	for _, pid := range all {
		if procfs.Alive(pid) && procfs.HasEnv(pid, "WORKER_ID="+workerID) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killAll(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// spawnWatched spawns id whose watch heartbeats every 2 s, so that a
// crash of its worker program is noticed soon, and returns its PID.
func spawnWatched(t *testing.T, id, typ, taskID string) int {
	t.Helper()
	h.starterOK(t, "spawn", "--type", typ, "--task-id", taskID, "--master", "development-master",
		"--worker-id", id, "--watch-heartbeat", "2s")
	return h.status(t, id).PID
}

func TestShutdownLeavesNoDescendant(t *testing.T) {
	before := h.budget(t)
	id := newID("tree")
	h.starterOK(t, "spawn", "--type", "tree-worker", "--task-id", "task-tree", "--master", "development-master", "--worker-id", id)
	var tree []int
	require.Eventually(t, func() bool { tree = workerProcesses(id); return len(tree) == 3 }, 10*time.Second, 100*time.Millisecond,
		"the worker, its child and its grandchild")
	t.Cleanup(func() { killAll(tree) })
	leader := h.status(t, id).PID
	sessions := map[int]bool{}
	for _, pid := range tree {
		st, err := procfs.ReadStat(pid)
		require.NoError(t, err)
		sessions[st.Session] = true
	}
	require.Len(t, sessions, 2, "the grandchild left the worker's session (and so its process group)")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id, "--grace", "1s")
	require.Equal(t, workflows.StatusCompleted, final.Status)
	for _, pid := range tree {
		requireGone(t, pid)
	}
	require.Empty(t, workerProcesses(id))
	require.Contains(t, tree, leader)
	require.Equal(t, before, h.budget(t))
}

func TestWorkerProgramCrashReadoptsItsProcess(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")
	pid := spawnWatched(t, id, "sleeper-worker", "task-readopt")

	h.crashWorker(t, "it-host-a")
	require.True(t, procfs.Alive(pid), "the process outlives its worker program")
	time.Sleep(3 * time.Second) // the watch's heartbeat timeout passes while nobody runs it
	require.NoError(t, h.startWorker("it-host-a"))

	h.starterOK(t, "heartbeat", id, "--tokens-used", "5")
	spec := h.status(t, id)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.Equal(t, pid, spec.PID, "the same process carries on")
	require.Equal(t, []int{pid}, workerProcesses(id), "exactly one process")

	final := starterJSON[workflows.WorkerSpec](t, "shutdown", id)
	require.Equal(t, workflows.StatusCompleted, final.Status)
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)
	requireGone(t, pid)
	require.Equal(t, before, h.budget(t))
}

func TestDiedWhileUnwatchedIsReported(t *testing.T) {
	before := h.budget(t)
	id := newID("sleeper")
	pid := spawnWatched(t, id, "sleeper-worker", "task-unwatched")

	h.crashWorker(t, "it-host-a")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.NoError(t, h.startWorker("it-host-a"))

	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, "process killed by SIGKILL", final.Cleanup.Reason, "its monitor saw the end the worker program missed")
	require.Equal(t, "signal", final.ExitReason)
	require.NotNil(t, final.ExitCode)
	require.Equal(t, 137, *final.ExitCode)
	require.Equal(t, before, h.budget(t))
}

// Lost is left for what nobody can know: the process's monitor was killed
// too, as a reboot or an operator's kill -9 of it would.
func TestDiedWithItsMonitorIsLost(t *testing.T) {
	before := h.budget(t)
	id := newID("exiton")
	// A type with restarts left: a lost end is still not restarted.
	pid := spawnWatched(t, id, "exit-on-worker", "task-unwatched")
	st, err := procfs.ReadStat(pid)
	require.NoError(t, err)

	h.crashWorker(t, "it-host-a")
	require.Contains(t, procfs.Cmdline(st.PPID), " monitor --exit-file ")
	require.NoError(t, syscall.Kill(st.PPID, syscall.SIGKILL), "its monitor")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.NoError(t, h.startWorker("it-host-a"))

	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, "process died while its worker program was down; exit status unknown; not restarted: an end nobody saw may be a finished task", final.Cleanup.Reason)
	require.Nil(t, final.ExitCode)
	require.Equal(t, "lost", final.ExitReason)
	require.Empty(t, final.Restarts)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-lost-not-restarted", workflows.WorkflowID(id))
}

// TestRecycledPIDIsNeverSignalled makes the kernel hand a dead worker's PID
// to an unrelated process while the worker program is down: the lifecycle
// must see the process is gone and leave the newcomer alone.
func TestRecycledPIDIsNeverSignalled(t *testing.T) {
	id := newID("sleeper")
	pid := spawnWatched(t, id, "sleeper-worker", "task-recycle")

	h.crashWorker(t, "it-host-a")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	requireGone(t, pid)
	impostor := startWithPID(t, pid)
	t.Cleanup(func() { _ = impostor.Process.Kill(); _, _ = impostor.Process.Wait() })
	require.NoError(t, h.startWorker("it-host-a"))

	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	require.Equal(t, workflows.ProcessAlreadyGone, final.Cleanup.Process)
	require.True(t, procfs.Alive(pid), "the process that reused the PID was signalled")
	require.Equal(t, "sleep 301", procfs.Cmdline(pid))
}

// startWithPID starts `sleep 301` with the given PID, by setting the
// kernel's last PID just below it (root only).
func startWithPID(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	// The dead process must be reaped (by init) before its PID is free.
	require.Eventually(t, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err)
	}, 10*time.Second, 20*time.Millisecond)
	for try := 0; try < 20; try++ {
		require.NoError(t, os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0o644),
			"the test reuses a PID through /proc/sys/kernel/ns_last_pid, which needs root")
		cmd := exec.Command("sleep", "301")
		require.NoError(t, cmd.Start())
		if cmd.Process.Pid == pid {
			return cmd
		}
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	}
	t.Fatalf("could not start a process with PID %d", pid)
	return nil
}

func TestLostHostIsCleanedUpWithinItsBound(t *testing.T) {
	before := h.budget(t)
	require.NoError(t, h.startWorker("it-host-b"))
	t.Cleanup(func() { h.stopWorker("it-host-b", syscall.SIGTERM) })
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-lost", "--master", "development-master",
		"--worker-id", id, "--host", "it-host-b", "--watch-heartbeat", "2s", "--host-loss-after", "5s")
	spec := h.status(t, id)
	require.Equal(t, "it-host-b", spec.Host)
	t.Cleanup(func() { killAll(workerProcesses(id)) })

	lostAt := time.Now()
	h.crashWorker(t, "it-host-b")
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 30*time.Second)
	t.Logf("host loss: cleaned up %s after the worker program died (watch heartbeat 2s + host loss 5s)", time.Since(lostAt).Round(100*time.Millisecond))
	// Heartbeat timeout + schedule-to-start, plus the retry's back-off.
	require.Less(t, time.Since(lostAt), 20*time.Second)
	require.Contains(t, final.Cleanup.Reason, "host it-host-b lost")
	require.Equal(t, workflows.ProcessLost, final.Cleanup.Process)
	require.Equal(t, int64(1000), final.Cleanup.Refunded)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-host-lost", workflows.WorkflowID(id))
}

func TestRestartsWithGrowingDelaysThenCompletes(t *testing.T) {
	before := h.budget(t)
	id := newID("flaky")
	h.starterOK(t, "spawn", "--type", "flaky-worker", "--task-id", "task-flaky", "--master", "cicd-master",
		"--worker-id", id, "--restart-delay", "1s")
	final := h.waitStatus(t, id, workflows.StatusCompleted, 60*time.Second)
	require.Len(t, final.Restarts, 2)
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second}, []time.Duration{final.Restarts[0].Delay, final.Restarts[1].Delay})
	require.Equal(t, 3, *final.Restarts[0].ExitCode)
	require.Equal(t, 0, *final.ExitCode)
	count, err := os.ReadFile(filepath.Join(h.dir, "flaky-"+id+".count"))
	require.NoError(t, err)
	require.Equal(t, "3", string(count), "three processes ran, one after another")
	// Each restart waited its delay after the crash, by the workflow's clock.
	var pendingAt []time.Time
	for i, tr := range final.Transitions {
		if tr.Status == workflows.StatusPending && i > 0 {
			pendingAt = append(pendingAt, tr.At)
			require.GreaterOrEqual(t, final.Transitions[i+1].At.Sub(tr.At), final.Restarts[len(pendingAt)-1].Delay)
		}
	}
	require.Len(t, pendingAt, 2)
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "lifecycle-restarts", workflows.WorkflowID(id))
}

func TestCrashLoopGivesUp(t *testing.T) {
	before := h.budget(t)
	id := newID("crashloop")
	h.starterOK(t, "spawn", "--type", "crashloop-worker", "--task-id", "task-loop", "--master", "cicd-master",
		"--worker-id", id, "--restart-delay", "500ms")
	final := h.waitStatus(t, id, workflows.StatusCleanedUp, 60*time.Second)
	require.Len(t, final.Restarts, 2)
	require.Equal(t, "gave up after 2 restarts: process exited with code 1", final.Cleanup.Reason)
	n := len(final.Transitions)
	require.Equal(t, []workflows.Status{workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp}, statuses(final)[n-3:])
	require.Equal(t, before, h.budget(t))
	h.recordHistory(t, "restart-breaker", workflows.BreakerWorkflowID("crashloop-worker"))
}

func TestHealthFollowsMemoryOfTheTree(t *testing.T) {
	id := newID("hog")
	h.starterOK(t, "spawn", "--type", "hog-worker", "--task-id", "task-hog", "--master", "inventory-master",
		"--worker-id", id, "--sample-every", "500ms")
	defer h.starterOK(t, "kill", id)
	var spec workflows.WorkerSpec
	// Once the agent has touched its 700 MiB it sits idle.
	require.Eventually(t, func() bool {
		spec = h.status(t, id)
		return spec.Health.RSSBytes > 600<<20 && spec.Health.CPUPercent < 60
	}, 20*time.Second, 200*time.Millisecond, "the sample must see the 700 MiB")
	require.Less(t, spec.Health.RSSBytes, int64(1<<30))
	// Memory > 512 MiB: −15. CPU idle, tokens untouched.
	require.Equal(t, 85, spec.Health.Score)
	require.Equal(t, "healthy", spec.Health.Band)
	require.Equal(t, 85, spec.Heartbeat.HealthScore)

	h.starterOK(t, "heartbeat", id, "--tokens-used", "950")
	spec = h.status(t, id)
	require.Equal(t, 45, spec.Health.Score, "and −40 for less than 10% of the tokens left")
	require.Equal(t, "unhealthy", spec.Health.Band)
	require.Contains(t, h.starterOK(t, "status", id), "health 45 (unhealthy)")
}

func TestOutputHeartbeats(t *testing.T) {
	printer, mute := newID("printer"), newID("mute")
	for _, id := range []string{printer, mute} {
		h.starterOK(t, "spawn", "--type", strings.Split(id, "-")[1]+"-worker", "--task-id", "task-out",
			"--master", "inventory-master", "--worker-id", id, "--sample-every", "500ms", "--zombie-after", "4s")
	}
	// The silent one hangs as far as anyone can tell: a zombie.
	final := h.waitStatus(t, mute, workflows.StatusCleanedUp, 30*time.Second)
	require.Contains(t, final.Cleanup.Reason, "no heartbeat")
	// The printing one outlived it and is still alive on its output alone.
	spec := h.status(t, printer)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.Greater(t, spec.Heartbeat.Count, int64(5))
	require.WithinDuration(t, time.Now(), *spec.Heartbeat.LastSeen, 5*time.Second)
	h.starterOK(t, "shutdown", printer)
}

func TestWorkerProgramRefusesAnUnusableCoordinationDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	out, err := exec.Command(filepath.Join(h.dir, "bin", "worker"), "--address", h.address, "--log-dir", t.TempDir(),
		"--host", "it-host-bad", "--coordination-dir", file).CombinedOutput()
	require.Error(t, err, "the worker program must refuse to start")
	require.Contains(t, string(out), "coordination dir "+file+"/coordination")
	require.Contains(t, string(out), "not a directory")
}

func TestWorkerProgramRefusesABadTypesFile(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"empty command":       {`{"types": {"fix-worker": {"command": []}}}`, `type "fix-worker": command must be a non-empty argv list`},
		"program not on PATH": {`{"types": {"fix-worker": {"command": ["clade-code", "-p"]}}}`, `type "fix-worker": command: program "clade-code" not found on PATH`},
		"unknown field":       {`{"types": {"fix-worker": {"budget": 5}}}`, `type "fix-worker": invalid JSON: json: unknown field "budget"`},
		"negative limit":      {`{"types": {"fix-worker": {"timeout_minutes": -1}}}`, `type "fix-worker": timeout_minutes -1 is not in 1..180`},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "types.json")
			require.NoError(t, os.WriteFile(file, []byte(tc.body), 0o644))
			out, err := exec.Command(filepath.Join(h.dir, "bin", "worker"), "--address", h.address,
				"--worker-types", file, "--log-dir", t.TempDir(), "--host", "it-host-bad").CombinedOutput()
			require.Error(t, err, "the worker program must refuse to start")
			require.Contains(t, string(out), file)
			require.Contains(t, string(out), tc.want)
		})
	}
}

// TestBreakerCountsARetriedCrashOnce: the breaker call of a retried
// activity (same request id) counts the crash once; another crash counts.
func TestBreakerCountsARetriedCrashOnce(t *testing.T) {
	ctx := context.Background()
	breakers := &adapters.Breakers{Client: h.client}
	typ := "dedupe-" + strings.TrimPrefix(newID("x"), "worker-x-")
	first, err := breakers.RecordFailure(ctx, typ, "worker-x-1", "run-1/7")
	require.NoError(t, err)
	retried, err := breakers.RecordFailure(ctx, typ, "worker-x-1", "run-1/7")
	require.NoError(t, err)
	other, err := breakers.RecordFailure(ctx, typ, "worker-x-2", "run-2/7")
	require.NoError(t, err)
	require.Equal(t, 1, first.RecentFailures)
	require.Equal(t, 1, retried.RecentFailures, "the retry is the same crash")
	require.Equal(t, 2, other.RecentFailures)
	require.NoError(t, h.client.TerminateWorkflow(ctx, workflows.BreakerWorkflowID(typ), "", "test done"))
}
