package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// start reserves the budget and starts the process. It returns the outcome
// when the lifecycle cannot go on.
func (w *lifecycle) start(ctx workflow.Context, lease string) *outcome {
	r := w.st.Request
	err := workflow.ExecuteActivity(budgetOptions(ctx, 5), sharedActs.ReserveBudget, activities.ReserveInput{
		WorkerID: r.WorkerID, WorkerType: r.WorkerType, Lease: lease, Amount: r.Budget,
	}).Get(ctx, nil)
	if err != nil {
		if isCancel(ctx, err) {
			// Nothing was reserved for sure: a reservation that did go
			// through is still refunded by the release below.
			w.saga.add(stepRefund, w.releaseBudget(lease))
			return &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled while pending"}
		}
		if !isRefusal(err) {
			// The ledger may have applied the reservation before the call
			// failed; the release is idempotent and refunds it if so.
			w.saga.add(stepRefund, w.releaseBudget(lease))
		}
		w.st.Spec.TokenBudget.Allocated = 0
		return &outcome{kind: outcomeFailed, reason: failureMessage(err)}
	}
	w.held = r.Budget
	w.saga.add(stepRefund, w.releaseBudget(lease))
	return w.launch(ctx, lease)
}

// releaseBudget is the refund of the lease. w.held, read when the refund
// runs, is what the ledger is known to hold under it, or 0 when that is
// unknown.
//
// A known holding is released with a signal to the ledger: it has no
// answer to wait for and no limit on how many are in flight, so the ends of
// hundreds of lifecycles at once (a fleet shut down, a host lost) are not
// queued behind the ten updates the server lets into one workflow, where
// they timed out and left their tokens held. What was refunded is then
// what was held, whichever ledger run applies it. An unknown holding, or a
// ledger that is not running, goes through the release update, which says
// what it gave back.
func (w *lifecycle) releaseBudget(lease string) func(workflow.Context) error {
	return func(ctx workflow.Context) error {
		held := w.held
		req := ReleaseRequest{WorkerID: w.st.Spec.WorkerID, Lease: lease}
		if held > 0 && workflow.GetVersion(ctx, VersionReleaseSignal, workflow.DefaultVersion, 1) == 1 {
			err := workflow.SignalExternalWorkflow(ctx, LedgerWorkflowID, "", SignalRelease, req).Get(ctx, nil)
			if err == nil {
				w.refunded += held
				return nil
			}
			workflow.GetLogger(ctx).Warn("Release signal not delivered; releasing through the update", "error", err)
		}
		var res activities.ReleaseResult
		err := workflow.ExecuteActivity(budgetOptions(ctx, 0), sharedActs.ReleaseBudget, activities.ReleaseInput{
			WorkerID: req.WorkerID, Lease: lease,
		}).Get(ctx, &res)
		w.refunded += res.Released
		return err
	}
}

// launch starts the worker's process on its host: the one pinned by the
// request, or whichever worker program takes PickHost from the shared queue.
func (w *lifecycle) launch(ctx workflow.Context, lease string) *outcome {
	r := w.st.Request
	if w.st.Spec.Host == "" {
		host := r.Host
		if host == "" {
			if err := workflow.ExecuteActivity(sharedOptions(ctx), sharedActs.PickHost).Get(ctx, &host); err != nil {
				return &outcome{kind: outcomeFailed, reason: "no host to run on: " + failureMessage(err)}
			}
		}
		w.st.Spec.Host = host
	}
	var info activities.ProcessInfo
	// A start is short and idempotent: it runs to its end even when the
	// lifecycle is cancelled meanwhile, so a process it started is known
	// and stopped, never leaked.
	startCtx, _ := workflow.NewDisconnectedContext(ctx)
	err := workflow.ExecuteActivity(w.startOptions(startCtx), hostActs.StartProcess, activities.StartInput{
		WorkerID: r.WorkerID, WorkerType: r.WorkerType, TaskID: r.TaskID, Lease: lease,
	}).Get(startCtx, &info)
	if err == nil && ctx.Err() != nil {
		w.st.Process = &info
		w.saga.drop(stepStopProcess)
		w.saga.add(stepStopProcess, w.stopProcessCompensation())
		return &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled while pending"}
	}
	if err != nil {
		if isCancel(ctx, err) {
			return &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled while pending"}
		}
		if isScheduleToStartTimeout(err) {
			return &outcome{kind: outcomeFailed, reason: fmt.Sprintf("spawn failed: host %s did not take the work within %s", w.st.Spec.Host, w.limits.HostLossAfter)}
		}
		return &outcome{kind: outcomeFailed, reason: "spawn failed: " + failureMessage(err)}
	}
	w.st.Process = &info
	w.saga.drop(stepStopProcess)
	w.saga.add(stepStopProcess, w.stopProcessCompensation())

	// Staleness is measured by the workflow's clock, not the host's.
	now := workflow.Now(ctx).UTC()
	w.st.Spec.PID = info.PID
	w.st.Spec.LogPath = info.LogPath
	w.st.Spec.StartedAt = &now
	w.st.Spec.Heartbeat.Alert = ""
	w.transition(ctx, StatusRunning, "process started")
	if r.TaskID == "" {
		w.st.IdleSince = &now
		w.transition(ctx, StatusIdle, "no task assigned")
	} else {
		w.st.IdleSince = nil
	}
	return nil
}

func (w *lifecycle) stopProcessCompensation() func(workflow.Context) error {
	return func(ctx workflow.Context) error {
		// The process may have exited or been stopped already; this also
		// reaps whatever it left behind in its process group.
		in := activities.StopInput{WorkerID: w.st.Spec.WorkerID, Process: *w.st.Process, Grace: w.limits.ShutdownGrace}
		var res activities.StopResult
		if err := workflow.ExecuteActivity(w.stopOptions(ctx, in.Grace), hostActs.StopProcess, in).Get(ctx, &res); err != nil {
			return err
		}
		w.recordStop(res)
		return nil
	}
}
