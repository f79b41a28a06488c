package activities

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startTokened starts n sleeping processes, each a worker of its own: its
// own group and token, as StartProcess leaves them.
func startTokened(tb testing.TB, n int) []ProcessInfo {
	tb.Helper()
	infos := make([]ProcessInfo, 0, n)
	for i := 0; i < n; i++ {
		cmd := exec.Command("sleep", "600")
		token := fmt.Sprintf("bench-%d-%d", os.Getpid(), i)
		cmd.Env = append(os.Environ(), tokenEnv+"="+token)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(tb, cmd.Start())
		pid := cmd.Process.Pid
		tb.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL); _ = cmd.Wait() })
		ticks, err := processStartTicks(pid)
		require.NoError(tb, err)
		infos = append(infos, ProcessInfo{PID: pid, PGID: pid, StartTicks: ticks, Token: token})
	}
	return infos
}

func TestProcIndexIsSharedAndFreshWhenAsked(t *testing.T) {
	x := &procIndex{every: time.Hour, minGap: 0}
	first, err := x.recent()
	require.NoError(t, err)
	again, err := x.recent()
	require.NoError(t, err)
	assert.Same(t, first, again, "a recent scan serves every caller")
	assert.Equal(t, 1, x.scans)

	workers := startTokened(t, 3)
	assert.Empty(t, again.members(workers[0], true), "started after the scan")
	fresh, err := x.fresh()
	require.NoError(t, err)
	assert.Equal(t, 2, x.scans, "a scan begun after the call")
	for _, w := range workers {
		members := fresh.members(w, true)
		require.Len(t, members, 1)
		assert.Equal(t, w.PID, members[0].PID)
	}

	gapped := &procIndex{every: time.Hour, minGap: 200 * time.Millisecond}
	_, err = gapped.fresh()
	require.NoError(t, err)
	start := time.Now()
	_, err = gapped.fresh()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "fresh scans are spaced")
}

// BenchmarkSupervisionScan is one round of supervision of every worker of
// a host contained by process group and token (BENCH_PROCS live processes,
// 1,000 by default): each worker's tree read by its own scan of /proc, as
// before the shared index, against one shared scan.
func BenchmarkSupervisionScan(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("BENCH_PROCS")); err == nil && v > 0 {
		n = v
	}
	workers := startTokened(b, n)
	b.Run(fmt.Sprintf("per-worker-scans/%d", n), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, w := range workers {
				snap, err := scanProcs()
				if err != nil {
					b.Fatal(err)
				}
				if len(snap.members(w, true)) != 1 {
					b.Fatal("a worker's process was not found")
				}
			}
		}
	})
	b.Run(fmt.Sprintf("shared-index/%d", n), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			snap, err := scanProcs()
			if err != nil {
				b.Fatal(err)
			}
			for _, w := range workers {
				if len(snap.members(w, true)) != 1 {
					b.Fatal("a worker's process was not found")
				}
			}
		}
	})
}
