package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"
)

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
