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
	return writeFileAtomic(a.statePath(workerID), data)
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
		leader, members, err := startedByToken(p.Token)
		if err != nil {
			return ProcessInfo{}, false, fmt.Errorf("look for the process whose start of %s was not recorded: %w", workerID, err)
		}
		if leader == nil {
			for _, m := range members {
				_ = signalProcess(m.PID, m.StartTicks, syscall.SIGKILL)
			}
			_ = os.Remove(a.statePath(workerID))
			return ProcessInfo{}, false, nil
		}
		p.PID, p.PGID, p.StartTicks = leader.PID, leader.PID, leader.StartTicks
		// Unsaved, the record still names the token, which finds the
		// process again next time.
		if data, err := json.Marshal(p); err == nil {
			_ = writeFileAtomic(a.statePath(workerID), data)
		}
		return p, true, nil
	}
	if running, err := sameProcessRunning(p.PID, p.StartTicks); err != nil || !running || !hasEnvEntry(p.PID, tokenEnv+"="+p.Token) {
		_ = os.Remove(a.statePath(workerID))
		return ProcessInfo{}, false, nil
	}
	return p, true, nil
}

// startedByToken finds the processes carrying token and, among them, the
// one StartProcess started: it leads its own process group.
func startedByToken(token string) (*procStat, []procStat, error) {
	members, err := treeMembers(ProcessInfo{Token: token}, false)
	if err != nil {
		return nil, nil, err
	}
	for i, m := range members {
		if m.PID == m.PGRP && hasEnvEntry(m.PID, tokenEnv+"="+token) {
			return &members[i], members, nil
		}
	}
	return nil, members, nil
}

// forgetState removes the record of p once its tree is gone; a record of a
// newer process of the same worker is kept.
func (a *HostActivities) forgetState(workerID string, p ProcessInfo) {
	if a.StateDir == "" {
		return
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	data, err := os.ReadFile(a.statePath(workerID))
	if err != nil {
		return
	}
	var recorded ProcessInfo
	if json.Unmarshal(data, &recorded) != nil {
		return
	}
	// The token names one start, also one recorded before its PID was known.
	if (recorded.Token != "" && recorded.Token == p.Token) || (recorded.PID == p.PID && recorded.StartTicks == p.StartTicks) {
		_ = os.Remove(a.statePath(workerID))
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename itself is only durable once the folder is synced; without
	// it a power loss could lose the record of a running process.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// newToken is a random marker, unique to one started process.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
