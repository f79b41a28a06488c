package workflows

import (
	"fmt"
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
// The fields after Request are omitzero so that a first run's input, as
// NewLifecycleState makes it, encodes as {"request": ...} alone: what
// docs/API.md asks of every master and LifecycleState.schema.json allows.
// A zero field decodes to the same state whether it is sent or not.
type LifecycleState struct {
	Request SpawnRequest `json:"request"`
	Spec    WorkerSpec   `json:"spec,omitzero"`
	// Reserved is true while the ledger holds this lifecycle's allocation.
	// The saga is the truth within a run; this is written from it only when
	// the state is handed to the next run, which rebuilds its saga from it.
	Reserved bool `json:"reserved,omitzero"`
	// Process is set once the worker's process was started.
	Process *activities.ProcessInfo `json:"process,omitempty"`
	// IdleSince is when the worker became idle; nil while busy.
	IdleSince *time.Time `json:"idle_since,omitempty"`
	// RestartCount counts restarts since the last healthy run.
	RestartCount int `json:"restart_count,omitzero"`
	// IgnoredRestarts counts the restarts an exit rule's ignore made, which
	// RestartCount and the breaker do not; it grows their back-off.
	IgnoredRestarts int `json:"ignored_restarts,omitzero"`
	// PriorTokens is what the worker's earlier processes used; a new
	// process reports its own count from zero.
	PriorTokens int64 `json:"prior_tokens,omitzero"`
	// Limits are the limits in force, resolved at the first run
	// (resolveLimits); nil in the input of a first run.
	Limits *Limits `json:"limits,omitempty"`
	// HostRelays is set while the current process's heartbeats come
	// relayed by its host (VersionHostHeartbeat): the host judges its
	// silence, and the lifecycle's timer is a backstop one keepalive
	// interval after the zombie limit. HostSilent is set once the host
	// reported the agent silent for the zombie limit.
	HostRelays bool `json:"host_relays,omitzero"`
	HostSilent bool `json:"host_silent,omitzero"`
	// Ending is set when the lifecycle continued as new in zombie, still
	// retrying its cleanup: the next run goes on with it, nothing else.
	Ending *Ending `json:"ending,omitempty"`
	// Runs counts continue-as-new; SignalsThisRun bounds one run.
	Runs           int `json:"runs,omitzero"`
	SignalsThisRun int `json:"signals_this_run,omitzero"`
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
	// uncounted: an exit rule's ignore; restarted without counting it
	// against max_restarts or the breaker.
	uncounted bool
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
	// eventsRaised counts this run's events, for their IDs (raise).
	eventsRaised int
	// stops queues the requests of the shutdown and kill handlers; wake
	// tells the main loop there is one. A queue, not a channel send, so a
	// handler never blocks on a loop that has finished.
	stops    []stopRequest
	wake     workflow.Channel
	saga     saga
	refunded int64
	// held is what the ledger is known to hold under this lifecycle's
	// lease, 0 when that is unknown (a reservation that failed half-way, a
	// recheck that found it gone): the refund trusts it only when it is set.
	held int64
	// processFate is what the last stop found (ProcessStopped, ...).
	processFate string
	// cleanupRequested is set by the cleanup update of a zombie.
	cleanupRequested bool
	// supervisionOver is set while what came during a stop is applied
	// (drainAfterSupervision): its alert stands.
	supervisionOver bool
	// lean: the run took VersionLeanLifecycle.
	lean bool
	// hostBeats: the run took VersionHostHeartbeat, asked at each
	// supervision; hostUnanswered: the host did not answer askHost.
	hostBeats      bool
	hostUnanswered bool
	// askedFirst: the backstop asked a host that had relayed nothing
	// (VersionAskHostFirst); hostHeldNone: the host held no heartbeat.
	askedFirst   bool
	hostHeldNone bool
	// relayed: the heartbeat the supervision took last came relayed by
	// the host (VersionRelayRearm).
	relayed bool
	// cancelDeadline cancels the deadline timer a lean run left running at
	// the end of its last supervision (awaitOutcome), nil once done.
	cancelDeadline workflow.CancelFunc
}

// version is the version of a lifecycle change: its newest in a lean run
// (VersionLeanLifecycle), which implies every change before it, else what
// GetVersion records or replays.
func (w *lifecycle) version(ctx workflow.Context, changeID string, maxSupported workflow.Version) workflow.Version {
	if w.lean {
		return maxSupported
	}
	return versionOf(ctx, changeID, maxSupported)
}

// leanMax is the VersionLeanLifecycle new runs take: 1, or DefaultVersion
// while a fleet is upgraded (SetCompat, or the reserve signal or the ask
// update off, which a lean run would take on).
func leanMax() workflow.Version {
	if reserveSignalMax == 1 && askByUpdateMax == 1 && !heldBack[VersionLeanLifecycle] {
		return 1
	}
	return workflow.DefaultVersion
}

// WorkerLifecycle supervises one worker from budget reservation to cleanup.
func WorkerLifecycle(ctx workflow.Context, st LifecycleState) (WorkerSpec, error) {
	w := &lifecycle{st: st}
	// Asked before anything else, so that every later change is read from
	// it in a lean run.
	w.lean = workflow.GetVersion(ctx, VersionLeanLifecycle, workflow.DefaultVersion, leanMax()) == 1
	w.wake = workflow.NewBufferedChannel(ctx, 1)
	if err := w.registerHandlers(ctx); err != nil {
		return w.st.Spec, err
	}
	first := w.st.Spec.Status == ""
	if first {
		if err := st.Request.validateFields(); err != nil {
			return w.st.Spec, invalidRequest(err)
		}
	}
	w.resolveLimits(ctx)
	if first {
		// Checked against the limits this lifecycle resolved, not today's
		// defaults: a replay must decide as the first run did.
		if err := w.limits.checkOrder(); err != nil {
			return w.st.Spec, invalidRequest(err)
		}
		w.initSpec(ctx)
	}
	return w.run(ctx)
}

func invalidRequest(err error) error {
	return temporal.NewNonRetryableApplicationError("invalid spawn request: "+err.Error(), "InvalidRequest", nil)
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
	// Lifecycles started before pools reserved in the root alone, and go
	// on doing so across their restarts and continue-as-new.
	if w.version(ctx, VersionPools, 1) == 1 {
		w.st.Spec.TokenBudget.Pool = poolOf(r)
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
			waitCtx := ctx
			if ctx.Err() != nil && w.version(ctx, VersionCancelledCleanupAnswer, 1) == 1 {
				// A cancelled lifecycle still retries its cleanup (finish):
				// the caller waits for that retry, not for the cancel.
				waitCtx, _ = workflow.NewDisconnectedContext(ctx)
			}
			err := workflow.Await(waitCtx, func() bool { return w.st.Spec.Status != StatusZombie || !w.cleanupRequested })
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

	if e := w.st.Ending; e != nil {
		return w.resumeSettling(ctx, lease, *e)
	}
	// Rebuild the compensations of what earlier runs did, in the order they
	// were registered.
	if w.st.Reserved {
		// Only a reservation that went through is handed to the next run.
		w.held = w.st.Request.Budget
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
			w.st.Reserved = w.saga.has(stepRefund)
			logger.Info("Continuing as new", "runs", w.st.Runs, "heartbeats", w.st.Spec.Heartbeat.Count)
			return w.st.Spec, workflow.NewContinueAsNewError(ctx, WorkerLifecycle, w.st)
		}
		if o.restartable && w.restart(ctx, lease, &o) {
			continue
		}
		if o.kind == outcomeFailed && !o.hostLost {
			// Failed for good: no restart left or allowed, an exit rule's
			// fail, a restart that could not start (a lost host has its
			// own event).
			w.raise(ctx, EventWorkerFailed, o.reason)
		}
		w.st.Spec.Heartbeat.Attention = "" // nobody is asked any more
		return w.finish(ctx, o)
	}
}

// resumeSettling goes on with the cleanup an earlier run left owed, in
// zombie (continueZombie): it retries at once, as a `starter cleanup`
// would, and then every retryCleanupEvery.
func (w *lifecycle) resumeSettling(ctx workflow.Context, lease string, e Ending) (WorkerSpec, error) {
	w.held, w.refunded, w.processFate = e.Held, e.Refunded, e.ProcessFate
	for _, name := range e.Owed {
		switch name {
		case stepRefund:
			w.saga.add(stepRefund, w.releaseBudget(lease))
		case stepStopProcess:
			w.saga.add(stepStopProcess, w.stopProcessCompensation())
		}
	}
	if w.st.Spec.Cleanup == nil {
		w.st.Spec.Cleanup = &CleanupInfo{Reason: e.Reason, Automated: true}
	}
	return w.settle(ctx, e, w.compensate(ctx))
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
