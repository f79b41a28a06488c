package activities

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// pidfdOpen is pidfd_open(2); a variable so that tests can stand in for a
// kernel or a sandbox without it.
var pidfdOpen = unix.PidfdOpen

// signalProcess sends sig to pid only while it is still the process that
// started at startTicks. A member found by the /proc scan can be reparented
// to init, reaped, and its PID given to an unrelated process before the
// signal is sent; so the process is pinned with a pidfd first (pidfd_open,
// Linux 5.3), its identity checked, and the signal sent through the pidfd,
// which can only ever reach the pinned process. Where pidfds are not
// available (an older kernel, a seccomp profile that refuses them, no file
// descriptor left) the identity is checked just before kill(2), which
// narrows the window without closing it, as the standard library's os
// package falls back too. A process that is gone, or whose PID now names
// another process, is left alone and is not an error.
func signalProcess(pid int, startTicks uint64, sig syscall.Signal) error {
	fd, err := pidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return checkThenKill(pid, startTicks, sig)
	}
	defer unix.Close(fd)
	if same, err := sameProcessRunning(pid, startTicks); err != nil || !same {
		return err // reaped or exited since, or the PID is another process's now
	}
	err = unix.PidfdSendSignal(fd, unix.Signal(sig), nil, 0)
	switch {
	case err == nil, errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
		return checkThenKill(pid, startTicks, sig)
	}
	return err
}

// checkThenKill is signalProcess without a pidfd.
func checkThenKill(pid int, startTicks uint64, sig syscall.Signal) error {
	if same, err := sameProcessRunning(pid, startTicks); err != nil || !same {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
