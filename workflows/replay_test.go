package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// TestReplayRecordedHistories replays every history recorded from the real
// system (`make replay-record`). A change to the workflows that would break
// the lifecycles already running fails here; such a change needs
// workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "histories", "*.json"))
	require.NoError(t, err)
	// The paths a lifecycle can take, and the ledger, must all be covered.
	for _, want := range []string{"lifecycle-shutdown", "lifecycle-zombie", "lifecycle-budget-refused",
		"lifecycle-crash", "lifecycle-spawn-failed", "lifecycle-kill", "lifecycle-restarts", "lifecycle-host-lost",
		"budget-ledger", "restart-breaker", "archival", "sweep",
		// Issue 13, item 7 (TestRecordedHistoryEvidence).
		"lifecycle-continue-as-new", "lifecycle-continue-as-new-last-run", "ledger-continue-as-new",
		"lifecycle-cancelled-cleanup-v1", "lifecycle-cancelled-cleanup-v0", "ledger-cancel-v1", "ledger-cancel-v0",
		"lifecycle-cancel", "lifecycle-zombie-retries", "lifecycle-output-heartbeats", "lifecycle-escalated-stop",
		"lifecycle-custom-limits",
		// The second release: limits frozen at the first run, and the
		// branches of its versions (TestRecordedHistoryEvidence).
		"lifecycle-shutdown-r2", "lifecycle-continue-as-new-r2", "lifecycle-continue-as-new-last-run-r2",
		"lifecycle-cancelled-cleanup-v1-r2", "lifecycle-partial-limits", "lifecycle-partial-limits-r2",
		"lifecycle-cancel-during-cleanup-wait-v0", "lifecycle-cancel-during-cleanup-wait-v1-r2",
		// The third release: the release signal and the restart's
		// recheck (their version 0 is every earlier file).
		"lifecycle-shutdown-r3", "lifecycle-restarts-r3", "lifecycle-cancel-r3", "ledger-continue-as-new-r3",
		// The fourth release: reservations by signal, the budget queue
		// (version 0 is every earlier file).
		"lifecycle-shutdown-r4", "lifecycle-queued-r4", "lifecycle-queued-shutdown-r4", "lifecycle-queue-timeout-r4",
		"ledger-queue-r4", "ledger-continue-as-new-r4", "ledger-cancel-v1-r4",
		// The fifth release: budget pools (version budget-pools on the
		// lifecycle; with no pool set the ledger decides as the fourth
		// did, which every earlier ledger file proves).
		"lifecycle-pool-queued-r5", "ledger-pools-r5", "ledger-windows-r5",
		// The sixth release: the ask update (version reserve-ask).
		"lifecycle-shutdown-r6", "lifecycle-budget-refused-r6", "lifecycle-queued-r6", "lifecycle-queued-shutdown-r6",
		"lifecycle-queue-timeout-r6", "lifecycle-zombie-r6", "ledger-queue-r6",
		// The seventh release: ends judged by exit rules on the host
		// (ExitStatus.Action), under a monitor.
		"lifecycle-exit-on-after-restart-r7", "lifecycle-exit3-on-after-restart-r7", "lifecycle-lost-not-restarted-r7",
		// ... as its first recording had them (f4825bc), before they were
		// recorded again under the exit-rules marker of the landed code
		// (the -r7 files): lifecycles of either may be running.
		"lifecycle-exit-on-after-restart-r7a", "lifecycle-exit3-on-after-restart-r7a", "lifecycle-lost-not-restarted-r7a",
		// The eighth: a lost host, and heartbeats applied after
		// supervision (drain-after-supervision, heartbeat-process).
		"lifecycle-host-lost-r8", "lifecycle-last-word-r8", "budget-ledger-r8",
		// ... one deadline timer (every -r8 lifecycle file that supervises),
		// and a zombie that continues as new (zombie-continue-as-new).
		"lifecycle-zombie-continue-as-new-r8", "lifecycle-zombie-continued-r8", "lifecycle-zombie-retries-r8",
		// ... and the lean lifecycle (lean-lifecycle), which implies them.
		"lifecycle-lean-r8", "lifecycle-lean-zombie-retries-r8", "lifecycle-lean-zombie-continue-as-new-r8",
		"lifecycle-lean-zombie-continued-r8", "lifecycle-cancelled-cleanup-v1-r8",
		// ... and heartbeats relayed by the host (host-heartbeat): a
		// first, a keepalive, a rejected one, the host's report of silence.
		"lifecycle-host-heartbeat-r8",
		// ... and a reservation of a worker whose release waited in the
		// same workflow task (release-before-reserve, on the ledger).
		"ledger-release-before-reserve-r8",
		// ... and the fleet's event log (fleet-events): a zombie's events,
		// and the log that took them.
		"lifecycle-zombie-events-r8", "fleet-events-r8",
		// ... and a backstop armed again by each relay (relay-rearm): an
		// agent heard only through its host, whose worker program was
		// killed and started again, and a master's signal.
		"lifecycle-host-restart-r8",
		// ... and backstops that asked a host which had relayed nothing
		// (ask-host-first): one held nothing (a sleeper, the zombie the
		// lifecycle's own), one did not answer (its worker program gone).
		"lifecycle-custom-limits-r8", "lifecycle-lean-zombie-asked-host-r8"} {
		require.Contains(t, files, filepath.Join("..", "testdata", "histories", want+".json"))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			replayHistory(t, file)
		})
	}
}

// replayHistory replays a recorded history as the worker program would:
// under the workflow ID it ran with, which a lifecycle's lease (and so
// its check that an answer of the ledger is its own) is made of. The
// replayer's default ID ("ReplayId") would make every answer look like
// another lifecycle's.
func replayHistory(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	replayer := worker.NewWorkflowReplayer()
	Register(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistoryWithOptions(nil, hist, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: recordedWorkflowID(t, hist.Events[0])},
	}))
}

// recordedWorkflowID is the workflow ID a history ran under, from its start:
// a lifecycle's follows from the worker id in its input, the ledger's is
// fixed. Others did not depend on it; they keep the replayer's default.
func recordedWorkflowID(t *testing.T, first *historypb.HistoryEvent) string {
	started := first.GetWorkflowExecutionStartedEventAttributes()
	require.NotNil(t, started, "a history starts with its workflow's start")
	switch started.GetWorkflowType().GetName() {
	case WorkflowTypeLifecycle:
		var st LifecycleState
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), &st))
		return WorkflowID(st.Request.WorkerID)
	case WorkflowTypeLedger:
		return LedgerWorkflowID
	}
	return "ReplayId"
}

// TestReplayWithChangedDefaults replays every history after the defaults
// changed in every way that could alter a decision: a lifecycle keeps the
// limits it started with, so none may notice.
func TestReplayWithChangedDefaults(t *testing.T) {
	saved := defaultLimits
	t.Cleanup(func() { defaultLimits = saved })
	defaultLimits = Limits{HeartbeatWarning: time.Millisecond, HeartbeatCritical: 2 * time.Millisecond,
		ZombieAfter: 3 * time.Millisecond, IdleAfter: time.Millisecond, ShutdownGrace: time.Millisecond,
		MaxSignalsPerRun: 1, WatchHeartbeat: time.Millisecond, HostLossAfter: time.Millisecond,
		SampleEvery: time.Millisecond, RestartDelay: time.Hour, RestartMaxDelay: time.Hour, HealthyRun: time.Millisecond}
	files, err := filepath.Glob(filepath.Join("..", "testdata", "histories", "*.json"))
	require.NoError(t, err)
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			replayHistory(t, file)
		})
	}
}

// TestRecordedHistoryEvidence checks that the histories recorded for issue
// 13 (internal/integration/histories*_test.go) hold the path they are named
// after: how the run ended, whether it was cancelled, and which GetVersion
// branch it took. A -v1 file carries the version marker; a -v0 file, recorded
// from the code before the GetVersion call, must not.
func TestRecordedHistoryEvidence(t *testing.T) {
	const (
		completed = enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
		continued = enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
		canceled  = enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED
	)
	for _, tc := range []struct {
		file      string
		last      enumspb.EventType
		cancelled bool
		versions  map[string]int
		// started is "first" for a lifecycle's first run, "continued" for
		// a run started by a continue-as-new, "" for either.
		started string
		signal  string // a signal the run must have received
		answers int    // how many of signal, when not 0
		// queued: a ledger run handed a queue, which sent grants.
		queued bool
		sent   string // a signal the run must have sent to the ledger
		// updates counts the accepted updates of each name the run must
		// have taken.
		updates map[string]int
		timer   bool // the run slept on a timer (a spend window's end)
		// inCall: the ledger's answer came in the ask update's result, so
		// the lifecycle received no answer by signal before it began.
		inCall bool
	}{
		{file: "lifecycle-continue-as-new", last: continued, started: "first", signal: SignalHeartbeat},
		{file: "lifecycle-continue-as-new-last-run", last: completed, started: "continued"},
		{file: "ledger-continue-as-new", last: continued},
		{file: "lifecycle-cancelled-cleanup-v1", last: completed, cancelled: true, versions: map[string]int{VersionCancelledCleanupRetries: 1}},
		{file: "lifecycle-cancelled-cleanup-v0", last: completed, cancelled: true},
		{file: "ledger-cancel-v1", last: continued, cancelled: true, versions: map[string]int{VersionLedgerSurvivesCancel: 1}},
		{file: "ledger-cancel-v0", last: canceled, cancelled: true},
		{file: "lifecycle-cancel", last: completed, cancelled: true},
		{file: "lifecycle-zombie-retries", last: completed},
		{file: "lifecycle-output-heartbeats", last: completed, signal: SignalOutputHeartbeat},
		{file: "lifecycle-escalated-stop", last: completed},
		{file: "lifecycle-custom-limits", last: completed},
		// Every first run of the second release resolves its limits once
		// (frozen-limits); a run it handed them to records no marker.
		{file: "lifecycle-shutdown-r2", last: completed, started: "first", versions: map[string]int{VersionFrozenLimits: 1}},
		{file: "lifecycle-continue-as-new-r2", last: continued, started: "first", signal: SignalHeartbeat, versions: map[string]int{VersionFrozenLimits: 1}},
		{file: "lifecycle-continue-as-new-last-run-r2", last: completed, started: "continued"},
		// Alerts set, the zombie limit from the defaults: a replay must not
		// validate it against today's.
		{file: "lifecycle-partial-limits", last: completed, started: "first"},
		{file: "lifecycle-partial-limits-r2", last: completed, started: "first", versions: map[string]int{VersionFrozenLimits: 1}},
		// cancelled-cleanup-answer: v0 is lifecycle-cancelled-cleanup-v1.
		{file: "lifecycle-cancelled-cleanup-v1-r2", last: completed, cancelled: true,
			versions: map[string]int{VersionFrozenLimits: 1, VersionCancelledCleanupRetries: 1, VersionCancelledCleanupAnswer: 1}},
		{file: "lifecycle-cancel-during-cleanup-wait-v0", last: completed, cancelled: true},
		{file: "lifecycle-cancel-during-cleanup-wait-v1-r2", last: completed, cancelled: true,
			versions: map[string]int{VersionFrozenLimits: 1, VersionCancelDuringCleanupWait: 1, VersionCancelledCleanupRetries: 1, VersionCancelledCleanupAnswer: 1}},
		// The third release: a refund of a known reservation is a release
		// signal; a restart rechecks its reservation. Version 0 of both is
		// lifecycle-shutdown-r2 and lifecycle-restarts-r2.
		{file: "lifecycle-shutdown-r3", last: completed, started: "first", sent: SignalRelease,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1}},
		{file: "lifecycle-restarts-r3", last: completed, started: "first", sent: SignalRelease,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionRecheckReservation: 1}},
		{file: "lifecycle-restarts-r2", last: completed, started: "first", versions: map[string]int{VersionFrozenLimits: 1}},
		// A ledger run that took releases as signals as well as updates.
		{file: "ledger-continue-as-new-r3", last: continued, signal: SignalRelease},
		// The fourth release: a lifecycle asks for its budget with a
		// signal and gets the ledger's answer; a queued one waits for the
		// grant, or withdraws with a release signal when stopped or timed
		// out. Version 0 is lifecycle-shutdown-r3.
		{file: "lifecycle-shutdown-r4", last: completed, started: "first", sent: SignalRelease, signal: SignalBudgetAnswer,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionReserveSignal: 1}},
		{file: "lifecycle-queued-r4", last: completed, started: "first", sent: SignalRelease, signal: SignalBudgetAnswer, answers: 2,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionReserveSignal: 1}},
		{file: "lifecycle-queued-shutdown-r4", last: completed, started: "first", sent: SignalRelease, signal: SignalBudgetAnswer, answers: 1,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReserveSignal: 1}},
		{file: "lifecycle-queue-timeout-r4", last: completed, started: "first", sent: SignalRelease, signal: SignalBudgetAnswer, answers: 1,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReserveSignal: 1}},
		// A ledger run continued with a queue, whose releases admitted the
		// queued requests and granted them by signal.
		{file: "ledger-queue-r4", started: "continued", signal: SignalRelease, queued: true},
		// ledger-closing: a run closes on a disconnected context and hands
		// over the signals that keep coming. Version 0 is every earlier
		// ledger file.
		{file: "ledger-continue-as-new-r4", last: continued, signal: SignalReserve, versions: map[string]int{VersionLedgerClosing: 1}},
		{file: "ledger-cancel-v1-r4", last: continued, cancelled: true,
			versions: map[string]int{VersionLedgerSurvivesCancel: 1, VersionLedgerClosing: 1}},
		// The fifth release: a lifecycle queued in a pool, admitted by the
		// refund of another pool's borrowed budget; a ledger run that set
		// pools (bad settings were refused unwritten), held and drained
		// one, and deleted both.
		{file: "lifecycle-pool-queued-r5", last: completed, started: "first", sent: SignalRelease, signal: SignalBudgetAnswer, answers: 2,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionReserveSignal: 1, VersionPools: 1}},
		{file: "ledger-pools-r5", signal: SignalReserve, updates: map[string]int{UpdatePoolSet: 3, UpdatePoolDelete: 2}},
		// A ledger run with a pool's spend window: its timer, the spend a
		// release settled, an alert and a request refused and queued.
		{file: "ledger-windows-r5", signal: SignalRelease, timer: true, updates: map[string]int{UpdatePoolSet: 1}},
		// The sixth release: a lifecycle asks with the ledger's ask update
		// and takes the answer from its result (reserve-ask); a queued one
		// still gets its grant by signal. Version 0 is every -r5 and -r4
		// lifecycle file.
		{file: "lifecycle-shutdown-r6", last: completed, started: "first", sent: SignalRelease, inCall: true,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionReserveSignal: 1, VersionPools: 1, VersionReserveAsk: 1}},
		{file: "lifecycle-budget-refused-r6", last: completed, started: "first", inCall: true,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReserveSignal: 1, VersionPools: 1, VersionReserveAsk: 1}},
		{file: "lifecycle-queued-r6", last: completed, started: "first", sent: SignalRelease, signal: SignalBudgetAnswer, answers: 1,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionReserveSignal: 1, VersionPools: 1, VersionReserveAsk: 1}},
		{file: "lifecycle-queued-shutdown-r6", last: completed, started: "first", sent: SignalRelease, inCall: true,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReserveSignal: 1, VersionPools: 1, VersionReserveAsk: 1}},
		{file: "lifecycle-zombie-r6", last: completed, started: "first", sent: SignalRelease, inCall: true, signal: SignalHeartbeat, answers: 1,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReleaseSignal: 1, VersionReserveSignal: 1, VersionPools: 1, VersionReserveAsk: 1}},
		{file: "lifecycle-queue-timeout-r6", last: completed, started: "first", sent: SignalRelease, inCall: true,
			versions: map[string]int{VersionFrozenLimits: 1, VersionReserveSignal: 1, VersionPools: 1, VersionReserveAsk: 1}},
		// The ledger run of 200 spawns that waited for a budget for 10:
		// every request an ask, the queued ones granted by signal at the
		// refunds.
		{file: "ledger-queue-r6", started: "first", signal: SignalRelease, updates: map[string]int{UpdateAsk: 204, UpdateSetTotal: 3}},
		// Two releases waiting when two reservations of the same workers
		// came (release-before-reserve): the reservations waited for them,
		// and were granted.
		// A zombie that raised its events (zombie_detected, then
		// worker_failed), and the event log that took them.
		{file: "lifecycle-zombie-events-r8", last: completed, started: "first", versions: map[string]int{VersionLeanLifecycle: 1, VersionFleetEvents: 1}},
		{file: "fleet-events-r8", started: "first", signal: SignalEvent},
		// Relays that armed the backstop again (relay-rearm), beside a
		// master's heartbeat signal; it ended by its shutdown.
		{file: "lifecycle-host-restart-r8", last: completed, started: "first",
			versions: map[string]int{VersionLeanLifecycle: 1, VersionRelayRearm: 1}},
		// Backstops that asked a host which had relayed nothing
		// (ask-host-first) before their zombies.
		{file: "lifecycle-custom-limits-r8", last: completed, started: "first",
			versions: map[string]int{VersionLeanLifecycle: 1, VersionFleetEvents: 1, VersionAskHostFirst: 1}},
		{file: "lifecycle-lean-zombie-asked-host-r8", last: completed, started: "first",
			versions: map[string]int{VersionLeanLifecycle: 1, VersionFleetEvents: 1, VersionAskHostFirst: 1}},
		{file: "ledger-release-before-reserve-r8", started: "first", signal: SignalRelease, answers: 2,
			updates: map[string]int{UpdateReserve: 2, UpdateAsk: 2}, versions: map[string]int{VersionReleaseBeforeReserve: 1}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			hist := recordedHistory(t, tc.file)
			events := hist.Events
			if tc.last != enumspb.EVENT_TYPE_UNSPECIFIED {
				require.Equal(t, tc.last, events[len(events)-1].EventType, "how the run ended")
			}
			started := events[0].GetWorkflowExecutionStartedEventAttributes()
			require.NotNil(t, started)
			switch tc.started {
			case "first":
				require.Empty(t, started.ContinuedExecutionRunId, "a first run")
			case "continued":
				require.NotEmpty(t, started.ContinuedExecutionRunId, "a run started by a continue-as-new")
			}
			cancelRequested, signals, sent := false, 0, 0
			for _, ev := range events {
				if s := ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); s != nil &&
					s.SignalName == tc.sent && s.WorkflowExecution.GetWorkflowId() == LedgerWorkflowID {
					sent++
				}
				cancelRequested = cancelRequested || ev.EventType == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
				if s := ev.GetWorkflowExecutionSignaledEventAttributes(); s != nil && s.SignalName == tc.signal {
					signals++
				}
			}
			require.Equal(t, tc.cancelled, cancelRequested, "cancel requested")
			if tc.inCall {
				for _, ev := range events {
					if s := ev.GetWorkflowExecutionSignaledEventAttributes(); s != nil {
						require.NotEqual(t, SignalBudgetAnswer, s.SignalName, "the answer came in the ask's result")
					}
				}
			}
			if tc.signal != "" {
				require.NotZero(t, signals, "signals %s", tc.signal)
			}
			if tc.answers != 0 {
				require.Equal(t, tc.answers, signals, "signals %s", tc.signal)
			}
			if tc.sent != "" {
				require.Equal(t, 1, sent, "%s signals sent to the ledger", tc.sent)
			}
			if tc.timer {
				timers := 0
				for _, ev := range events {
					if ev.EventType == enumspb.EVENT_TYPE_TIMER_STARTED {
						timers++
					}
				}
				require.NotZero(t, timers, "timers started")
			}
			if tc.updates != nil {
				accepted := map[string]int{}
				for _, ev := range events {
					if u := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); u != nil {
						if name := u.GetAcceptedRequest().GetInput().GetName(); tc.updates[name] > 0 {
							accepted[name]++
						}
					}
				}
				require.Equal(t, tc.updates, accepted, "accepted updates")
			}
			if tc.queued {
				var st LedgerState
				require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), &st))
				require.NotEmpty(t, st.Queue, "the run was handed a queue")
				grants := 0
				for _, ev := range events {
					if s := ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); s != nil && s.SignalName == SignalBudgetAnswer {
						grants++
					}
				}
				require.NotZero(t, grants, "answers sent")
			}
			want := tc.versions
			if want == nil {
				want = map[string]int{}
			}
			require.Equal(t, want, versionMarkers(t, events), "GetVersion markers")
		})
	}
}

// versionMarkers is VersionMarkers for a test.
func versionMarkers(t *testing.T, events []*historypb.HistoryEvent) map[string]int {
	t.Helper()
	m, err := VersionMarkers(events)
	require.NoError(t, err)
	return m
}

// The seventh release's files show what the exit rules did: the watch's
// result carries the host's judgement, and a fail or a lost end neither
// restarted nor told the breaker.
func TestRecordedHistoriesShowExitRules(t *testing.T) {
	for _, tc := range []struct {
		file, action, status string
	}{
		{"lifecycle-exit-on-after-restart-r7", "complete", string(StatusCompleted)},
		{"lifecycle-exit3-on-after-restart-r7", "fail", string(StatusCleanedUp)},
		{"lifecycle-lost-not-restarted-r7", "fail", string(StatusCleanedUp)},
	} {
		t.Run(tc.file, func(t *testing.T) {
			hist := recordedHistory(t, tc.file)
			dc := converter.GetDefaultDataConverter()
			scheduled := map[int64]string{}
			var ends []activities.ExitStatus
			starts := 0
			for _, ev := range hist.Events {
				if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
					scheduled[ev.EventId] = a.GetActivityType().GetName()
					require.NotEqual(t, "RecordFailure", a.GetActivityType().GetName(), "the breaker was told")
					if a.GetActivityType().GetName() == "StartProcess" {
						starts++
					}
				}
				if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.ScheduledEventId] == "WatchProcess" {
					var st activities.ExitStatus
					require.NoError(t, dc.FromPayloads(a.GetResult(), &st))
					ends = append(ends, st)
				}
			}
			require.Equal(t, 1, starts, "one process: not restarted")
			require.Len(t, ends, 1)
			require.Equal(t, tc.action, ends[0].Action)
			last := hist.Events[len(hist.Events)-1].GetWorkflowExecutionCompletedEventAttributes()
			require.NotNil(t, last)
			var spec WorkerSpec
			require.NoError(t, dc.FromPayloads(last.GetResult(), &spec))
			require.Equal(t, tc.status, string(spec.Status))
		})
	}
}

// recordedHistory reads testdata/histories/<name>.json.
func recordedHistory(t *testing.T, name string) *historypb.History {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "histories", name+".json"))
	require.NoError(t, err)
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	return hist
}

// The eighth release's last-word file shows the drain after supervision:
// the heartbeat the agent sent from its SIGTERM trap came after the stop
// began, named its process, and was counted; one naming another process
// was rejected.
func TestRecordedHistoryShowsTheLastWord(t *testing.T) {
	hist := recordedHistory(t, "lifecycle-last-word-r8")
	require.Equal(t, 1, versionMarkers(t, hist.Events)[VersionDrainAfterSupervision])
	require.Equal(t, 1, versionMarkers(t, hist.Events)[VersionHeartbeatProcess], "a heartbeat of another process was rejected")
	dc := converter.GetDefaultDataConverter()
	stopScheduled, lastWord := false, false
	for _, ev := range hist.Events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "StopProcess" {
			stopScheduled = true
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == SignalHeartbeat {
			var hb Heartbeat
			require.NoError(t, dc.FromPayloads(a.GetInput(), &hb))
			require.Regexp(t, `^[0-9a-f]{16}$`, hb.Process, "heartbeats name their process")
			if hb.TokensUsed == 77 {
				lastWord = stopScheduled
			}
		}
	}
	require.True(t, lastWord, "the last word came after the stop began")
	last := hist.Events[len(hist.Events)-1].GetWorkflowExecutionCompletedEventAttributes()
	require.NotNil(t, last)
	var spec WorkerSpec
	require.NoError(t, dc.FromPayloads(last.GetResult(), &spec))
	require.EqualValues(t, 77, spec.TokenBudget.Used)
	require.Equal(t, StatusCompleted, spec.Status)
}

// The eighth release's zombie files: the first run, in zombie with its
// host away and its signals spent, continued as new owing the stop (version
// zombie-continue-as-new); the next run, started from that state, stopped
// the process and ended cleaned up without a second refund. Both arm one
// deadline timer, for the zombie limit.
func TestRecordedZombieContinuesAsNew(t *testing.T) {
	first := recordedHistory(t, "lifecycle-zombie-continue-as-new-r8")
	require.Equal(t, 1, versionMarkers(t, first.Events)[VersionZombieContinueAsNew])
	require.Equal(t, 1, versionMarkers(t, first.Events)[VersionOneDeadlineTimer])
	dc := converter.GetDefaultDataConverter()
	can := first.Events[len(first.Events)-1].GetWorkflowExecutionContinuedAsNewEventAttributes()
	require.NotNil(t, can)
	var next LifecycleState
	require.NoError(t, dc.FromPayloads(can.GetInput(), &next))
	require.NotNil(t, next.Ending)
	require.Equal(t, []string{stepStopProcess}, next.Ending.Owed)
	require.Equal(t, StatusZombie, next.Spec.Status)
	require.EqualValues(t, 3, next.Spec.Heartbeat.Count, "the zombie's heartbeats were counted before it moved")

	second := recordedHistory(t, "lifecycle-zombie-continued-r8")
	last := second.Events[len(second.Events)-1].GetWorkflowExecutionCompletedEventAttributes()
	require.NotNil(t, last)
	var spec WorkerSpec
	require.NoError(t, dc.FromPayloads(last.GetResult(), &spec))
	require.Equal(t, StatusCleanedUp, spec.Status)
	require.Equal(t, ProcessStopped, spec.Cleanup.Process)
	for _, ev := range second.Events {
		if a := ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); a != nil {
			require.NotEqual(t, SignalRelease, a.GetSignalName(), "refunded once, by the first run")
		}
	}
}

// TestRecordedZombieRaisedItsEvents: the recorded zombie appended its two
// events with the RecordEvent local activity, and the recorded log holds
// events in order with their idempotency keys.
func TestRecordedZombieRaisedItsEvents(t *testing.T) {
	hist := recordedHistory(t, "lifecycle-zombie-events-r8")
	dc := converter.GetDefaultDataConverter()
	var kinds []EventKind
	for _, ev := range hist.Events {
		m := ev.GetMarkerRecordedEventAttributes()
		if m == nil || m.MarkerName != "LocalActivity" {
			continue
		}
		var data struct{ ActivityType string }
		require.NoError(t, dc.FromPayloads(m.Details["data"], &data))
		if data.ActivityType != "RecordEvent" {
			continue
		}
		kinds = append(kinds, "recorded")
	}
	require.Len(t, kinds, 2, "zombie_detected and worker_failed")

	log := recordedHistory(t, "fleet-events-r8")
	var seen []EventKind
	for _, ev := range log.Events {
		if s := ev.GetWorkflowExecutionSignaledEventAttributes(); s != nil && s.SignalName == SignalEvent {
			var e Event
			require.NoError(t, dc.FromPayloads(s.Input, &e))
			require.NotEmpty(t, e.ID)
			seen = append(seen, e.Kind)
		}
	}
	require.Contains(t, seen, EventZombie)
	require.Contains(t, seen, EventWorkerFailed)
}
