package activities

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeSweeper owns the processes of the workers in owned.
type fakeSweeper struct{ owned map[string]bool }

func (f *fakeSweeper) Zombies(context.Context) ([]string, error) { return nil, nil }
func (f *fakeSweeper) CleanupZombie(context.Context, string) (string, error) {
	return "", nil
}
func (f *fakeSweeper) Hosts(context.Context) ([]string, error) { return nil, nil }
func (f *fakeSweeper) OwnsProcess(_ context.Context, workerID, _ string, _ int) (bool, error) {
	return f.owned[workerID], nil
}
func (f *fakeSweeper) Recalc(context.Context) ([]Released, error) {
	return []Released{{WorkerID: "worker-ghost-1", Amount: 5, Reason: "no lifecycle"}}, nil
}

func TestSweepStopsOnlyOrphansAndRecordsIt(t *testing.T) {
	a := newProcActivities(t, map[string][]string{"sleep": {"sleep", "30"}})
	a.StateDir = t.TempDir()
	sweeper := &fakeSweeper{owned: map[string]bool{"worker-sleep-own1": true}}
	a.Owners = sweeper
	var events []string
	a.Event = func(typ string, data map[string]any) { events = append(events, typ+" "+data["worker_id"].(string)) }
	shared := &SharedActivities{Sweeper: sweeper, Event: a.Event}
	env := newActivityEnv(a)
	owned := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-own1", WorkerType: "sleep", TaskID: "task-1"})
	orphan := mustStart(t, env, a, StartInput{WorkerID: "worker-sleep-orph1", WorkerType: "sleep", TaskID: "task-1"})

	v, err := env.ExecuteActivity(a.StopOrphans)
	require.NoError(t, err)
	var orphans []Orphan
	require.NoError(t, v.Get(&orphans))
	require.Equal(t, []Orphan{{WorkerID: "worker-sleep-orph1", Host: "test-host", PID: orphan.PID, Stopped: true}}, orphans)
	require.Eventually(t, func() bool {
		running, _ := sameProcessRunning(orphan.PID, orphan.StartTicks)
		return !running
	}, 5*time.Second, 20*time.Millisecond)
	running, err := sameProcessRunning(owned.PID, owned.StartTicks)
	require.NoError(t, err)
	require.True(t, running, "a process its lifecycle owns is left alone")

	_, err = newActivityEnv(shared).ExecuteActivity(shared.RecalcLedger)
	require.NoError(t, err)
	require.Equal(t, []string{"orphan_process_stopped worker-sleep-orph1", "budget_released worker-ghost-1"}, events)
}
