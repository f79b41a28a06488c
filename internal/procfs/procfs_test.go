package procfs

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	for name, tc := range map[string]struct {
		line string
		want Stat
	}{
		"plain": {
			line: "4242 (sleep) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n",
			want: Stat{PID: 4242, Comm: "sleep", State: 'S', PPID: 1, PGRP: 4242, Session: 4242, CPUTicks: 3, StartTicks: 987654},
		},
		// The command name may hold spaces, '(' and ')' of its own: only
		// the last ')' ends it.
		"name with spaces and parentheses": {
			line: "17 (evil) name (x) ) Z 16 15 14 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 123 1000 10 0\n",
			want: Stat{PID: 17, Comm: "evil) name (x) ", State: 'Z', PPID: 16, PGRP: 15, Session: 14, CPUTicks: 300, StartTicks: 123},
		},
		"name that looks like fields": {
			line: "9 (R 1 2 3) X 8 7 6 0 -1 0 0 0 0 0 4 5 0 0 20 0 1 0 55",
			want: Stat{PID: 9, Comm: "R 1 2 3", State: 'X', PPID: 8, PGRP: 7, Session: 6, CPUTicks: 9, StartTicks: 55},
		},
		"empty name": {
			line: "3 () R 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7",
			want: Stat{PID: 3, State: 'R', StartTicks: 7},
		},
		// A parent or CPU time that does not parse does not hide the process.
		"unparsable parent and times": {
			line: "5 (a) S ? 5 5 0 -1 0 0 0 0 0 x y 0 0 20 0 1 0 99",
			want: Stat{PID: 5, Comm: "a", State: 'S', PGRP: 5, Session: 5, StartTicks: 99},
		},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := ParseStat([]byte(tc.line))
			require.NoError(t, err)
			assert.Equal(t, tc.want, st)
		})
	}

	for _, bad := range []string{
		"",
		"12 (x",
		"12 x) S",
		"12 (x) S 1 2", // too short: no start time
		"x (y) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",         // pid
		"12 (y) SS 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",       // state
		"12 (y) S 1 g 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",        // pgrp
		"12 (y) S 1 2 s 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",        // session
		"12 (y) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5",       // start time
		"12 (a) b) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 ) x", // a ')' after the fields
	} {
		_, err := ParseStat([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestStatExited(t *testing.T) {
	for state, exited := range map[byte]bool{'R': false, 'S': false, 'D': false, 'T': false, 'Z': true, 'X': true} {
		assert.Equal(t, exited, Stat{State: state}.Exited(), string(state))
	}
}

func TestReadStatSelf(t *testing.T) {
	self, err := ReadStat(os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), self.PID)
	assert.Equal(t, os.Getppid(), self.PPID)
	assert.Equal(t, syscall.Getpgrp(), self.PGRP)
	assert.NotZero(t, self.StartTicks)
	assert.False(t, self.Exited())
	assert.True(t, Alive(os.Getpid()))

	for _, pid := range []int{0, -1} {
		_, err = ReadStat(pid)
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.False(t, Alive(pid))
	}
}

// TestChildProcess follows a real child: its command line, environment and
// memory while it runs, a zombie once it exits unreaped, gone once reaped.
func TestChildProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"PROCFS_TEST=one two", "OTHER=x"}
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	require.Eventually(t, func() bool { return Cmdline(pid) == "sleep 30" }, 5*time.Second, 10*time.Millisecond,
		"cmdline %q", Cmdline(pid))
	st, err := ReadStat(pid)
	require.NoError(t, err)
	assert.Equal(t, "sleep", st.Comm)
	assert.Equal(t, os.Getpid(), st.PPID)
	assert.True(t, Alive(pid))

	env, err := Environ(pid)
	require.NoError(t, err)
	assert.Equal(t, []string{"PROCFS_TEST=one two", "OTHER=x"}, env)
	assert.True(t, HasEnv(pid, "PROCFS_TEST=one two"))
	assert.False(t, HasEnv(pid, "PROCFS_TEST=one"))
	assert.False(t, HasEnv(pid, "PROCFS_TEST"))

	rss, err := RSS(pid)
	require.NoError(t, err)
	assert.Positive(t, rss)

	pids, err := PIDs()
	require.NoError(t, err)
	assert.True(t, slices.Contains(pids, pid))
	all, err := All()
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(all, func(s Stat) bool { return s.PID == pid && s.StartTicks == st.StartTicks }))

	// Killed but not yet reaped: a zombie, present in /proc, not alive.
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	require.Eventually(t, func() bool {
		st, err := ReadStat(pid)
		return err == nil && st.Exited()
	}, 5*time.Second, 10*time.Millisecond)
	assert.False(t, Alive(pid))
	rss, err = RSS(pid)
	require.NoError(t, err)
	assert.Zero(t, rss, "a zombie holds no memory")

	_ = cmd.Wait()
	_, err = ReadStat(pid)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.False(t, Alive(pid))
	assert.Equal(t, "", Cmdline(pid))
	_, err = Environ(pid)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = RSS(pid)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestParseRSS(t *testing.T) {
	status := strings.Join([]string{"Name:\tsleep", "VmPeak:\t    8000 kB", "VmRSS:\t    1536 kB", "Threads:\t1", ""}, "\n")
	rss, err := parseRSS([]byte(status))
	require.NoError(t, err)
	assert.Equal(t, int64(1536*1024), rss)

	rss, err = parseRSS([]byte("Name:\tkthreadd\nState:\tS (sleeping)\n"))
	require.NoError(t, err)
	assert.Zero(t, rss, "no VmRSS line: no memory of its own")

	_, err = parseRSS([]byte("VmRSS:\tlots kB\n"))
	assert.Error(t, err)
}
