package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/internal/metrics"
)

// The lifecycle's counters (internal/metrics) go through the SDK's metrics
// handler, which records nothing while a workflow replays: each decision is
// counted once, by the worker program that made it. They add no command and
// no event, so histories are unchanged.

func (w *lifecycle) count(ctx workflow.Context, name string, tags map[string]string) {
	workflow.GetMetricsHandler(ctx).WithTags(tags).Counter(name).Inc(1)
}

func (w *lifecycle) typeTag(extra ...string) map[string]string {
	tags := map[string]string{metrics.LabelType: w.st.Request.WorkerType}
	for i := 0; i+1 < len(extra); i += 2 {
		tags[extra[i]] = extra[i+1]
	}
	return tags
}

// countRestart counts a process started again, by what ended the last one.
func (w *lifecycle) countRestart(ctx workflow.Context, o *outcome) {
	w.count(ctx, metrics.Restarts, w.typeTag(metrics.LabelReason, restartCause(o)))
}

// restartCause classes an end for the restarts metric.
func restartCause(o *outcome) string {
	switch {
	case o.exit == nil:
		return "unresponsive" // no heartbeat within the zombie limit, or lost track of it
	case o.exit.Lost:
		return "lost"
	case o.exit.Signal != "":
		return "signal"
	default:
		return "exit_code"
	}
}

func (w *lifecycle) countGiveUp(ctx workflow.Context, why string) {
	w.count(ctx, metrics.GiveUps, w.typeTag(metrics.LabelReason, why))
}

// raise appends an event about this worker to the fleet's event log, and
// says whether it did (raiseEvent).
func (w *lifecycle) raise(ctx workflow.Context, kind EventKind, message string) bool {
	w.eventsRaised++
	spec := w.st.Spec
	return raiseEvent(ctx, Event{Kind: kind, WorkerID: w.st.Request.WorkerID, WorkerType: w.st.Request.WorkerType,
		Master: spec.Master, Pool: spec.TokenBudget.Pool, Host: spec.Host, Message: message}, w.eventsRaised)
}

// pathLabel is a heartbeat's path as a label: one of three values, whatever
// a rejected heartbeat said.
func pathLabel(path string) string {
	switch path {
	case "", PathSignal:
		return PathSignal
	case PathHost:
		return PathHost
	}
	return "invalid"
}

// judgedBy says who found a worker silent: its host's watch, or the
// lifecycle's own timer.
func judgedBy(hostSilent bool) string {
	if hostSilent {
		return "host"
	}
	return "lifecycle"
}
