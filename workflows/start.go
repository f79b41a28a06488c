package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// start reserves the budget and starts the process. It returns the outcome
// when the lifecycle cannot go on.
func (w *lifecycle) start(ctx workflow.Context, lease string) *outcome {
	if w.version(ctx, VersionReserveSignal, reserveSignalMax) == 1 {
		if o := w.reserve(ctx, lease); o != nil {
			return o
		}
		return w.launch(ctx, lease)
	}
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

// reserveSignalMax is the VersionReserveSignal new lifecycles take: 1, or
// DefaultVersion while a fleet is upgraded (SetReserveBySignal).
var reserveSignalMax workflow.Version = 1

// SetReserveBySignal chooses how the lifecycles this worker program starts
// reserve their budget: by signal, with the queue (true, the default), or
// with the reserve update, as the previous release did. An upgrade from
// that release runs its new worker programs with false until every worker
// program runs the new code, because the previous release's ledger code
// has no handler for the reserve signal (docs/DEPLOYMENT.md). Call it
// before the worker starts.
func SetReserveBySignal(on bool) {
	reserveSignalMax = workflow.DefaultVersion
	if on {
		reserveSignalMax = 1
	}
}

// askByUpdateMax is the VersionReserveAsk new lifecycles take: 1, or
// DefaultVersion while a fleet is upgraded (SetAskByUpdate).
var askByUpdateMax workflow.Version = 1

// SetAskByUpdate chooses how the lifecycles this worker program starts ask
// for their budget: with the ledger's ask update, answered in the call
// (true, the default), or by signal alone, as the previous release did. An
// upgrade from that release runs its new worker programs with false until
// every worker program runs the new code: the previous release's ledger
// code has no handler for the update, and a worker program of it that
// replays a ledger history holding an accepted ask fails that task
// (docs/DEPLOYMENT.md). Call it before the worker starts.
func SetAskByUpdate(on bool) {
	askByUpdateMax = workflow.DefaultVersion
	if on {
		askByUpdateMax = 1
	}
}

// reserve asks the ledger for the budget (with the ask update since
// VersionReserveAsk, whose answer comes in the activity's result; with the
// reserve signal before it, or when the update cannot be used) and takes
// its answer: granted (the refund is registered at once), refused (the
// spawn fails holding nothing), or queued, when the request may wait. A queued
// lifecycle stays pending until it is admitted; a shutdown, kill, cancel or
// its queue timeout withdraws it instead. It returns the outcome when the
// lifecycle cannot go on.
func (w *lifecycle) reserve(ctx workflow.Context, lease string) *outcome {
	r := w.st.Request
	answers := workflow.GetSignalChannel(ctx, SignalBudgetAnswer)
	byUpdate := w.version(ctx, VersionReserveAsk, askByUpdateMax) == 1
	var res activities.ReserveResult
	in := activities.ReserveInput{
		WorkerID: r.WorkerID, WorkerType: r.WorkerType, Lease: lease, Amount: r.Budget,
		Ask: true, Priority: r.Priority, Wait: r.WaitForBudget, Pool: w.st.Spec.TokenBudget.Pool, Update: byUpdate,
	}
	var ask workflow.Future
	if w.lean {
		ask = workflow.ExecuteLocalActivity(localBudgetOptions(ctx, 5), sharedActs.ReserveBudget, in)
	} else {
		ask = workflow.ExecuteActivity(budgetOptions(ctx, 5), sharedActs.ReserveBudget, in)
	}
	err := ask.Get(ctx, &res)
	if err != nil {
		w.st.Spec.TokenBudget.Allocated = 0
		if !isRefusal(err) {
			// The request may have reached the ledger before the call
			// failed: it is withdrawn.
			w.withdraw(ctx, lease)
		}
		if isCancel(ctx, err) {
			return &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled while pending"}
		}
		return &outcome{kind: outcomeFailed, reason: failureMessage(err)}
	}

	// A request that may not wait is answered in one ledger task; the
	// bound only keeps a lost answer from holding the lifecycle forever.
	// A waiting one is bound by its queue timeout, from its ask: the
	// spawn's, or else its pool's, which a queued answer carries (30 m
	// until one has come, by update; none, before the ask update).
	limit, timedOut := answerWithin, fmt.Sprintf("the budget ledger did not answer within %s", answerWithin)
	if r.WaitForBudget {
		limit = r.QueueTimeout
		if byUpdate {
			limit = orDuration(r.QueueTimeout, DefaultQueueTimeout)
		}
		timedOut = queueTimedOut(r.Budget, limit)
	}
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer func() { cancelTimer() }()
	var timer workflow.Future
	asked := workflow.Now(ctx).UTC()
	// The answer the update brought is taken first; the timer is started
	// only when there is an answer to wait for (by update, none at all
	// for a grant or a refusal).
	var first *BudgetAnswer
	if byUpdate && res.Answered {
		first = &BudgetAnswer{WorkerID: r.WorkerID, Lease: lease, Granted: res.Granted, Queued: res.Queued, Position: res.Position, Reason: res.Reason,
			QueueTimeout: res.QueueTimeout}
	}
	if limit > 0 && !byUpdate {
		timer = workflow.NewTimer(timerCtx, limit)
	}
	for {
		var ans BudgetAnswer
		var ended *outcome
		if first != nil {
			ans, first = *first, nil
			if !ans.Queued {
				// The wait ends here: answers by signal that came
				// meanwhile are an earlier lifecycle's of this worker id
				// (what they grant or queue is given back, as below) or
				// repeat this one's. A queued one leaves them to the loop,
				// where this lease's grant may be among them.
				w.dropStaleAnswers(ctx, answers, lease)
			}
			// A stop or a cancel that came while the ledger answered is
			// taken before the answer, as with an answer by signal.
			if w.wake.ReceiveAsync(nil) {
				if req, ok := w.nextStop(); ok {
					ended = &outcome{kind: outcomeStop, reason: req.reason, operator: true}
				}
			}
			if ended == nil && ctx.Err() != nil {
				ended = &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled while pending"}
			}
		} else {
			if timer == nil && limit > 0 {
				timer = workflow.NewTimer(timerCtx, limit-workflow.Now(ctx).Sub(asked))
			}
			ended = w.awaitAnswer(ctx, answers, timer, timedOut, &ans)
		}
		if ended != nil {
			// A grant on its way is released by the withdrawal too.
			w.st.Spec.Queue = nil
			w.st.Spec.TokenBudget.Allocated = 0
			w.withdraw(ctx, lease)
			return ended
		}
		switch {
		case ans.Lease == "":
		case ans.Lease != lease:
			// An answer to an earlier lifecycle of this worker id, which
			// ended without withdrawing: what it grants or queues is
			// nobody's, and is given back.
			if ans.Granted || ans.Queued {
				w.withdraw(ctx, ans.Lease)
			}
		case ans.Granted:
			w.granted(ctx, lease)
			return nil
		case ans.Queued:
			if r.WaitForBudget && r.QueueTimeout == 0 && ans.QueueTimeout > 0 && ans.QueueTimeout != limit {
				// The spawn set none: its pool's runs, from the ask.
				// (Answers of ledgers before pool queue timeouts carry
				// none, so the histories they are in take no new timer.)
				limit, timedOut = ans.QueueTimeout, queueTimedOut(r.Budget, ans.QueueTimeout)
				cancelTimer()
				timerCtx, cancelTimer = workflow.WithCancel(ctx)
				timer = nil
			}
			w.st.Spec.Queue = &QueueInfo{Position: ans.Position, Pool: w.st.Spec.TokenBudget.Pool, Since: workflow.Now(ctx).UTC()}
			if limit > 0 {
				w.st.Spec.Queue.Deadline = ptr(asked.Add(limit))
			}
			w.showDetails(ctx)
		default:
			// Refused. A retried request may still be on its way and fit
			// later: the withdrawal makes the ledger refuse it.
			w.st.Spec.TokenBudget.Allocated = 0
			w.withdraw(ctx, lease)
			return &outcome{kind: outcomeFailed, reason: ans.Reason}
		}
	}
}

// dropStaleAnswers takes the answers by signal already received, and gives
// back what those meant for another lease grant or queue.
func (w *lifecycle) dropStaleAnswers(ctx workflow.Context, answers workflow.ReceiveChannel, lease string) {
	drainSignals(answers, func(ans BudgetAnswer, err error) {
		if err == nil && ans.Lease != lease && ans.Lease != "" && (ans.Granted || ans.Queued) {
			w.withdraw(ctx, ans.Lease)
		}
	})
}

func queueTimedOut(budget int64, limit time.Duration) string {
	return fmt.Sprintf("queue timeout: no budget for %d tokens within %s", budget, limit)
}

// orDuration is d, or def when d is zero.
func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// awaitAnswer waits for the ledger's answer by signal, a stop, a cancel or
// the timeout (timer, when not nil), and returns the outcome when the wait
// ends the lifecycle; the answer is left in ans.
func (w *lifecycle) awaitAnswer(ctx workflow.Context, answers workflow.ReceiveChannel, timer workflow.Future, timedOut string, ans *BudgetAnswer) *outcome {
	var ended *outcome
	// A stop, a cancel or the timeout is taken before an answer that
	// came with it: the withdrawal releases a grant on its way, and no
	// process is started that nobody wants any more.
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(w.wake, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		if req, ok := w.nextStop(); ok {
			ended = &outcome{kind: outcomeStop, reason: req.reason, operator: true}
		}
	})
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {
		ended = &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled while pending"}
		if w.st.Spec.Queue != nil {
			ended.reason = "lifecycle cancelled while queued for budget"
		}
	})
	if timer != nil {
		sel.AddFuture(timer, func(workflow.Future) {
			ended = &outcome{kind: outcomeFailed, reason: timedOut}
		})
	}
	sel.AddReceive(answers, func(c workflow.ReceiveChannel, _ bool) {
		if err := receiveSignal(ctx, c, ans); err != nil {
			*ans = BudgetAnswer{}
		}
	})
	sel.Select(ctx)
	return ended
}

// granted records a reservation the ledger granted: held, and refunded by
// the saga.
func (w *lifecycle) granted(ctx workflow.Context, lease string) {
	w.st.Spec.Queue = nil
	w.held = w.st.Request.Budget
	w.saga.add(stepRefund, w.releaseBudget(lease))
}

// withdraw takes back a request the ledger may have queued or granted: a
// release of the lease, as a signal (a fleet stopped while queued must not
// queue its withdrawals behind the ten updates in flight), through the
// update when the signal cannot be sent. The ledger applies it in order
// after its answers, so a grant on its way is released too; the release is
// remembered, so a request still on its way is refused when it lands.
func (w *lifecycle) withdraw(ctx workflow.Context, lease string) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	req := ReleaseRequest{WorkerID: w.st.Request.WorkerID, Lease: lease}
	if err := workflow.SignalExternalWorkflow(ctx, LedgerWorkflowID, "", SignalRelease, req).Get(ctx, nil); err == nil {
		return
	}
	var res activities.ReleaseResult
	if err := workflow.ExecuteActivity(budgetOptions(ctx, 0), sharedActs.ReleaseBudget, activities.ReleaseInput{
		WorkerID: req.WorkerID, Lease: lease,
	}).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Error("Withdrawing the budget request failed", "error", err)
	}
	w.refunded += res.Released
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
		// What the worker spent is settled into the spend windows.
		req := ReleaseRequest{WorkerID: w.st.Spec.WorkerID, Lease: lease, Spent: w.st.Spec.TokenBudget.Used}
		// uncertain: a release signal that may have landed although its
		// sender failed (a lean run's local activity timing out).
		uncertain := false
		if held > 0 && w.version(ctx, VersionReleaseSignal, 1) == 1 {
			var sent workflow.Future
			if w.lean {
				// Sent by the worker program running the task: a marker,
				// not a command and a workflow task to learn it landed.
				sent = workflow.ExecuteLocalActivity(localReleaseOptions(ctx), sharedActs.ReleaseBySignal, activities.ReleaseInput{
					WorkerID: req.WorkerID, Lease: lease, Spent: req.Spent,
				})
			} else {
				sent = workflow.SignalExternalWorkflow(ctx, LedgerWorkflowID, "", SignalRelease, req)
			}
			err := sent.Get(ctx, nil)
			if err == nil {
				w.refunded += held
				return nil
			}
			uncertain = w.lean && !isLedgerNotRunning(err)
			workflow.GetLogger(ctx).Warn("Release signal not delivered; releasing through the update", "error", err)
		}
		var res activities.ReleaseResult
		err := workflow.ExecuteActivity(budgetOptions(ctx, 0), sharedActs.ReleaseBudget, activities.ReleaseInput{
			WorkerID: req.WorkerID, Lease: lease, Spent: req.Spent,
		}).Get(ctx, &res)
		if err == nil && uncertain {
			// The update finds nothing left when the signal did land:
			// what was held came back either way, once.
			res.Released = max(res.Released, held)
		}
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
			var pick workflow.Future
			if w.lean {
				pick = workflow.ExecuteLocalActivity(localSharedOptions(ctx), sharedActs.PickHost)
			} else {
				pick = workflow.ExecuteActivity(sharedOptions(ctx), sharedActs.PickHost)
			}
			if err := pick.Get(ctx, &host); err != nil {
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
		WorkerID: r.WorkerID, WorkerType: r.WorkerType, TaskID: r.TaskID, Lease: lease, HoldBeatsFor: w.holdBeatsFor(),
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
	// A new process has sent its host nothing yet. (A run that continues
	// as new keeps its process and these with it.)
	w.st.HostRelays, w.st.HostSilent = false, false
	w.saga.drop(stepStopProcess)
	w.saga.add(stepStopProcess, w.stopProcessCompensation())

	// Staleness is measured by the workflow's clock, not the host's.
	now := workflow.Now(ctx).UTC()
	w.st.Spec.PID = info.PID
	w.st.Spec.LogPath = info.LogPath
	w.st.Spec.Containment = info.Containment()
	w.st.Spec.StartedAt = &now
	w.st.Spec.Heartbeat.Alert = ""
	w.st.Spec.Heartbeat.Attention = "" // the new process has not asked
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
		// What the agent said on its SIGTERM counts before the refund
		// tells the ledger what was spent.
		if w.version(ctx, VersionDrainAfterSupervision, 1) == 1 {
			w.drainAfterSupervision(ctx)
		}
		return nil
	}
}
