package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// EventFilter selects events: of these kinds (all when empty), at or after
// Since (any time when zero).
type EventFilter struct {
	Kinds []workflows.EventKind
	Since time.Time
}

// ParseEventKinds turns names into kinds, refusing one the log does not
// carry.
func ParseEventKinds(names []string) ([]workflows.EventKind, error) {
	var kinds []workflows.EventKind
	for _, n := range names {
		if !workflows.ValidEventKind(n) {
			valid := make([]string, len(workflows.EventKinds))
			for i, k := range workflows.EventKinds {
				valid[i] = string(k)
			}
			return nil, fmt.Errorf("%w: unknown event type %s: give one of %s", ErrInvalid, workflows.Quote(n), strings.Join(valid, ", "))
		}
		kinds = append(kinds, workflows.EventKind(n))
	}
	return kinds, nil
}

func (flt EventFilter) matches(ev workflows.Event) bool {
	if !flt.Since.IsZero() && ev.At.Before(flt.Since) {
		return false
	}
	if len(flt.Kinds) == 0 {
		return true
	}
	for _, k := range flt.Kinds {
		if ev.Kind == k {
			return true
		}
	}
	return false
}

// AppendEvent appends an event to the fleet's event log, starting the log
// when none runs (what workflows do through the RecordEvent activity).
func (f *Client) AppendEvent(ctx context.Context, ev workflows.Event) error {
	_, err := f.temporal.SignalWithStartWorkflow(ctx, workflows.EventsWorkflowID, workflows.SignalEvent, ev,
		client.StartWorkflowOptions{ID: workflows.EventsWorkflowID, TaskQueue: workflows.TaskQueue},
		workflows.FleetEvents, workflows.EventsState{})
	return err
}

// Events returns the events after the sequence number after that the
// filter selects, oldest first, and the sequence number to read after
// next time. No log yet means no events.
func (f *Client) Events(ctx context.Context, after int64, flt EventFilter) ([]workflows.Event, int64, error) {
	var out []workflows.Event
	for {
		resp, err := f.temporal.QueryWorkflow(ctx, workflows.EventsWorkflowID, "", workflows.QueryEvents, workflows.EventsQuery{After: after})
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return out, after, nil
		}
		if err != nil {
			return out, after, fmt.Errorf("reading the fleet's events: %w", err)
		}
		var page workflows.EventsPage
		if err := resp.Get(&page); err != nil {
			return out, after, err
		}
		if page.Head < after {
			return out, after, workflows.ErrEventLogReset
		}
		for _, ev := range page.Events {
			if flt.matches(ev) {
				out = append(out, ev)
			}
		}
		if len(page.Events) == 0 || page.Next <= after {
			return out, after, nil
		}
		after = page.Next
	}
}

// FollowEvents calls fn with each event the filter selects as it is
// appended, reading the log every `every`, until ctx ends or fn fails. It
// starts after the sequence number after (0: from the oldest kept). A read
// that fails is told to onErr (when not nil) and tried again; a log that
// started again is read from its start.
func (f *Client) FollowEvents(ctx context.Context, after int64, every time.Duration, flt EventFilter, fn func(workflows.Event) error, onErr func(error)) error {
	for {
		evs, next, err := f.Events(ctx, after, flt)
		if errors.Is(err, workflows.ErrEventLogReset) {
			next = 0
		}
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		after = next
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
