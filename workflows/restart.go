package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// restartTokenCap bounds what all processes of one task may use, as a
// multiple of its budget: the old system's cap on restarts.
const restartTokenCap = 3

// restartCheck is what the restart decision reads of a crashed worker.
type restartCheck struct {
	// Restarts is the count since the last healthy run, before this crash.
	Restarts    int
	MaxRestarts int
	// RanFor is how long the crashed process ran; negative when it never
	// started.
	RanFor     time.Duration
	HealthyRun time.Duration
	TokensUsed int64
	Budget     int64
	// Reason is why the process ended.
	Reason string
	// Uncounted is an exit rule's ignore: not counted against MaxRestarts.
	Uncounted bool
	// Ignored counts the uncounted restarts since the last healthy run;
	// Unbounded lifts maxIgnoredRestarts, for a lifecycle of the release
	// before the bound (VersionIgnoreBound).
	Ignored   int
	Unbounded bool
}

// restartVerdict is the decision: restart or not, the restart count it
// leaves, and the lifecycle's reason when it does not restart.
type restartVerdict struct {
	Restart  bool
	Restarts int
	Ignored  int
	Reason   string
	// Why names the rule that stopped a restart, for the give-ups metric
	// (metrics.GiveUps): one of the giveUp* constants.
	Why string
}

// Why a crash was not restarted, as the give-ups metric labels it.
const (
	giveUpNoRestarts    = "no_restarts"
	giveUpMaxRestarts   = "max_restarts"
	giveUpIgnoredBound  = "ignored_bound"
	giveUpTokenCap      = "token_cap"
	giveUpBreakerOpen   = "breaker_open"
	giveUpBreakerSilent = "breaker_unanswered"
	giveUpBudget        = "budget"
)

// maxIgnoredRestarts bounds the restarts an exit rule's ignore makes
// without a healthy run between them: an agent that always ends that way
// would otherwise restart forever.
const maxIgnoredRestarts = 20

// decideRestart is the restart policy before the circuit breaker and the
// ledger are asked: a run of HealthyRun forgives earlier crashes, a worker
// without restarts or past its count ends, and so does one whose next
// process could take it past restartTokenCap budgets.
func decideRestart(c restartCheck) restartVerdict {
	v := restartVerdict{Restarts: c.Restarts, Ignored: c.Ignored, Reason: c.Reason}
	if c.RanFor >= 0 && c.RanFor >= c.HealthyRun {
		v.Restarts, v.Ignored = 0, 0
	}
	switch {
	case c.Uncounted && v.Ignored >= maxIgnoredRestarts && !c.Unbounded:
		v.Reason, v.Why = fmt.Sprintf("gave up after %d restarts its exit rule ignored: %s", v.Ignored, c.Reason), giveUpIgnoredBound
	case c.Uncounted && c.TokensUsed+c.Budget > restartTokenCap*c.Budget:
		v.Reason, v.Why = fmt.Sprintf("%s; not restarted: %d tokens used, a restart could exceed %d× the budget", c.Reason, c.TokensUsed, restartTokenCap), giveUpTokenCap
	case c.Uncounted:
		v.Restart = true
	case c.MaxRestarts == 0:
		v.Why = giveUpNoRestarts
	case v.Restarts >= c.MaxRestarts:
		v.Reason, v.Why = fmt.Sprintf("gave up after %d restarts: %s", v.Restarts, c.Reason), giveUpMaxRestarts
	case c.TokensUsed+c.Budget > restartTokenCap*c.Budget:
		// The next process may use a whole budget again.
		v.Reason, v.Why = fmt.Sprintf("%s; not restarted: %d tokens used, a restart could exceed %d× the budget", c.Reason, c.TokensUsed, restartTokenCap), giveUpTokenCap
	default:
		v.Restart = true
	}
	return v
}

// restart decides whether a crashed worker is started again and, if so,
// waits its back-off and starts a new process on the same host. It returns
// false with o rewritten to the reason when the lifecycle must end instead.
func (w *lifecycle) restart(ctx workflow.Context, lease string, o *outcome) bool {
	r := w.st.Request
	now := workflow.Now(ctx).UTC()
	ranFor := time.Duration(-1)
	if w.st.Spec.StartedAt != nil {
		ranFor = now.Sub(*w.st.Spec.StartedAt)
	}
	v := decideRestart(restartCheck{Restarts: w.st.RestartCount, MaxRestarts: r.MaxRestarts, RanFor: ranFor,
		HealthyRun: w.limits.HealthyRun, TokensUsed: w.st.Spec.TokenBudget.Used, Budget: r.Budget, Reason: o.reason,
		Uncounted: o.uncounted, Ignored: w.st.IgnoredRestarts,
		// Asked only where the bound would stop it, so that every other
		// history replays without the marker.
		Unbounded: o.uncounted && w.st.IgnoredRestarts >= maxIgnoredRestarts &&
			w.version(ctx, VersionIgnoreBound, 1) == workflow.DefaultVersion})
	w.st.RestartCount, w.st.IgnoredRestarts, o.reason = v.Restarts, v.Ignored, v.Reason
	if !v.Restart {
		w.countGiveUp(ctx, v.Why)
		return false
	}
	if !o.uncounted {
		var decision activities.BreakerDecision
		if err := workflow.ExecuteActivity(sharedOptions(ctx), sharedActs.RecordFailure, activities.RecordFailureInput{
			WorkerType: r.WorkerType, WorkerID: r.WorkerID,
		}).Get(ctx, &decision); err != nil {
			o.reason = fmt.Sprintf("%s; not restarted: the circuit breaker did not answer: %s", o.reason, failureMessage(err))
			w.countGiveUp(ctx, giveUpBreakerSilent)
			return false
		}
		if !decision.Allowed {
			o.reason = fmt.Sprintf("%s; not restarted: circuit breaker of %s open until %s (%d crashes in %s)",
				o.reason, r.WorkerType, decision.OpenUntil.Format(time.RFC3339), decision.RecentFailures, BreakerWindow)
			w.countGiveUp(ctx, giveUpBreakerOpen)
			return false
		}
	}
	// The reservation is held across restarts; this checks the ledger still
	// has it (reserving the same lease again is a no-op). Asked as a
	// recheck, the ledger itself answers: a repeated reservation is
	// answered from the server's cache of the first, "reserved", even after
	// the lease was released.
	check := activities.ReserveInput{WorkerID: r.WorkerID, WorkerType: r.WorkerType, Lease: lease, Amount: r.Budget,
		Pool: w.st.Spec.TokenBudget.Pool}
	recheck := w.version(ctx, VersionRecheckReservation, 1) == 1
	check.Recheck = recheck
	if err := workflow.ExecuteActivity(budgetOptions(ctx, 5), sharedActs.ReserveBudget, check).Get(ctx, nil); err != nil {
		if recheck {
			// The ledger no longer holds it (or cannot say): the refund
			// asks it what it gives back instead of counting the budget.
			w.held = 0
		}
		o.reason = fmt.Sprintf("%s; not restarted: %s", o.reason, failureMessage(err))
		w.countGiveUp(ctx, giveUpBudget)
		return false
	}

	var code *int
	if o.exit != nil && !o.exit.Lost {
		c := o.exit.ExitCode
		code = &c
	}
	if o.uncounted {
		w.st.IgnoredRestarts++
		w.countRestart(ctx, o)
		delay := backoff(w.limits, w.st.IgnoredRestarts)
		counted := false
		w.recordRestart(RestartRecord{At: now, ExitCode: code, Reason: o.reason, Delay: delay, Counted: &counted})
		w.transition(ctx, StatusPending, fmt.Sprintf("restart in %s, not counted (exit rule: ignore)", delay))
		return w.restartAfter(ctx, lease, delay, o)
	}
	w.st.RestartCount++
	w.countRestart(ctx, o)
	delay := backoff(w.limits, w.st.RestartCount)
	w.recordRestart(RestartRecord{At: now, ExitCode: code, Reason: o.reason, Delay: delay})
	w.transition(ctx, StatusPending, fmt.Sprintf("restart %d of %d in %s", w.st.RestartCount, r.MaxRestarts, delay))
	return w.restartAfter(ctx, lease, delay, o)
}

// recordRestart adds a restart to the spec, keeping the latest
// maxTransitions: the state is carried through continue-as-new.
func (w *lifecycle) recordRestart(r RestartRecord) {
	w.st.Spec.Restarts = append(w.st.Spec.Restarts, r)
	if n := len(w.st.Spec.Restarts); n > maxTransitions {
		w.st.Spec.Restarts = append([]RestartRecord(nil), w.st.Spec.Restarts[n-maxTransitions:]...)
	}
}

// restartAfter waits the back-off and starts the process again.
func (w *lifecycle) restartAfter(ctx workflow.Context, lease string, delay time.Duration, o *outcome) bool {
	w.st.PriorTokens = w.st.Spec.TokenBudget.Used

	if stop := w.waitBackoff(ctx, delay); stop != nil {
		*o = *stop
		return false
	}
	if failed := w.launch(ctx, lease); failed != nil {
		*o = *failed
		return false
	}
	return true
}

// backoff is the old system's delay: base × 2^(n−1), capped.
func backoff(l Limits, n int) time.Duration {
	d := l.RestartDelay
	for i := 1; i < n && d < l.RestartMaxDelay; i++ {
		d *= 2
	}
	return min(d, l.RestartMaxDelay)
}

// waitBackoff sleeps before a restart; a shutdown, kill or cancel during it
// ends the lifecycle instead.
func (w *lifecycle) waitBackoff(ctx workflow.Context, delay time.Duration) *outcome {
	var result *outcome
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	done := false
	timer := workflow.NewTimer(timerCtx, delay)
	for !done && result == nil {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(workflow.Future) { done = true })
		sel.AddReceive(w.wake, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			if req, ok := w.nextStop(); ok {
				result = &outcome{kind: outcomeStop, reason: req.reason, operator: true}
			}
		})
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {
			result = &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled"}
		})
		sel.Select(ctx)
	}
	return result
}
