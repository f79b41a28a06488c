// Package coordination keeps the files the old system's operators read with
// jq — coordination/worker-specs/<state>/<worker_id>.json, token-budget.json
// and dashboard-events.jsonl — as a mirror of the lifecycles, so their
// scripts keep working while they move to the Web UI and the starter.
package coordination

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// States are the spec folders, one per group of lifecycle states.
var States = []string{"active", "completed", "zombie", "archived"}

// folder is where a spec in status s lives.
func folder(s workflows.Status) string {
	switch s {
	case workflows.StatusCompleted:
		return "completed"
	case workflows.StatusFailed, workflows.StatusZombie:
		return "zombie"
	case workflows.StatusCleanedUp:
		return "archived"
	}
	return "active"
}

// Store writes the files under Dir (the coordination folder).
type Store struct {
	Dir string
}

// Open checks that dir can be written, creating the layout, so a bad
// --coordination-dir is refused when the worker program starts.
func Open(dir string) (*Store, error) {
	for _, s := range States {
		if err := os.MkdirAll(filepath.Join(dir, "worker-specs", s), 0o755); err != nil {
			return nil, fmt.Errorf("coordination dir %s: %w", dir, err)
		}
	}
	probe := filepath.Join(dir, ".write-probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		return nil, fmt.Errorf("coordination dir %s is not writable: %w", dir, err)
	}
	_ = os.Remove(probe)
	return &Store{Dir: dir}, nil
}

// Spec is a worker spec in the runbook's shape: the lifecycle's spec plus
// the old names for the master (created_by) and repository (scope).
type Spec struct {
	workflows.WorkerSpec
	CreatedBy string    `json:"created_by"`
	Scope     specScope `json:"scope"`
}

type specScope struct {
	Repository string `json:"repository,omitempty"`
}

// WriteSpec puts the spec in the folder of its status: moved there first
// (a rename, so it is never in two folders), then replaced atomically.
func (s *Store) WriteSpec(spec workflows.WorkerSpec) error {
	if !workflows.WorkerIDPattern.MatchString(spec.WorkerID) {
		return fmt.Errorf("refusing a spec file for worker id %q", spec.WorkerID)
	}
	unlock, err := s.lockSpecs()
	if err != nil {
		return err
	}
	defer unlock()
	name := spec.WorkerID + ".json"
	target := filepath.Join(s.Dir, "worker-specs", folder(spec.Status), name)
	// The archival moved it on; a completed worker stays archived.
	if archived := filepath.Join(s.Dir, "worker-specs", "archived", name); spec.Status == workflows.StatusCompleted {
		if _, err := os.Stat(archived); err == nil {
			target = archived
		}
	}
	for _, st := range States {
		old := filepath.Join(s.Dir, "worker-specs", st, name)
		if old != target {
			if err := os.Rename(old, target); err == nil {
				break
			}
		}
	}
	data, err := json.MarshalIndent(Spec{WorkerSpec: spec, CreatedBy: spec.Master, Scope: specScope{Repository: spec.Repo}}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(target, append(data, '\n'))
}

// MoveArchived moves a completed worker's spec to archived/, as the old
// archive cron job did.
func (s *Store) MoveArchived(workerID string) error {
	if !workflows.WorkerIDPattern.MatchString(workerID) {
		return fmt.Errorf("refusing a spec file for worker id %q", workerID)
	}
	unlock, err := s.lockSpecs()
	if err != nil {
		return err
	}
	defer unlock()
	name := workerID + ".json"
	err = os.Rename(filepath.Join(s.Dir, "worker-specs", "completed", name), filepath.Join(s.Dir, "worker-specs", "archived", name))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// lockSpecs serialises the moves and writes of spec files among all the
// processes that share the folder (the mirror and the archival may run in
// different worker programs), so a spec is never left in two folders.
func (s *Store) lockSpecs() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, ".specs.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Record appends one event now; errors are the caller's to log.
func (s *Store) Record(eventType, source string, data map[string]any) error {
	return s.Append(Event{Timestamp: time.Now().UTC(), Type: eventType, Source: source, Data: data})
}

// MoveAsideCorrupt moves every spec file that is not JSON out of the state
// folders, with an event each; the files this package writes never are,
// but the old scripts left some behind.
func (s *Store) MoveAsideCorrupt() error {
	files, err := filepath.Glob(filepath.Join(s.Dir, "worker-specs", "*", "worker-*.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || json.Valid(data) {
			continue
		}
		if err := s.MoveAside(f, "not a JSON spec"); err != nil {
			return err
		}
	}
	return nil
}

// SpecFolder says where the spec of workerID is, or "".
func (s *Store) SpecFolder(workerID string) string {
	for _, st := range States {
		if _, err := os.Stat(filepath.Join(s.Dir, "worker-specs", st, workerID+".json")); err == nil {
			return st
		}
	}
	return ""
}

// budgetFile is token-budget.json as the old scripts read it.
type budgetFile struct {
	TotalBudget int64                        `json:"total_budget"`
	Available   int64                        `json:"available"`
	Used        int64                        `json:"used"`
	Allocations []workflows.WorkerAllocation `json:"allocations"`
	// Pools is new; the old scripts' fields above keep their meaning.
	Pools     []workflows.PoolView `json:"pools"`
	UpdatedAt time.Time            `json:"updated_at"`
}

// WriteBudget replaces token-budget.json atomically.
func (s *Store) WriteBudget(v workflows.BudgetView, at time.Time) error {
	data, err := json.MarshalIndent(budgetFile{TotalBudget: v.Total, Available: v.Available, Used: v.Used,
		Allocations: v.Allocations, Pools: append([]workflows.PoolView{}, v.Pools...), UpdatedAt: at.UTC()}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.Dir, "token-budget.json"), append(data, '\n'))
}

// Event is one line of dashboard-events.jsonl.
type Event struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Type      string    `json:"type"`
	Source    string    `json:"source"`
	Data      any       `json:"data"`
}

// Append writes events to dashboard-events.jsonl, each a whole line. An
// exclusive lock and one write per call keep lines from interleaving or
// being cut, whoever else appends at the same time.
func (s *Store) Append(events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	var buf []byte
	for _, e := range events {
		if e.ID == "" {
			e.ID = newID()
		}
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "dashboard-events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if _, err := f.Write(buf); err != nil {
		return err
	}
	return f.Sync()
}

// MoveAside renames a file that cannot be read as a spec out of the state
// folders, so that it stops breaking jq loops, and records it.
func (s *Store) MoveAside(path, why string) error {
	dir := filepath.Join(s.Dir, "corrupt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dest := filepath.Join(dir, filepath.Base(path)+"."+time.Now().UTC().Format("20060102T150405"))
	if err := os.Rename(path, dest); err != nil {
		return err
	}
	return s.Append(Event{Timestamp: time.Now().UTC(), Type: "spec_moved_aside", Source: "coordination",
		Data: map[string]string{"file": path, "moved_to": dest, "reason": why}})
}

// writeAtomic replaces path with data: write a temporary file beside it,
// fsync, rename. A reader sees the old file or the new one, never half.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "evt-" + hex.EncodeToString(b[:])
}
