package workflows

import (
	"errors"

	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/health"
)

// applySample records the watcher's measurement of the process tree.
func (w *lifecycle) applySample(ctx workflow.Context, s activities.ResourceSample, decodeErr error) (applied bool) {
	w.st.SignalsThisRun++
	if decodeErr == nil && (s.CPUPercent < 0 || s.RSSBytes < 0 || s.Processes < 0) {
		decodeErr = errors.New("negative cpu, rss or process count")
	}
	if decodeErr != nil {
		w.reject(ctx, SignalSample, decodeErr)
		return false
	}
	now := workflow.Now(ctx).UTC()
	h := &w.st.Spec.Health
	h.CPUPercent, h.RSSBytes, h.Processes, h.SampledAt = s.CPUPercent, s.RSSBytes, s.Processes, &now
	w.updateHealth()
	return true
}

// applyOutputHeartbeat is a heartbeat the watcher sent because the worker's
// log grew: proof of life for a command that cannot heartbeat itself.
func (w *lifecycle) applyOutputHeartbeat(ctx workflow.Context, s activities.ResourceSample, decodeErr error) {
	if !w.st.Spec.Status.Live() || w.st.Spec.Status == StatusShuttingDown {
		w.st.SignalsThisRun++
		return
	}
	if !w.applySample(ctx, s, decodeErr) {
		return
	}
	now := workflow.Now(ctx).UTC()
	hb := &w.st.Spec.Heartbeat
	hb.LastSeen = &now
	hb.Count++
	hb.Alert = ""
	w.showDetails(ctx)
}

// updateHealth recomputes the score from the last sample and the tokens the
// current process has left.
func (w *lifecycle) updateHealth() {
	spec := &w.st.Spec
	used := spec.TokenBudget.Used - w.st.PriorTokens
	score := health.Score(spec.Health.CPUPercent, spec.Health.RSSBytes, used, spec.TokenBudget.Allocated)
	spec.Health.Score = score
	spec.Health.Band = health.Band(score)
	spec.Heartbeat.HealthScore = score
}

// recordStop remembers what the stop found, for the spec.
func (w *lifecycle) recordStop(res activities.StopResult) {
	if res.AlreadyGone {
		w.processFate = ProcessAlreadyGone
	} else {
		w.processFate = ProcessStopped
	}
}
