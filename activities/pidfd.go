package activities

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalProcess sends sig to pid only while it is still the process that
// started at startTicks. A member found by the /proc scan can be reparented
// to init, reaped, and its PID given to an unrelated process before the
// signal is sent; so the process is pinned with a pidfd first (pidfd_open,
// Linux 5.3), its identity checked, and the signal sent through the pidfd,
// which can only ever reach the pinned process. Where pidfds are not
// available the identity is checked just before kill(2), which narrows the
// window without closing it. A process that is gone, or whose PID now names
// another process, is left alone and is not an error.
func signalProcess(pid int, startTicks uint64, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS):
		if same, err := sameProcessRunning(pid, startTicks); err != nil || !same {
			return err
		}
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	case err != nil:
		return err
	}
	defer unix.Close(fd)
	st, err := readProcStat(pid)
	if err != nil || st.StartTicks != startTicks {
		return nil // reaped since, or the PID is another process's now
	}
	if err := unix.PidfdSendSignal(fd, unix.Signal(sig), nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}
