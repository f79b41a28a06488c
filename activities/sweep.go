package activities

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
)

// Sweeper is what the hourly sweep asks of the fleet. The worker program
// wires it to the public client, package fleet.
type Sweeper interface {
	Zombies(ctx context.Context) ([]string, error)
	CleanupZombie(ctx context.Context, workerID string) (status string, err error)
	Hosts(ctx context.Context) ([]string, error)
	Recalc(ctx context.Context) ([]Released, error)
}

// ProcessOwners tells a host's orphan sweep which of its processes a
// lifecycle still holds.
type ProcessOwners interface {
	// OwnsProcess says whether a lifecycle that is not over still holds
	// this process.
	OwnsProcess(ctx context.Context, workerID, host string, pid int) (bool, error)
}

// ZombieResult is one zombie the sweep tried to clean up.
type ZombieResult struct {
	WorkerID string `json:"worker_id"`
	Status   string `json:"status,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Orphan is a process a host started that no lifecycle owns any more.
type Orphan struct {
	WorkerID string `json:"worker_id"`
	Host     string `json:"host"`
	PID      int    `json:"pid"`
	Stopped  bool   `json:"stopped"`
	Error    string `json:"error,omitempty"`
}

// Released is budget the ledger held for no live lifecycle.
type Released struct {
	WorkerID string `json:"worker_id"`
	Amount   int64  `json:"amount"`
	Reason   string `json:"reason"`
}

// SweepZombies finishes the cleanup of every lifecycle stuck in zombie.
func (a *SharedActivities) SweepZombies(ctx context.Context) ([]ZombieResult, error) {
	if a.Sweeper == nil {
		return nil, errors.New("this worker program cannot sweep")
	}
	ids, err := a.Sweeper.Zombies(ctx)
	if err != nil {
		return nil, err
	}
	results := make([]ZombieResult, 0, len(ids))
	for _, id := range ids {
		activity.RecordHeartbeat(ctx, id)
		r := ZombieResult{WorkerID: id}
		if r.Status, err = a.Sweeper.CleanupZombie(ctx, id); err != nil {
			r.Error = err.Error()
		}
		a.Event.record("zombie_swept", map[string]any{"worker_id": id, "status": r.Status, "error": r.Error})
		results = append(results, r)
	}
	return results, nil
}

// ListHosts names the hosts whose worker programs are polling.
func (a *SharedActivities) ListHosts(ctx context.Context) ([]string, error) {
	if a.Sweeper == nil {
		return nil, errors.New("this worker program cannot sweep")
	}
	return a.Sweeper.Hosts(ctx)
}

// StopOrphans runs on a host: every process this host recorded that is
// still running but that no lifecycle owns is stopped. Records of processes
// that are gone are removed.
func (a *HostActivities) StopOrphans(ctx context.Context) ([]Orphan, error) {
	if a.Owners == nil || a.StateDir == "" {
		return nil, errors.New("this worker program cannot sweep")
	}
	files, err := filepath.Glob(filepath.Join(a.StateDir, "worker-*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	orphans := []Orphan{}
	for _, f := range files {
		activity.RecordHeartbeat(ctx, f)
		workerID := strings.TrimSuffix(filepath.Base(f), ".json")
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var p ProcessInfo
		if json.Unmarshal(data, &p) != nil || !workerIDPattern.MatchString(workerID) {
			continue
		}
		if p.PID == 0 {
			// A start this program's predecessor did not live to record:
			// its process, if any, is found by its token first. Starts of
			// this program are waited for, or one in flight would look
			// the same.
			var found bool
			a.Procs.withoutStarts(func() { p, found, err = a.readopt(workerID) })
			if err != nil || !found {
				continue
			}
		}
		owned, err := a.Owners.OwnsProcess(ctx, workerID, a.Host, p.PID)
		if err != nil || owned {
			continue
		}
		// The leader may be gone while children carrying its token live
		// on: StopProcess finds them, and forgets the record once none is.
		res, err := a.StopProcess(ctx, StopInput{WorkerID: workerID, Process: p, Grace: 5 * time.Second})
		if err == nil && res.AlreadyGone {
			continue
		}
		o := Orphan{WorkerID: workerID, Host: a.Host, PID: p.PID, Stopped: err == nil}
		if err != nil {
			o.Error = err.Error()
		}
		a.Event.record("orphan_process_stopped", map[string]any{"worker_id": workerID, "host": a.Host, "pid": p.PID, "stopped": o.Stopped, "error": o.Error})
		orphans = append(orphans, o)
	}
	if a.CgroupRoot != "" {
		var stray []Orphan
		a.Procs.withoutStarts(func() { stray = a.sweepCgroups(ctx) })
		orphans = append(orphans, stray...)
	}
	a.sweepExitFiles(time.Now())
	return orphans, nil
}

// records reads the host's records of started processes (not the exit
// files beside them).
func (a *HostActivities) records() []ProcessInfo {
	var out []ProcessInfo
	for _, r := range a.workerRecords() {
		out = append(out, r.info)
	}
	return out
}

// workerRecord is one record of the state folder with its worker id.
type workerRecord struct {
	workerID string
	info     ProcessInfo
}

// workerRecords reads the state folder's records, by worker id.
func (a *HostActivities) workerRecords() []workerRecord {
	files, _ := filepath.Glob(filepath.Join(a.StateDir, "worker-*.json"))
	var out []workerRecord
	for _, f := range files {
		var p ProcessInfo
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		if !workerIDPattern.MatchString(id) {
			continue
		}
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &p) == nil {
			out = append(out, workerRecord{id, p})
		}
	}
	return out
}

// exitFileKeep is how long a monitor's exit file is kept once no record
// names it: far longer than any watch takes to read it after its stop.
const exitFileKeep = time.Hour

// sweepExitFiles removes the exit files and the reported fence records no
// record names that are older than exitFileKeep.
func (a *HostActivities) sweepExitFiles(now time.Time) {
	named := map[string]bool{}
	for _, r := range a.workerRecords() {
		if r.info.Monitor != nil {
			named[r.info.Monitor.ExitFile] = true
		}
		if r.info.Token != "" {
			named[a.fencePath(r.workerID, r.info.Token)] = true
		}
	}
	exits, _ := filepath.Glob(filepath.Join(a.StateDir, "*.exit.json"))
	// A fence record stays until it was reported: a host may be cut off
	// for hours.
	fences, _ := filepath.Glob(filepath.Join(a.StateDir, "*"+fenceSuffix))
	for _, f := range fences {
		if rec, err := readFenceRecord(f); err != nil || rec.ReportedAt != nil {
			exits = append(exits, f)
		}
	}
	for _, f := range exits {
		if st, err := os.Stat(f); err == nil && !named[f] && now.Sub(st.ModTime()) > exitFileKeep {
			_ = os.Remove(f)
		}
	}
}

// sweepCgroups removes the host's worker cgroups that no record names: an
// empty one a stop could not remove while its last members were reaped,
// and one whose record is gone while processes remain in it, which are
// killed (nothing else would ever stop them). Starts are held off, since
// a start creates its cgroup just before recording it.
func (a *HostActivities) sweepCgroups(ctx context.Context) []Orphan {
	named := map[string]bool{}
	for _, p := range a.records() {
		if p.Cgroup != "" {
			named[p.Cgroup] = true
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(a.CgroupRoot, "worker-*"))
	var orphans []Orphan
	for _, dir := range dirs {
		if named[dir] {
			continue
		}
		activity.RecordHeartbeat(ctx, dir)
		populated, err := cgroup.Populated(dir)
		if err != nil || !populated {
			_ = cgroup.Remove(dir)
			continue
		}
		members, _ := cgroup.Procs(dir)
		o := Orphan{WorkerID: workerIDOfCgroup(dir), Host: a.Host}
		if len(members) > 0 {
			o.PID = members[0]
		}
		err = cgroup.Kill(dir)
		if err == nil {
			err = cgroup.RemoveWhenEmptied(dir, killWait)
		}
		o.Stopped = err == nil
		if err != nil {
			o.Error = err.Error()
		}
		a.Event.record("orphan_process_stopped", map[string]any{"worker_id": o.WorkerID, "host": a.Host, "pid": o.PID, "stopped": o.Stopped, "error": o.Error, "cgroup": dir})
		orphans = append(orphans, o)
	}
	return orphans
}

// workerIDOfCgroup reads the worker id back from a cgroup's name,
// <worker_id>-<token prefix>.
func workerIDOfCgroup(dir string) string {
	name := filepath.Base(dir)
	if i := strings.LastIndex(name, "-"); i > 0 {
		return name[:i]
	}
	return name
}

// RecalcLedger releases what the ledger holds for no live lifecycle.
func (a *SharedActivities) RecalcLedger(ctx context.Context) ([]Released, error) {
	if a.Sweeper == nil {
		return nil, errors.New("this worker program cannot sweep")
	}
	released, err := a.Sweeper.Recalc(ctx)
	for _, r := range released {
		a.Event.record("budget_released", map[string]any{"worker_id": r.WorkerID, "amount": r.Amount, "reason": r.Reason})
	}
	return released, err
}
