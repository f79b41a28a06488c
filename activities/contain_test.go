package activities

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/monitor"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
)

// TestMain lets this test binary serve as the monitor, as the worker
// program's binary does: `<binary> monitor --exit-file ... -- command`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == monitor.Command {
		os.Exit(monitor.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// withMonitor makes a start its processes under a monitor (this test
// binary), with a state folder for the exit files.
func withMonitor(t *testing.T, a *HostActivities) *HostActivities {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	a.Monitor = []string{exe}
	if a.StateDir == "" {
		a.StateDir = filepath.Join(t.TempDir(), "state")
	}
	return a
}

// cgroupRoot is the host's cgroup root for workers; CI runs as root on a
// host with cgroup v2, so it must be there.
func cgroupRoot(t *testing.T) string {
	t.Helper()
	root, err := cgroup.Detect()
	if err == nil {
		root, err = cgroup.Prepare(filepath.Join(root, "activities-test"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root on a host with cgroup v2: %v", err)
		}
		t.Skipf("no usable cgroup v2 here: %v", err)
	}
	return root
}

// restarted is the worker program after a restart: an empty table, the
// same folders.
func restarted(t *testing.T, types map[string][]string, first *HostActivities) *HostActivities {
	t.Helper()
	a := newProcActivities(t, types)
	a.StateDir, a.LogDir, a.Monitor, a.CgroupRoot = first.StateDir, first.LogDir, first.Monitor, first.CgroupRoot
	return a
}

func watchIn(t *testing.T, a *HostActivities, id string, p ProcessInfo) <-chan ExitStatus {
	t.Helper()
	return watchWith(t, a, WatchInput{WorkerID: id, Process: p})
}

// watchWith runs the watch of in in the background; its end comes on the
// channel.
func watchWith(t *testing.T, a *HostActivities, in WatchInput) <-chan ExitStatus {
	t.Helper()
	watched := make(chan ExitStatus, 1)
	go func() {
		val, err := newActivityEnv(a).ExecuteActivity(a.WatchProcess, in)
		var st ExitStatus
		if err == nil {
			err = val.Get(&st)
		}
		assert.NoError(t, err)
		watched <- st
	}()
	return watched
}

func awaitExit(t *testing.T, watched <-chan ExitStatus) ExitStatus {
	t.Helper()
	select {
	case st := <-watched:
		return st
	case <-time.After(15 * time.Second):
		t.Fatal("the watch did not see the end of the process")
		return ExitStatus{}
	}
}

// The deploy case: a process that ends while its worker program is
// down is reported, by the program that comes back, with its true status.
func TestMonitoredEndSurvivesARestartOfTheWorkerProgram(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command string
		end     func(pid int)
		want    ExitStatus
	}{
		{"exit 0", "read line; exit 0", nil, ExitStatus{ExitCode: 0, Action: "complete"}},
		{"exit 3", "read line; exit 3", nil, ExitStatus{ExitCode: 3, Action: "restart"}},
		{"killed", "sleep 300", func(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }, ExitStatus{ExitCode: 137, Signal: "SIGKILL", Action: "restart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The command waits on a fifo, so that it ends only once the
			// first program is out of the picture.
			fifo := filepath.Join(t.TempDir(), "go")
			require.NoError(t, syscall.Mkfifo(fifo, 0o600))
			types := map[string][]string{"job": {"sh", "-c", "exec <" + fifo + "; " + tc.command}}
			id := uniqueWorkerID("job")
			first := withMonitor(t, newProcActivities(t, types))
			info := mustStart(t, newActivityEnv(first), first, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
			require.NotNil(t, info.Monitor)
			require.NotEqual(t, info.Monitor.PID, info.PID)
			require.Equal(t, info.Monitor.PID, procStatOf(t, info.PID).PPID, "the monitor is the process's parent")

			second := restarted(t, types, first)
			watched := watchIn(t, second, id, info)
			if tc.end != nil {
				tc.end(info.PID)
			} else {
				require.NoError(t, os.WriteFile(fifo, []byte("go\n"), 0o600))
			}
			assert.Equal(t, tc.want, awaitExit(t, watched), "the restarted program reads the monitor's record")
			require.Eventually(t, func() bool { return !procfs.Alive(info.Monitor.PID) }, 5*time.Second, 20*time.Millisecond,
				"the monitor ends with its process")

			res := stopProc(t, newActivityEnv(second), second, StopInput{WorkerID: id, Process: info, Grace: time.Second})
			assert.True(t, res.AlreadyGone)
			assert.FileExists(t, info.Monitor.ExitFile, "kept for a watch that comes after the stop")
			assert.NoFileExists(t, filepath.Join(first.StateDir, id+".json"))
		})
	}
}

func TestMonitoredExitCodeInTheSameProgram(t *testing.T) {
	types := map[string][]string{"job": {"sh", "-c", "sleep 0.2; exit 7"}}
	a := withMonitor(t, newProcActivities(t, types))
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: uniqueWorkerID("job"), WorkerType: "job", TaskID: "task-1"})
	assert.Equal(t, ExitStatus{ExitCode: 7, Action: "restart"}, watchProc(t, env, a, info))
}

// Lost is left for what nobody can know: the monitor itself killed before
// its process ended.
func TestKilledMonitorLeavesTheEndUnknown(t *testing.T) {
	types := map[string][]string{"job": {"sleep", "300"}}
	id := uniqueWorkerID("job")
	first := withMonitor(t, newProcActivities(t, types))
	info := mustStart(t, newActivityEnv(first), first, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	require.NoError(t, syscall.Kill(info.Monitor.PID, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !procfs.Alive(info.Monitor.PID) }, 5*time.Second, 20*time.Millisecond)
	require.True(t, procfs.Alive(info.PID), "the process outlives its monitor")

	sameProgram := watchIn(t, first, id, info)
	second := restarted(t, types, first)
	restartedProgram := watchIn(t, second, id, info)
	select {
	case st := <-sameProgram:
		t.Fatalf("the watch ended while the process ran: %+v", st)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, syscall.Kill(info.PID, syscall.SIGKILL))
	lost := ExitStatus{ExitCode: -1, Lost: true, Action: "fail"}
	assert.Equal(t, lost, awaitExit(t, sameProgram), "not restarted blindly")
	assert.Equal(t, lost, awaitExit(t, restartedProgram))
}

func TestMonitorRefusesACommandThatCannotRun(t *testing.T) {
	a := withMonitor(t, newProcActivities(t, map[string][]string{"ghost": {"/nonexistent/agent"}}))
	_, err := startProc(t, newActivityEnv(a), a, StartInput{WorkerID: uniqueWorkerID("ghost"), WorkerType: "ghost", TaskID: "task-1"})
	appErr := requireAppError(t, err, ErrTypeSpawnFailed)
	assert.True(t, appErr.NonRetryable())
	assert.Contains(t, appErr.Error(), `start worker command "/nonexistent/agent"`)
	entries, _ := os.ReadDir(a.StateDir)
	assert.Empty(t, entries, "no record or exit file is left of a start that did not happen")
}

// escapeeCommand starts a descendant that clears its environment (the
// token with it), leaves the group and session, and is orphaned to init
// by a double fork, as sudo, docker run or a daemonizing dev server do;
// marker makes it findable by this test.
func escapeeCommand(marker string) []string {
	return []string{"sh", "-c", "(env -i setsid sleep " + marker + " &); exec sleep 300"}
}

// findByCmdline returns the PID of the live process whose command line is
// exactly cmdline, or 0.
func findByCmdline(t *testing.T, cmdline string) int {
	t.Helper()
	pids, err := procfs.PIDs()
	require.NoError(t, err)
	for _, pid := range pids {
		if procfs.Cmdline(pid) == cmdline && procfs.Alive(pid) {
			return pid
		}
	}
	return 0
}

// startEscaper starts an "escaper" worker (escapeeCommand) and waits for
// its escapee, killed when the test ends.
func startEscaper(t *testing.T, env *testsuite.TestActivityEnvironment, a *HostActivities, marker string) (string, ProcessInfo, int) {
	t.Helper()
	id := uniqueWorkerID("escaper")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "escaper", TaskID: "task-1"})
	var escapee int
	require.Eventually(t, func() bool { escapee = findByCmdline(t, "sleep "+marker); return escapee != 0 },
		5*time.Second, 20*time.Millisecond)
	t.Cleanup(func() { _ = syscall.Kill(escapee, syscall.SIGKILL) })
	return id, info, escapee
}

func escapeeMarker() string {
	return fmt.Sprintf("%d.%d", 400+os.Getpid()%500, time.Now().UnixNano()%1000000)
}

func TestCgroupContainsADescendantThatEscapesItsSession(t *testing.T) {
	for _, monitored := range []bool{false, true} {
		t.Run(fmt.Sprintf("monitor=%v", monitored), func(t *testing.T) {
			marker := escapeeMarker()
			a := newProcActivities(t, map[string][]string{"escaper": escapeeCommand(marker)})
			a.CgroupRoot = cgroupRoot(t)
			if monitored {
				withMonitor(t, a)
			}
			env := newActivityEnv(a)
			id, info, escapee := startEscaper(t, env, a, marker)
			require.Equal(t, ContainmentCgroup, info.Containment())
			require.NotEqual(t, procStatOf(t, info.PID).Session, procStatOf(t, escapee).Session, "it left the session")
			require.False(t, hasEnvEntry(escapee, tokenEnv+"="+info.Token), "and the token")
			if monitored {
				pids, err := cgroup.Procs(info.Cgroup)
				require.NoError(t, err)
				assert.NotContains(t, pids, info.Monitor.PID, "the monitor stays outside the cgroup it may kill")
				assert.False(t, hasEnvEntry(info.Monitor.PID, "WORKER_ID="+id), "the monitor does not pass for one of the worker's processes")
				// Read once the worker has exec'd: until then its environ
				// is the monitor's, which has no WORKER_ID.
				assert.Eventually(t, func() bool { return hasEnvEntry(info.PID, "WORKER_ID="+id) }, 2*time.Second, 10*time.Millisecond)
				assert.NotContains(t, procfs.Cmdline(info.Monitor.PID), info.Token, "a command line is for every user to read")
				assert.NotContains(t, info.Monitor.ExitFile, info.Token)
				assert.NotContains(t, info.Cgroup, info.Token[:12])
			}

			res := stopProc(t, env, a, StopInput{WorkerID: id, Process: info, Grace: time.Second})
			assert.False(t, res.AlreadyGone)
			assert.False(t, procfs.Alive(escapee), "the escapee was stopped with its worker")
			assert.False(t, procfs.Alive(info.PID))
			if monitored {
				// The monitor, a subreaper, reaps the orphan at once.
				assert.Eventually(t, func() bool { _, err := os.Stat(info.Cgroup); return os.IsNotExist(err) },
					5*time.Second, 20*time.Millisecond, "the emptied cgroup is removed once its last process is reaped")
			} else {
				// The orphan is init's to reap, whenever it does: the
				// cgroup is empty, and the sweep removes it if the stop
				// could not (TestSweepRemovesCgroupsNoRecordNames).
				populated, err := cgroup.Populated(info.Cgroup)
				assert.NoError(t, err)
				assert.False(t, populated)
				t.Cleanup(func() { _ = cgroup.RemoveWhenEmptied(info.Cgroup, 10*time.Second) })
			}
		})
	}
}

// Without a cgroup, a descendant that drops the token, leaves group and
// session and is orphaned is found only as the child of the monitor, a
// subreaper. Without a monitor as well (--monitor=false) it is out of
// reach: the README states that limit, and this proves it is no more.
func TestProcessGroupFallbackAndAnEscapee(t *testing.T) {
	for _, monitored := range []bool{true, false} {
		t.Run(fmt.Sprintf("monitor=%v", monitored), func(t *testing.T) {
			marker := escapeeMarker()
			a := newProcActivities(t, map[string][]string{"escaper": escapeeCommand(marker)})
			if monitored {
				withMonitor(t, a)
			}
			env := newActivityEnv(a)
			id, info, escapee := startEscaper(t, env, a, marker)
			require.Equal(t, ContainmentProcessGroup, info.Containment())
			require.NotEqual(t, info.PID, procStatOf(t, escapee).PPID, "orphaned")
			require.False(t, hasEnvEntry(escapee, tokenEnv+"="+info.Token))

			res := stopProc(t, env, a, StopInput{WorkerID: id, Process: info, Grace: time.Second})
			assert.False(t, res.AlreadyGone)
			assert.False(t, procfs.Alive(info.PID))
			if monitored {
				assert.Eventually(t, func() bool { return !procfs.Alive(escapee) }, 5*time.Second, 20*time.Millisecond,
					"the monitor's orphan was stopped with the worker")
			} else {
				assert.True(t, procfs.Alive(escapee), "the documented limit: without cgroup or monitor, pid %d escapes", escapee)
			}
		})
	}
}

func procStatOf(t *testing.T, pid int) procStat {
	t.Helper()
	st, err := readProcStat(pid)
	require.NoError(t, err)
	return st
}

// A cgroup no record names is swept: an empty one removed, one with
// processes killed and removed; a recorded worker's is left alone.
func TestSweepRemovesCgroupsNoRecordNames(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "300"}})
	a.StateDir = t.TempDir()
	root, err := cgroup.Prepare(filepath.Join(cgroupRoot(t), uniqueWorkerID("host")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cgroup.Remove(root) })
	a.CgroupRoot = root
	a.Owners = &fakeSweeper{owned: map[string]bool{"worker-sleep-kept1": true}}
	var events []string
	a.Event = func(typ string, data map[string]any) { events = append(events, typ+" "+data["worker_id"].(string)) }
	env := newActivityEnv(a)
	kept := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-kept1", WorkerType: "sleep", TaskID: "task-1"})
	t.Cleanup(func() { _ = cgroup.Kill(kept.Cgroup); _ = cgroup.RemoveWhenEmptied(kept.Cgroup, time.Second) })

	empty, err := cgroup.Create(root, "worker-sleep-gone1-0123456789ab")
	require.NoError(t, err)
	stray, err := cgroup.Create(root, "worker-sleep-lost1-0123456789ab")
	require.NoError(t, err)
	dir, err := os.Open(stray)
	require.NoError(t, err)
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	require.NoError(t, cmd.Start())
	dir.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	v, err := env.ExecuteActivity(a.StopOrphans)
	require.NoError(t, err)
	var orphans []Orphan
	require.NoError(t, v.Get(&orphans))
	assert.Equal(t, []Orphan{{WorkerID: "worker-sleep-lost1", Host: "test-host", PID: cmd.Process.Pid, Stopped: true}}, orphans)
	assert.Equal(t, []string{"orphan_process_stopped worker-sleep-lost1"}, events)
	<-exited
	assert.NoDirExists(t, empty)
	assert.NoDirExists(t, stray)
	assert.DirExists(t, kept.Cgroup)
	assert.True(t, procfs.Alive(kept.PID))
}

// The type's exit rules judge the end on the host, also after a restart of
// the worker program; a record of an earlier release, without its type, is
// left to the lifecycle.
func TestExitRulesJudgeTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "types.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"types": {"ruled-worker": {"command": ["sh", "-c", "exit 3"], "token_budget": 10, "timeout_minutes": 5,
		"exit_rules": [{"exit_codes": [3], "action": "fail"}]}}}`), 0o644))
	reg, err := workertypes.Load(path)
	require.NoError(t, err)
	a := withMonitor(t, newProcActivities(t, nil))
	a.Registry = reg
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: uniqueWorkerID("ruled"), WorkerType: "ruled-worker", TaskID: "task-1"})
	assert.Equal(t, "ruled-worker", info.WorkerType)
	assert.Equal(t, ExitStatus{ExitCode: 3, Action: "fail", Rule: "exit_rules[0] (exit code 3)"}, watchProc(t, env, a, info))

	earlier := info
	earlier.WorkerType = ""
	assert.Equal(t, ExitStatus{ExitCode: 3}, a.judge("worker-fix-1", earlier, ExitStatus{ExitCode: 3}))
	gone := info
	gone.WorkerType = "retired-worker"
	assert.Equal(t, ExitStatus{ExitCode: 3, Action: "restart"}, a.judge("worker-fix-1", gone, ExitStatus{ExitCode: 3}), "a type the host no longer knows gets the defaults")

	// Fenced, a process of an earlier release is judged by the defaults,
	// not left to be taken for a crash; a fence names one worker's start.
	require.NoError(t, a.writeFenceRecord(FenceRecord{WorkerID: "worker-fix-1", PID: info.PID, Stopped: "graceful"}, info.Token))
	assert.Equal(t, ExitStatus{ExitCode: 143, Signal: "SIGTERM", Fenced: true, Action: "fail"},
		a.judge("worker-fix-1", earlier, ExitStatus{ExitCode: 143, Signal: "SIGTERM"}))
	assert.Equal(t, ExitStatus{ExitCode: 143, Signal: "SIGTERM", Action: "restart"},
		a.judge("worker-fix-2", gone, ExitStatus{ExitCode: 143, Signal: "SIGTERM"}))
}

// limitedActivities starts workers under a monitor, each in a cgroup, with
// the host's limiter (v2 controllers, or a hybrid host's v1 ones) and a
// host folder of the test's own.
func limitedActivities(t *testing.T, typesJSON string) *HostActivities {
	t.Helper()
	path := filepath.Join(t.TempDir(), "types.json")
	require.NoError(t, os.WriteFile(path, []byte(typesJSON), 0o644))
	reg, err := workertypes.Load(path)
	require.NoError(t, err)
	a := withMonitor(t, newProcActivities(t, nil))
	a.Registry = reg
	host := uniqueWorkerID("host")
	root, err := cgroup.Prepare(filepath.Join(cgroupRoot(t), host))
	require.NoError(t, err)
	a.CgroupRoot = root
	l, err := cgroup.DetectLimiter(root, host)
	require.NoError(t, err, "CI runs as root on a host with cgroup controllers")
	a.Limiter = &l
	t.Cleanup(func() {
		_ = cgroup.Remove(root)
		for _, dir := range l.V1 {
			_ = cgroup.Remove(dir)
		}
	})
	return a
}

// memberCgroups are the cgroups that hold a worker's limits.
func memberCgroups(info ProcessInfo) []string {
	return append([]string{info.Cgroup}, info.LimitCgroups...)
}

// startHog starts the shell script as a "hog-worker" limited to 64 MiB.
func startHog(t *testing.T, script string) (*HostActivities, *testsuite.TestActivityEnvironment, string, ProcessInfo) {
	t.Helper()
	command, err := json.Marshal([]string{"sh", "-c", script})
	require.NoError(t, err)
	a := limitedActivities(t, `{"types": {"hog-worker": {"command": `+string(command)+`, "token_budget": 10, "timeout_minutes": 5,
		"resources": {"memory": "64M"}}}}`)
	env := newActivityEnv(a)
	id := uniqueWorkerID("hog")
	return a, env, id, mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "hog-worker", TaskID: "task-1"})
}

func TestMemoryLimitEndsWithOOM(t *testing.T) {
	// tail buffers a 300 MB line: bounded, should the limit not hold.
	a, env, id, info := startHog(t, "head -c 300000000 /dev/zero | tail")
	st := watchProc(t, env, a, info)
	assert.Equal(t, ExitStatus{ExitCode: 137, OOM: true, Action: "restart"}, st,
		"the kernel's oom killer ends tail at 64 MiB, and sh exits with its 137")
	stopProc(t, env, a, StopInput{WorkerID: id, Process: info})
	for _, cg := range memberCgroups(info) {
		assert.NoDirExists(t, cg)
	}
}

func TestForkBombStopsAtTheProcessLimit(t *testing.T) {
	a := limitedActivities(t, `{"types": {"bomb-worker": {"command": ["sh", "-c", "while :; do sleep 300 & done"], "token_budget": 10, "timeout_minutes": 5,
		"resources": {"processes": 20}}}}`)
	env := newActivityEnv(a)
	id := uniqueWorkerID("bomb")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "bomb-worker", TaskID: "task-1"})
	// It forks as fast as it can, and fork fails past the limit.
	var most int
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		members, err := treeMembers(info, false)
		require.NoError(t, err)
		most = max(most, len(members))
		time.Sleep(50 * time.Millisecond)
	}
	assert.Greater(t, most, 10, "the bomb forked")
	assert.LessOrEqual(t, most, 20, "no more than the limit")

	res := stopProc(t, env, a, StopInput{WorkerID: id, Process: info, Grace: 500 * time.Millisecond})
	assert.False(t, res.AlreadyGone)
	members, err := treeMembers(info, false)
	require.NoError(t, err)
	assert.Empty(t, members, "stopped cleanly")
	assert.Eventually(t, func() bool {
		for _, cg := range memberCgroups(info) {
			if _, err := os.Stat(cg); err == nil {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "its cgroups are removed")
}

func TestCPULimitThrottles(t *testing.T) {
	a := limitedActivities(t, `{"types": {"spin-worker": {"command": ["sh", "-c", "while :; do :; done"], "token_budget": 10, "timeout_minutes": 5,
		"resources": {"cpus": 0.1}}}}`)
	env := newActivityEnv(a)
	id := uniqueWorkerID("spin")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "spin-worker", TaskID: "task-1"})
	t.Cleanup(func() { stopProc(t, env, a, StopInput{WorkerID: id, Process: info}) })
	before := cpuTicks(t, info.PID)
	start := time.Now()
	time.Sleep(2 * time.Second)
	used := float64(cpuTicks(t, info.PID)-before) / 100 / time.Since(start).Seconds() // USER_HZ is 100
	t.Logf("a busy loop limited to 0.1 CPU used %.2f of a core", used)
	assert.Less(t, used, 0.3, "throttled to about a tenth of a core")
}

// cpuTicks is the user and system time of pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return utime + stime
}

// The monitor's report pipe is not inherited by the worker's processes:
// with the monitor killed, the end is known as soon as the process is
// gone, not when the last descendant holding the pipe ends.
func TestKilledMonitorWithADescendantLeftIsNoticed(t *testing.T) {
	types := map[string][]string{"job": {"sh", "-c", "sleep 60 & exec sleep 300"}}
	id := uniqueWorkerID("job")
	a := withMonitor(t, newProcActivities(t, types))
	info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	for _, fd := range []string{"3", "4"} {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", info.PID, fd))
		assert.NotContains(t, target, "pipe:", "fd %s of the worker's process is a pipe of its monitor's", fd)
	}
	watched := watchIn(t, a, id, info)
	require.NoError(t, syscall.Kill(info.Monitor.PID, syscall.SIGKILL))
	require.NoError(t, syscall.Kill(info.PID, syscall.SIGKILL))
	select {
	case st := <-watched:
		assert.Equal(t, ExitStatus{ExitCode: -1, Lost: true, Action: "fail"}, st)
	case <-time.After(10 * time.Second):
		t.Fatal("the end was not noticed while a descendant held on")
	}
}

// Undoing a start (its record could not be written) ends the whole tree
// and does not wait on a monitor that lingers for orphans.
func TestAbortedMonitoredStartLeavesNothing(t *testing.T) {
	a := withMonitor(t, newProcActivities(t, nil))
	id := uniqueWorkerID("abort")
	marker := escapeeMarker()
	info := ProcessInfo{Token: "0123456789abcdef0123456789abcdef"}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer logFile.Close()
	require.NoError(t, os.MkdirAll(a.StateDir, 0o755))
	started, err := a.startMonitored(id, &info, escapeeCommand(marker), nil, logFile)
	require.NoError(t, err)
	var escapee int
	require.Eventually(t, func() bool { escapee = findByCmdline(t, "sleep "+marker); return escapee != 0 },
		5*time.Second, 20*time.Millisecond)
	t.Cleanup(func() { _ = syscall.Kill(escapee, syscall.SIGKILL) })

	aborted := make(chan struct{})
	go func() { started.abort(); close(aborted) }()
	select {
	case <-aborted:
	case <-time.After(10 * time.Second):
		t.Fatal("abort waited on the monitor while its orphan lived")
	}
	assert.Eventually(t, func() bool {
		return !procfs.Alive(started.pid) && !procfs.Alive(escapee) && !procfs.Alive(info.Monitor.PID)
	},
		5*time.Second, 20*time.Millisecond, "the process, its daemonized descendant and the monitor are gone")
}

// A stop of a re-adopted process that ended while the worker program was
// down keeps the monitor's record of its end for the watch that follows.
func TestStopBeforeTheWatchKeepsTheEnd(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "go")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	types := map[string][]string{"job": {"sh", "-c", "exec <" + fifo + "; read line; exit 0"}}
	id := uniqueWorkerID("job")
	first := withMonitor(t, newProcActivities(t, types))
	info := mustStart(t, newActivityEnv(first), first, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	require.NoError(t, os.WriteFile(fifo, []byte("go\n"), 0o600))
	require.Eventually(t, func() bool { return !procfs.Alive(info.PID) && !procfs.Alive(info.Monitor.PID) }, 5*time.Second, 20*time.Millisecond)

	second := restarted(t, types, first)
	env := newActivityEnv(second)
	res := stopProc(t, env, second, StopInput{WorkerID: id, Process: info, Grace: time.Second})
	assert.True(t, res.AlreadyGone)
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, awaitExit(t, watchIn(t, second, id, info)),
		"the end of a finished task, not a lost one to run again")
}

func TestSweepRemovesOldExitFilesNoRecordNames(t *testing.T) {
	a := withMonitor(t, newProcActivities(t, map[string][]string{"sleep": {"sleep", "300"}}))
	a.Owners = &fakeSweeper{owned: map[string]bool{"worker-sleep-kept2": true}}
	env := newActivityEnv(a)
	kept := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-kept2", WorkerType: "sleep", TaskID: "task-1"})
	old := time.Now().Add(-2 * exitFileKeep)
	require.NoError(t, os.WriteFile(kept.Monitor.ExitFile, []byte(`{}`), 0o644))
	require.NoError(t, os.Chtimes(kept.Monitor.ExitFile, old, old))
	stale := filepath.Join(a.StateDir, "worker-gone-1.0123456789abcdef.exit.json")
	fresh := filepath.Join(a.StateDir, "worker-gone-2.0123456789abcdef.exit.json")
	for _, f := range []string{stale, fresh} {
		require.NoError(t, os.WriteFile(f, []byte(`{}`), 0o644))
	}
	require.NoError(t, os.Chtimes(stale, old, old))

	_, err := env.ExecuteActivity(a.StopOrphans)
	require.NoError(t, err)
	assert.NoFileExists(t, stale)
	assert.FileExists(t, fresh, "a recent one may still be read")
	assert.FileExists(t, kept.Monitor.ExitFile, "a record names it")
}

// The oom reason is for a process the oom killer ended, not for one that
// went on after it killed a helper and ended by itself.
func TestOOMOfAHelperIsNotTheWorkersEnd(t *testing.T) {
	a, env, _, info := startHog(t, "head -c 300000000 /dev/zero | tail; exit 1")
	assert.Equal(t, ExitStatus{ExitCode: 1, Action: "restart"}, watchProc(t, env, a, info))
}

// A start whose record has no PID (this program died before writing it)
// but whose monitor wrote the end is taken back with that end: the task
// is not started a second time.
func TestUnrecordedStartThatEndedIsTakenBackWithItsEnd(t *testing.T) {
	a := withMonitor(t, newProcActivities(t, map[string][]string{"job": {"sleep", "300"}}))
	id := uniqueWorkerID("job")
	token := "feedfacefeedfacefeedfacefeedface"
	require.NoError(t, a.saveState(id, ProcessInfo{Token: token, Lease: "lease-1", WorkerType: "job"}))
	require.NoError(t, os.WriteFile(a.exitFilePath(id, token), []byte(`{"pid": 4242, "start_ticks": 77, "exit_code": 0}`), 0o644))

	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1", Lease: "lease-1"})
	assert.Equal(t, 4242, info.PID, "taken back, not started again")
	assert.Empty(t, a.Procs.Live())
	assert.Zero(t, envHolders(t, "WORKER_ID="+id))
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, watchProc(t, env, a, info))
}

// An exit file's hour runs from when no record names it: a record removed
// now keeps an old exit file for the watch that may still come.
func TestForgottenRecordKeepsItsExitFileAnHour(t *testing.T) {
	a := withMonitor(t, newProcActivities(t, map[string][]string{"job": {"sh", "-c", "exit 0"}}))
	a.Owners = &fakeSweeper{owned: map[string]bool{}}
	env := newActivityEnv(a)
	id := uniqueWorkerID("job")
	info := mustStart(t, env, a, StartInput{WorkerID: id, WorkerType: "job", TaskID: "task-1"})
	watchProc(t, env, a, info)
	old := time.Now().Add(-2 * exitFileKeep)
	require.NoError(t, os.Chtimes(info.Monitor.ExitFile, old, old), "the process ended long ago")
	stopProc(t, env, a, StopInput{WorkerID: id, Process: info})
	_, err := env.ExecuteActivity(a.StopOrphans)
	require.NoError(t, err)
	assert.FileExists(t, info.Monitor.ExitFile)
}

// A start whose record lost its PID, whose command ended but whose monitor
// lingers for a daemonized orphan, is taken back with that monitor: the
// stop that follows finds the orphan through it.
func TestTakenBackEndKeepsItsLingeringMonitor(t *testing.T) {
	marker := escapeeMarker()
	types := map[string][]string{"escaper": {"sh", "-c", "(env -i setsid sleep " + marker + " &); exit 0"}}
	id := uniqueWorkerID("escaper")
	first := withMonitor(t, newProcActivities(t, types))
	info := mustStart(t, newActivityEnv(first), first, StartInput{WorkerID: id, WorkerType: "escaper", TaskID: "task-1", Lease: "lease-1"})
	var escapee int
	require.Eventually(t, func() bool { escapee = findByCmdline(t, "sleep "+marker); return escapee != 0 }, 5*time.Second, 20*time.Millisecond)
	t.Cleanup(func() { _ = syscall.Kill(escapee, syscall.SIGKILL) })
	require.Eventually(t, func() bool { _, err := os.Stat(info.Monitor.ExitFile); return err == nil }, 5*time.Second, 20*time.Millisecond)
	require.True(t, procfs.Alive(info.Monitor.PID), "the monitor lingers for its orphan")
	unrecorded := ProcessInfo{Token: info.Token, Lease: info.Lease, WorkerType: info.WorkerType, LogPath: info.LogPath}
	require.NoError(t, first.saveState(id, unrecorded))

	second := restarted(t, types, first)
	env := newActivityEnv(second)
	again := mustStart(t, env, second, StartInput{WorkerID: id, WorkerType: "escaper", TaskID: "task-1", Lease: "lease-1"})
	require.NotNil(t, again.Monitor)
	assert.Equal(t, info.Monitor.PID, again.Monitor.PID)
	assert.Equal(t, ExitStatus{ExitCode: 0, Action: "complete"}, watchProc(t, env, second, again))
	stopProc(t, env, second, StopInput{WorkerID: id, Process: again, Grace: time.Second})
	assert.Eventually(t, func() bool { return !procfs.Alive(escapee) }, 5*time.Second, 20*time.Millisecond, "the orphan was stopped")
}
