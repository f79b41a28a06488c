package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Source is what the mirror copies: the lifecycles that are live or ended
// since a moment, and the budget.
type Source interface {
	Lifecycles(ctx context.Context, endedSince time.Time) ([]workflows.WorkerSpec, error)
	Budget(ctx context.Context) (workflows.BudgetView, error)
}

// MirrorEvery is the mirror's pause between two syncs: the old scripts'
// loops read a heartbeat in the files within about a second of its arrival,
// plus one sync, which reads the status of every open lifecycle (16 at a
// time) and so grows with the fleet; the mirror is for the fleets those
// scripts ran, a few hundred workers.
const MirrorEvery = time.Second

// Mirror keeps the files in step with the lifecycles. It reads through
// Temporal's visibility and queries, so the workflows stay free of file I/O
// and their histories pay nothing for it; the files lag by at most Every
// and one sync.
type Mirror struct {
	Store  *Store
	Source Source
	Every  time.Duration
	Log    *slog.Logger

	state    mirrorState
	lastSync time.Time
}

// mirrorState remembers, across restarts of the worker program, which
// events were written, so none is written twice.
type mirrorState struct {
	// Emitted is, per worker, the lifecycle (by creation time) and how
	// many of its transitions and which alert were turned into events.
	Emitted map[string]emitted `json:"emitted"`
	// BudgetAlerts is, per pool (and "root"), when the last budget alert
	// turned into an event was raised: by time, not by its number, which
	// starts again if the ledger is ever made anew.
	BudgetAlerts map[string]time.Time `json:"budget_alert_times,omitempty"`
}

type emitted struct {
	CreatedAt time.Time `json:"created_at"`
	// LastAt is the time of the last transition turned into an event; the
	// spec keeps only its recent transitions, so times, not counts, tell
	// what is new.
	LastAt time.Time `json:"last_at"`
	Alert  string    `json:"alert,omitempty"`
}

func (m *Mirror) statePath() string { return filepath.Join(m.Store.Dir, ".mirror-state.json") }

// Run mirrors until ctx ends. Only one mirror writes a coordination folder
// at a time, whatever number of worker programs share it: the others wait
// on its lock.
func (m *Mirror) Run(ctx context.Context) error {
	lock, err := os.OpenFile(filepath.Join(m.Store.Dir, ".mirror.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	for syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.Every):
		}
	}
	if data, err := os.ReadFile(m.statePath()); err == nil {
		_ = json.Unmarshal(data, &m.state)
	}
	for {
		if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
			m.Log.Warn("Mirroring the coordination files failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.Every):
		}
	}
}

// Sync writes every spec that changed state, the events of new
// transitions, and the budget.
func (m *Mirror) Sync(ctx context.Context) error {
	if m.state.Emitted == nil {
		m.state.Emitted = map[string]emitted{}
	}
	since := m.lastSync.Add(-time.Minute)
	if m.lastSync.IsZero() {
		since = time.Now().Add(-24 * time.Hour)
	}
	started := time.Now()
	if err := m.Store.MoveAsideCorrupt(); err != nil {
		m.Log.Warn("Moving corrupt spec files aside failed", "error", err)
	}
	specs, err := m.Source.Lifecycles(ctx, since)
	if err != nil {
		return err
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].WorkerID < specs[j].WorkerID })
	var events []Event
	for _, spec := range specs {
		if err := m.Store.WriteSpec(spec); err != nil {
			return err
		}
		events = append(events, m.newEvents(spec)...)
	}
	if err := m.Store.Append(events...); err != nil {
		return err
	}
	if v, err := m.Source.Budget(ctx); err == nil {
		if err := m.Store.WriteBudget(v, started); err != nil {
			return err
		}
		if err := m.Store.Append(m.budgetAlerts(v)...); err != nil {
			return err
		}
	}
	data, err := json.Marshal(m.state)
	if err != nil {
		return err
	}
	m.lastSync = started
	return writeAtomic(m.statePath(), data)
}

// budgetAlerts turns the ledger's alerts not yet written into budget_alert
// events, one per crossing seen: the raised ones, and the latest crossing
// of the root and of each pool (last_alerts) when it was raised and
// re-armed since the previous sync, marked "cleared" (a ledger of a
// release before last_alerts shows only raised alerts). A cleared one from
// before this process's previous sync is not written: it happened while
// nobody mirrored, or was written then.
func (m *Mirror) budgetAlerts(v workflows.BudgetView) []Event {
	if m.state.BudgetAlerts == nil {
		m.state.BudgetAlerts = map[string]time.Time{}
	}
	raised := map[string]*workflows.AlertView{workflows.PoolRoot: v.Alert}
	names := []string{workflows.PoolRoot}
	for _, p := range v.Pools {
		raised[p.Name] = p.Alert
		names = append(names, p.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(v.LastAlerts)) {
		if _, ok := raised[name]; !ok {
			names = append(names, name)
		}
	}
	var events []Event
	for _, pool := range names {
		r := raised[pool]
		a := r
		if last, ok := v.LastAlerts[pool]; ok && (a == nil || last.Since.After(a.Since)) {
			a = &last
		}
		if a == nil || !a.Since.After(m.state.BudgetAlerts[pool]) {
			continue
		}
		m.state.BudgetAlerts[pool] = a.Since
		data := map[string]any{"pool": pool, "message": a.Message}
		if cleared := r == nil || !r.Since.Equal(a.Since); cleared {
			if a.Message == "" || m.lastSync.IsZero() || a.Since.Before(m.lastSync.Add(-time.Minute)) {
				continue
			}
			data["cleared"] = true
		}
		events = append(events, Event{
			ID:        fmt.Sprintf("evt-budget-alert-%s-%d", pool, a.Since.UnixNano()),
			Timestamp: a.Since, Type: "budget_alert", Source: "worker-lifecycle",
			Data: data,
		})
	}
	return events
}

// newEvents turns what changed since the last sync into events.
func (m *Mirror) newEvents(spec workflows.WorkerSpec) []Event {
	seen := m.state.Emitted[spec.WorkerID]
	if !seen.CreatedAt.Equal(spec.CreatedAt) {
		seen = emitted{CreatedAt: spec.CreatedAt} // a new lifecycle of the id
	}
	var events []Event
	data := map[string]any{"worker_id": spec.WorkerID, "worker_type": spec.WorkerType, "task_id": spec.TaskID, "master": spec.Master}
	// Transitions of one workflow task share a time and are always seen
	// together, so "after the last time seen" misses none.
	cutoff := seen.LastAt
	for i, tr := range spec.Transitions {
		if !tr.At.After(cutoff) {
			continue
		}
		seen.LastAt = tr.At
		if typ := eventType(spec.Transitions, i); typ != "" {
			d := map[string]any{"status": tr.Status, "reason": tr.Reason}
			for k, v := range data {
				d[k] = v
			}
			events = append(events, Event{
				ID:        fmt.Sprintf("evt-%s-%d-%d", spec.WorkerID, tr.At.UnixNano(), i),
				Timestamp: tr.At, Type: typ, Source: "worker-lifecycle", Data: d,
			})
		}
	}
	if a := spec.Heartbeat.Alert; a != seen.Alert && a != "" {
		d := map[string]any{"last_seen": spec.Heartbeat.LastSeen}
		for k, v := range data {
			d[k] = v
		}
		events = append(events, Event{Timestamp: time.Now().UTC(), Type: "heartbeat_" + a, Source: "worker-lifecycle", Data: d})
	}
	seen.Alert = spec.Heartbeat.Alert
	m.state.Emitted[spec.WorkerID] = seen
	return events
}

// eventType names the event of transition i, as the old dashboard did.
func eventType(trs []workflows.Transition, i int) string {
	switch trs[i].Status {
	case workflows.StatusPending:
		if i == 0 {
			return "worker_spawned"
		}
	case workflows.StatusRunning:
		switch {
		case i > 0 && trs[i-1].Status == workflows.StatusPending && restartedBefore(trs, i):
			return "worker_restarted"
		case i > 0 && trs[i-1].Status == workflows.StatusPending:
			return "worker_started"
		}
	case workflows.StatusCompleted:
		return "worker_completed"
	case workflows.StatusFailed:
		return "worker_failed"
	case workflows.StatusZombie:
		return "zombie_detected"
	case workflows.StatusCleanedUp:
		return "zombie_cleanup_completed"
	}
	return ""
}

// restartedBefore: a pending that follows a failure is a restart.
func restartedBefore(trs []workflows.Transition, i int) bool {
	return i >= 2 && trs[i-2].Status == workflows.StatusFailed
}
