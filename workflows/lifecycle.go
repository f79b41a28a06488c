package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// hostActs and sharedActs refer to the activities by method; they are
// never dereferenced. Host activities must be scheduled on the host's queue
// (hostOptions), shared ones on the shared queue.
var (
	hostActs   *activities.HostActivities
	sharedActs *activities.SharedActivities
)

// LifecycleState is a lifecycle run's whole state. It is also the input of
// the first run and of every continue-as-new, so nothing is lost across runs.
type LifecycleState struct {
	Request SpawnRequest `json:"request"`
	Spec    WorkerSpec   `json:"spec"`
	// Reserved is true while the ledger holds this lifecycle's allocation.
	Reserved bool `json:"reserved"`
	// Process is set once the worker's process was started.
	Process *activities.ProcessInfo `json:"process,omitempty"`
	// IdleSince is when the worker became idle; nil while busy.
	IdleSince *time.Time `json:"idle_since,omitempty"`
	// RestartCount counts restarts since the last healthy run.
	RestartCount int `json:"restart_count"`
	// PriorTokens is what the worker's earlier processes used; a new
	// process reports its own count from zero.
	PriorTokens int64 `json:"prior_tokens"`
	// Runs counts continue-as-new; SignalsThisRun bounds one run.
	Runs           int `json:"runs"`
	SignalsThisRun int `json:"signals_this_run"`
}

// NewLifecycleState is the input of a lifecycle's first run.
func NewLifecycleState(req SpawnRequest) LifecycleState {
	return LifecycleState{Request: req}
}

// Names of the saga's steps.
const (
	stepRefund      = "refund budget"
	stepStopProcess = "stop process"
)

// outcome is why supervision ended.
type outcome struct {
	kind     outcomeKind
	reason   string
	exit     *activities.ExitStatus
	grace    time.Duration
	operator bool // an operator asked for it
	// restartable failures are crashes and hangs, which a restart may cure.
	restartable bool
	// hostLost: nobody can stop the process; it is recorded as lost.
	hostLost bool
}

type outcomeKind int

const (
	outcomeContinueAsNew outcomeKind = iota + 1
	outcomeStop                      // graceful shutdown, kill or idle limit
	outcomeExited                    // the process ended by itself
	outcomeFailed                    // zombie, time limit, lost process
	outcomeCancelled
)

// stopRequest is what the shutdown and kill handlers hand to the main loop.
type stopRequest struct {
	grace  time.Duration
	kill   bool
	reason string
}

type lifecycle struct {
	st     LifecycleState
	limits Limits
	// stops queues the requests of the shutdown and kill handlers; wake
	// tells the main loop there is one. A queue, not a channel send, so a
	// handler never blocks on a loop that has finished.
	stops    []stopRequest
	wake     workflow.Channel
	saga     saga
	refunded int64
	// processFate is what the last stop found (ProcessStopped, ...).
	processFate string
	// cleanupRequested is set by the cleanup update of a zombie.
	cleanupRequested bool
}

// WorkerLifecycle supervises one worker from budget reservation to cleanup.
func WorkerLifecycle(ctx workflow.Context, st LifecycleState) (WorkerSpec, error) {
	w := &lifecycle{st: st, limits: st.Request.Limits.WithDefaults()}
	w.wake = workflow.NewBufferedChannel(ctx, 1)
	if err := w.registerHandlers(ctx); err != nil {
		return w.st.Spec, err
	}
	if w.st.Spec.Status == "" {
		if err := st.Request.Validate(); err != nil {
			return w.st.Spec, temporal.NewNonRetryableApplicationError("invalid spawn request: "+err.Error(), "InvalidRequest", nil)
		}
		w.initSpec(ctx)
	}
	return w.run(ctx)
}

func (w *lifecycle) initSpec(ctx workflow.Context) {
	r := w.st.Request
	w.st.Spec = WorkerSpec{
		WorkerID:    r.WorkerID,
		WorkerType:  r.WorkerType,
		TaskID:      r.TaskID,
		Priority:    r.Priority,
		Master:      r.Master,
		Repo:        r.Repo,
		TokenBudget: TokenBudget{Allocated: r.Budget},
		Heartbeat:   HeartbeatInfo{HealthScore: defaultHealthScore},
		Health:      HealthInfo{Score: defaultHealthScore, Band: "healthy"},
		CreatedAt:   workflow.Now(ctx).UTC(),
	}
	w.transition(ctx, StatusPending, "")
}

func (w *lifecycle) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (WorkerSpec, error) {
		return w.st.Spec, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateShutdown,
		func(ctx workflow.Context, req ShutdownRequest) (WorkerSpec, error) {
			grace := req.Grace
			if grace == 0 {
				grace = w.limits.ShutdownGrace
			}
			return w.requestStop(ctx, stopRequest{grace: grace, reason: orDefault(req.Reason, "shutdown requested")})
		},
		workflow.UpdateHandlerOptions{Validator: func(req ShutdownRequest) error {
			if err := req.Validate(); err != nil {
				return err
			}
			return w.acceptsStop()
		}},
	); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCleanup,
		func(ctx workflow.Context) (WorkerSpec, error) {
			w.cleanupRequested = true
			err := workflow.Await(ctx, func() bool { return w.st.Spec.Status != StatusZombie || !w.cleanupRequested })
			return w.st.Spec, err
		},
		workflow.UpdateHandlerOptions{Validator: func() error {
			if s := w.st.Spec.Status; s != StatusZombie {
				return fmt.Errorf("worker %s is %s, not a zombie: nothing to clean up", w.st.Spec.WorkerID, s)
			}
			return nil
		}},
	); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateKill,
		func(ctx workflow.Context, req KillRequest) (WorkerSpec, error) {
			return w.requestStop(ctx, stopRequest{kill: true, reason: orDefault(req.Reason, "kill requested")})
		},
		workflow.UpdateHandlerOptions{Validator: func(req KillRequest) error {
			if err := req.Validate(); err != nil {
				return err
			}
			return w.acceptsStop()
		}},
	)
}

// acceptsStop refuses a stop of a worker that has already ended. A stop of a
// worker that is stopping already is accepted and changes nothing, so that
// duplicate requests stay harmless.
func (w *lifecycle) acceptsStop() error {
	if s := w.st.Spec.Status; !s.Live() {
		return fmt.Errorf("worker %s has already ended (status %s)", w.st.Spec.WorkerID, s)
	}
	return nil
}

// requestStop hands the request to the main loop and returns once the
// lifecycle has moved past running or idle, so the caller sees the effect.
func (w *lifecycle) requestStop(ctx workflow.Context, req stopRequest) (WorkerSpec, error) {
	w.stops = append(w.stops, req)
	w.wake.SendAsync(struct{}{})
	err := workflow.Await(ctx, func() bool {
		s := w.st.Spec.Status
		return s != StatusPending && s != StatusRunning && s != StatusIdle
	})
	return w.st.Spec, err
}

func (w *lifecycle) run(ctx workflow.Context) (WorkerSpec, error) {
	logger := workflow.GetLogger(ctx)
	lease := w.lease(ctx)

	// Rebuild the compensations of what earlier runs did, in the order they
	// were registered.
	if w.st.Reserved {
		w.saga.add(stepRefund, w.releaseBudget(lease))
	}
	if w.st.Process != nil {
		w.saga.add(stepStopProcess, w.stopProcessCompensation())
	}

	if w.st.Spec.Status == StatusPending {
		if o := w.start(ctx, lease); o != nil {
			return w.finish(ctx, *o)
		}
	}
	for {
		o := w.supervise(ctx)
		if o.kind == outcomeContinueAsNew {
			w.st.Runs++
			w.st.SignalsThisRun = 0
			logger.Info("Continuing as new", "runs", w.st.Runs, "heartbeats", w.st.Spec.Heartbeat.Count)
			return w.st.Spec, workflow.NewContinueAsNewError(ctx, WorkerLifecycle, w.st)
		}
		if o.restartable && w.restart(ctx, lease, &o) {
			continue
		}
		return w.finish(ctx, o)
	}
}

// lease names this lifecycle in the ledger. The first run ID stays the same
// across continue-as-new and differs between two lifecycles of one worker id.
func (w *lifecycle) lease(ctx workflow.Context) string {
	info := workflow.GetInfo(ctx)
	return Lease(info.WorkflowExecution.ID, info.FirstRunID)
}

// Lease is the ledger's name for the lifecycle with this workflow ID and
// first run ID.
func Lease(workflowID, firstRunID string) string { return workflowID + "/" + firstRunID }

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
	w.st.Reserved = true
	w.saga.add(stepRefund, w.releaseBudget(lease))
	return w.launch(ctx, lease)
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

// supervise watches the running worker until something ends it or the run
// must continue as new.
func (w *lifecycle) supervise(ctx workflow.Context) outcome {
	hbCh := workflow.GetSignalChannel(ctx, SignalHeartbeat)
	sampleCh := workflow.GetSignalChannel(ctx, SignalSample)
	outputCh := workflow.GetSignalChannel(ctx, SignalOutputHeartbeat)
	watchCtx, cancelWatch := workflow.WithCancel(ctx)
	watch := workflow.ExecuteActivity(w.watchOptions(watchCtx), hostActs.WatchProcess, activities.WatchInput{
		WorkerID:        w.st.Spec.WorkerID,
		Process:         *w.st.Process,
		SampleEvery:     w.limits.SampleEvery,
		OutputHeartbeat: w.st.Request.HeartbeatMode == HeartbeatModeOutput,
	})

	var (
		timer   workflow.Future
		timerAt time.Time
		cancelT workflow.CancelFunc
		result  *outcome
	)
	for result == nil {
		// A cancel must not be carried off by continue-as-new: the new run
		// would not inherit it.
		if len(w.stops) == 0 && ctx.Err() == nil && w.shouldContinueAsNew(ctx) && w.drainForContinueAsNew(ctx, hbCh, sampleCh, outputCh) {
			cancelWatch()
			return outcome{kind: outcomeContinueAsNew}
		}

		now := workflow.Now(ctx)
		if next := w.nextDeadline(); timer == nil || next.Before(timerAt) {
			if cancelT != nil {
				cancelT()
			}
			var tctx workflow.Context
			tctx, cancelT = workflow.WithCancel(ctx)
			timerAt = next
			timer = workflow.NewTimer(tctx, max(next.Sub(now), time.Millisecond))
		}

		sel := workflow.NewSelector(ctx)
		sel.AddReceive(hbCh, func(c workflow.ReceiveChannel, _ bool) {
			var hb Heartbeat
			w.applyHeartbeat(ctx, hb, receiveSignal(ctx, c, &hb))
		})
		sel.AddReceive(sampleCh, func(c workflow.ReceiveChannel, _ bool) {
			var sample activities.ResourceSample
			w.applySample(ctx, sample, receiveSignal(ctx, c, &sample))
		})
		sel.AddReceive(outputCh, func(c workflow.ReceiveChannel, _ bool) {
			var sample activities.ResourceSample
			w.applyOutputHeartbeat(ctx, sample, receiveSignal(ctx, c, &sample))
		})
		sel.AddReceive(w.wake, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			if req, ok := w.nextStop(); ok {
				result = &outcome{kind: outcomeStop, reason: req.reason, grace: req.grace, operator: true}
			}
		})
		sel.AddFuture(watch, func(f workflow.Future) {
			var exit activities.ExitStatus
			switch err := f.Get(ctx, &exit); {
			case err == nil:
			case isScheduleToStartTimeout(err):
				result = &outcome{kind: outcomeFailed, hostLost: true,
					reason: fmt.Sprintf("host %s lost: its worker program did not come back within %s; process recorded as lost", w.st.Spec.Host, w.limits.HostLossAfter)}
				return
			default:
				result = &outcome{kind: outcomeFailed, reason: "lost track of the process: " + failureMessage(err)}
				return
			}
			result = exitOutcome(exit)
		})
		sel.AddFuture(timer, func(workflow.Future) {
			timer, cancelT = nil, nil
			result = w.checkDeadlines(ctx)
		})
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {
			result = &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled"}
		})
		sel.Select(ctx)
	}
	if cancelT != nil {
		cancelT()
	}
	switch result.kind {
	case outcomeStop:
		w.transition(ctx, StatusShuttingDown, result.reason)
		result.exit = w.stopAndCollect(ctx, result.grace, watch, cancelWatch)
	case outcomeFailed:
		w.transition(ctx, StatusFailed, result.reason)
		if result.hostLost {
			cancelWatch()
			break
		}
		result.exit = w.stopAndCollect(ctx, 0, watch, cancelWatch)
	case outcomeCancelled:
		// The workflow context is cancelled: the saga stops the process
		// on a disconnected context.
		cancelWatch()
	}
	return *result
}

func exitOutcome(exit activities.ExitStatus) *outcome {
	switch {
	case exit.Lost:
		return &outcome{kind: outcomeFailed, restartable: true, reason: "process died while its worker program was down; exit status unknown", exit: &exit}
	case exit.ExitCode == 0:
		return &outcome{kind: outcomeExited, reason: "process exited with code 0", exit: &exit}
	case exit.Signal != "":
		return &outcome{kind: outcomeFailed, restartable: true, reason: fmt.Sprintf("process killed by %s", exit.Signal), exit: &exit}
	default:
		return &outcome{kind: outcomeFailed, restartable: true, reason: fmt.Sprintf("process exited with code %d", exit.ExitCode), exit: &exit}
	}
}

// stopAndCollect stops the process group and returns the exit status the
// watch saw, if it saw one in time.
func (w *lifecycle) stopAndCollect(ctx workflow.Context, grace time.Duration, watch workflow.Future, cancelWatch workflow.CancelFunc) *activities.ExitStatus {
	w.stopGroup(ctx, grace)
	if watch.IsReady() {
		var exit activities.ExitStatus
		if watch.Get(ctx, &exit) == nil {
			return &exit
		}
		return nil
	}
	// The group is gone; the watch reports within its poll period.
	var exit *activities.ExitStatus
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(watch, func(f workflow.Future) {
		var e activities.ExitStatus
		if f.Get(ctx, &e) == nil {
			exit = &e
		}
	})
	sel.AddFuture(workflow.NewTimer(ctx, 10*time.Second), func(workflow.Future) {})
	sel.Select(ctx)
	cancelWatch()
	return exit
}

// stopGroup runs StopProcess; a kill that arrives during a graceful stop
// escalates it.
func (w *lifecycle) stopGroup(ctx workflow.Context, grace time.Duration) {
	in := activities.StopInput{WorkerID: w.st.Spec.WorkerID, Process: *w.st.Process, Grace: grace}
	pending := []workflow.Future{workflow.ExecuteActivity(w.stopOptions(ctx, grace), hostActs.StopProcess, in)}
	escalated := grace == 0
	stopped := false
	for len(pending) > 0 {
		sel := workflow.NewSelector(ctx)
		for i, f := range pending {
			sel.AddFuture(f, func(f workflow.Future) {
				var res activities.StopResult
				if err := f.Get(ctx, &res); err != nil {
					workflow.GetLogger(ctx).Warn("Stopping the process failed", "error", err)
				} else {
					stopped = true
					w.recordStop(res)
				}
				pending = append(pending[:i:i], pending[i+1:]...)
			})
		}
		sel.AddReceive(w.wake, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			for req, ok := w.nextStop(); ok; req, ok = w.nextStop() {
				if req.grace == 0 && !escalated {
					escalated = true
					in.Grace = 0
					pending = append(pending, workflow.ExecuteActivity(w.stopOptions(ctx, 0), hostActs.StopProcess, in))
				}
			}
		})
		sel.Select(ctx)
	}
	if stopped {
		w.saga.drop(stepStopProcess)
	}
}

// finish ends the lifecycle: compensations for a failure, a refund for a
// normal end, and the final state.
func (w *lifecycle) finish(ctx workflow.Context, o outcome) (WorkerSpec, error) {
	if o.exit != nil && !o.exit.Lost {
		code := o.exit.ExitCode
		w.st.Spec.ExitCode = &code
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
	// A compensation that failed leaves the worker in zombie: it retries
	// every RetryCleanupEvery, or at once on `starter cleanup`, until done.
	for len(errs) > 0 {
		cleanup.Reason = fmt.Sprintf("%s; cleanup incomplete: %v", o.reason, errors.Join(errs...))
		cleanup.Refunded, cleanup.Process = w.refunded, w.processFate
		if w.st.Spec.Status != StatusZombie {
			w.transition(ctx, StatusZombie, cleanup.Reason)
		}
		w.cleanupRequested = false
		waitCtx := ctx
		if ctx.Err() != nil && workflow.GetVersion(ctx, "cancelled-cleanup-retries", workflow.DefaultVersion, 1) == 1 {
			// Cancelled, the lifecycle still owes its process a stop:
			// giving up here would leak it. Terminating the workflow is
			// the way to abandon it.
			waitCtx, _ = workflow.NewDisconnectedContext(ctx)
		}
		if _, err := workflow.AwaitWithTimeout(waitCtx, retryCleanupEvery, func() bool { return w.cleanupRequested }); err != nil {
			break // cancelled before this version: it ends as it is, in zombie
		}
		errs = w.compensate(ctx)
	}
	cleanup.Refunded = w.refunded
	cleanup.Process = w.processFate
	now := workflow.Now(ctx).UTC()
	if len(errs) == 0 {
		cleanup.Reason = o.reason
		cleanup.CleanedAt = &now
		if normalEnd {
			w.transition(ctx, StatusCompleted, o.reason)
		} else if w.st.Spec.Status == StatusZombie {
			w.transition(ctx, StatusCleanedUp, o.reason)
		}
	}
	w.st.Spec.CompletedAt = &now
	// Let in-flight shutdown or kill updates return before the run closes.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return w.st.Spec, nil
}

// compensate runs what the saga still holds; the failed steps stay in it.
func (w *lifecycle) compensate(ctx workflow.Context) []error {
	if w.saga.empty() {
		return nil
	}
	errs := w.saga.compensate(ctx)
	w.st.Reserved = w.saga.has(stepRefund)
	return errs
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

func (w *lifecycle) releaseBudget(lease string) func(workflow.Context) error {
	return func(ctx workflow.Context) error {
		var res activities.ReleaseResult
		err := workflow.ExecuteActivity(budgetOptions(ctx, 0), sharedActs.ReleaseBudget, activities.ReleaseInput{
			WorkerID: w.st.Spec.WorkerID, Lease: lease,
		}).Get(ctx, &res)
		w.refunded += res.Released
		return err
	}
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

// applyHeartbeat records a heartbeat by the workflow's own clock, unless its
// payload could not be decoded (decodeErr) or is invalid.
func (w *lifecycle) applyHeartbeat(ctx workflow.Context, hb Heartbeat, decodeErr error) {
	w.st.SignalsThisRun++
	spec := &w.st.Spec
	if err := cmp.Or(decodeErr, hb.Validate()); err != nil {
		w.reject(ctx, SignalHeartbeat, err)
		return
	}
	now := workflow.Now(ctx).UTC()
	spec.Heartbeat.LastSeen = &now
	spec.Heartbeat.Count++
	spec.Heartbeat.Alert = ""
	spec.Heartbeat.Message = hb.Message
	spec.Heartbeat.ReportedHealthScore = hb.HealthScore
	spec.TokenBudget.Used = w.st.PriorTokens + hb.TokensUsed
	w.updateHealth()
	w.showDetails(ctx)
	switch {
	case hb.Status == HeartbeatIdle && spec.Status == StatusRunning:
		w.st.IdleSince = &now
		w.transition(ctx, StatusIdle, "worker reported idle")
	case hb.Status == HeartbeatBusy && spec.Status == StatusIdle:
		w.st.IdleSince = nil
		w.transition(ctx, StatusRunning, "worker reported busy")
	}
}

// heartbeatBase is the time staleness is measured from: the last heartbeat,
// or the start of the process for a worker that has not sent one yet. A
// pending worker has no base and is never flagged.
func (w *lifecycle) heartbeatBase() time.Time {
	base := *w.st.Spec.StartedAt
	if hb := w.st.Spec.Heartbeat.LastSeen; hb != nil && hb.After(base) {
		return *hb
	}
	return base
}

// nextDeadline is the earliest moment something is due: a heartbeat alert,
// the zombie limit, the idle limit or the time limit.
func (w *lifecycle) nextDeadline() time.Time {
	base := w.heartbeatBase()
	next := base.Add(w.limits.ZombieAfter)
	switch w.st.Spec.Heartbeat.Alert {
	case "":
		next = earliest(next, base.Add(w.limits.HeartbeatWarning))
	case AlertWarning:
		next = earliest(next, base.Add(w.limits.HeartbeatCritical))
	}
	if w.st.IdleSince != nil {
		next = earliest(next, w.st.IdleSince.Add(w.limits.IdleAfter))
	}
	if t := w.st.Request.Timeout; t > 0 {
		next = earliest(next, w.st.Spec.StartedAt.Add(t))
	}
	return next
}

// checkDeadlines runs when the deadline timer fires.
func (w *lifecycle) checkDeadlines(ctx workflow.Context) *outcome {
	now := workflow.Now(ctx)
	age := now.Sub(w.heartbeatBase())
	hb := &w.st.Spec.Heartbeat
	switch {
	case age >= w.limits.ZombieAfter:
		return &outcome{kind: outcomeFailed, restartable: true, reason: fmt.Sprintf("no heartbeat for %s (zombie limit %s)", age.Round(time.Second), w.limits.ZombieAfter)}
	case age >= w.limits.HeartbeatCritical && hb.Alert != AlertCritical:
		hb.Alert = AlertCritical
		workflow.GetLogger(ctx).Warn("Heartbeat critical", "age", age)
		w.showDetails(ctx)
	case age >= w.limits.HeartbeatWarning && hb.Alert == "":
		hb.Alert = AlertWarning
		workflow.GetLogger(ctx).Warn("Heartbeat late", "age", age)
		w.showDetails(ctx)
	}
	if t := w.st.Request.Timeout; t > 0 && now.Sub(*w.st.Spec.StartedAt) >= t {
		return &outcome{kind: outcomeFailed, reason: fmt.Sprintf("exceeded its time limit of %s", t)}
	}
	if w.st.IdleSince != nil && now.Sub(*w.st.IdleSince) >= w.limits.IdleAfter {
		return &outcome{kind: outcomeStop, reason: fmt.Sprintf("idle for %s", w.limits.IdleAfter), grace: w.limits.ShutdownGrace}
	}
	return nil
}

func (w *lifecycle) shouldContinueAsNew(ctx workflow.Context) bool {
	return w.st.SignalsThisRun >= w.limits.MaxSignalsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
}

// drainForContinueAsNew applies every buffered heartbeat and waits for the
// update handlers, so that nothing sent to this run is lost. It returns false
// when a stop request turned up meanwhile: the stop goes first.
func (w *lifecycle) drainForContinueAsNew(ctx workflow.Context, hbCh, sampleCh, outputCh workflow.ReceiveChannel) bool {
	for {
		drainSignals(hbCh, func(hb Heartbeat, err error) { w.applyHeartbeat(ctx, hb, err) })
		drainSignals(sampleCh, func(s activities.ResourceSample, err error) { w.applySample(ctx, s, err) })
		drainSignals(outputCh, func(s activities.ResourceSample, err error) { w.applyOutputHeartbeat(ctx, s, err) })
		if len(w.stops) > 0 || ctx.Err() != nil {
			return false
		}
		if workflow.AllHandlersFinished(ctx) {
			return true
		}
		_ = workflow.Await(ctx, func() bool {
			return workflow.AllHandlersFinished(ctx) || len(w.stops) > 0 || hbCh.Len()+sampleCh.Len()+outputCh.Len() > 0
		})
	}
}

// nextStop takes every queued stop request at once and merges them: a kill
// wins and the shortest grace counts. Taking them one by one would leave a
// kill queued behind a shutdown unseen, since one wake-up may stand for
// several requests.
func (w *lifecycle) nextStop() (stopRequest, bool) {
	if len(w.stops) == 0 {
		return stopRequest{}, false
	}
	req := w.stops[0]
	for _, r := range w.stops[1:] {
		if r.kill && !req.kill {
			req.kill, req.reason = true, r.reason
		}
		req.grace = min(req.grace, r.grace)
	}
	w.stops = nil
	if req.kill {
		req.grace = 0
	}
	return req, true
}

// transition changes the status, records it and upserts the search
// attributes.
func (w *lifecycle) transition(ctx workflow.Context, s Status, reason string) {
	spec := &w.st.Spec
	spec.Status = s
	spec.Transitions = append(spec.Transitions, Transition{Status: s, At: workflow.Now(ctx).UTC(), Reason: truncate(reason, maxReasonBytes)})
	if n := len(spec.Transitions); n > maxTransitions {
		spec.Transitions = append([]Transition(nil), spec.Transitions[n-maxTransitions:]...)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttributes(*spec)...); err != nil {
		workflow.GetLogger(ctx).Warn("Upserting search attributes failed", "error", err)
	}
	w.showDetails(ctx)
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
	}
	details := fmt.Sprintf("**%s** · %s · tokens %d/%d · health %d %s", spec.Status, hb,
		spec.TokenBudget.Used, spec.TokenBudget.Allocated, spec.Health.Score, spec.Health.Band)
	if spec.PID != 0 {
		details += fmt.Sprintf(" · pid %d on %s", spec.PID, spec.Host)
	}
	if spec.Cleanup != nil && !spec.Status.Live() {
		details += " · " + spec.Cleanup.Reason
	}
	workflow.SetCurrentDetails(ctx, details)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// reject counts a signal that was ignored and keeps why, for status.
func (w *lifecycle) reject(ctx workflow.Context, signal string, err error) {
	hb := &w.st.Spec.Heartbeat
	hb.Rejected++
	hb.LastRejected = truncate(signal+": "+err.Error(), maxReasonBytes)
	workflow.GetLogger(ctx).Warn("Ignoring an invalid signal", "signal", signal, "error", err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
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
