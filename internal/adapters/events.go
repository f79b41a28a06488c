package adapters

import (
	"context"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
)

// EventLog is the fleet's event log for the RecordEvent activity.
type EventLog struct{ Fleet *fleet.Client }

var _ activities.EventLog = (*EventLog)(nil)

func (e *EventLog) Append(ctx context.Context, ev activities.Event) error {
	return e.Fleet.AppendEvent(ctx, ev)
}
