package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// The fleet's event log: one entity workflow that keeps the latest events
// that need a person (a zombie, a failed cleanup, a lost host, a worker
// that failed for good, a budget alert, a breaker opened), in order, for
// the notifications and `starter events`. Lifecycles, the ledger and the
// breakers append to it with the RecordEvent local activity (a signal with
// start, so the log exists as soon as something happens); readers page
// through it with QueryEvents from a sequence number.

// The event log's names.
const (
	EventsWorkflowID = "fleet-events"
	SignalEvent      = "event"
	QueryEvents      = "events"
)

// Event and its kinds are the activities package's, where RecordEvent
// takes them.
type (
	Event     = activities.Event
	EventKind = activities.EventKind
)

// The kinds, by name.
const (
	EventZombie        = activities.EventZombie
	EventCleanupFailed = activities.EventCleanupFailed
	EventHostLost      = activities.EventHostLost
	EventWorkerFailed  = activities.EventWorkerFailed
	EventBudgetAlert   = activities.EventBudgetAlert
	EventBreakerOpened = activities.EventBreakerOpened
	EventAttention     = activities.EventAttention
)

// ValidEventKind says whether kind is one the log carries.
func ValidEventKind(kind string) bool {
	for _, k := range activities.EventKinds {
		if string(k) == kind {
			return true
		}
	}
	return false
}

const (
	// eventsKept bounds the log: older events are dropped (a reader that
	// fell further behind is told so by EventsPage.Dropped).
	eventsKept = 1000
	// eventsPageMax bounds one page of a query.
	eventsPageMax = 500
	// maxEventMessageBytes bounds an event's message, so that the kept
	// events stay well inside a continue-as-new input's size limit.
	maxEventMessageBytes = 512
)

// eventsPerRun bounds the signals of one run of the log before it
// continues as new, carrying what it keeps. A variable so that a test can
// reach it.
var eventsPerRun = 2000

// EventsState is the log's whole state and its continue-as-new input.
type EventsState struct {
	// Next is the sequence number the next event takes (from 1).
	Next   int64   `json:"next"`
	Events []Event `json:"events,omitempty"`
}

// EventsQuery asks for the events after a sequence number, at most Limit
// (eventsPageMax when 0 or more).
type EventsQuery struct {
	After int64 `json:"after"`
	Limit int   `json:"limit,omitempty"`
}

// EventsPage is an answer: the events in order, Next to ask after, and
// Dropped when events after After were dropped before they were read.
type EventsPage struct {
	Events  []Event `json:"events"`
	Next    int64   `json:"next"`
	Dropped bool    `json:"dropped,omitempty"`
	// Head is the sequence number of the log's latest event (0: none): a
	// reader whose After is past it reads a log that started again.
	Head int64 `json:"head"`
}

// ErrEventLogReset says the event log was started again (terminated and
// recreated): its numbers begin at 1 again, below a reader's position.
var ErrEventLogReset = errors.New("the event log started again: its events are numbered from 1 again")

// FleetEvents is the event log.
func FleetEvents(ctx workflow.Context, st EventsState) error {
	if st.Next == 0 {
		st.Next = 1
	}
	if err := workflow.SetQueryHandler(ctx, QueryEvents, func(q EventsQuery) (EventsPage, error) {
		return st.page(q), nil
	}); err != nil {
		return err
	}
	ch := workflow.GetSignalChannel(ctx, SignalEvent)
	for signals := 0; signals < eventsPerRun && !workflow.GetInfo(ctx).GetContinueAsNewSuggested(); signals++ {
		var ev Event
		ch.Receive(ctx, &ev)
		st.append(ev)
	}
	// What came meanwhile is taken before the run closes.
	for {
		var ev Event
		if !ch.ReceiveAsync(&ev) {
			break
		}
		st.append(ev)
	}
	return workflow.NewContinueAsNewError(ctx, FleetEvents, st)
}

// append adds an event unless its ID is one the log keeps already (a retried
// RecordEvent), or it names no kind the log carries.
func (st *EventsState) append(ev Event) {
	if ev.ID == "" || !ValidEventKind(string(ev.Kind)) {
		return
	}
	for _, kept := range st.Events {
		if kept.ID == ev.ID {
			return
		}
	}
	ev.Seq = st.Next
	st.Next++
	st.Events = append(st.Events, ev)
	if n := len(st.Events); n > eventsKept {
		st.Events = append([]Event(nil), st.Events[n-eventsKept:]...)
	}
}

func (st EventsState) page(q EventsQuery) EventsPage {
	limit := q.Limit
	if limit <= 0 || limit > eventsPageMax {
		limit = eventsPageMax
	}
	p := EventsPage{Events: []Event{}, Next: max(q.After, 0), Head: st.Next - 1}
	p.Dropped = len(st.Events) > 0 && st.Events[0].Seq > q.After+1
	for _, ev := range st.Events {
		if ev.Seq <= q.After {
			continue
		}
		if len(p.Events) == limit {
			break
		}
		p.Events = append(p.Events, ev)
		p.Next = ev.Seq
	}
	return p
}

// raiseEvent appends an event to the fleet's event log from a workflow,
// under VersionFleetEvents, asked only where an event is raised: a local
// activity whose failure is logged and ignored. n counts the event among
// those of the run, for its ID. It says whether the version let it raise
// (a run from before the version raises nothing).
func raiseEvent(ctx workflow.Context, ev Event, n int) bool {
	if versionOf(ctx, VersionFleetEvents, 1) != 1 {
		return false
	}
	info := workflow.GetInfo(ctx)
	ev.ID = fmt.Sprintf("%s/%s/%s/%d", info.WorkflowExecution.ID, info.WorkflowExecution.RunID, ev.Kind, n)
	ev.At = workflow.Now(ctx).UTC()
	ev.Message = truncate(ev.Message, maxEventMessageBytes)
	// Disconnected: the events of a cancelled run (a cleanup that fails
	// after a cancel) are raised too. Short: a decision waits for it.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	lctx := workflow.WithLocalActivityOptions(dctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    3 * time.Second,
		ScheduleToCloseTimeout: 5 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, MaximumAttempts: 2},
	})
	if err := workflow.ExecuteLocalActivity(lctx, sharedActs.RecordEvent, ev).Get(lctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Recording an event failed; it is not notified", "kind", ev.Kind, "error", err)
	}
	return true
}

// EventKinds lists every kind the log carries.
var EventKinds = activities.EventKinds
