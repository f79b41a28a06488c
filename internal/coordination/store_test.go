package coordination

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

func TestSpecLivesInExactlyOneFolder(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	spec := workflows.WorkerSpec{WorkerID: "worker-fix-1", Master: "development-master", Repo: "owner/repo"}
	for _, st := range []struct {
		status workflows.Status
		folder string
	}{
		{workflows.StatusPending, "active"}, {workflows.StatusRunning, "active"}, {workflows.StatusFailed, "zombie"},
		{workflows.StatusZombie, "zombie"}, {workflows.StatusCleanedUp, "archived"},
	} {
		spec.Status = st.status
		require.NoError(t, s.WriteSpec(spec))
		require.Equal(t, st.folder, s.SpecFolder(spec.WorkerID))
		n := 0
		for _, f := range States {
			if _, err := os.Stat(filepath.Join(s.Dir, "worker-specs", f, "worker-fix-1.json")); err == nil {
				n++
			}
		}
		require.Equal(t, 1, n, "in exactly one folder after %s", st.status)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir, "worker-specs", "archived", "worker-fix-1.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	require.Equal(t, "development-master", m["created_by"])
	require.Equal(t, "owner/repo", m["scope"].(map[string]any)["repository"])
	require.Error(t, s.WriteSpec(workflows.WorkerSpec{WorkerID: "../etc/passwd"}))
}

func TestConcurrentEventsAreWholeLines(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				require.NoError(t, s.Append(Event{Timestamp: time.Now(), Type: "worker_started", Source: "test",
					Data: map[string]any{"g": g, "i": i, "pad": string(make([]byte, 3000))}}))
			}
		}()
	}
	wg.Wait()
	f, err := os.Open(filepath.Join(s.Dir, "dashboard-events.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		var e Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "line %d is whole JSON", lines)
		lines++
	}
	require.Equal(t, 2000, lines)
}

// token-budget.json keeps the old scripts' fields and gains the pools.
func TestBudgetFileKeepsItsFieldsAndGainsPools(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	v := workflows.BudgetView{Total: 1000, Used: 300, Available: 700,
		Allocations: []workflows.WorkerAllocation{{WorkerID: "worker-fix-1", Amount: 300, Pool: "team-a"}},
		Pools:       []workflows.PoolView{{Name: "team-a", Configured: true, Settings: workflows.PoolSettings{Quota: 200}, Held: 300, Borrowed: 100, Workers: 1}}}
	require.NoError(t, s.WriteBudget(v, time.Now()))
	data, err := os.ReadFile(filepath.Join(s.Dir, "token-budget.json"))
	require.NoError(t, err)
	var got struct {
		TotalBudget int64 `json:"total_budget"`
		Available   int64 `json:"available"`
		Used        int64 `json:"used"`
		Allocations []struct {
			WorkerID string `json:"worker_id"`
			Amount   int64  `json:"amount"`
		} `json:"allocations"`
		Pools []struct {
			Name     string `json:"name"`
			Held     int64  `json:"held"`
			Borrowed int64  `json:"borrowed"`
			Settings struct {
				Quota int64 `json:"quota"`
			} `json:"settings"`
		} `json:"pools"`
	}
	require.NoError(t, json.Unmarshal(data, &got))
	require.Equal(t, int64(1000), got.TotalBudget)
	require.Equal(t, int64(700), got.Available)
	require.Equal(t, int64(300), got.Used)
	require.Equal(t, "worker-fix-1", got.Allocations[0].WorkerID)
	require.Len(t, got.Pools, 1)
	require.Equal(t, "team-a", got.Pools[0].Name)
	require.Equal(t, int64(200), got.Pools[0].Settings.Quota)
	require.Equal(t, int64(100), got.Pools[0].Borrowed)

	require.NoError(t, s.WriteBudget(workflows.BudgetView{Total: 10, Available: 10}, time.Now()))
	data, err = os.ReadFile(filepath.Join(s.Dir, "token-budget.json"))
	require.NoError(t, err)
	require.Contains(t, string(data), `"pools": []`, "the key is there when there are no pools")
}

func TestOpenRefusesAFolderItCannotUse(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err := Open(filepath.Join(file, "coordination"))
	require.ErrorContains(t, err, "not a directory")
}

func TestEventsOfTransitions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	trs := []workflows.Transition{
		{Status: workflows.StatusPending, At: t0}, {Status: workflows.StatusRunning, At: t0.Add(time.Second)},
		{Status: workflows.StatusFailed, At: t0.Add(2 * time.Second)}, {Status: workflows.StatusPending, At: t0.Add(2 * time.Second)},
		{Status: workflows.StatusRunning, At: t0.Add(3 * time.Second)}, {Status: workflows.StatusFailed, At: t0.Add(4 * time.Second)},
		{Status: workflows.StatusZombie, At: t0.Add(4 * time.Second)}, {Status: workflows.StatusCleanedUp, At: t0.Add(4 * time.Second)},
	}
	m := &Mirror{state: mirrorState{Emitted: map[string]emitted{}}}
	spec := workflows.WorkerSpec{WorkerID: "worker-fix-1", CreatedAt: t0, Transitions: trs[:2]}
	var types []string
	for _, e := range m.newEvents(spec) {
		types = append(types, e.Type)
	}
	spec.Transitions = trs
	for _, e := range m.newEvents(spec) {
		types = append(types, e.Type)
	}
	require.Equal(t, []string{"worker_spawned", "worker_started", "worker_failed", "worker_restarted", "worker_failed",
		"zombie_detected", "zombie_cleanup_completed"}, types)
	require.Empty(t, m.newEvents(spec), "nothing twice")

	spec.Heartbeat.Alert = workflows.AlertWarning
	require.Equal(t, "heartbeat_warning", m.newEvents(spec)[0].Type)
	require.Empty(t, m.newEvents(spec), "an alert is reported once")
	spec.Heartbeat.Alert = workflows.AlertCritical
	require.Equal(t, "heartbeat_critical", m.newEvents(spec)[0].Type)
}

// TestBudgetAlertEvents: each crossing the ledger reports becomes one
// budget_alert event, for the root and for each pool, never twice.
func TestBudgetAlertEvents(t *testing.T) {
	m := &Mirror{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := workflows.BudgetView{
		Alert: &workflows.AlertView{Message: "the root holds 80 of 100 (80%), at or above its alert threshold of 75%", Since: t0, Seq: 1},
		Pools: []workflows.PoolView{{Name: "team-a", Alert: &workflows.AlertView{Message: "pool team-a holds 8 of 10 (80%)", Since: t0, Seq: 3}}, {Name: "team-b"}},
	}
	events := m.budgetAlerts(v)
	require.Len(t, events, 2)
	require.Equal(t, "budget_alert", events[0].Type)
	require.Equal(t, "root", events[0].Data.(map[string]any)["pool"])
	require.Equal(t, fmt.Sprintf("evt-budget-alert-team-a-%d", t0.UnixNano()), events[1].ID)
	require.Equal(t, "pool team-a holds 8 of 10 (80%)", events[1].Data.(map[string]any)["message"])
	require.Empty(t, m.budgetAlerts(v), "an alert is reported once")
	v.Pools[0].Alert = &workflows.AlertView{Message: "again", Since: t0.Add(time.Hour), Seq: 4}
	again := m.budgetAlerts(v)
	require.Len(t, again, 1, "the next crossing is a new event")
	require.Equal(t, "again", again[0].Data.(map[string]any)["message"])
	v.Pools[0].Alert = &workflows.AlertView{Message: "a ledger made anew", Since: t0.Add(2 * time.Hour), Seq: 1}
	require.Len(t, m.budgetAlerts(v), 1, "a new alert though its number starts again")

	// Raised and re-armed between two syncs: the ledger's last alerts say
	// so, and it is written, marked cleared, also for a pool on the
	// defaults that no longer shows among the pools; the raised one
	// still shows and was written already.
	m.lastSync = t0.Add(150 * time.Minute)
	v.Pools[0].Alert = nil
	v.LastAlerts = map[string]workflows.AlertView{
		"root":   *v.Alert,
		"team-a": {Message: "brief", Since: t0.Add(3 * time.Hour), Seq: 2},
		"team-z": {Message: "gone", Since: t0.Add(3 * time.Hour), Seq: 1},
		"team-y": {Message: "long ago", Since: t0, Seq: 1},
		"team-x": {Since: t0.Add(3 * time.Hour), Seq: 1},
	}
	brief := m.budgetAlerts(v)
	require.Len(t, brief, 2, "not the root's (written), nor one from before the last sync, nor one without its message (re-armed by an earlier release)")
	require.Equal(t, map[string]any{"pool": "team-a", "message": "brief", "cleared": true}, brief[0].Data)
	require.Equal(t, map[string]any{"pool": "team-z", "message": "gone", "cleared": true}, brief[1].Data)
	require.Empty(t, m.budgetAlerts(v))

	// A mirror that has not synced before in this process writes no
	// cleared alert: it would be one nobody mirrored, however old.
	fresh := &Mirror{}
	v.LastAlerts = map[string]workflows.AlertView{"team-w": {Message: "while down", Since: t0.Add(4 * time.Hour), Seq: 1}}
	v.Alert = nil
	v.Pools = nil
	require.Empty(t, fresh.budgetAlerts(v))
}

// TestArchivalRacingTheMirror moves specs to archived/ while the mirror
// keeps rewriting them as completed: each ends in exactly one folder.
func TestArchivalRacingTheMirror(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	for i := 0; i < 50; i++ {
		spec := workflows.WorkerSpec{WorkerID: fmt.Sprintf("worker-fix-r%d", i), Status: workflows.StatusCompleted}
		require.NoError(t, s.WriteSpec(spec))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = s.WriteSpec(spec) }()
		go func() { defer wg.Done(); require.NoError(t, s.MoveArchived(spec.WorkerID)) }()
		wg.Wait()
		require.NoError(t, s.WriteSpec(spec))
		require.Equal(t, "archived", s.SpecFolder(spec.WorkerID))
		_, err := os.Stat(filepath.Join(s.Dir, "worker-specs", "completed", spec.WorkerID+".json"))
		require.True(t, os.IsNotExist(err), "%s is in two folders", spec.WorkerID)
	}
}
