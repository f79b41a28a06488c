package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// The hourly sweep: the old cleanup-zombie-workers.sh cron job, on a
// Temporal Schedule.
const (
	SweepScheduleID      = "zombie-sweep"
	SweepWorkflowIDStart = "zombie-sweep"
	DefaultSweepCron     = "0 * * * *"
)

// SweepReport is what one sweep found and did.
type SweepReport struct {
	Zombies []activities.ZombieResult `json:"zombies"`
	Orphans []activities.Orphan       `json:"orphans"`
	// Unreachable lists hosts whose worker program did not answer.
	Unreachable []string              `json:"unreachable"`
	Released    []activities.Released `json:"released"`
}

// SweepFleet finishes the cleanup of zombies, asks every host for processes
// no lifecycle owns and stops them, and reconciles the budget ledger.
func SweepFleet(ctx workflow.Context) (SweepReport, error) {
	report := SweepReport{Zombies: []activities.ZombieResult{}, Orphans: []activities.Orphan{}, Unreachable: []string{}, Released: []activities.Released{}}
	shared := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	if err := workflow.ExecuteActivity(shared, sharedActs.SweepZombies).Get(ctx, &report.Zombies); err != nil {
		return report, err
	}
	var hosts []string
	if err := workflow.ExecuteActivity(shared, sharedActs.ListHosts).Get(ctx, &hosts); err != nil {
		return report, err
	}
	// Every host at once: a host that is gone costs one schedule-to-start
	// timeout, not one per host.
	futures := make([]workflow.Future, len(hosts))
	for i, host := range hosts {
		hctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			TaskQueue:              HostTaskQueue(host),
			ScheduleToStartTimeout: 15 * time.Second,
			StartToCloseTimeout:    15 * time.Minute,
			HeartbeatTimeout:       time.Minute,
			RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 3},
		})
		futures[i] = workflow.ExecuteActivity(hctx, hostActs.StopOrphans)
	}
	for i, f := range futures {
		var orphans []activities.Orphan
		if err := f.Get(ctx, &orphans); err != nil {
			workflow.GetLogger(ctx).Warn("Host did not answer the sweep", "host", hosts[i], "error", err)
			report.Unreachable = append(report.Unreachable, hosts[i])
			continue
		}
		report.Orphans = append(report.Orphans, orphans...)
	}
	if err := workflow.ExecuteActivity(shared, sharedActs.RecalcLedger).Get(ctx, &report.Released); err != nil {
		return report, fmt.Errorf("reconciling the ledger: %w", err)
	}
	return report, nil
}
