package activities

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
)

// These tests run real processes: the point of the process activities is how
// they behave against the kernel, which a mock would only restate.

const (
	testAddress   = "temporal.test:7233"
	testNamespace = "lifecycle-test"
)

// newProcActivities returns HostActivities whose registry holds the given types
// (name → command), logging under a fresh temporary folder.
func newProcActivities(t *testing.T, types map[string][]string) *HostActivities {
	t.Helper()
	file := map[string]map[string]any{}
	for name, command := range types {
		file[name] = map[string]any{"command": command, "token_budget": 100, "timeout_minutes": 5}
	}
	data, err := json.Marshal(map[string]any{"types": file})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "types.json")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	reg, err := workertypes.Load(path)
	require.NoError(t, err)
	return &HostActivities{
		Registry:          reg,
		LogDir:            filepath.Join(t.TempDir(), "logs"),
		Host:              "test-host",
		TemporalAddress:   testAddress,
		TemporalNamespace: testNamespace,
		Procs:             NewProcessTable(),
		WatchPoll:         20 * time.Millisecond,
	}
}

func newActivityEnv(a any) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	return env
}

func startProc(t *testing.T, env *testsuite.TestActivityEnvironment, a *HostActivities, in StartInput) (ProcessInfo, error) {
	t.Helper()
	val, err := env.ExecuteActivity(a.StartProcess, in)
	if err != nil {
		return ProcessInfo{}, err
	}
	var info ProcessInfo
	require.NoError(t, val.Get(&info))
	t.Cleanup(func() {
		killTestGroup(info.PGID)
		killTokenHolders(info.Token)
		if info.Cgroup != "" {
			_ = cgroup.Kill(info.Cgroup)
		}
		// A monitor writes its exit file as it ends: before the test's
		// folders are removed.
		for deadline := time.Now().Add(5 * time.Second); info.Monitor != nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if running, _ := sameProcessRunning(info.Monitor.PID, info.Monitor.StartTicks); !running {
				break
			}
		}
	})
	return info, nil
}

func mustStart(t *testing.T, env *testsuite.TestActivityEnvironment, a *HostActivities, in StartInput) ProcessInfo {
	t.Helper()
	info, err := startProc(t, env, a, in)
	require.NoError(t, err)
	return info
}

func watchProc(t *testing.T, env *testsuite.TestActivityEnvironment, a *HostActivities, p ProcessInfo) ExitStatus {
	t.Helper()
	val, err := env.ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: "worker-watch-1", Process: p})
	require.NoError(t, err)
	var st ExitStatus
	require.NoError(t, val.Get(&st))
	return st
}

func stopProc(t *testing.T, env *testsuite.TestActivityEnvironment, a *HostActivities, in StopInput) StopResult {
	t.Helper()
	val, err := env.ExecuteActivity(a.StopProcess, in)
	require.NoError(t, err)
	var res StopResult
	require.NoError(t, val.Get(&res))
	return res
}

// killTestGroup kills what is left of a group a test started. It checks the
// group is still in this test's session, so that a group id recycled by an
// unrelated process after the test's group emptied is left alone.
func killTestGroup(pgid int) {
	if pgid <= 1 {
		return
	}
	self, err := readProcStat(os.Getpid())
	if err != nil {
		return
	}
	members, err := groupMembers(pgid)
	if err != nil || len(members) == 0 || members[0].Session != self.Session {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// startOutside starts a process the way a previous run of the worker program
// would have: not in any table of this test's Activities.
func startOutside(t *testing.T, name string, args ...string) (*exec.Cmd, ProcessInfo) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		killTestGroup(pid)
		_ = cmd.Wait()
	})
	ticks, err := processStartTicks(pid)
	require.NoError(t, err)
	return cmd, ProcessInfo{PID: pid, PGID: pid, StartTicks: ticks, Host: "test-host", StartedAt: time.Now()}
}

// normalizeInfos drops what a JSON round trip through Temporal changes in a
// ProcessInfo (monotonic clock reading, location), so that infos from the
// table and from activity results compare equal.
func normalizeInfos(infos ...ProcessInfo) []ProcessInfo {
	out := make([]ProcessInfo, len(infos))
	for i, p := range infos {
		p.StartedAt = p.StartedAt.UTC().Round(0)
		out[i] = p
	}
	return out
}

func requireAppError(t *testing.T, err error, errType string) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "want an ApplicationError, got %T: %v", err, err)
	assert.Equal(t, errType, appErr.Type())
	assert.True(t, appErr.NonRetryable(), "error must be non-retryable: %v", err)
	return appErr
}

// runningMembers lists the members of a group that have not exited. Zombies
// are left out: orphans are reparented to PID 1, which may be slow to reap.
func runningMembers(t *testing.T, pgid int) []procStat {
	t.Helper()
	members, err := groupMembers(pgid)
	require.NoError(t, err)
	var running []procStat
	for _, m := range members {
		if !m.exited() {
			running = append(running, m)
		}
	}
	return running
}

func commName(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// uniqueWorkerID makes a worker id no other test run on this machine uses,
// so that counting its processes in /proc sees only this test's.
func uniqueWorkerID(short string) string {
	return "worker-" + short + "-" + strconv.Itoa(os.Getpid()) + "x" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// groupLeadersWithArg counts the process group leaders whose command line
// has arg: StartProcess makes each process it starts a leader, so this counts
// starts. A child that sh forks before exec'ing also shows arg for a moment,
// but it is not a leader, so it is not counted.
func groupLeadersWithArg(t *testing.T, arg string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			continue
		}
		if st, err := readProcStat(pid); err == nil && st.PGRP == pid && !st.exited() {
			n++
		}
	}
	return n
}

// TestReadProcStat checks what the activities read through internal/procfs
// (whose tests cover the parser).
func TestReadProcStat(t *testing.T) {
	self, err := readProcStat(os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), self.PID)
	assert.Equal(t, syscall.Getpgrp(), self.PGRP)
	assert.NotZero(t, self.StartTicks)

	_, err = readProcStat(0)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestStartProcessOwnGroupEnvAndLog(t *testing.T) {
	a := newProcActivities(t, map[string][]string{
		"env-worker": {"sh", "-c", "echo args $WORKER_ID $TASK_ID $TEMPORAL_ADDRESS; printenv WORKER_ID TASK_ID WORKER_TYPE TEMPORAL_ADDRESS TEMPORAL_NAMESPACE; sleep 30"},
	})
	env := newActivityEnv(a)
	before := time.Now()
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-env-a1", WorkerType: "env", TaskID: "task-42"})

	assert.Positive(t, info.PID)
	assert.Equal(t, info.PID, info.PGID)
	assert.Equal(t, "test-host", info.Host)
	assert.Equal(t, filepath.Join(a.LogDir, "worker-env-a1", "worker.log"), info.LogPath)
	assert.False(t, info.StartedAt.Before(before))

	st, err := readProcStat(info.PID)
	require.NoError(t, err)
	assert.Equal(t, info.PID, st.PGRP, "the process must lead its own group")
	assert.NotEqual(t, syscall.Getpgrp(), st.PGRP)
	assert.Equal(t, info.StartTicks, st.StartTicks)
	running, err := sameProcessRunning(info.PID, info.StartTicks)
	require.NoError(t, err)
	assert.True(t, running)

	want := "args worker-env-a1 task-42 " + testAddress + "\n" +
		"worker-env-a1\ntask-42\nenv-worker\n" + testAddress + "\n" + testNamespace + "\n"
	require.Eventually(t, func() bool {
		data, _ := os.ReadFile(info.LogPath)
		return string(data) == want
	}, 2*time.Second, 10*time.Millisecond, "log %s never held the expected output", info.LogPath)

	fi, err := os.Stat(info.LogPath)
	require.NoError(t, err)
	assert.Zero(t, fi.Mode().Perm()&^0o644, "log mode %v", fi.Mode().Perm())

	assert.Equal(t, normalizeInfos(info), normalizeInfos(a.Procs.Live()...))
}

func TestStartProcessAppendsToLog(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"echo-worker": {"echo", "run", "$TASK_ID"}})
	env := newActivityEnv(a)
	for _, task := range []string{"t1", "t2"} {
		info := mustStart(t, env, a, StartInput{WorkerID: "worker-echo-1", WorkerType: "echo-worker", TaskID: task})
		assert.Equal(t, 0, watchProc(t, env, a, info).ExitCode)
	}
	data, err := os.ReadFile(filepath.Join(a.LogDir, "worker-echo-1", "worker.log"))
	require.NoError(t, err)
	assert.Equal(t, "run t1\nrun t2\n", string(data))
}

func TestStartProcessIdempotentWhileLive(t *testing.T) {
	// $0 carries the worker id so the processes of this worker can be
	// counted in /proc.
	a := newProcActivities(t, map[string][]string{"idem-worker": {"sh", "-c", "sleep 30", "$WORKER_ID"}})
	env := newActivityEnv(a)
	in := StartInput{WorkerID: uniqueWorkerID("idem"), WorkerType: "idem-worker", TaskID: "t"}

	first := mustStart(t, env, a, in)
	second := mustStart(t, env, a, in)
	assert.Equal(t, first, second)
	assert.Equal(t, 1, groupLeadersWithArg(t, in.WorkerID))
	assert.Len(t, a.Procs.Live(), 1)

	// Once it has exited, the same worker id gets a new process.
	res := stopProc(t, env, a, StopInput{WorkerID: in.WorkerID, Process: first})
	assert.True(t, res.Killed)
	assert.Equal(t, ExitStatus{ExitCode: 137, Signal: "SIGKILL", Action: "restart"}, watchProc(t, env, a, first))
	assert.Empty(t, a.Procs.Live())

	third := mustStart(t, env, a, in)
	assert.False(t, third.PID == first.PID && third.StartTicks == first.StartTicks, "a new process must have been started")
	assert.Equal(t, 1, groupLeadersWithArg(t, in.WorkerID))
	assert.Equal(t, normalizeInfos(third), normalizeInfos(a.Procs.Live()...))
}

func TestStartProcessConcurrentRetriesStartOnce(t *testing.T) {
	// A retry can overlap the attempt whose result it replaces.
	a := newProcActivities(t, map[string][]string{"idem-worker": {"sh", "-c", "sleep 30", "$WORKER_ID"}})
	in := StartInput{WorkerID: uniqueWorkerID("idem"), WorkerType: "idem-worker", TaskID: "t"}
	const attempts = 8
	infos := make([]ProcessInfo, attempts)
	errs := make([]error, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Go(func() { infos[i], errs[i] = a.StartProcess(context.Background(), in) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	t.Cleanup(func() { killTestGroup(infos[0].PGID) })
	for _, info := range infos[1:] {
		assert.Equal(t, infos[0], info)
	}
	assert.Equal(t, 1, groupLeadersWithArg(t, in.WorkerID))
}

func TestStartProcessUnknownType(t *testing.T) {
	a := newProcActivities(t, nil)
	env := newActivityEnv(a)
	_, err := startProc(t, env, a, StartInput{WorkerID: "worker-nope-1", WorkerType: "nope", TaskID: "t"})
	requireAppError(t, err, ErrTypeUnknownWorkerType)
	assert.NoDirExists(t, a.LogDir)
}

func TestStartProcessSpawnFailed(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "not-executable")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	for name, command := range map[string]string{
		"missing":  "no-such-command-for-lifecycle-tests",
		"abspath":  "/nonexistent/lifecycle/worker",
		"noexec":   notExec,
		"dir-path": t.TempDir(),
	} {
		t.Run(name, func(t *testing.T) {
			a := newProcActivities(t, map[string][]string{"bad-worker": {command, "arg"}})
			env := newActivityEnv(a)
			_, err := startProc(t, env, a, StartInput{WorkerID: "worker-bad-1", WorkerType: "bad-worker", TaskID: "t"})
			appErr := requireAppError(t, err, ErrTypeSpawnFailed)
			assert.Contains(t, appErr.Error(), command)
			assert.Empty(t, a.Procs.Live())
		})
	}
}

func TestStartProcessRejectsBadWorkerID(t *testing.T) {
	root := t.TempDir()
	a := newProcActivities(t, map[string][]string{"x-worker": {"true"}})
	a.LogDir = filepath.Join(root, "logs", "deep")
	env := newActivityEnv(a)
	for _, id := range []string{
		"worker-x-../../etc",
		"../worker-x-1",
		"worker-x-1/../../../tmp",
		"worker-x-1\n",
		"worker-x-",
		"worker-X-1",
		"",
	} {
		_, err := startProc(t, env, a, StartInput{WorkerID: id, WorkerType: "x", TaskID: "t"})
		requireAppError(t, err, ErrTypeSpawnFailed)
	}
	var created []string
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if path != root {
			created = append(created, path)
		}
		return err
	}))
	assert.Empty(t, created, "nothing may be created for a rejected worker id")
	assert.Empty(t, a.Procs.Live())
}

func TestWatchProcessExitCodes(t *testing.T) {
	a := newProcActivities(t, map[string][]string{
		"three-worker": {"sh", "-c", "exit 3"},
		"true-worker":  {"true"},
	})
	env := newActivityEnv(a)

	info := mustStart(t, env, a, StartInput{WorkerID: "worker-three-1", WorkerType: "three", TaskID: "t"})
	assert.Equal(t, ExitStatus{ExitCode: 3, Action: "restart"}, watchProc(t, env, a, info))

	info = mustStart(t, env, a, StartInput{WorkerID: "worker-true-1", WorkerType: "true", TaskID: "t"})
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, watchProc(t, env, a, info))
	// Watching again after the end returns the kept status.
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, watchProc(t, env, a, info))
}

func TestWatchProcessNotInTableIsLost(t *testing.T) {
	cmd, info := startOutside(t, "sleep", "30")
	a := newProcActivities(t, nil) // a fresh table: as after a restart
	env := newActivityEnv(a)

	const killAfter = 200 * time.Millisecond
	go func() {
		time.Sleep(killAfter)
		_ = cmd.Process.Kill()
	}()
	began := time.Now()
	st := watchProc(t, env, a, info)
	assert.Equal(t, ExitStatus{ExitCode: -1, Lost: true}, st)
	assert.GreaterOrEqual(t, time.Since(began), killAfter, "must keep waiting while the process runs")
}

func TestWatchProcessRecycledPIDIsLost(t *testing.T) {
	_, info := startOutside(t, "sleep", "30")
	a := newProcActivities(t, nil)
	env := newActivityEnv(a)
	info.StartTicks++ // the PID now names another process
	assert.Equal(t, ExitStatus{ExitCode: -1, Lost: true}, watchProc(t, env, a, info))
}

func TestWatchProcessCancelled(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep-worker": {"sleep", "30"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	env.RegisterActivity(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-1", WorkerType: "sleep", TaskID: "t"})

	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := env.ExecuteActivity(a.WatchProcess, WatchInput{WorkerID: "worker-sleep-1", Process: info})
	require.Error(t, err)
	// The test environment hands back the failure as Temporal reports it,
	// so only the message is left of context.Canceled.
	assert.ErrorContains(t, err, context.Canceled.Error())
	running, err := sameProcessRunning(info.PID, info.StartTicks)
	require.NoError(t, err)
	assert.True(t, running, "cancelling a watch must not touch the process")
}

func TestStopProcessPlainSleepExitsOnTerm(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep-worker": {"sleep", "30"}})
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-1", WorkerType: "sleep", TaskID: "t"})

	began := time.Now()
	res := stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-1", Process: info, Grace: 2 * time.Second})
	assert.Equal(t, StopResult{}, res)
	assert.Less(t, time.Since(began), time.Second)
	assert.Equal(t, ExitStatus{ExitCode: 143, Signal: "SIGTERM", Action: "restart"}, watchProc(t, env, a, info))

	// Stopping again finds nothing to stop.
	res = stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-1", Process: info, Grace: 2 * time.Second})
	assert.Equal(t, StopResult{AlreadyGone: true}, res)
}

func TestStopProcessKillsTreeIgnoringTerm(t *testing.T) {
	a := newProcActivities(t, map[string][]string{
		"tree-worker": {"sh", "-c", `trap "" TERM; sh -c 'trap "" TERM; sleep 60' & sleep 60`},
	})
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-tree-1", WorkerType: "tree", TaskID: "t"})

	// Each sleep starts after its shell's trap, so two sleeps mean the whole
	// tree ignores SIGTERM (whether or not sh exec'd into its last command).
	require.Eventually(t, func() bool {
		sleeps := 0
		for _, m := range runningMembers(t, info.PGID) {
			if commName(m.PID) == "sleep" {
				sleeps++
			}
		}
		return sleeps == 2
	}, 2*time.Second, 10*time.Millisecond)

	began := time.Now()
	res := stopProc(t, env, a, StopInput{WorkerID: "worker-tree-1", Process: info, Grace: 300 * time.Millisecond})
	assert.Equal(t, StopResult{Killed: true}, res)
	assert.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond, "SIGKILL must wait for the grace period")
	assert.Empty(t, runningMembers(t, info.PGID), "no process of the group may survive")
	assert.Equal(t, ExitStatus{ExitCode: 137, Signal: "SIGKILL", Action: "restart"}, watchProc(t, env, a, info))

	res = stopProc(t, env, a, StopInput{WorkerID: "worker-tree-1", Process: info, Grace: 300 * time.Millisecond})
	assert.Equal(t, StopResult{AlreadyGone: true}, res)
}

func TestStopProcessGraceZeroKillsAtOnce(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep-worker": {"sleep", "30"}})
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-2", WorkerType: "sleep", TaskID: "t"})
	res := stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-2", Process: info})
	assert.Equal(t, StopResult{Killed: true}, res)
	assert.Equal(t, ExitStatus{ExitCode: 137, Signal: "SIGKILL", Action: "restart"}, watchProc(t, env, a, info))
}

func TestStopProcessGroupOutlivingLeader(t *testing.T) {
	// The leader exits at once and leaves a child running in its group: the
	// table still vouches for the group, so the child is stopped.
	a := newProcActivities(t, map[string][]string{
		"orphan-worker": {"sh", "-c", "sleep 30 & echo started"},
	})
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-orphan-1", WorkerType: "orphan", TaskID: "t"})
	assert.Equal(t, 0, watchProc(t, env, a, info).ExitCode)
	require.Eventually(t, func() bool { return len(runningMembers(t, info.PGID)) == 1 }, 2*time.Second, 10*time.Millisecond)

	res := stopProc(t, env, a, StopInput{WorkerID: "worker-orphan-1", Process: info, Grace: time.Second})
	assert.Equal(t, StopResult{}, res)
	assert.Empty(t, runningMembers(t, info.PGID))

	// Without the table (after a restart) nothing proves the group is ours.
	cmd, outside := startOutside(t, "sh", "-c", "sleep 30 & exit 0")
	require.NoError(t, cmd.Wait())
	require.Eventually(t, func() bool { return len(runningMembers(t, outside.PGID)) == 1 }, 2*time.Second, 10*time.Millisecond)
	fresh := newProcActivities(t, nil)
	res = stopProc(t, newActivityEnv(fresh), fresh, StopInput{WorkerID: "worker-orphan-2", Process: outside})
	assert.Equal(t, StopResult{AlreadyGone: true}, res)
	assert.Len(t, runningMembers(t, outside.PGID), 1, "an unproven group must not be signalled")
}

func TestStopProcessChecksIdentity(t *testing.T) {
	_, info := startOutside(t, "sleep", "30")
	a := newProcActivities(t, nil)
	env := newActivityEnv(a)

	wrong := info
	wrong.StartTicks++
	res := stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-1", Process: wrong})
	assert.Equal(t, StopResult{AlreadyGone: true}, res)
	running, err := sameProcessRunning(info.PID, info.StartTicks)
	require.NoError(t, err)
	assert.True(t, running, "a process that is not ours must not be signalled")

	// A group id that is not the leader's is refused too, above all this
	// program's own group.
	wrong = info
	wrong.PGID = syscall.Getpgrp()
	res = stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-1", Process: wrong})
	assert.Equal(t, StopResult{AlreadyGone: true}, res)

	res = stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-1"})
	assert.Equal(t, StopResult{AlreadyGone: true}, res)

	running, err = sameProcessRunning(info.PID, info.StartTicks)
	require.NoError(t, err)
	assert.True(t, running)
}

func TestStopProcessStopsProcessFromEarlierRun(t *testing.T) {
	// After a restart the table is empty, but a leader that is still the
	// same process proves the group is ours.
	cmd, info := startOutside(t, "sleep", "30")
	a := newProcActivities(t, nil)
	env := newActivityEnv(a)
	res := stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-1", Process: info, Grace: time.Second})
	assert.Equal(t, StopResult{}, res)
	err := cmd.Wait()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, ExitStatus{ExitCode: 143, Signal: "SIGTERM"}, exitStatusOf(exitErr.ProcessState))
}

func TestProcessTableLiveSorted(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep-worker": {"sleep", "30"}})
	env := newActivityEnv(a)
	var infos []ProcessInfo
	for _, id := range []string{"worker-sleep-c", "worker-sleep-a", "worker-sleep-b"} {
		infos = append(infos, mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "sleep", TaskID: "t"}))
	}
	assert.Equal(t, normalizeInfos(infos[1], infos[2], infos[0]), normalizeInfos(a.Procs.Live()...))

	stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-a", Process: infos[1]})
	watchProc(t, env, a, infos[1])
	assert.Equal(t, normalizeInfos(infos[2], infos[0]), normalizeInfos(a.Procs.Live()...))
}

// TestAsideRaisesAPanicInItsCaller: what a watch does aside panics in the
// watch's own goroutine, where the SDK recovers it as the activity's
// failure, not in one the program would die of.
func TestAsideRaisesAPanicInItsCaller(t *testing.T) {
	var stack string
	aside(func() { stack = string(debug.Stack()) })
	require.NotEmpty(t, stack)
	assert.NotContains(t, stack, "testing.tRunner", "run on a goroutine of its own, not the caller's")

	var raised any
	func() {
		defer func() { raised = recover() }()
		aside(func() { relayPanics() })
	}()
	require.IsType(t, asidePanic{}, raised)
	msg := raised.(asidePanic).Error()
	assert.True(t, strings.HasPrefix(msg, "boom\n"), msg)
	assert.Contains(t, msg, "relayPanics", "with the stack where it happened")

	raised = nil
	func() {
		defer func() { raised = recover() }()
		aside(runtime.Goexit)
	}()
	require.NotNil(t, raised, "a goroutine that exits without finishing is a failure too")
}

func relayPanics() { panic("boom") }
