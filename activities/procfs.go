package activities

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// procStat is the part of /proc/<pid>/stat the process activities rely on.
type procStat struct {
	PID     int
	State   byte
	PPID    int
	PGRP    int
	Session int
	// CPUTicks is utime + stime (fields 14 and 15), in clock ticks.
	CPUTicks uint64
	// StartTicks is field 22: with the PID it names one process for the
	// life of the machine, so a recycled PID is never mistaken for ours.
	StartTicks uint64
}

// exited reports whether the process has finished running: a zombie still
// has a /proc entry (and keeps its group non-empty for kill(2)) until its
// parent reaps it, and after a restart of the worker program that parent is
// no longer us, so zombies must count as gone.
func (s procStat) exited() bool { return s.State == 'Z' || s.State == 'X' }

// readProcStat reads /proc/<pid>/stat. A process that does not exist yields
// an error for which errors.Is(err, os.ErrNotExist) holds.
func readProcStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		// ESRCH shows up when the process dies between open and read.
		if errors.Is(err, syscall.ESRCH) {
			return procStat{}, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
		}
		return procStat{}, err
	}
	return parseProcStat(data)
}

// parseProcStat parses the text of /proc/<pid>/stat. The command name (field
// 2) is in parentheses and may itself contain spaces and ')', so the fixed
// fields are taken after the last ')'.
func parseProcStat(data []byte) (procStat, error) {
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("malformed /proc stat %q", truncateForError(data))
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat pid: %w", err)
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
		return procStat{}, fmt.Errorf("malformed /proc stat %q", truncateForError(data))
	}
	pgrp, err := strconv.Atoi(string(rest[pgrpIdx]))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat pgrp: %w", err)
	}
	session, err := strconv.Atoi(string(rest[sessionIdx]))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat session: %w", err)
	}
	start, err := strconv.ParseUint(string(rest[startIdx]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat starttime: %w", err)
	}
	// A parent or CPU time that does not parse only weakens tree discovery
	// and sampling; identity rests on the fields above.
	ppid, _ := strconv.Atoi(string(rest[ppidIdx]))
	utime, _ := strconv.ParseUint(string(rest[utimeIdx]), 10, 64)
	stime, _ := strconv.ParseUint(string(rest[stimeIdx]), 10, 64)
	return procStat{PID: pid, State: rest[stateIdx][0], PPID: ppid, PGRP: pgrp, Session: session,
		CPUTicks: utime + stime, StartTicks: start}, nil
}

func truncateForError(data []byte) string {
	const limit = 120
	if len(data) > limit {
		return string(data[:limit]) + "..."
	}
	return string(data)
}

// processStartTicks returns field 22 of /proc/<pid>/stat.
func processStartTicks(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	return st.StartTicks, nil
}

// sameProcessRunning reports whether pid is still the process that started at
// startTicks and has not exited.
func sameProcessRunning(pid int, startTicks uint64) (bool, error) {
	st, err := readProcStat(pid)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.StartTicks == startTicks && !st.exited(), nil
}

// allProcs reads every process in /proc, zombies included. Processes that
// vanish during the scan are skipped.
func allProcs() ([]procStat, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	procs := make([]procStat, 0, len(names))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			procs = append(procs, st)
		}
	}
	return procs, nil
}

// groupMembers lists the processes whose process group is pgid, zombies
// included.
func groupMembers(pgid int) ([]procStat, error) {
	procs, err := allProcs()
	if err != nil {
		return nil, err
	}
	var members []procStat
	for _, st := range procs {
		if st.PGRP == pgid {
			members = append(members, st)
		}
	}
	return members, nil
}

// hasEnvEntry reports whether the environment of pid holds entry exactly.
// A process whose environment cannot be read does not have it.
func hasEnvEntry(pid int, entry string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
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

// residentBytes is the resident set of pid, from /proc/<pid>/statm.
func residentBytes(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	fields := bytes.Fields(data)
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(fields[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}
