package workflows

import (
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// budgetOptions are for ledger calls. A refusal is final; an outage is
// retried. maxAttempts 0 retries until the compensation window closes, which
// a refund needs: it must not be given up lightly.
// answerWithin bounds the wait for the ledger's answer to a request that may
// not queue. The ledger answers in its next workflow task; this only keeps
// an answer that never comes (a ledger terminated meanwhile) from holding
// the lifecycle in pending for good. Generous, because a ledger behind a
// wave of hundreds of requests answers them in order.
const answerWithin = 5 * time.Minute

// localBudgetOptions are budgetOptions for the ask of a lean run
// (VersionLeanLifecycle), run as a local activity by the worker program
// that runs the workflow task: one marker in that task's completion
// instead of an activity's three events and a workflow task to take its
// result. A call longer than the task's timeout keeps the task alive
// (the SDK heartbeats it), so a ledger slow under a storm costs a few
// task events, not a failure.
func localBudgetOptions(ctx workflow.Context, maxAttempts int32) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: defaultCompensationWindow,
		RetryPolicy:            budgetRetry(maxAttempts),
	})
}

// localReleaseOptions bound the release signal of a lean run's refund: a
// few tries with short back-offs, and then the release update
// (ReleaseBudget), which has the compensation window to go through. A
// signal is quick even to a busy ledger; these bounds leave room for a
// storm of ends (a fleet shut down, a host lost), whose signals queue in
// the worker program's local-activity slots and at the server, where the
// update would meet the ledger's limit of updates in flight. A try longer
// than the workflow task's timeout keeps the task alive (a few events).
func localReleaseOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    15 * time.Second,
		ScheduleToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 500 * time.Millisecond, MaximumInterval: 2 * time.Second, MaximumAttempts: releaseSignalTries,
			NonRetryableErrorTypes: []string{activities.ErrTypeLedgerNotRunning},
		},
	})
}

// releaseSignalTries is how often a lean run's refund tries the release
// signal before the update.
const releaseSignalTries = 3

// localSharedOptions are sharedOptions for PickHost in a lean run: the
// host it names is that of the worker program running the workflow task,
// as it was of whichever program took the activity.
func localSharedOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: defaultCompensationWindow,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, MaximumInterval: 10 * time.Second},
	})
}

func budgetRetry(maxAttempts int32) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        500 * time.Millisecond,
		MaximumInterval:        30 * time.Second,
		MaximumAttempts:        maxAttempts,
		NonRetryableErrorTypes: []string{activities.ErrTypeBudgetRefused, activities.ErrTypeUnknownWorkerType},
	}
}

func budgetOptions(ctx workflow.Context, maxAttempts int32) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: defaultCompensationWindow,
		RetryPolicy:            budgetRetry(maxAttempts),
	})
}

// hostOptions run process work on the host that owns the process. A host
// whose queue nobody polls for hostLoss is lost: schedule-to-start timeouts
// are not retried, so the workflow hears of it after that bound.
func hostOptions(ctx workflow.Context, host string, hostLoss time.Duration, o workflow.ActivityOptions) workflow.Context {
	o.TaskQueue = HostTaskQueue(host)
	o.ScheduleToStartTimeout = hostLoss
	return workflow.WithActivityOptions(ctx, o)
}

func (w *lifecycle) startOptions(ctx workflow.Context) workflow.Context {
	return hostOptions(ctx, w.st.Spec.Host, w.limits.HostLossAfter, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{activities.ErrTypeSpawnFailed, activities.ErrTypeUnknownWorkerType},
		},
	})
}

// watchOptions make the watch heartbeat to Temporal: a missed heartbeat
// means the worker program died, and the retry on the same host's queue
// picks the process up again by identity once it is back.
func (w *lifecycle) watchOptions(ctx workflow.Context) workflow.Context {
	startToClose := 24 * time.Hour
	if t := w.st.Request.Timeout; t > 0 {
		startToClose = t + time.Hour
	}
	return hostOptions(ctx, w.st.Spec.Host, w.limits.HostLossAfter, workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		HeartbeatTimeout:    w.limits.WatchHeartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumInterval: 10 * time.Second,
			MaximumAttempts: 20,
		},
	})
}

func (w *lifecycle) stopOptions(ctx workflow.Context, grace time.Duration) workflow.Context {
	return hostOptions(ctx, w.st.Spec.Host, w.limits.HostLossAfter, workflow.ActivityOptions{
		StartToCloseTimeout: grace + 30*time.Second,
		HeartbeatTimeout:    10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumInterval: 30 * time.Second,
			MaximumAttempts: 10,
		},
	})
}

// sharedOptions are for short activities any worker program can run.
func sharedOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: defaultCompensationWindow,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, MaximumInterval: 10 * time.Second},
	})
}

// isScheduleToStartTimeout tells a lost host from other failures.
func isScheduleToStartTimeout(err error) bool {
	var timeoutErr *temporal.TimeoutError
	return errors.As(err, &timeoutErr) && timeoutErr.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}
