package activities

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// sleeper is a real process and the channel closed when it has ended.
type sleeper struct {
	cmd   *exec.Cmd
	ticks uint64
	done  chan struct{}
}

// startSleeper starts a real process and reads its start time.
func startSleeper(t *testing.T) *sleeper {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	s := &sleeper{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-s.done })
	st, err := procfs.ReadStat(cmd.Process.Pid)
	require.NoError(t, err)
	s.ticks = st.StartTicks
	return s
}

// exited says whether the process ended within d.
func (s *sleeper) exited(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// The process the scan found is signalled.
func TestSignalProcessReachesTheProcessItChecked(t *testing.T) {
	s := startSleeper(t)
	require.NoError(t, signalProcess(s.cmd.Process.Pid, s.ticks, syscall.SIGKILL))
	require.True(t, s.exited(5*time.Second), "the process was killed")
	require.Equal(t, "signal: killed", s.cmd.ProcessState.String())
}

// A PID that names another process than the one the scan saw (its start
// time differs: the member was reaped and the PID given to a newcomer) is
// never signalled.
func TestSignalProcessSparesARecycledPID(t *testing.T) {
	s := startSleeper(t)
	require.NoError(t, signalProcess(s.cmd.Process.Pid, s.ticks+1, syscall.SIGKILL))
	require.False(t, s.exited(300*time.Millisecond), "a process that is not the one seen must not be signalled")
	require.True(t, procfs.Alive(s.cmd.Process.Pid))
}

// A process that is gone is no error.
func TestSignalProcessOfAGoneProcess(t *testing.T) {
	s := startSleeper(t)
	require.NoError(t, s.cmd.Process.Kill())
	require.True(t, s.exited(5*time.Second))
	require.NoError(t, signalProcess(s.cmd.Process.Pid, s.ticks, syscall.SIGTERM))
}

// Where pidfds cannot be had (an old kernel, a seccomp profile, no file
// descriptor left), the member is still signalled after its identity is
// checked, and a recycled PID is still spared.
func TestSignalProcessWithoutPidfds(t *testing.T) {
	for _, refusal := range []error{unix.ENOSYS, unix.EPERM, unix.EMFILE} {
		t.Run(refusal.Error(), func(t *testing.T) {
			defer func(open func(int, int) (int, error)) { pidfdOpen = open }(pidfdOpen)
			pidfdOpen = func(int, int) (int, error) { return -1, refusal }
			killed, spared := startSleeper(t), startSleeper(t)
			require.NoError(t, signalProcess(killed.cmd.Process.Pid, killed.ticks, syscall.SIGKILL))
			require.NoError(t, signalProcess(spared.cmd.Process.Pid, spared.ticks+1, syscall.SIGKILL))
			require.True(t, killed.exited(5*time.Second), "the member is signalled without a pidfd")
			require.False(t, spared.exited(300*time.Millisecond), "a recycled PID is spared without a pidfd too")
		})
	}
}
