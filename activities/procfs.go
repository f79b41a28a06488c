package activities

import (
	"errors"
	"os"

	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// procStat is the part of /proc/<pid>/stat the process activities rely on
// (internal/procfs reads it).
type procStat procfs.Stat

// exited reports whether the process has finished running: a zombie still
// has a /proc entry (and keeps its group non-empty for kill(2)) until its
// parent reaps it, and after a restart of the worker program that parent is
// no longer us, so zombies must count as gone.
func (s procStat) exited() bool { return procfs.Stat(s).Exited() }

// readProcStat reads /proc/<pid>/stat. A process that does not exist yields
// an error for which errors.Is(err, os.ErrNotExist) holds.
func readProcStat(pid int) (procStat, error) {
	st, err := procfs.ReadStat(pid)
	return procStat(st), err
}

// processStartTicks returns field 22 of /proc/<pid>/stat.
func processStartTicks(pid int) (uint64, error) {
	st, err := procfs.ReadStat(pid)
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
	all, err := procfs.All()
	if err != nil {
		return nil, err
	}
	procs := make([]procStat, len(all))
	for i, st := range all {
		procs[i] = procStat(st)
	}
	return procs, nil
}

// groupMembers lists the processes whose process group is pgid, zombies
// included.
func groupMembers(pgid int) ([]procStat, error) {
	snap, err := hostProcs.fresh()
	if err != nil {
		return nil, err
	}
	var members []procStat
	for _, st := range snap.procs {
		if st.PGRP == pgid {
			members = append(members, st)
		}
	}
	return members, nil
}

// hasEnvEntry reports whether the environment of pid holds entry exactly.
// A process whose environment cannot be read does not have it.
func hasEnvEntry(pid int, entry string) bool { return procfs.HasEnv(pid, entry) }

// residentBytes is the resident set of pid; 0 when it cannot be read.
func residentBytes(pid int) int64 {
	rss, _ := procfs.RSS(pid)
	return rss
}
