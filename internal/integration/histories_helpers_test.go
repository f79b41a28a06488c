package integration

import (
	"bytes"
	"context"
	"syscall"
	"testing"

	"github.com/commit-relay/worker-lifecycle/workflows"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// Helpers of the append-only recorded histories (issue 13): the tests of
// histories_test.go and histories_versions_test.go assert on the history of
// one run and, with RECORD_HISTORIES=1, save it as a new file under
// testdata/histories. A file that exists already is never written again:
// the histories recorded from released code are what the replay test
// guards, so a re-recording must pick a new name.

// runHistory is the history of one run, fetched from the server.
type runHistory struct {
	workflowID, runID string
	events            []*historypb.HistoryEvent
}

// fetchHistory reads the whole history of a run (runID "" is the latest).
func fetchHistory(t *testing.T, workflowID, runID string) runHistory {
	t.Helper()
	it := h.client.GetWorkflowHistory(context.Background(), workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	rh := runHistory{workflowID: workflowID, runID: runID}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		rh.events = append(rh.events, ev)
	}
	require.NotEmpty(t, rh.events, "history of %s run %s", workflowID, runID)
	return rh
}

// count is how many events of the type the history holds.
func (rh runHistory) count(et enumspb.EventType) int {
	n := 0
	for _, ev := range rh.events {
		if ev.EventType == et {
			n++
		}
	}
	return n
}

// last is the type of the history's last event: how the run closed.
func (rh runHistory) last() enumspb.EventType { return rh.events[len(rh.events)-1].EventType }

// signals counts the signals of the given name.
func (rh runHistory) signals(name string) int {
	n := 0
	for _, ev := range rh.events {
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.SignalName == name {
			n++
		}
	}
	return n
}

// sentSignals counts the signals of the given name the run sent to
// workflowID.
func (rh runHistory) sentSignals(workflowID, name string) int {
	n := 0
	for _, ev := range rh.events {
		if a := ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); a != nil &&
			a.SignalName == name && a.WorkflowExecution.GetWorkflowId() == workflowID {
			n++
		}
	}
	return n
}

// refundedBySignal requires the run to have given its reservation back
// once, with the ledger's release signal (sent by a local activity in a
// lean run, by the workflow before it) and no release update.
func (rh runHistory) refundedBySignal(t *testing.T) {
	t.Helper()
	require.Equal(t, 1, rh.sentSignals(workflows.LedgerWorkflowID, workflows.SignalRelease)+len(rh.localActivities(t, "ReleaseBySignal")),
		"one release signal to the ledger")
	require.Empty(t, rh.activities("ReleaseBudget"), "no release update")
}

// localActivities lists the markers of the local activities of the given
// type the run recorded.
func (rh runHistory) localActivities(t *testing.T, activityType string) []*historypb.MarkerRecordedEventAttributes {
	t.Helper()
	var out []*historypb.MarkerRecordedEventAttributes
	for _, ev := range rh.events {
		m := ev.GetMarkerRecordedEventAttributes()
		if m == nil || m.MarkerName != "LocalActivity" {
			continue
		}
		var data struct{ ActivityType string }
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(m.Details["data"], &data))
		if data.ActivityType == activityType {
			out = append(out, m)
		}
	}
	return out
}

// activities lists the scheduled activities of the given type.
func (rh runHistory) activities(activityType string) []*historypb.ActivityTaskScheduledEventAttributes {
	var out []*historypb.ActivityTaskScheduledEventAttributes
	for _, ev := range rh.events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.GetName() == activityType {
			out = append(out, a)
		}
	}
	return out
}

// versions returns the GetVersion markers of the history: change id to
// version.
func (rh runHistory) versions(t *testing.T) map[string]int {
	t.Helper()
	return versionMarkers(t, rh.events)
}

func versionMarkers(t *testing.T, events []*historypb.HistoryEvent) map[string]int {
	t.Helper()
	m, err := workflows.VersionMarkers(events)
	require.NoError(t, err)
	return m
}

// runChain returns the histories of every run of a workflow, the first run
// first, following each continue-as-new to the run it started.
func runChain(t *testing.T, workflowID string) []runHistory {
	t.Helper()
	desc, err := h.client.DescribeWorkflowExecution(context.Background(), workflowID, "")
	require.NoError(t, err)
	var chain []runHistory
	for runID := desc.WorkflowExecutionInfo.FirstRunId; runID != ""; {
		require.Less(t, len(chain), 1000, "runs of %s", workflowID)
		rh := fetchHistory(t, workflowID, runID)
		chain = append(chain, rh)
		runID = ""
		if a := rh.events[len(rh.events)-1].GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			runID = a.NewExecutionRunId
		}
	}
	return chain
}

// currentRunID is the ID of the workflow's latest run.
func currentRunID(t *testing.T, workflowID string) string {
	t.Helper()
	desc, err := h.client.DescribeWorkflowExecution(context.Background(), workflowID, "")
	require.NoError(t, err)
	return desc.WorkflowExecutionInfo.Execution.RunId
}

// leanVersions are the version markers of every lifecycle run of this
// code: lean-lifecycle alone, which implies every other change of the
// lifecycle, those a scenario takes included.
func leanVersions() map[string]int {
	return map[string]int{workflows.VersionLeanLifecycle: 1}
}

// leanVersionsWithEvents are those of a lean run that raised events (a
// zombie, a failed cleanup, a failed end), whose own marker, fleet-events,
// is asked only where one is raised.
func leanVersionsWithEvents() map[string]int {
	return map[string]int{workflows.VersionLeanLifecycle: 1, workflows.VersionFleetEvents: 1}
}

// leanVersionsWithZombie are those of a lean run that made a zombie of a
// worker whose host had relayed nothing: its backstop asked the host first
// (ask-host-first, asked only there).
func leanVersionsWithZombie() map[string]int {
	v := leanVersionsWithEvents()
	v[workflows.VersionAskHostFirst] = 1
	return v
}

// recordRun saves the history of one run (saveRun) when RECORD_HISTORIES
// is set, and checks the file holds the same events as the run.
func recordRun(t *testing.T, name string, rh runHistory) {
	t.Helper()
	out, err := h.saveRun(name, rh.workflowID, rh.runID)
	require.NoError(t, err)
	if out == nil {
		return
	}
	hist, err := client.HistoryFromJSON(bytes.NewReader(out), client.HistoryJSONOptions{})
	require.NoError(t, err)
	require.Len(t, hist.Events, len(rh.events), "the recorded file holds the run's whole history")
	require.Equal(t, rh.last(), hist.Events[len(hist.Events)-1].EventType)
}

// decodeInput decodes the first payload of a continue-as-new or start input.
func decodeInput[T any](t *testing.T, rh runHistory) T {
	t.Helper()
	var v T
	for _, ev := range rh.events {
		if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(a.Input, &v))
			return v
		}
	}
	t.Fatalf("run %s did not continue as new", rh.runID)
	return v
}

// spawnOnOwnHost starts a worker program for host and a sleeper pinned to
// it, for a test that takes the host away: the host counts as lost 3s after
// its queue goes unpolled, while the watch's own heartbeat timeout (2m)
// stays out of the way. Both the program and the worker's processes are
// gone after the test.
func spawnOnOwnHost(t *testing.T, host, taskID string, extra ...string) (id string, pid int) {
	t.Helper()
	require.NoError(t, h.startWorker(host))
	t.Cleanup(func() { h.stopWorker(host, syscall.SIGTERM) })
	id = newID("sleeper")
	h.starterOK(t, append([]string{"spawn", "--type", "sleeper-worker", "--task-id", taskID, "--master", "cleanup-master",
		"--worker-id", id, "--host", host, "--host-loss-after", "3s", "--watch-heartbeat", "2m"}, extra...)...)
	t.Cleanup(func() { killAll(workerProcesses(id)) })
	return id, h.status(t, id).PID
}
