package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/metrics"
)

// finish ends the lifecycle: compensations for a failure, a refund for a
// normal end, and the final state.
func (w *lifecycle) finish(ctx workflow.Context, o outcome) (WorkerSpec, error) {
	if o.exit != nil && !o.exit.Lost {
		code := o.exit.ExitCode
		w.st.Spec.ExitCode = &code
	}
	if o.exit != nil && o.exit.Action != "" {
		// Judged by a host of this release, which knows oom from a
		// plain SIGKILL.
		w.st.Spec.ExitReason = exitReason(*o.exit)
	}
	cleanup := &CleanupInfo{Reason: o.reason, Automated: !o.operator}
	w.st.Spec.Cleanup = cleanup
	normalEnd := o.kind == outcomeStop || o.kind == outcomeExited
	if !normalEnd {
		w.markFailed(ctx, o.reason)
	}
	if o.hostLost {
		// Its host is gone: no one can stop it, and waiting would hold the
		// budget forever. The sweep stops it if the host returns.
		w.saga.drop(stepStopProcess)
		w.processFate = ProcessLost
	}

	errs := w.compensate(ctx)
	return w.settle(ctx, Ending{Reason: o.reason, Normal: normalEnd}, errs)
}

// Ending is what a lifecycle waiting in zombie to retry its cleanup hands
// to its next run (LifecycleState.Ending): the end it is settling and what
// is still owed. A cancel of the run is not handed on: a cancelled zombie
// retries until it is done, as the next run does, and answers a cleanup
// the same way.
type Ending struct {
	Reason string `json:"reason"`
	// Normal: a stop or an exit, which ends completed once settled.
	Normal bool `json:"normal,omitzero"`
	// Owed names the compensations still to run, in the order they were
	// registered (stepRefund, stepStopProcess).
	Owed []string `json:"owed"`
	// Held is what the ledger is known to hold (lifecycle.held); Refunded
	// what was given back so far; ProcessFate what the last stop found.
	Held        int64  `json:"held,omitzero"`
	Refunded    int64  `json:"refunded,omitzero"`
	ProcessFate string `json:"process_fate,omitempty"`
	// Notified: its cleanup_failed event was raised (once per ending).
	Notified bool `json:"notified,omitempty"`
}

// zombieRetriesPerRun bounds the cleanup retries of one run (about 15
// events each, one every retryCleanupEvery: 17 hours), so that a zombie
// whose host never comes back continues as new long before the server's
// history limits end it.
const zombieRetriesPerRun = 100

// settle retries what failed until it is done, waiting in zombie between
// tries, and records the end. errs are the failures of the last try.
func (w *lifecycle) settle(ctx workflow.Context, e Ending, errs []error) (WorkerSpec, error) {
	cleanup := w.st.Spec.Cleanup
	// A compensation that failed leaves the worker in zombie: it retries
	// every RetryCleanupEvery, or at once on `starter cleanup`, until done.
	for tries := 1; len(errs) > 0; tries++ {
		w.count(ctx, metrics.CleanupFailures, w.typeTag())
		cleanup.Reason = fmt.Sprintf("%s; cleanup incomplete: %v", e.Reason, errors.Join(errs...))
		if !e.Notified {
			// Once: the retries that follow, in this run or the next
			// (Ending), are the same trouble.
			e.Notified = w.raise(ctx, EventCleanupFailed, cleanup.Reason)
		}
		cleanup.Refunded, cleanup.Process = w.refunded, w.processFate
		if w.st.Spec.Status != StatusZombie {
			w.transition(ctx, StatusZombie, cleanup.Reason)
		}
		w.cleanupRequested = false
		if w.zombieMustMove(ctx, tries) && w.version(ctx, VersionZombieContinueAsNew, 1) == 1 {
			// The cleanup updates answered, unless one more came meanwhile:
			// it is retried here, and the run moves after it.
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(ctx) || w.cleanupRequested })
			if !w.cleanupRequested {
				return w.continueZombie(ctx, e)
			}
			errs = w.compensate(ctx)
			continue
		}
		waitCtx := ctx
		if ctx.Err() != nil && w.version(ctx, VersionCancelledCleanupRetries, 1) == 1 {
			// Cancelled, the lifecycle still owes its process a stop:
			// giving up here would leak it. Terminating the workflow is
			// the way to abandon it.
			waitCtx, _ = workflow.NewDisconnectedContext(ctx)
		}
		if w.lean && w.cancelDeadline != nil {
			// The supervision's timer was left to the run's end, which is
			// not near any more.
			w.cancelDeadline()
			w.cancelDeadline = nil
		}
		// A lean run also wakes when the signals sent to it fill the run,
		// and moves before its next try (zombie-continue-as-new, implied).
		full := func() bool { return w.lean && w.zombieSignalsFull(ctx) }
		if _, err := workflow.AwaitWithTimeout(waitCtx, retryCleanupEvery, func() bool { return w.cleanupRequested || full() }); err != nil &&
			w.version(ctx, VersionCancelDuringCleanupWait, 1) == workflow.DefaultVersion {
			break // cancelled before these versions: it ends as it is, in zombie
		}
		if !w.cleanupRequested && full() {
			continue
		}
		// A cancel during the wait retries at once, and the next wait is
		// on a disconnected context (above).
		errs = w.compensate(ctx)
	}
	cleanup.Refunded = w.refunded
	cleanup.Process = w.processFate
	now := workflow.Now(ctx).UTC()
	if len(errs) == 0 {
		cleanup.Reason = e.Reason
		cleanup.CleanedAt = &now
		if e.Normal {
			w.transition(ctx, StatusCompleted, e.Reason)
		} else if w.st.Spec.Status == StatusZombie {
			w.transition(ctx, StatusCleanedUp, e.Reason)
		}
	}
	w.st.Spec.CompletedAt = &now
	// Let in-flight shutdown or kill updates return before the run closes.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return w.st.Spec, nil
}

// zombieMustMove says whether a zombie about to wait for its next retry
// should continue as new first: after zombieRetriesPerRun tries in this
// run, when the heartbeats and samples sent to it (applied or waiting)
// reach the run's bound, or when the server suggests it. Asked before the
// version, so that only a run that moves records it.
func (w *lifecycle) zombieMustMove(ctx workflow.Context, tries int) bool {
	return tries >= zombieRetriesPerRun || w.zombieSignalsFull(ctx) || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// zombieSignalsFull says whether the signals sent to this run, applied or
// waiting, have reached its bound.
func (w *lifecycle) zombieSignalsFull(ctx workflow.Context) bool {
	waiting := 0
	for _, name := range []string{SignalHeartbeat, SignalSample, SignalOutputHeartbeat} {
		waiting += workflow.GetSignalChannel(ctx, name).Len()
	}
	return w.st.SignalsThisRun+waiting >= w.limits.MaxSignalsPerRun
}

// continueZombie hands the zombie to a new run, which goes on retrying its
// cleanup (LifecycleState.Ending). What was sent to it is applied first,
// moving nothing, so that no count is lost.
func (w *lifecycle) continueZombie(ctx workflow.Context, e Ending) (WorkerSpec, error) {
	w.drainAfterSupervision(ctx)
	e.Owed = e.Owed[:0]
	for _, name := range []string{stepRefund, stepStopProcess} {
		if w.saga.has(name) {
			e.Owed = append(e.Owed, name)
		}
	}
	e.Held, e.Refunded, e.ProcessFate = 0, w.refunded, w.processFate
	if w.saga.has(stepRefund) {
		e.Held = w.held
	}
	w.st.Ending = &e
	w.st.Reserved = w.saga.has(stepRefund)
	w.st.Runs++
	w.st.SignalsThisRun = 0
	workflow.GetLogger(ctx).Info("Continuing as new in zombie", "runs", w.st.Runs, "owed", e.Owed)
	return w.st.Spec, workflow.NewContinueAsNewError(ctx, WorkerLifecycle, w.st)
}

// compensate runs what the saga still holds; the failed steps stay in it.
func (w *lifecycle) compensate(ctx workflow.Context) []error {
	if w.saga.empty() {
		return nil
	}
	return w.saga.compensate(ctx)
}

// markFailed records a failure and, when something is held, that the worker
// now awaits cleanup. A budget refusal holds nothing and stays failed.
func (w *lifecycle) markFailed(ctx workflow.Context, reason string) {
	if w.st.Spec.Status != StatusFailed && w.st.Spec.Status != StatusZombie {
		w.transition(ctx, StatusFailed, reason)
	}
	if !w.saga.empty() && w.st.Spec.Status != StatusZombie {
		w.transition(ctx, StatusZombie, "awaiting cleanup")
	}
}

// isRefusal tells a definite "no" from the ledger or the host (nothing was
// reserved) from a failure that leaves it unknown.
func isRefusal(err error) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return false
	}
	switch appErr.Type() {
	case activities.ErrTypeBudgetRefused, activities.ErrTypeUnknownWorkerType, ErrTypeLedgerRefused:
		return true
	}
	return false
}

// isLedgerNotRunning tells a release signal that found no ledger (nothing
// was held there, for sure) from one whose fate is unknown.
func isLedgerNotRunning(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeLedgerNotRunning
}

func isCancel(ctx workflow.Context, err error) bool {
	return temporal.IsCanceledError(err) || ctx.Err() != nil
}

// failureMessage is the innermost message of an activity failure, which is
// what an operator needs ("insufficient budget: available 10 < required 20").
func failureMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		return "activity timed out (" + timeoutErr.TimeoutType().String() + ")"
	}
	return err.Error()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
