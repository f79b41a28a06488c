package activities

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tokenHolders lists the live processes carrying a worker's token.
func tokenHolders(t *testing.T, p ProcessInfo) []procStat {
	t.Helper()
	members, err := treeMembers(ProcessInfo{Token: p.Token}, false)
	require.NoError(t, err)
	return members
}

// killTokenHolders kills what is left of a test's worker. The token proves
// each process is the test's, so nothing else can be hit.
func killTokenHolders(token string) {
	if token == "" {
		return
	}
	members, err := treeMembers(ProcessInfo{Token: token}, false)
	if err != nil {
		return
	}
	for _, m := range members {
		_ = syscall.Kill(m.PID, syscall.SIGKILL)
	}
}

// envHolders counts the live processes whose environment holds entry.
func envHolders(t *testing.T, entry string) int {
	t.Helper()
	procs, err := allProcs()
	require.NoError(t, err)
	n := 0
	for _, st := range procs {
		if !st.exited() && hasEnvEntry(st.PID, entry) {
			n++
		}
	}
	return n
}

func stillRunning(t *testing.T, st procStat) bool {
	t.Helper()
	running, err := sameProcessRunning(st.PID, st.StartTicks)
	require.NoError(t, err)
	return running
}

func TestStopProcessReachesGrandchildInNewSession(t *testing.T) {
	a := newProcActivities(t, map[string][]string{
		"escape": {"sh", "-c", `trap '' TERM; setsid sh -c 'trap "" TERM; sleep 60' & sleep 60`},
	})
	env := newActivityEnv(a)
	info := mustStart(t, env, a, StartInput{WorkerID: "worker-escape-1", WorkerType: "escape", TaskID: "task-1"})

	// Each sleep starts after its shell's trap, so two sleeps mean the whole
	// tree is in place and ignores SIGTERM.
	var members []procStat
	require.Eventually(t, func() bool {
		members = tokenHolders(t, info)
		sleeps := 0
		for _, m := range members {
			if commName(m.PID) == "sleep" {
				sleeps++
			}
		}
		return sleeps == 2
	}, 5*time.Second, 20*time.Millisecond, "sh, its sleep, the setsid sh and its sleep")
	leader, err := readProcStat(info.PID)
	require.NoError(t, err)
	escaped := 0
	for _, m := range members {
		if m.Session != leader.Session && m.PGRP != info.PGID {
			escaped++
		}
	}
	require.Equal(t, 2, escaped, "the setsid sh and its sleep left the worker's session and group: %+v", members)

	res := stopProc(t, env, a, StopInput{WorkerID: "worker-escape-1", Process: info, Grace: 300 * time.Millisecond})
	assert.Equal(t, StopResult{Killed: true}, res, "they ignore SIGTERM")
	for _, m := range members {
		assert.False(t, stillRunning(t, m), "pid %d (%s) survived", m.PID, commName(m.PID))
	}
	assert.Empty(t, tokenHolders(t, info))
	assert.Equal(t, ExitStatus{ExitCode: 137, Signal: "SIGKILL", Action: "restart"}, watchProc(t, env, a, info))
}

func TestStopProcessLeavesOtherProcessesAlone(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	env := newActivityEnv(a)
	mine := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-a1", WorkerType: "sleep", TaskID: "task-1"})
	other := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-b1", WorkerType: "sleep", TaskID: "task-1"})
	require.NotEqual(t, mine.Token, other.Token)

	// Outside any table: one without a token, one whose token only starts
	// like ours. Neither may be taken for part of our tree.
	_, untokened := startOutside(t, "sleep", "30")
	lookalike := exec.Command("sleep", "30")
	lookalike.Env = append(os.Environ(), tokenEnv+"="+mine.Token+"0")
	lookalike.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, lookalike.Start())
	t.Cleanup(func() {
		_ = lookalike.Process.Kill()
		_ = lookalike.Wait()
	})
	lookalikeTicks, err := processStartTicks(lookalike.Process.Pid)
	require.NoError(t, err)

	res := stopProc(t, env, a, StopInput{WorkerID: "worker-sleep-a1", Process: mine, Grace: time.Second})
	assert.Equal(t, StopResult{}, res)
	for name, p := range map[string]procStat{
		"another worker's process": {PID: other.PID, StartTicks: other.StartTicks},
		"a process without token":  {PID: untokened.PID, StartTicks: untokened.StartTicks},
		"a look-alike token":       {PID: lookalike.Process.Pid, StartTicks: lookalikeTicks},
	} {
		assert.True(t, stillRunning(t, p), "%s was signalled", name)
	}
}

// TestRestartedWorkerProgramReadopts simulates a restart of the worker
// program: a second Activities with an empty table and the same state folder.
func TestRestartedWorkerProgramReadopts(t *testing.T) {
	// The background sleep leaves the session, so only the token can find
	// it once the table that started the tree is gone.
	types := map[string][]string{"tree": {"sh", "-c", "setsid sleep 30 & sleep 30; true"}}
	id := uniqueWorkerID("tree")
	in := StartInput{WorkerID: id, WorkerType: "tree", TaskID: "task-1"}
	stateFile := func(a *HostActivities) string { return filepath.Join(a.StateDir, id+".json") }

	first := newProcActivities(t, types)
	first.StateDir = filepath.Join(t.TempDir(), "state")
	info := mustStart(t, newActivityEnv(first), first, in)
	require.FileExists(t, stateFile(first))
	require.Eventually(t, func() bool { return len(tokenHolders(t, info)) == 3 }, 5*time.Second, 20*time.Millisecond,
		"sh and its two sleeps")

	second := newProcActivities(t, types)
	second.StateDir, second.LogDir = first.StateDir, first.LogDir
	env := newActivityEnv(second)
	again := mustStart(t, env, second, in)
	assert.Equal(t, normalizeInfos(info), normalizeInfos(again), "the same process is taken back")
	assert.Equal(t, 3, envHolders(t, "WORKER_ID="+id), "nothing was spawned twice")
	assert.Empty(t, second.Procs.Live(), "the new table did not start it")

	// The new program's watch keeps it alive until it ends, then has no exit
	// status for it: its parent was the old program.
	watched := make(chan ExitStatus, 1)
	go func() {
		val, err := newActivityEnv(second).ExecuteActivity(second.WatchProcess, WatchInput{WorkerID: id, Process: again})
		var st ExitStatus
		if err == nil {
			err = val.Get(&st)
		}
		assert.NoError(t, err)
		watched <- st
	}()
	select {
	case st := <-watched:
		t.Fatalf("the watch ended while the process ran: %+v", st)
	case <-time.After(300 * time.Millisecond):
	}

	// The new program stops the whole tree by its token, though its table
	// never knew it.
	res := stopProc(t, env, second, StopInput{WorkerID: id, Process: again, Grace: time.Second})
	assert.Equal(t, StopResult{}, res)
	assert.Empty(t, tokenHolders(t, info))
	assert.Zero(t, envHolders(t, "WORKER_ID="+id))
	assert.NoFileExists(t, stateFile(first))
	select {
	case st := <-watched:
		assert.Equal(t, ExitStatus{ExitCode: -1, Lost: true, Action: "fail"}, st)
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not notice the end of the process")
	}

	// Its record gone and its process dead, a new start spawns afresh.
	fresh := mustStart(t, env, second, in)
	assert.NotEqual(t, info.Token, fresh.Token)
	assert.FileExists(t, stateFile(second))
}

func TestStaleStateRecordIsReplaced(t *testing.T) {
	for name, record := range map[string][]byte{
		// No PID is that high (pid_max is at most 2^22).
		"process gone": []byte(`{"pid": 9999999, "pgid": 9999999, "start_ticks": 1, "token": "feed"}`),
		// This test process runs, but it carries no such token.
		"not ours":  []byte(`{"pid": ` + strconv.Itoa(os.Getpid()) + `, "pgid": 1, "start_ticks": ` + selfTicks(t) + `, "token": "feed"}`),
		"truncated": []byte(`{"pid": 12`),
	} {
		t.Run(name, func(t *testing.T) {
			a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
			a.StateDir = t.TempDir()
			path := filepath.Join(a.StateDir, "worker-sleep-s1.json")
			require.NoError(t, os.WriteFile(path, record, 0o644))

			info := mustStart(t, newActivityEnv(a), a, StartInput{WorkerID: "worker-sleep-s1", WorkerType: "sleep", TaskID: "task-1"})
			assert.NotEqual(t, os.Getpid(), info.PID)
			assert.Len(t, a.Procs.Live(), 1, "a process was spawned")
			var recorded ProcessInfo
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(data, &recorded))
			assert.Equal(t, normalizeInfos(info), normalizeInfos(recorded), "the record names the new process")
		})
	}
}

func mustTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	ticks, err := processStartTicks(pid)
	require.NoError(t, err)
	return ticks
}

func selfTicks(t *testing.T) string {
	return strconv.FormatUint(mustTicks(t, os.Getpid()), 10)
}
