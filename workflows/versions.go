package workflows

import (
	"fmt"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
)

// The change IDs of the workflows' GetVersion calls. Each guards a fix so
// that runs recorded before it replay as they ran; testdata/histories holds
// both branches of each (docs/TESTING.md). Never rename one.
const (
	// VersionCancelledCleanupRetries: a cancelled lifecycle whose cleanup
	// fails keeps retrying on a disconnected context; before it, it ended in
	// zombie with its process running.
	VersionCancelledCleanupRetries = "cancelled-cleanup-retries"
	// VersionLedgerSurvivesCancel: a cancelled ledger continues as new with
	// its allocations; before it, the ledger run ended cancelled.
	VersionLedgerSurvivesCancel = "ledger-survives-cancel"
	// VersionFrozenLimits: a lifecycle resolves its limits once, at its
	// first run (resolveLimits).
	VersionFrozenLimits = "frozen-limits"
	// VersionCancelledCleanupAnswer: the cleanup update of a cancelled
	// lifecycle answers with the cleanup's result; before it, "canceled".
	VersionCancelledCleanupAnswer = "cancelled-cleanup-answer"
	// VersionCancelDuringCleanupWait: a lifecycle cancelled while it waits
	// in zombie to retry its cleanup retries at once and goes on retrying;
	// before it, it ended in zombie with its process left running.
	VersionCancelDuringCleanupWait = "cancel-during-cleanup-wait"
	// VersionReleaseSignal: a lifecycle gives back a reservation it knows
	// it holds with a signal to the ledger, and counts what it held as
	// refunded; before it, with the release update, whose answer read 0
	// when a retry reached a later ledger run.
	VersionReleaseSignal = "release-signal"
	// VersionRecheckReservation: a restart rechecks its reservation with
	// the ledger itself; before it, the repeated reservation was answered
	// from the server's update cache.
	VersionRecheckReservation = "recheck-reservation"
	// VersionReserveSignal: a lifecycle asks for its budget with a signal
	// to the ledger and waits for the ledger's answer, queued when it may
	// wait; before it, with the reserve update.
	VersionReserveSignal = "reserve-signal"
	// VersionLedgerClosing: a ledger run that closes for continue-as-new
	// does so on a disconnected context (a cancel then cannot end it) and
	// hands the signals that keep arriving to the next run instead of
	// applying them; before it, a cancel during the close ended the ledger
	// and its releases were applied in the closing run.
	VersionLedgerClosing = "ledger-closing"
	// VersionAdmitAfterStale: when a worker's new lifecycle drops its
	// stale queued request, the ledger admits what that request held
	// back at once; before it, they waited for the next refund.
	VersionAdmitAfterStale = "admit-after-stale"
	// VersionPools: a lifecycle reserves in a budget pool (its request's,
	// or its master's) and its spec names it; before it, in the root.
	VersionPools = "budget-pools"
	// VersionReserveAsk: a lifecycle asks for its budget with the ledger's
	// ask update, whose answer comes back in the activity's result, and
	// waits for a signalled answer (with its timer) only when it was
	// queued or the update could not be used; before it, by signal alone.
	VersionReserveAsk = "reserve-ask"
	// VersionIgnoreBound: an exit rule's ignore restarts at most
	// maxIgnoredRestarts times without a healthy run between them; before
	// it (r7), without a bound.
	VersionIgnoreBound = "ignore-bound"
	// VersionDrainAfterSupervision: the heartbeats that came while the
	// process was being stopped (an agent's last tokens_used, sent on its
	// SIGTERM), at the end of supervision or by the saga's stop, are
	// applied to it before the lifecycle restarts or refunds; before it
	// they waited for the next process, or were lost.
	VersionDrainAfterSupervision = "drain-after-supervision"
	// VersionHeartbeatProcess: a heartbeat that names another process
	// than the current one (Heartbeat.Process), or names none well, is
	// rejected; before it, the field was not looked at. Asked only of such
	// a heartbeat, so a history of a program that accepted one replays.
	VersionHeartbeatProcess = "heartbeat-process"
	// VersionOneDeadlineTimer: a running lifecycle arms one deadline timer,
	// for the zombie limit (or the idle or time limit when sooner), and its
	// spec carries the heartbeat clocks so that readers compute warning and
	// critical when they read it (WorkerSpec.AlertAt); before it, a timer
	// for each alert, which with the default limits fired about once per
	// heartbeat interval.
	VersionOneDeadlineTimer = "one-deadline-timer"
	// VersionZombieContinueAsNew: a zombie retrying its cleanup continues
	// as new after zombieRetriesPerRun tries in a run, when the signals
	// sent to it reach the run's bound or when the server suggests it,
	// and the next run goes on retrying (LifecycleState.Ending); before
	// it, one run retried until the server's history limits ended it.
	// Asked only where a run would move.
	VersionZombieContinueAsNew = "zombie-continue-as-new"
	// VersionLeanLifecycle: a lifecycle run asks this one version first
	// and, at 1, takes every other change of the lifecycle at its newest
	// without a marker of its own (lifecycle.version), reserves its budget
	// and picks its host with local activities, and leaves the pending
	// search attributes to the start that set them: a lifecycle without
	// heartbeats is at most 40 events and 5 workflow tasks. Before it, a
	// marker and a search-attribute upsert per change, an activity and a
	// workflow task for each of the two steps, and the pending upsert
	// again. Taken only while both the reserve signal and the ask update
	// are on (SetReserveBySignal, SetAskByUpdate), which it implies.
	VersionLeanLifecycle = "lean-lifecycle"
	// VersionHostHeartbeat: a supervised lifecycle takes heartbeats its
	// host relays (Heartbeat.Path host, activities.relayReason): a relayed
	// heartbeat counts from when the host received it, the host reports
	// the agent's silence at the zombie limit, the deadline timer is a
	// backstop one keepalive interval later, and the agent's last
	// heartbeat comes with the watch's result. Before it, the watch held
	// no heartbeats and every one was a signal as sent.
	VersionHostHeartbeat = "host-heartbeat"
	// VersionReleaseBeforeReserve: a reservation (the reserve or the ask
	// update) of a worker whose allocation another lease holds, taken
	// while release signals wait unapplied, waits for them to be applied
	// and is judged after (ledger.awaitReleases): a worker spawned again
	// as soon as its last lifecycle ended gets its budget. Before it, it
	// was refused as "already holds ... for another lifecycle". Asked only
	// of such a reservation.
	VersionReleaseBeforeReserve = "release-before-reserve"
	// VersionFleetEvents: a lifecycle, the ledger and a breaker append
	// what needs a person (activities.EventKinds) to the fleet's event log
	// (FleetEvents) with the RecordEvent local activity; before it they
	// raised none. Asked only where an event is raised, by lean runs too,
	// so that every history recorded before it replays.
	VersionFleetEvents = "fleet-events"
	// VersionRelayRearm: a heartbeat its host relays (a keepalive, a
	// change) arms the deadline timer again from itself, in the workflow
	// task that takes it; before it the timer was armed again only when it
	// fired and found the worker alive, a workflow task of its own once per
	// zombie limit beside the keepalive's. Asked only where a relay would
	// move the timer, by lean runs too, so that every history recorded
	// before it replays.
	VersionRelayRearm = "relay-rearm"
	// VersionAskHostFirst: the backstop of a run that takes host heartbeats
	// asks the host (HeldHeartbeat) before it makes a zombie, also when the
	// host has relayed nothing yet: the host holds its agent's heartbeats
	// from the process's start (activities.HeartbeatBoard.Expect), before
	// a watch late behind an overloaded server relays any. A host that
	// holds none leaves the zombie the lifecycle's own judgement, not the
	// host's. Before it, only a host that had relayed was asked. Asked only
	// where the backstop finds such a worker silent, by lean runs too, so
	// that every history recorded before it replays.
	VersionAskHostFirst = "ask-host-first"
)

// releaseChanges are the lifecycle and ledger changes each release brought
// that an earlier release's worker program cannot replay (its code asks
// none of them): a worker program started with SetCompat(release before them)
// takes none of them for the runs it starts.
var releaseChanges = []struct {
	release string
	changes []string
}{
	{"r8", []string{VersionIgnoreBound, VersionDrainAfterSupervision, VersionHeartbeatProcess,
		VersionOneDeadlineTimer, VersionZombieContinueAsNew, VersionLeanLifecycle, VersionHostHeartbeat,
		VersionReleaseBeforeReserve, VersionFleetEvents, VersionRelayRearm, VersionAskHostFirst}},
}

// heldBack are the changes new runs do not take (SetCompat).
var heldBack = map[string]bool{}

// versionOf is workflow.GetVersion minus the changes held back while a
// fleet is upgraded (SetCompat): what every workflow asks a change with,
// the lean lifecycle aside (lifecycle.version).
func versionOf(ctx workflow.Context, changeID string, maxSupported workflow.Version) workflow.Version {
	if heldBack[changeID] {
		maxSupported = workflow.DefaultVersion
	}
	return workflow.GetVersion(ctx, changeID, workflow.DefaultVersion, maxSupported)
}

// SetCompat makes the lifecycles this worker program starts replayable by
// a worker program of an earlier release: with "r7", they take none of the
// changes of later releases (docs/DEPLOYMENT.md, Upgrading to r8), as
// the first step of an upgrade while worker programs of that release still
// run; "" takes them all. A run that recorded a held-back change fails its
// workflow tasks on this program until one without the setting takes them,
// as with SetReserveBySignal. Call it before the worker starts.
func SetCompat(release string) error {
	held := map[string]bool{}
	switch release {
	case "":
	case "r7":
		for _, rc := range releaseChanges {
			for _, id := range rc.changes {
				held[id] = true
			}
		}
	default:
		return fmt.Errorf("unknown release %q: give r7 (the release before the lean lifecycle), or nothing", release)
	}
	heldBack = held
	return nil
}

// VersionMarkers maps the change IDs of a history's GetVersion markers to
// the versions recorded.
func VersionMarkers(events []*historypb.HistoryEvent) (map[string]int, error) {
	out := map[string]int{}
	dc := converter.GetDefaultDataConverter()
	for _, ev := range events {
		m := ev.GetMarkerRecordedEventAttributes()
		if m == nil || m.MarkerName != "Version" {
			continue
		}
		var changeID string
		var version int
		if err := dc.FromPayloads(m.Details["change-id"], &changeID); err != nil {
			return nil, err
		}
		if err := dc.FromPayloads(m.Details["version"], &version); err != nil {
			return nil, err
		}
		out[changeID] = version
	}
	return out, nil
}
