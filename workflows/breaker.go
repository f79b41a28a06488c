package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// The old system's circuit breaker: this many crashes of one type within the
// window stop restarts of that type for OpenFor.
const (
	BreakerFailures = 5
	BreakerWindow   = 15 * time.Minute
	BreakerOpenFor  = 30 * time.Minute

	UpdateRecordFailure = "record_failure"
	QueryBreaker        = "breaker"

	breakerUpdatesPerRun = 500
)

// BreakerWorkflowID is the ID of a worker type's circuit breaker. One entity
// workflow per type is what every lifecycle of that type consults, so the
// breaker is shared across lifecycles and hosts, and durable.
func BreakerWorkflowID(workerType string) string { return "restart-breaker/" + workerType }

// BreakerState is a breaker's whole state and its continue-as-new input.
type BreakerState struct {
	WorkerType string      `json:"worker_type"`
	Failures   []time.Time `json:"failures"`
	OpenUntil  *time.Time  `json:"open_until,omitempty"`
	Updates    int         `json:"updates"`
}

// RecordFailureRequest names the crashed worker.
type RecordFailureRequest struct {
	WorkerID string `json:"worker_id"`
}

// RestartBreaker counts crashes of one worker type.
func RestartBreaker(ctx workflow.Context, st BreakerState) error {
	b := &st
	opened := 0 // this run's events, for their IDs
	if err := workflow.SetQueryHandler(ctx, QueryBreaker, func() (BreakerState, error) { return *b, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRecordFailure,
		func(ctx workflow.Context, req RecordFailureRequest) (activities.BreakerDecision, error) {
			b.Updates++
			now := workflow.Now(ctx).UTC()
			wasOpen := b.OpenUntil != nil && now.Before(*b.OpenUntil)
			d := b.record(now)
			if !d.Allowed && !wasOpen {
				opened++
				raiseEvent(ctx, Event{Kind: EventBreakerOpened, WorkerType: b.WorkerType, WorkerID: req.WorkerID,
					Message: fmt.Sprintf("circuit breaker of %s opened until %s: %d crashes in %s; its workers are not restarted until then",
						b.WorkerType, d.OpenUntil.Format(time.RFC3339), d.RecentFailures, BreakerWindow)}, opened)
			}
			return d, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req RecordFailureRequest) error {
			if !WorkerIDPattern.MatchString(req.WorkerID) {
				return fmt.Errorf("invalid worker id %q", req.WorkerID)
			}
			return nil
		}})
	if err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool {
		return b.Updates >= breakerUpdatesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
	}); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	b.Updates = 0
	return workflow.NewContinueAsNewError(ctx, RestartBreaker, *b)
}

// record counts a failure at now and decides.
func (b *BreakerState) record(now time.Time) activities.BreakerDecision {
	recent := b.Failures[:0]
	for _, f := range b.Failures {
		if now.Sub(f) < BreakerWindow {
			recent = append(recent, f)
		}
	}
	b.Failures = append(recent, now)
	if b.OpenUntil != nil && now.Before(*b.OpenUntil) {
		return activities.BreakerDecision{OpenUntil: b.OpenUntil, RecentFailures: len(b.Failures)}
	}
	b.OpenUntil = nil
	if len(b.Failures) >= BreakerFailures {
		until := now.Add(BreakerOpenFor)
		b.OpenUntil = &until
		return activities.BreakerDecision{OpenUntil: &until, RecentFailures: len(b.Failures)}
	}
	return activities.BreakerDecision{Allowed: true, RecentFailures: len(b.Failures)}
}
