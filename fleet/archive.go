package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// EndedRun is one run of a lifecycle that has ended.
type EndedRun struct {
	WorkerID   string    `json:"worker_id"`
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	ClosedAt   time.Time `json:"closed_at"`
}

// EndedRuns lists the lifecycle runs that ended completed or cleaned up
// before closedBefore, as visibility knows them: what the archival
// archives. A run that continued as new is not an end.
func (f *Client) EndedRuns(ctx context.Context, closedBefore time.Time) ([]EndedRun, error) {
	query := workflows.ListQuery(`ExecutionStatus != "Running"`,
		fmt.Sprintf("%s IN (%q, %q)", workflows.SearchAttrStatus.GetName(), workflows.StatusCompleted, workflows.StatusCleanedUp),
		fmt.Sprintf("CloseTime < %q", closedBefore.UTC().Format(time.RFC3339Nano)))
	var out []EndedRun
	err := f.listExecutions(ctx, query, func(e *workflowpb.WorkflowExecutionInfo) {
		id, ok := workflows.WorkerIDFromWorkflowID(e.Execution.WorkflowId)
		if ok && e.Status != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			out = append(out, EndedRun{WorkerID: id, WorkflowID: e.Execution.WorkflowId, RunID: e.Execution.RunId, ClosedAt: e.CloseTime.AsTime()})
		}
	})
	return out, err
}

// RunArchival runs the archival workflow now and returns its report.
func (f *Client) RunArchival(ctx context.Context, req workflows.ArchiveRequest) (workflows.ArchiveReport, error) {
	var report workflows.ArchiveReport
	if err := req.Validate(); err != nil {
		return report, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	run, err := f.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflows.ArchivalWorkflowIDStart + "-manual-" + newNonce(),
		TaskQueue: workflows.TaskQueue,
	}, workflows.ArchiveCompleted, req)
	if err != nil {
		return report, err
	}
	if err := run.Get(ctx, &report); err != nil {
		if msg := applicationMessage(err); msg != "" {
			return report, errors.New(msg)
		}
		return report, err
	}
	return report, nil
}

// ScheduleConfig is what `schedule install` sets up.
type ScheduleConfig struct {
	ArchiveCron string
	Retention   time.Duration
	SweepCron   string
}

// Validate checks the schedules' settings without a server.
func (cfg ScheduleConfig) Validate() error {
	if err := (workflows.ArchiveRequest{OlderThan: cfg.Retention}).Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, cron := range []string{cfg.ArchiveCron, cfg.SweepCron} {
		if len(strings.Fields(cron)) != 5 {
			return fmt.Errorf("%w: schedule %q must be a cron expression of five fields, e.g. %q", ErrInvalid, cron, workflows.DefaultArchiveCron)
		}
	}
	return nil
}

// InstallSchedules creates the archival and sweep schedules, or updates them
// to the config when they exist, so that installing twice is harmless. It
// reports which it created.
func (f *Client) InstallSchedules(ctx context.Context, cfg ScheduleConfig) (created []string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	req := workflows.ArchiveRequest{OlderThan: cfg.Retention}
	for _, s := range []struct {
		id, cron, note string
		action         *client.ScheduleWorkflowAction
	}{
		{workflows.ArchivalScheduleID, cfg.ArchiveCron, "archives the final specs of workers ended longer ago than the retention",
			&client.ScheduleWorkflowAction{ID: workflows.ArchivalWorkflowIDStart, Workflow: workflows.ArchiveCompleted, Args: []any{req}, TaskQueue: workflows.TaskQueue}},
		{workflows.SweepScheduleID, cfg.SweepCron, "cleans zombies, stops orphan processes, reconciles the budget",
			&client.ScheduleWorkflowAction{ID: workflows.SweepWorkflowIDStart, Workflow: workflows.SweepFleet, TaskQueue: workflows.TaskQueue}},
	} {
		made, err := f.installSchedule(ctx, s.id, s.cron, s.note, s.action)
		if err != nil {
			return created, err
		}
		if made {
			created = append(created, s.id)
		}
	}
	return created, nil
}

func (f *Client) installSchedule(ctx context.Context, id, cron, note string, action *client.ScheduleWorkflowAction) (bool, error) {
	spec := client.ScheduleSpec{CronExpressions: []string{cron}}
	sc := f.temporal.ScheduleClient()
	_, err := sc.Create(ctx, client.ScheduleOptions{
		ID: id, Spec: spec, Action: action, Note: note,
		// A run still going when the next is due means the last one is
		// slow; a second one at once would only compete with it.
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		var invalid *serviceerror.InvalidArgument
		if errors.As(err, &invalid) {
			return false, fmt.Errorf("%w: schedule %q: %v", ErrInvalid, cron, err)
		}
		return false, err
	}
	return false, sc.GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &spec
			s.Action = action
			s.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
}

// Schedules are the names of the schedules InstallSchedules makes, by the
// name an operator uses (`starter schedule ... --schedule NAME`).
var Schedules = map[string]string{"archival": workflows.ArchivalScheduleID, "sweep": workflows.SweepScheduleID}

// Schedule opens the named schedule ("archival" or "sweep") for the SDK's
// own operations on it: Describe, Trigger, Pause, Unpause, Delete.
func (f *Client) Schedule(ctx context.Context, name string) (id string, h client.ScheduleHandle, err error) {
	id, ok := Schedules[name]
	if !ok {
		return "", nil, invalidField("schedule", "schedule %s must be archival or sweep", workflows.Quote(name))
	}
	return id, f.temporal.ScheduleClient().GetHandle(ctx, id), nil
}
