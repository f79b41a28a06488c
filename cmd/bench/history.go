package main

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// History is what a lifecycle costs in history: exact counts that do not
// depend on how fast the machine is.
type History struct {
	// A lifecycle with no heartbeat: spawn, running, shutdown, completed.
	LifecycleEvents        int `json:"lifecycle_events"`
	LifecycleWorkflowTasks int `json:"lifecycle_workflow_tasks"`
	// LifecycleEventTypes is where those events go.
	LifecycleEventTypes map[string]int `json:"lifecycle_event_types"`
	// Heartbeats sent one at a time, each recorded before the next, as a
	// worker heartbeating every few seconds does.
	AmortisedHeartbeats       int     `json:"amortised_heartbeats"`
	EventsPerHeartbeat        float64 `json:"events_per_heartbeat"`
	WorkflowTasksPerHeartbeat float64 `json:"workflow_tasks_per_heartbeat"`
	// A long-lived worker: Heartbeats in a burst, across continue-as-new.
	Heartbeats         int   `json:"heartbeats"`
	HeartbeatsRecorded int64 `json:"heartbeats_recorded"`
	Runs               int   `json:"runs"`
	LongestRunEvents   int   `json:"longest_run_events"`
	MaxSignalsPerRun   int   `json:"max_signals_per_run"`
}

// runHistory counts one run's events and completed workflow tasks, and
// names the run it continued as, if any. types, when not nil, gets the
// count of each event type.
func runHistory(ctx context.Context, c client.Client, workflowID, runID string, types map[string]int) (events, tasks int, next string, err error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return events, tasks, "", err
		}
		events++
		if types != nil {
			types[ev.GetEventType().String()]++
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			tasks++
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
			next = ev.GetWorkflowExecutionContinuedAsNewEventAttributes().GetNewExecutionRunId()
		}
	}
	return events, tasks, next, nil
}

// measureHistory measures the three costs on real lifecycles.
func measureHistory(ctx context.Context, f *fleet.Client, amortised, burst, senders, runSignals int) (History, error) {
	res := History{AmortisedHeartbeats: amortised, Heartbeats: burst, MaxSignalsPerRun: workflows.DefaultMaxSignals,
		LifecycleEventTypes: map[string]int{}}
	if runSignals > 0 {
		res.MaxSignalsPerRun = runSignals
	}
	c := f.Temporal()

	// No heartbeat.
	spec, err := f.Spawn(ctx, spawnRequest(workflows.Limits{}))
	if err != nil {
		return res, err
	}
	if _, err := shutdownOne(ctx, f, spec.WorkerID, false, nil); err != nil {
		return res, err
	}
	if res.LifecycleEvents, res.LifecycleWorkflowTasks, _, err = runHistory(ctx, c, workflows.WorkflowID(spec.WorkerID), "", res.LifecycleEventTypes); err != nil {
		return res, err
	}

	// Amortised over the whole chain of runs: the server may suggest
	// continue-as-new before the heartbeat bound does, and what that costs
	// is part of the price.
	spec, err = f.Spawn(ctx, spawnRequest(workflows.Limits{MaxSignalsPerRun: amortised + 1}))
	if err != nil {
		return res, err
	}
	wid := workflows.WorkflowID(spec.WorkerID)
	before, err := runChain(ctx, c, wid)
	for k := int64(1); k <= int64(amortised) && err == nil; k++ {
		if err = f.Heartbeat(ctx, spec.WorkerID, workflows.Heartbeat{TokensUsed: k}); err == nil {
			err = waitHeartbeats(ctx, f, spec.WorkerID, k)
		}
	}
	var after []runCount
	if err == nil {
		after, err = runChain(ctx, c, wid)
	}
	if _, serr := shutdownOne(ctx, f, spec.WorkerID, false, nil); err == nil {
		err = serr
	}
	if err != nil {
		return res, err
	}
	e0, t0 := total(before)
	e1, t1 := total(after)
	res.EventsPerHeartbeat = math.Round(float64(e1-e0)/float64(amortised)*100) / 100
	res.WorkflowTasksPerHeartbeat = math.Round(float64(t1-t0)/float64(amortised)*100) / 100

	// Burst, across continue-as-new.
	spec, err = f.Spawn(ctx, spawnRequest(workflows.Limits{MaxSignalsPerRun: runSignals}))
	if err != nil {
		return res, err
	}
	wid = workflows.WorkflowID(spec.WorkerID)
	var next atomic.Int64
	err = forEach(ctx, senders, senders, func(ctx context.Context, _ int) error {
		for k := next.Add(1); k <= int64(burst); k = next.Add(1) {
			if err := f.Heartbeat(ctx, spec.WorkerID, workflows.Heartbeat{TokensUsed: k}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = waitHeartbeats(ctx, f, spec.WorkerID, int64(burst))
	}
	if err == nil {
		res.HeartbeatsRecorded = int64(burst)
		var runs []runCount
		runs, err = runChain(ctx, c, wid)
		res.Runs = len(runs)
		for _, r := range runs {
			res.LongestRunEvents = max(res.LongestRunEvents, r.events)
		}
	}
	if _, serr := shutdownOne(ctx, f, spec.WorkerID, false, nil); err == nil {
		err = serr
	}
	return res, err
}

// runCount is one run's events and completed workflow tasks.
type runCount struct{ events, tasks int }

// runChain counts every run of a workflow, from the first through each
// continue-as-new.
func runChain(ctx context.Context, c client.Client, workflowID string) ([]runCount, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return nil, err
	}
	var runs []runCount
	for run := desc.GetWorkflowExecutionInfo().GetFirstRunId(); run != ""; {
		var r runCount
		if r.events, r.tasks, run, err = runHistory(ctx, c, workflowID, run, nil); err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, nil
}

func total(runs []runCount) (events, tasks int) {
	for _, r := range runs {
		events += r.events
		tasks += r.tasks
	}
	return events, tasks
}

// waitHeartbeats waits until the lifecycle has recorded count heartbeats.
func waitHeartbeats(ctx context.Context, f *fleet.Client, workerID string, count int64) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		spec, err := f.Status(ctx, workerID)
		if err != nil {
			return err
		}
		if spec.Heartbeat.Count >= count {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s recorded %d of %d heartbeats", workerID, spec.Heartbeat.Count, count)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
