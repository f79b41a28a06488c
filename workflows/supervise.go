package workflows

import (
	"cmp"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/metrics"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
)

// supervise watches the running worker until something ends it or the run
// must continue as new, and then does what that outcome needs.
func (w *lifecycle) supervise(ctx workflow.Context) outcome {
	w.hostBeats = w.version(ctx, VersionHostHeartbeat, 1) == 1
	// What the host said of an earlier process is not said of this one.
	w.hostUnanswered, w.askedFirst, w.hostHeldNone = false, false, false
	watchCtx, cancelWatch := workflow.WithCancel(ctx)
	watch := workflow.ExecuteActivity(w.watchOptions(watchCtx), hostActs.WatchProcess, activities.WatchInput{
		WorkerID:        w.st.Spec.WorkerID,
		Process:         *w.st.Process,
		SampleEvery:     w.limits.SampleEvery,
		OutputHeartbeat: w.st.Request.HeartbeatMode == HeartbeatModeOutput,
		HostLossAfter:   w.limits.HostLossAfter,
		WatchHeartbeat:  w.limits.WatchHeartbeat,
		Grace:           w.limits.ShutdownGrace,
		Relay:           w.hostBeats,
		ZombieAfter:     w.limits.ZombieAfter,
		TokenBudget:     w.st.Spec.TokenBudget.Allocated,
		PriorTokens:     w.st.PriorTokens,
	})
	o := w.awaitOutcome(ctx, watch)
	if o.kind == outcomeContinueAsNew {
		cancelWatch()
		return o
	}
	w.endSupervision(ctx, &o, watch, cancelWatch)
	if w.version(ctx, VersionDrainAfterSupervision, 1) == 1 {
		w.drainAfterSupervision(ctx)
	}
	return o
}

// drainAfterSupervision applies what came while the process was being
// stopped to the process it came from (a last tokens_used). The lifecycle
// is no longer running or idle by then, so a busy or idle in it moves
// nothing; neither does it take back a late heartbeat's alert.
func (w *lifecycle) drainAfterSupervision(ctx workflow.Context) {
	w.supervisionOver = true
	defer func() { w.supervisionOver = false }()
	drainSignals(workflow.GetSignalChannel(ctx, SignalHeartbeat), func(hb Heartbeat, err error) { w.applyHeartbeat(ctx, hb, err) })
	drainSignals(workflow.GetSignalChannel(ctx, SignalSample), func(s activities.ResourceSample, err error) { w.applySample(ctx, s, err) })
	drainSignals(workflow.GetSignalChannel(ctx, SignalOutputHeartbeat), func(s activities.ResourceSample, err error) { w.applyOutputHeartbeat(ctx, s, err) })
}

// awaitOutcome is the event loop of a running worker: heartbeats, samples,
// stop requests, the watch, the deadline timer and a cancel, until one of
// them ends supervision or the run should continue as new.
func (w *lifecycle) awaitOutcome(ctx workflow.Context, watch workflow.Future) outcome {
	hbCh := workflow.GetSignalChannel(ctx, SignalHeartbeat)
	sampleCh := workflow.GetSignalChannel(ctx, SignalSample)
	outputCh := workflow.GetSignalChannel(ctx, SignalOutputHeartbeat)
	var (
		timer   workflow.Future
		timerAt time.Time
		cancelT workflow.CancelFunc
		result  *outcome
	)
	oneTimer := w.version(ctx, VersionOneDeadlineTimer, 1) == 1
	if oneTimer {
		hb := &w.st.Spec.Heartbeat
		hb.WarningAfter, hb.CriticalAfter, hb.ZombieAfter = w.limits.HeartbeatWarning, w.limits.HeartbeatCritical, w.limits.ZombieAfter
		if hb.Alert == AlertWarning {
			// Set by an earlier run of an earlier release: read from the
			// clocks from now on.
			hb.Alert = ""
		}
	}
	for result == nil {
		// A cancel must not be carried off by continue-as-new: the new run
		// would not inherit it.
		if len(w.stops) == 0 && ctx.Err() == nil && w.shouldContinueAsNew(ctx) && w.drainForContinueAsNew(ctx, hbCh, sampleCh, outputCh) {
			// The deadline timer is left to the run's end: cancelling it
			// here would add a command the recorded runs do not have.
			return outcome{kind: outcomeContinueAsNew}
		}

		now := workflow.Now(ctx)
		next := w.nextDeadline(oneTimer)
		relayed := w.relayed
		w.relayed = false
		if timer == nil || next.Before(timerAt) || (relayed && next.After(timerAt) && versionOf(ctx, VersionRelayRearm, 1) == 1) {
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
			// A relay moves the backstop: armed again from it in this task
			// (VersionRelayRearm), the timer need not fire to find the
			// worker alive.
			w.relayed = hb.Path == PathHost && w.hostBeats
			if w.st.HostSilent {
				// The host says the agent is silent: judged now, not by a
				// timer armed again for it.
				result = w.checkDeadlines(ctx, oneTimer)
			}
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
				w.count(ctx, metrics.HostsLost, map[string]string{metrics.LabelHost: w.st.Spec.Host})
				result = &outcome{kind: outcomeFailed, hostLost: true,
					reason: fmt.Sprintf("host %s lost: its worker program did not come back within %s; process recorded as lost", w.st.Spec.Host, w.limits.HostLossAfter)}
				w.raise(ctx, EventHostLost, result.reason)
				return
			default:
				result = &outcome{kind: outcomeFailed, reason: "lost track of the process: " + failureMessage(err)}
				return
			}
			w.applyLastWord(ctx, exit)
			result = exitOutcome(exit)
		})
		sel.AddFuture(timer, func(workflow.Future) {
			timer, cancelT = nil, nil
			result = w.checkDeadlines(ctx, oneTimer)
		})
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {
			result = &outcome{kind: outcomeCancelled, reason: "lifecycle cancelled"}
		})
		sel.Select(ctx)
	}
	// A lean run leaves the timer of a supervision that will not start
	// again to the run's end, which comes with the stop and the refund:
	// cancelling it would be an event and nothing more. Should the end
	// wait in zombie instead, the timer is cancelled then (settle), before
	// it could fire there. A restart supervises anew and would have two.
	if cancelT != nil {
		if w.lean && !result.restartable {
			w.cancelDeadline = cancelT
		} else {
			cancelT()
		}
	}
	return *result
}

// endSupervision does what the outcome needs before the lifecycle decides
// on a restart or its end: a stop is graceful, a failure stops at once, a
// lost host or a cancel leaves the stop to the saga.
func (w *lifecycle) endSupervision(ctx workflow.Context, result *outcome, watch workflow.Future, cancelWatch workflow.CancelFunc) {
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
}

// exitOutcome is what an end of the process means to the lifecycle: what
// the host's exit rules made of it, when a host of this release judged it,
// else its exit code. The release that brought exit rules (r7) followed
// the judgement without a version marker, and its lifecycles replay only
// so; a task of an r6 lifecycle that an r6 program ran on an end an r7
// host judged did not replay under r7 either.
func exitOutcome(exit activities.ExitStatus) *outcome {
	if exit.Action != "" {
		return judgedOutcome(exit)
	}
	return exitCodeOutcome(exit)
}

// exitCodeOutcome judges by the exit code alone, as the releases before
// exit rules did.
func exitCodeOutcome(exit activities.ExitStatus) *outcome {
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

// judgedOutcome follows what the type's exit rules made of the end on the
// host (workertypes.ExitAction).
func judgedOutcome(exit activities.ExitStatus) *outcome {
	reason := describeEnd(exit)
	if exit.Rule != "" {
		reason += fmt.Sprintf(" (%s: %s)", exit.Rule, exit.Action)
	}
	switch exit.Action {
	case workertypes.ActionComplete:
		return &outcome{kind: outcomeExited, reason: reason, exit: &exit}
	case workertypes.ActionFail:
		if exit.Rule == "" && exit.Lost {
			reason += "; not restarted: an end nobody saw may be a finished task"
		} else {
			reason += "; not restarted"
		}
		return &outcome{kind: outcomeFailed, reason: reason, exit: &exit}
	case workertypes.ActionIgnore:
		return &outcome{kind: outcomeFailed, restartable: true, uncounted: true, reason: reason, exit: &exit}
	default: // restart, or an action of a later release
		return &outcome{kind: outcomeFailed, restartable: true, reason: reason, exit: &exit}
	}
}

// describeEnd says how a process ended.
func describeEnd(exit activities.ExitStatus) string {
	switch {
	case exit.Fenced:
		return "process stopped by its own host, which could not reach the server for longer than its fence bound"
	case exit.Lost:
		return "process died while its worker program was down; exit status unknown"
	case exit.OOM:
		return fmt.Sprintf("process killed by the out-of-memory killer (%s)", cmp.Or(exit.Signal, "exit code "+strconv.Itoa(exit.ExitCode)))
	case exit.Signal != "":
		return "process killed by " + exit.Signal
	default:
		return fmt.Sprintf("process exited with code %d", exit.ExitCode)
	}
}

// exitReason is WorkerSpec.ExitReason of an end.
func exitReason(exit activities.ExitStatus) string {
	switch {
	case exit.Fenced:
		return "fenced"
	case exit.Lost:
		return "lost"
	case exit.OOM:
		return "oom"
	case exit.Signal != "":
		return "signal"
	default:
		return "exit"
	}
}

// applyHeartbeat records a heartbeat by the workflow's own clock, unless its
// payload could not be decoded (decodeErr) or is invalid.
func (w *lifecycle) applyHeartbeat(ctx workflow.Context, hb Heartbeat, decodeErr error) {
	w.st.SignalsThisRun++
	spec := &w.st.Spec
	process := hb.Process
	hb.Process = "" // judged apart, under its version
	err := cmp.Or(decodeErr, hb.Validate())
	if err == nil && NeedsAttention(hb.Status) &&
		versionOf(ctx, VersionFleetEvents, 1) != 1 {
		// Asked only of such a heartbeat, where Validate refused it before
		// the version (and an r7 program still does).
		err = fieldError("status", "status %s must be busy or idle", Quote(hb.Status))
	}
	if err == nil {
		if perr := w.fromCurrentProcess(process); perr != nil && w.version(ctx, VersionHeartbeatProcess, 1) == 1 {
			err = perr
		}
	}
	if err != nil {
		w.reject(ctx, SignalHeartbeat, err)
		w.count(ctx, metrics.HeartbeatsApplied, map[string]string{metrics.LabelPath: pathLabel(hb.Path), metrics.LabelResult: "rejected"})
		return
	}
	now := workflow.Now(ctx).UTC()
	used := spec.TokenBudget.Used
	relayed := hb.Path == PathHost && w.hostBeats
	w.count(ctx, metrics.HeartbeatsApplied, map[string]string{metrics.LabelPath: pathLabel(hb.Path), metrics.LabelResult: "applied"})
	if last := spec.Heartbeat.LastSeen; last != nil {
		// How long the worker was silent before this one: the heartbeat
		// age a reader would have seen just before it.
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{metrics.LabelPath: pathLabel(hb.Path)}).
			Timer(metrics.HeartbeatGap).Record(max(now.Sub(*last), 0))
	}
	if relayed && spec.Heartbeat.Path == PathSignal && spec.Heartbeat.LastSeen != nil && now.Add(-hb.Age).Before(*spec.Heartbeat.LastSeen) {
		// Older than a heartbeat signalled since (the agent signalled
		// while its host's socket did not answer): only its tokens, a
		// running total, may still count; its status, message or
		// silence are not the agent's latest.
		spec.TokenBudget.Used = max(used, w.st.PriorTokens+hb.TokensUsed)
		w.updateHealth()
		return
	}
	switch {
	case relayed:
		// It counts from when the host received it, never back in time.
		seen := now.Add(-hb.Age)
		if last := spec.Heartbeat.LastSeen; last == nil || seen.After(*last) {
			spec.Heartbeat.LastSeen = &seen
		}
		spec.Heartbeat.Path = PathHost
		// As old as the zombie limit: the host reports the agent silent,
		// with the last it said, which is applied all the same.
		w.st.HostRelays, w.st.HostSilent = true, hb.Age >= w.limits.ZombieAfter
	case w.hostBeats:
		spec.Heartbeat.LastSeen = &now
		spec.Heartbeat.Path = PathSignal
		w.st.HostSilent = false
	default:
		spec.Heartbeat.LastSeen = &now
	}
	spec.Heartbeat.Count++
	if !w.supervisionOver {
		// A last word does not take back what made the process end.
		spec.Heartbeat.Alert = ""
	}
	spec.Heartbeat.Message = hb.Message
	spec.Heartbeat.ReportedHealthScore = hb.HealthScore
	spec.TokenBudget.Used = w.st.PriorTokens + hb.TokensUsed
	if relayed {
		// A running total: a relay of an older heartbeat (a superseded
		// watch's, a late one) takes nothing back.
		spec.TokenBudget.Used = max(spec.TokenBudget.Used, used)
	}
	w.updateHealth()
	w.showDetails(ctx)
	switch {
	case hb.Status == HeartbeatIdle && spec.Status == StatusRunning:
		w.st.IdleSince = &now
		w.transition(ctx, StatusIdle, "worker reported idle")
	case (hb.Status == HeartbeatBusy || NeedsAttention(hb.Status)) && spec.Status == StatusIdle:
		w.st.IdleSince = nil
		w.transition(ctx, StatusRunning, "worker reported "+hb.Status)
	}
	switch {
	case NeedsAttention(hb.Status) && spec.Heartbeat.Attention != hb.Status:
		spec.Heartbeat.Attention = hb.Status
		w.showDetails(ctx)
		msg := "needs attention: " + hb.Status
		if hb.Message != "" {
			msg += ": " + hb.Message
		}
		w.raise(ctx, EventAttention, msg)
	case hb.Status == HeartbeatBusy || hb.Status == HeartbeatIdle:
		if spec.Heartbeat.Attention != "" {
			spec.Heartbeat.Attention = ""
			w.showDetails(ctx)
		}
	}
}

// fromCurrentProcess refuses a heartbeat that names another process than
// the one the lifecycle runs: an earlier one's, buffered or late, whose
// tokens the new process's count would take for its own.
func (w *lifecycle) fromCurrentProcess(process string) error {
	if process == "" {
		return nil
	}
	if err := (Heartbeat{Process: process}).Validate(); err != nil {
		return err
	}
	if w.st.Process == nil || w.st.Process.Token == "" {
		return nil
	}
	if current := activities.ProcessTag(w.st.Process.Token); process != current {
		return fieldError("process", "heartbeat of process %s, an earlier one of this worker (the current one is %s)", process, current)
	}
	return nil
}

// applyLastWord applies the agent's last heartbeat that came with the end
// of its watch (ExitStatus.LastHeartbeat): its tokens, health and message,
// which the refund and the restart decision read. It may be applied twice
// (the outcome, then the stop that collects it) to the same effect.
func (w *lifecycle) applyLastWord(ctx workflow.Context, exit activities.ExitStatus) {
	last := exit.LastHeartbeat
	if last == nil || !w.hostBeats {
		return
	}
	spec := &w.st.Spec
	hb := Heartbeat{TokensUsed: last.TokensUsed, HealthScore: last.HealthScore, Message: last.Message}
	if err := hb.Validate(); err != nil {
		w.reject(ctx, SignalHeartbeat, err)
		return
	}
	// Running totals: a last word never takes tokens back.
	spec.TokenBudget.Used = max(spec.TokenBudget.Used, w.st.PriorTokens+hb.TokensUsed)
	spec.Heartbeat.Message = hb.Message
	spec.Heartbeat.ReportedHealthScore = hb.HealthScore
	w.updateHealth()
	w.showDetails(ctx)
}

// zombieAfter is how long the lifecycle waits for a heartbeat before it
// counts the worker a zombie: the zombie limit, plus one keepalive
// interval while its host relays heartbeats and has not reported the
// agent silent, since the host judges the silence and the timer is only
// the backstop for a host that stopped relaying.
func (w *lifecycle) zombieAfter() time.Duration {
	if w.st.HostRelays && !w.st.HostSilent {
		return w.limits.ZombieAfter + hostGrace(w.limits.ZombieAfter)
	}
	return w.limits.ZombieAfter
}

// hostGrace is how much longer than the zombie limit a lifecycle waits
// for its host's relay: one keepalive interval (activities.KeepaliveEvery,
// once per zombie limit). Kept here, not read from the host's constant: it
// sets the timers of recorded runs, which must replay as they ran.
func hostGrace(zombieAfter time.Duration) time.Duration { return zombieAfter }

// heartbeatBase is WorkerSpec.heartbeatBase of the supervised worker,
// whose process has started.
func (w *lifecycle) heartbeatBase() time.Time {
	base, _ := w.st.Spec.heartbeatBase()
	return base
}

// nextDeadline is the earliest moment something is due: the zombie limit,
// the idle limit or the time limit, and before oneTimer a heartbeat alert.
// The timer is re-armed only for an earlier moment, so a heartbeat, which
// moves the zombie limit later, arms none: the timer fires once per zombie
// limit, finds the worker alive and is armed again from its last
// heartbeat.
func (w *lifecycle) nextDeadline(oneTimer bool) time.Time {
	base := w.heartbeatBase()
	next := base.Add(w.zombieAfter())
	if !oneTimer {
		switch w.st.Spec.Heartbeat.Alert {
		case "":
			next = earliest(next, base.Add(w.limits.HeartbeatWarning))
		case AlertWarning:
			next = earliest(next, base.Add(w.limits.HeartbeatCritical))
		}
	}
	if w.st.IdleSince != nil {
		next = earliest(next, w.st.IdleSince.Add(w.limits.IdleAfter))
	}
	if t := w.st.Request.Timeout; t > 0 {
		next = earliest(next, w.st.Spec.StartedAt.Add(t))
	}
	return next
}

// checkDeadlines runs when the deadline timer fires. With oneTimer the
// warning and critical levels are the readers' to compute (AlertAt); the
// zombie keeps critical as its alert, as it did when a timer set it.
func (w *lifecycle) checkDeadlines(ctx workflow.Context, oneTimer bool) *outcome {
	now := workflow.Now(ctx)
	age := now.Sub(w.heartbeatBase())
	hb := &w.st.Spec.Heartbeat
	switch {
	case age >= w.zombieAfter() && w.hostMayHold(ctx) && w.askHost(ctx):
		// The host still hears from the agent: its relay was late, or its
		// watch has not relayed yet.
		return nil
	case age >= w.zombieAfter():
		if ctx.Err() != nil {
			return nil // the cancel is the loop's to take
		}
		if oneTimer {
			hb.Alert = AlertCritical
		}
		w.count(ctx, metrics.ZombiesDetected, w.typeTag(metrics.LabelJudgedBy, judgedBy(w.st.HostSilent && !w.hostUnanswered)))
		reason := w.zombieReason(age)
		w.raise(ctx, EventZombie, reason)
		return &outcome{kind: outcomeFailed, restartable: true, reason: reason}
	case oneTimer:
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

// hostMayHold says whether the backstop asks the host before it makes a
// zombie: a host that relays and has not reported the agent silent, and
// since VersionAskHostFirst any host of a run that takes host heartbeats,
// which holds them from the process's start.
func (w *lifecycle) hostMayHold(ctx workflow.Context) bool {
	switch {
	case w.st.HostSilent:
		return false
	case w.st.HostRelays:
		// Asked as a relaying host is: what it answers is judged so.
		w.askedFirst = false
		return true
	case !w.hostBeats || ctx.Err() != nil:
		return false
	}
	w.askedFirst = versionOf(ctx, VersionAskHostFirst, 1) == 1
	return w.askedFirst
}

// holdBeatsFor is how long the host holds the agent's heartbeats before
// the process's watch runs (StartInput.HoldBeatsFor): as long as the
// lifecycle may wait for its watch to start (the host-loss limit) and then
// for its backstop (the zombie limit), by when a watch runs or never will.
// Only a lean run asks for it: it takes host heartbeats whatever its
// supervision asks (VersionHostHeartbeat), and an activity's input is not
// part of what a replay compares. Any other run's agent signals until its
// watch runs, as before.
func (w *lifecycle) holdBeatsFor() time.Duration {
	if !w.lean {
		return 0
	}
	return w.limits.HostLossAfter + w.limits.ZombieAfter
}

// askHost asks the host, when the backstop passed without a relay, for the
// latest heartbeat it holds of the process: a relay late behind an
// overloaded server must delay the zombie, not make one. It applies what
// the host holds and reports whether the agent is alive; a host that does
// not answer within the zombie limit, or holds nothing as recent, reports
// the silence (HostSilent).
func (w *lifecycle) askHost(ctx workflow.Context) bool {
	actx := hostOptions(ctx, w.st.Spec.Host, min(w.limits.HostLossAfter, w.limits.ZombieAfter), workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var res activities.HeldResult
	err := workflow.ExecuteActivity(actx, hostActs.HeldHeartbeat, activities.HeldInput{
		WorkerID: w.st.Spec.WorkerID, Process: activities.ProcessTag(w.st.Process.Token)}).Get(ctx, &res)
	if err != nil || res.Heartbeat == nil || res.Age >= w.limits.ZombieAfter {
		switch {
		case ctx.Err() != nil:
		case w.askedFirst && err == nil && res.Heartbeat == nil:
			// The agent sent its host nothing: the silence is the
			// lifecycle's to judge, as for a worker that signals.
			w.hostHeldNone = true
		default:
			w.st.HostSilent, w.hostUnanswered = true, err != nil
		}
		return false
	}
	held := res.Heartbeat
	w.applyHeartbeat(ctx, Heartbeat{TokensUsed: held.TokensUsed, HealthScore: held.HealthScore, Status: held.Status,
		Message: held.Message, Process: held.Process, Path: PathHost, Age: res.Age}, nil)
	w.st.SignalsThisRun-- // no signal: applyHeartbeat counted one
	return true
}

// zombieReason says why a worker silent for age is a zombie.
func (w *lifecycle) zombieReason(age time.Duration) string {
	switch {
	case w.askedFirst && w.hostUnanswered:
		return fmt.Sprintf("no heartbeat for %s (zombie limit %s), and its host did not answer for it", age.Round(time.Second), w.limits.ZombieAfter)
	case w.hostHeldNone:
		return fmt.Sprintf("no heartbeat for %s (zombie limit %s), by signal or through its host", age.Round(time.Second), w.limits.ZombieAfter)
	case w.hostUnanswered:
		return fmt.Sprintf("no heartbeat for %s, and its host relayed none nor answered (zombie limit %s, and %s for the host's relay)", age.Round(time.Second), w.limits.ZombieAfter, hostGrace(w.limits.ZombieAfter))
	case w.st.HostSilent:
		return fmt.Sprintf("no heartbeat for %s (zombie limit %s, judged by its host)", age.Round(time.Second), w.limits.ZombieAfter)
	case w.st.HostRelays:
		return fmt.Sprintf("no heartbeat for %s, and its host relayed none (zombie limit %s, and %s for the host's relay)", age.Round(time.Second), w.limits.ZombieAfter, hostGrace(w.limits.ZombieAfter))
	}
	return fmt.Sprintf("no heartbeat for %s (zombie limit %s)", age.Round(time.Second), w.limits.ZombieAfter)
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

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// reject counts a signal that was ignored and keeps why, for status.
func (w *lifecycle) reject(ctx workflow.Context, signal string, err error) {
	hb := &w.st.Spec.Heartbeat
	hb.Rejected++
	hb.LastRejected = truncate(signal+": "+err.Error(), maxReasonBytes)
	workflow.GetLogger(ctx).Warn("Ignoring an invalid signal", "signal", signal, "error", err)
}
