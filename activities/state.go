package activities

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/atomicfile"
	"github.com/commit-relay/worker-lifecycle/internal/monitor"
)

// The state folder holds one record per started process, so that a worker
// program that crashed or was redeployed finds its processes again instead
// of starting a second one.

// stateMu makes each read-check-write of a record atomic. Without it a
// retried StartProcess that finds its predecessor's dead record could
// delete the record a concurrent attempt had just written for the new
// process, which a restart would then spawn a second time.
var stateMu sync.Mutex

func (a *HostActivities) statePath(workerID string) string {
	return filepath.Join(a.StateDir, workerID+".json")
}

// saveState records a started process; the write is atomic so a crash never
// leaves half a record.
func (a *HostActivities) saveState(workerID string, p ProcessInfo) error {
	if a.StateDir == "" {
		return nil
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	if err := os.MkdirAll(a.StateDir, 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return atomicfile.Write(a.statePath(workerID), data)
}

// readopt returns the recorded process of workerID when it is still that
// very process: same PID, same start time, and our token in its
// environment. A record of a process that is gone is removed.
//
// A record without a PID was written just before a start that this
// program did not live to record: the process, if it was started, is the
// group leader carrying the record's token, and is taken back. Anything
// else carrying the token is a fragment nobody supervises and is killed.
// An error means it could not be told whether such a process runs: the
// caller must not start another.
func (a *HostActivities) readopt(workerID string) (ProcessInfo, bool, error) {
	if a.StateDir == "" {
		return ProcessInfo{}, false, nil
	}
	// Containment is cleaned up after the lock is let go: removing a
	// cgroup may wait for its last members to be reaped.
	var gone []ProcessInfo
	defer func() {
		for _, p := range gone {
			forgetContainment(p)
		}
	}()
	stateMu.Lock()
	defer stateMu.Unlock()
	data, err := os.ReadFile(a.statePath(workerID))
	if err != nil {
		return ProcessInfo{}, false, nil
	}
	var p ProcessInfo
	if json.Unmarshal(data, &p) != nil || p.Token == "" {
		_ = os.Remove(a.statePath(workerID))
		return ProcessInfo{}, false, nil
	}
	if p.PID == 0 {
		if e, err := monitor.ReadExit(a.exitFilePath(workerID, p.Token)); err == nil && e.PID > 0 {
			// Started and already ended, its end written by its monitor:
			// taken back as it is, so that the watch reports that end
			// instead of the task being started again.
			p.PID, p.PGID, p.StartTicks = e.PID, e.PID, e.StartTicks
			p.Monitor = &MonitorProcess{ExitFile: a.exitFilePath(workerID, p.Token)}
			// A monitor that lingers for orphans keeps them its children:
			// the stop after the watch finds them through it.
			if mon, err := findMonitor(p.Token); err == nil && mon != nil {
				p.Monitor.PID, p.Monitor.StartTicks = mon.PID, mon.StartTicks
			}
			if data, err := json.Marshal(p); err == nil {
				_ = atomicfile.Write(a.statePath(workerID), data)
			}
			return p, true, nil
		}
		leader, mon, members, err := a.startedByToken(p)
		if err != nil {
			return ProcessInfo{}, false, fmt.Errorf("look for the process whose start of %s was not recorded: %w", workerID, err)
		}
		if leader == nil {
			if mon != nil {
				_ = signalProcess(mon.PID, mon.StartTicks, syscall.SIGKILL)
			}
			for _, m := range members {
				_ = signalProcess(m.PID, m.StartTicks, syscall.SIGKILL)
			}
			_ = os.Remove(a.statePath(workerID))
			gone = append(gone, p)
			return ProcessInfo{}, false, nil
		}
		p.PID, p.PGID, p.StartTicks = leader.PID, leader.PID, leader.StartTicks
		if mon != nil {
			p.Monitor = &MonitorProcess{PID: mon.PID, StartTicks: mon.StartTicks, ExitFile: a.exitFilePath(workerID, p.Token)}
		}
		// Unsaved, the record still names the token, which finds the
		// process again next time.
		if data, err := json.Marshal(p); err == nil {
			_ = atomicfile.Write(a.statePath(workerID), data)
		}
		return p, true, nil
	}
	running, err := sameProcessRunning(p.PID, p.StartTicks)
	if err == nil && !running && p.Monitor != nil {
		// Its end is known, or about to be (a live monitor writes it
		// right after the reap): the watch reports it.
		if st := endAfterGone(p); !st.Lost {
			return p, true, nil
		}
	}
	if err != nil || !running || !hasEnvEntry(p.PID, tokenEnv+"="+p.Token) {
		_ = os.Remove(a.statePath(workerID))
		gone = append(gone, p)
		return ProcessInfo{}, false, nil
	}
	return p, true, nil
}

// startedByToken finds the processes carrying p's token and, among them,
// the one StartProcess started: it leads its own process group. A monitor
// started for the token may not have started it yet: it is given the time
// a monitor has to report before the search gives up.
func (a *HostActivities) startedByToken(p ProcessInfo) (leader, mon *procStat, members []procStat, err error) {
	deadline := time.Now().Add(monitorReportWait)
	for {
		if members, err = treeMembers(ProcessInfo{Token: p.Token, Cgroup: p.Cgroup}, false); err != nil {
			return nil, nil, nil, err
		}
		if len(a.Monitor) > 0 {
			if mon, err = findMonitor(p.Token); err != nil {
				return nil, nil, nil, err
			}
		}
		for i, m := range members {
			if m.PID == m.PGRP && hasEnvEntry(m.PID, tokenEnv+"="+p.Token) {
				return &members[i], mon, members, nil
			}
		}
		if mon == nil || !time.Now().Before(deadline) {
			return nil, mon, members, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// forgetState removes the record of p once its tree is gone; a record of a
// newer process of the same worker is kept.
func (a *HostActivities) forgetState(workerID string, p ProcessInfo) {
	if a.StateDir == "" {
		forgetContainment(p)
		return
	}
	gone := []ProcessInfo{p}
	stateMu.Lock()
	data, err := os.ReadFile(a.statePath(workerID))
	var recorded ProcessInfo
	// The token names one start, also one recorded before its PID was known.
	if err == nil && json.Unmarshal(data, &recorded) == nil &&
		((recorded.Token != "" && recorded.Token == p.Token) || (recorded.PID == p.PID && recorded.StartTicks == p.StartTicks)) {
		_ = os.Remove(a.statePath(workerID))
		gone = append(gone, recorded)
		if recorded.Monitor != nil {
			// Its exit file is kept an hour from now, when no record names
			// it any more, not from when the process ended.
			now := time.Now()
			_ = os.Chtimes(recorded.Monitor.ExitFile, now, now)
		}
	}
	stateMu.Unlock()
	// After the lock: removing a cgroup may wait for its last reaps.
	for _, g := range gone {
		forgetContainment(g)
	}
}

// cgroupReapWait bounds the wait for a stopped tree's last members to be
// reaped (by init, for orphans) before their cgroup can be removed; the
// orphan sweep removes one that outlasts it.
const cgroupReapWait = 2 * time.Second

// forgetContainment removes the emptied cgroups of a process whose tree is
// gone. Its monitor's exit file stays: a watch that comes after the stop
// (a restarted worker program's) still reads the end from it; the sweep
// removes it once no record names it and it is old (exitFileKeep).
func forgetContainment(p ProcessInfo) { removeContainment(p, cgroupReapWait) }

// newToken is a random marker, unique to one started process.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
