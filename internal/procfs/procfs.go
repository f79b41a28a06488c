// Package procfs reads what this module needs of Linux's /proc: the fixed
// fields of /proc/<pid>/stat, whether a process still runs, its command
// line, environment and resident memory. The worker program's activities,
// the bench and the integration tests all read /proc through it.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ClockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat: 100
// on every Linux architecture Go supports.
const ClockTicks = 100

// Stat is the part of /proc/<pid>/stat this module relies on (proc(5)).
type Stat struct {
	PID int
	// Comm is field 2, the command name without its parentheses. It may
	// hold spaces and ')' of its own.
	Comm    string
	State   byte
	PPID    int
	PGRP    int
	Session int
	// CPUTicks is utime + stime (fields 14 and 15), in ClockTicks.
	CPUTicks uint64
	// StartTicks is field 22: with the PID it names one process for the
	// life of the machine, so a recycled PID is never mistaken for another.
	StartTicks uint64
}

// Exited reports whether the process has finished running: a zombie ('Z',
// or 'X' while it is being reaped) still has a /proc entry, and keeps its
// group non-empty for kill(2), until its parent reaps it.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// path is /proc/<pid>/<name>.
func path(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// notExist wraps a failure to read a process's file so that a process that
// does not exist yields os.ErrNotExist: ESRCH shows up when the process
// dies between open and read.
func notExist(pid int, err error) error {
	if errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	return err
}

// ReadStat reads /proc/<pid>/stat. A process that does not exist yields an
// error for which errors.Is(err, os.ErrNotExist) holds.
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	data, err := os.ReadFile(path(pid, "stat"))
	if err != nil {
		return Stat{}, notExist(pid, err)
	}
	return ParseStat(data)
}

// ParseStat parses the text of /proc/<pid>/stat. The command name (field 2)
// is in parentheses and may itself contain spaces and ')', so the fixed
// fields are taken after the last ')'. The fields that name a process
// (pid, state, process group, session, start time) must parse; a parent or
// CPU time that does not parses as 0.
func ParseStat(data []byte) (Stat, error) {
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("malformed /proc stat %q", truncate(data))
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat pid: %w", err)
	}
	// rest[0] is field 3 (state), so field N is rest[N-3].
	rest := bytes.Fields(data[closing+1:])
	const (
		stateIdx   = 3 - 3
		ppidIdx    = 4 - 3
		pgrpIdx    = 5 - 3
		sessionIdx = 6 - 3
		utimeIdx   = 14 - 3
		stimeIdx   = 15 - 3
		startIdx   = 22 - 3
	)
	if len(rest) <= startIdx || len(rest[stateIdx]) != 1 {
		return Stat{}, fmt.Errorf("malformed /proc stat %q", truncate(data))
	}
	pgrp, err := strconv.Atoi(string(rest[pgrpIdx]))
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat pgrp: %w", err)
	}
	session, err := strconv.Atoi(string(rest[sessionIdx]))
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat session: %w", err)
	}
	start, err := strconv.ParseUint(string(rest[startIdx]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat starttime: %w", err)
	}
	ppid, _ := strconv.Atoi(string(rest[ppidIdx]))
	utime, _ := strconv.ParseUint(string(rest[utimeIdx]), 10, 64)
	stime, _ := strconv.ParseUint(string(rest[stimeIdx]), 10, 64)
	return Stat{PID: pid, Comm: string(data[open+1 : closing]), State: rest[stateIdx][0], PPID: ppid,
		PGRP: pgrp, Session: session, CPUTicks: utime + stime, StartTicks: start}, nil
}

func truncate(data []byte) string {
	const limit = 120
	if len(data) > limit {
		return string(data[:limit]) + "..."
	}
	return string(data)
}

// Alive reports whether pid exists and has not exited (is not a zombie).
func Alive(pid int) bool {
	st, err := ReadStat(pid)
	return err == nil && !st.Exited()
}

// PIDs lists the processes in /proc now.
func PIDs() ([]int, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// All reads every process in /proc, zombies included. Processes that vanish
// during the scan are left out.
func All() ([]Stat, error) {
	pids, err := PIDs()
	if err != nil {
		return nil, err
	}
	procs := make([]Stat, 0, len(pids))
	for _, pid := range pids {
		if st, err := ReadStat(pid); err == nil {
			procs = append(procs, st)
		}
	}
	return procs, nil
}

// Cmdline is the command line of pid, its arguments joined by spaces; ""
// when it cannot be read (or for a zombie or kernel thread).
func Cmdline(pid int) string {
	data, _ := os.ReadFile(path(pid, "cmdline"))
	return strings.TrimRight(strings.ReplaceAll(string(data), "\x00", " "), " ")
}

// Environ is the environment of pid, one NAME=value a string.
func Environ(pid int) ([]string, error) {
	data, err := os.ReadFile(path(pid, "environ"))
	if err != nil {
		return nil, notExist(pid, err)
	}
	text := strings.TrimRight(string(data), "\x00")
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\x00"), nil
}

// HasEnv reports whether the environment of pid holds entry (NAME=value)
// exactly. A process whose environment cannot be read does not have it.
func HasEnv(pid int, entry string) bool {
	env, err := os.ReadFile(path(pid, "environ"))
	if err != nil {
		return false
	}
	for _, e := range bytes.Split(env, []byte{0}) {
		if string(e) == entry {
			return true
		}
	}
	return false
}

// EnvValue is the value of name in the environment of pid; "" when it has
// none or its environment cannot be read.
func EnvValue(pid int, name string) string {
	env, err := os.ReadFile(path(pid, "environ"))
	if err != nil {
		return ""
	}
	prefix := []byte(name + "=")
	for _, e := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(e, prefix) {
			return string(e[len(prefix):])
		}
	}
	return ""
}

// RSS is the resident memory of pid in bytes, VmRSS of /proc/<pid>/status.
// A process without memory of its own (a zombie, a kernel thread) has 0.
func RSS(pid int) (int64, error) {
	data, err := os.ReadFile(path(pid, "status"))
	if err != nil {
		return 0, notExist(pid, err)
	}
	return parseRSS(data)
}

// parseRSS finds VmRSS in the text of /proc/<pid>/status.
func parseRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed VmRSS line %q: %w", line, err)
		}
		return kb * 1024, nil
	}
	return 0, nil
}
