package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// Archival: the old cron job that moved completed specs older than 7 days
// to archived/, as a workflow run by a Temporal Schedule.
const (
	ArchivalScheduleID      = "worker-archival"
	ArchivalWorkflowIDStart = "worker-archival"
	DefaultArchiveCron      = "0 2 * * *"
	DefaultRetention        = 7 * 24 * time.Hour
)

// ArchiveRequest says which ended lifecycles to archive.
type ArchiveRequest struct {
	// OlderThan is the retention: lifecycles that ended longer ago than
	// this are archived.
	OlderThan time.Duration `json:"older_than"`
	DryRun    bool          `json:"dry_run,omitempty"`
}

// ArchiveReport is what one archival did.
type ArchiveReport struct {
	Cutoff          time.Time `json:"cutoff"`
	Archived        []string  `json:"archived"`
	AlreadyArchived int       `json:"already_archived"`
	DryRun          bool      `json:"dry_run,omitempty"`
}

// Validate refuses a retention that would archive live history at once.
func (r ArchiveRequest) Validate() error {
	if r.OlderThan <= 0 {
		return fmt.Errorf("retention %s must be positive", r.OlderThan)
	}
	return nil
}

// ArchiveCompleted archives the final spec of every worker that ended
// completed or cleaned up before the retention. Re-running it archives
// nothing twice: the archive store remembers every run it holds.
func ArchiveCompleted(ctx workflow.Context, req ArchiveRequest) (ArchiveReport, error) {
	if err := req.Validate(); err != nil {
		return ArchiveReport{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidRequest", nil)
	}
	cutoff := workflow.Now(ctx).UTC().Add(-req.OlderThan)
	report := ArchiveReport{Cutoff: cutoff, Archived: []string{}, DryRun: req.DryRun}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	var ended []activities.EndedLifecycle
	if err := workflow.ExecuteActivity(ctx, sharedActs.ListEnded, cutoff).Get(ctx, &ended); err != nil {
		return report, err
	}
	// The store lists by close time already; checking here again keeps the
	// rule in the workflow, where the test clock can prove it.
	due := ended[:0]
	for _, l := range ended {
		if l.ClosedAt.Before(cutoff) {
			due = append(due, l)
		}
	}
	var res activities.ArchiveResult
	if err := workflow.ExecuteActivity(ctx, sharedActs.ArchiveSpecs, activities.ArchiveInput{Lifecycles: due, DryRun: req.DryRun}).Get(ctx, &res); err != nil {
		return report, err
	}
	report.Archived, report.AlreadyArchived = res.Archived, res.AlreadyArchived
	return report, nil
}
