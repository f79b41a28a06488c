package activities

import (
	"context"
	"time"
)

// EventKind names something that happened to the fleet that needs a
// person: what the notifications and `starter events` carry.
type EventKind string

// The kinds of events. Declared here, with the data type, for the
// workflows that raise them and the clients that read them.
const (
	// EventZombie: a worker stopped heartbeating past its zombie limit.
	EventZombie EventKind = "zombie_detected"
	// EventCleanupFailed: stopping a worker's process or refunding its
	// budget failed; the lifecycle waits in zombie and retries.
	EventCleanupFailed EventKind = "cleanup_failed"
	// EventHostLost: a worker's host did not come back within its limit.
	EventHostLost EventKind = "host_lost"
	// EventWorkerFailed: a worker's process ended badly and was not
	// restarted (no restarts left, its breaker open, its budget cap).
	EventWorkerFailed EventKind = "worker_failed"
	// EventBudgetAlert: the root or a pool crossed its alert threshold.
	EventBudgetAlert EventKind = "budget_alert"
	// EventBreakerOpened: a worker type crashed often enough that its
	// restarts are stopped for a while.
	EventBreakerOpened EventKind = "breaker_opened"
	// EventAttention: an agent said it needs a person (a heartbeat status
	// blocked or awaiting_input).
	EventAttention EventKind = "attention_needed"
)

// EventKinds lists every kind, in the order the docs give them.
var EventKinds = []EventKind{EventZombie, EventCleanupFailed, EventHostLost, EventWorkerFailed, EventBudgetAlert, EventBreakerOpened, EventAttention}

// Event is one event of the fleet's event log (workflows.FleetEvents).
type Event struct {
	// Seq is its place in the log, from 1, set by the log.
	Seq int64 `json:"seq,omitempty"`
	// ID is the event's idempotency key: the workflow and run that raised
	// it, its kind and its count in that run. A receiver that sees an ID
	// twice has seen the same event.
	ID   string    `json:"id"`
	Kind EventKind `json:"kind"`
	// At is when it happened, by the raising workflow's clock.
	At         time.Time `json:"at"`
	WorkerID   string    `json:"worker_id,omitempty"`
	WorkerType string    `json:"worker_type,omitempty"`
	Master     string    `json:"master,omitempty"`
	Pool       string    `json:"pool,omitempty"`
	Host       string    `json:"host,omitempty"`
	Message    string    `json:"message"`
}

// EventLog appends an event to the fleet's event log, starting the log if
// there is none yet.
type EventLog interface {
	Append(ctx context.Context, ev Event) error
}

// RecordEvent appends an event to the fleet's event log. Workflows run it as
// a local activity and ignore its failure: an event must never hold up
// the decision it reports. Without a log (nil Events) it records nothing.
func (a *SharedActivities) RecordEvent(ctx context.Context, ev Event) error {
	if a.Events == nil {
		return nil
	}
	return a.Events.Append(ctx, ev)
}
