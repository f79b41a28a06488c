package workflows

// The lifecycle's states and the legal moves between them. The diagram (the
// README shows the same) and the table below say the same; transition checks
// every move against the table: a move it lacks is logged, and fails tests.
//
//                    (start)
//                       │
//                       ▼
//  ┌── restart ───► [pending] ── shutdown or kill when queued or in back-off ───┐
//  │                  │   │                                                     │
//  │                  │   │ process started                                     │
//  │                  │   ▼                                                     │
//  │                  │ ┌─────────────────────────────────────────┐             │
//  │                  │ │ [running] ◄── worker reported busy ──┐  │             │
//  │                  │ │    │ no task / worker reported idle  │  │             │
//  │                  │ │    ▼                                 │  │             │
//  │                  │ │  [idle] ─────────────────────────────┘  │             │
//  │                  │ └─────────────────────────────────────────┘             │
//  │                  │       │         │                       │               │
//  │  budget refused, │       │ failure │ shutdown, kill,       │ exit 0        │
//  │    spawn failed, │       │         │ idle limit            │               │
//  │         no host, │       │         │                       │               │
//  │   queue timeout, │       │         │                       │               │
//  │        cancelled │       │         ▼                       │               │
//  │                  │       │  [shutting_down]                │               │
//  │                  │       │     │        │ stopped,         │               │
//  │                  │       │     │        │ budget           │               │
//  │                  ▼       │     │        │ refunded         ▼               │
//  └───────────── [failed] ◄──┘     │        └───────────► [completed] ◄────────┘
//                    │ budget or a  │
//                    │ process      │ the stop or the refund failed
//                    │ still held   │ (retried every 10 min or on
//                    ▼              │  `starter cleanup`)
//                 [zombie] ◄────────┘
//                    │
//                    │ cleanup succeeded
//                    ▼
//               [cleaned_up]
//
// A normal end (exit 0, or a stop during a restart's back-off) whose refund
// or stop fails goes to zombie too, and ends completed once the retry
// succeeds. completed and cleaned_up are terminal, and so is failed when
// nothing is held (the budget was refused).

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/internal/metrics"
)

// Status is a lifecycle state, as the runbook names them.
type Status string

const (
	StatusPending      Status = "pending"
	StatusRunning      Status = "running"
	StatusIdle         Status = "idle"
	StatusShuttingDown Status = "shutting_down"
	StatusCompleted    Status = "completed"
	StatusFailed       Status = "failed"
	StatusZombie       Status = "zombie"
	StatusCleanedUp    Status = "cleaned_up"
)

// Live reports whether a worker in this state may still hold a process or
// budget.
func (s Status) Live() bool {
	switch s {
	case StatusPending, StatusRunning, StatusIdle, StatusShuttingDown:
		return true
	}
	return false
}

// move is one legal change of status and when it happens.
type move struct {
	from, to Status
	when     string
}

// moves is the table of the diagram above.
var moves = []move{
	{"", StatusPending, "the lifecycle starts"},
	{StatusPending, StatusRunning, "the process started"},
	{StatusPending, StatusFailed, "budget refused, queue timeout, spawn failed, no host, cancelled"},
	{StatusPending, StatusCompleted, "shutdown or kill while queued for budget or during a restart's back-off"},
	{StatusPending, StatusZombie, "shutdown or kill during a back-off whose refund failed"},
	{StatusRunning, StatusIdle, "no task, or the worker reported idle"},
	{StatusIdle, StatusRunning, "the worker reported busy"},
	{StatusRunning, StatusShuttingDown, "shutdown, kill"},
	{StatusIdle, StatusShuttingDown, "shutdown, kill, idle limit"},
	{StatusRunning, StatusCompleted, "the process exited 0"},
	{StatusIdle, StatusCompleted, "the process exited 0"},
	{StatusRunning, StatusFailed, "crash, zombie, time limit, lost process or host, cancel"},
	{StatusIdle, StatusFailed, "crash, zombie, time limit, lost process or host, cancel"},
	{StatusRunning, StatusZombie, "the process exited 0 and the refund failed"},
	{StatusIdle, StatusZombie, "the process exited 0 and the refund failed"},
	{StatusShuttingDown, StatusCompleted, "stopped, budget refunded"},
	{StatusShuttingDown, StatusZombie, "the stop or the refund failed"},
	{StatusFailed, StatusPending, "restart after the back-off"},
	{StatusFailed, StatusZombie, "budget or a process still held"},
	{StatusZombie, StatusCleanedUp, "the cleanup of a failure succeeded"},
	{StatusZombie, StatusCompleted, "the cleanup of a normal end succeeded"},
}

// CanMove reports whether the table has the move from -> to.
func CanMove(from, to Status) bool {
	for _, m := range moves {
		if m.from == from && m.to == to {
			return true
		}
	}
	return false
}

// illegalMove is called for a move the table lacks. A workflow must not
// panic on a running lifecycle (its task would fail forever), so it logs;
// the tests replace it with a failure.
var illegalMove = func(ctx workflow.Context, from, to Status, reason string) {
	workflow.GetLogger(ctx).Error("Illegal lifecycle move", "from", from, "to", to, "reason", reason)
}

// transition changes the status, records it and upserts the search
// attributes.
func (w *lifecycle) transition(ctx workflow.Context, s Status, reason string) {
	spec := &w.st.Spec
	if !CanMove(spec.Status, s) {
		illegalMove(ctx, spec.Status, s, reason)
	}
	spec.Status = s
	w.count(ctx, metrics.Transitions, w.typeTag(metrics.LabelState, string(s)))
	spec.Transitions = append(spec.Transitions, Transition{Status: s, At: workflow.Now(ctx).UTC(), Reason: truncate(reason, maxReasonBytes)})
	if n := len(spec.Transitions); n > maxTransitions {
		spec.Transitions = append([]Transition(nil), spec.Transitions[n-maxTransitions:]...)
	}
	if !(w.lean && s == StatusPending && startedWith(ctx, *spec)) {
		if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttributes(*spec)...); err != nil {
			workflow.GetLogger(ctx).Warn("Upserting search attributes failed", "error", err)
		}
	}
	w.showDetails(ctx)
}

// startedWith says whether the start already set every search attribute
// the spec has (fleet.Client.Start sets them, for the pending state), so
// that upserting them again would be an event and nothing more. A raw
// start without them still gets them from the upsert.
func startedWith(ctx workflow.Context, spec WorkerSpec) bool {
	set := workflow.GetTypedSearchAttributes(ctx)
	for _, kv := range []struct {
		key   temporal.SearchAttributeKeyKeyword
		value string
	}{
		{SearchAttrStatus, string(spec.Status)}, {SearchAttrType, spec.WorkerType}, {SearchAttrMaster, spec.Master},
		{SearchAttrPriority, spec.Priority}, {SearchAttrTaskID, spec.TaskID},
	} {
		got, ok := set.GetKeyword(kv.key)
		if kv.value == "" && !ok {
			continue // SearchAttributes sets no empty task id
		}
		if got != kv.value {
			return false
		}
	}
	return true
}

// showDetails sets what the Web UI shows on the lifecycle's page: state,
// last heartbeat, tokens and health. It is metadata, not a command, so it
// can change freely without breaking replay.
func (w *lifecycle) showDetails(ctx workflow.Context) {
	spec := &w.st.Spec
	hb := "no heartbeat yet"
	if spec.Heartbeat.LastSeen != nil {
		hb = fmt.Sprintf("last heartbeat %s UTC (%d received)", spec.Heartbeat.LastSeen.Format("15:04:05"), spec.Heartbeat.Count)
	}
	if spec.Heartbeat.Alert != "" {
		hb += ", " + strings.ToUpper(spec.Heartbeat.Alert)
	} else if spec.Heartbeat.Path == PathHost {
		// The host relays only what the lifecycle acts on: the latest is
		// in the pending WatchProcess activity's heartbeat details.
		hb += ", through its host (the latest: WatchProcess's heartbeat details)"
	} else if base, ok := spec.alertBase(); ok {
		// No timer records a warning (VersionOneDeadlineTimer): the page
		// says when each level comes if nothing arrives meanwhile.
		c := spec.Heartbeat
		hb += fmt.Sprintf(", late from %s, zombie at %s UTC if silent", base.Add(c.WarningAfter).Format("15:04:05"), base.Add(c.ZombieAfter).Format("15:04:05"))
	}
	status := string(spec.Status)
	if a := spec.Heartbeat.Attention; a != "" {
		status += ", NEEDS ATTENTION: " + a
	}
	details := fmt.Sprintf("**%s** · %s · tokens %d/%d · health %d %s", status, hb,
		spec.TokenBudget.Used, spec.TokenBudget.Allocated, spec.Health.Score, spec.Health.Band)
	if spec.PID != 0 {
		details += fmt.Sprintf(" · pid %d on %s", spec.PID, spec.Host)
	}
	if spec.Queue != nil {
		details += fmt.Sprintf(" · queued for budget since %s UTC (position %d then)", spec.Queue.Since.Format("15:04:05"), spec.Queue.Position)
	}
	if spec.Cleanup != nil && !spec.Status.Live() {
		details += " · " + spec.Cleanup.Reason
	}
	workflow.SetCurrentDetails(ctx, details)
}
