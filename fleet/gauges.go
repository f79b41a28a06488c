package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/converter"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// What a dashboard or a metrics exporter reads of the whole fleet, each in
// one or a few calls to the server, whatever the number of lifecycles
// (internal/metrics' fleet gauges).

// StateCount is how many open lifecycles of a type are in a state.
type StateCount struct {
	State      workflows.Status `json:"state"`
	WorkerType string           `json:"worker_type"`
	Count      int              `json:"count"`
}

// OpenByState counts the open lifecycles by state and type, from the
// search attributes visibility holds (no query to each lifecycle), sorted
// by state then type.
func (f *Client) OpenByState(ctx context.Context) ([]StateCount, error) {
	type key struct {
		state workflows.Status
		typ   string
	}
	counts := map[key]int{}
	dc := converter.GetDefaultDataConverter()
	err := f.listExecutions(ctx, workflows.ListQuery(`ExecutionStatus = "Running"`), func(e *workflowpb.WorkflowExecutionInfo) {
		var k key
		fields := e.GetSearchAttributes().GetIndexedFields()
		var s string
		if p := fields[workflows.SearchAttrStatus.GetName()]; p != nil && dc.FromPayload(p, &s) == nil {
			k.state = workflows.Status(s)
		}
		if p := fields[workflows.SearchAttrType.GetName()]; p != nil {
			_ = dc.FromPayload(p, &k.typ)
		}
		if k.state == "" {
			k.state = workflows.StatusPending // started, its first task not run yet
		}
		counts[k]++
	})
	if err != nil {
		return nil, fmt.Errorf("counting lifecycles: %w", err)
	}
	out := make([]StateCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, StateCount{State: k.state, WorkerType: k.typ, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].State != out[j].State {
			return out[i].State < out[j].State
		}
		return out[i].WorkerType < out[j].WorkerType
	})
	return out, nil
}

// Breakers says, for every worker type whose circuit breaker exists (a
// crash of the type was recorded), whether it stops restarts now.
func (f *Client) Breakers(ctx context.Context, now time.Time) (map[string]bool, error) {
	var ids []string
	query := fmt.Sprintf("WorkflowType = %q AND ExecutionStatus = %q", workflows.WorkflowTypeBreaker, "Running")
	if err := f.listExecutions(ctx, query, func(e *workflowpb.WorkflowExecutionInfo) {
		ids = append(ids, e.GetExecution().GetWorkflowId())
	}); err != nil {
		return nil, fmt.Errorf("listing breakers: %w", err)
	}
	open := map[string]bool{}
	var errs []error
	for _, id := range ids {
		resp, err := f.temporal.QueryWorkflow(ctx, id, "", workflows.QueryBreaker)
		var st workflows.BreakerState
		if err == nil {
			err = resp.Get(&st)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("breaker %s: %w", id, err))
			continue
		}
		open[st.WorkerType] = st.OpenUntil != nil && st.OpenUntil.After(now)
	}
	return open, errors.Join(errs...)
}

// Pollers counts the worker programs that polled the shared queue
// recently, and each host's own queue: the hosts are those whose programs
// poll the shared queue. A queue that cannot be described is an error,
// not a count of 0.
func (f *Client) Pollers(ctx context.Context) (shared int, hosts map[string]int, err error) {
	identities, err := f.recentPollers(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		return 0, nil, err
	}
	activity, err := f.recentPollers(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return 0, nil, err
	}
	hosts = map[string]int{}
	for _, h := range hostsOf(activity) {
		own, err := f.recentPollers(ctx, workflows.HostTaskQueue(h), enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err != nil {
			return 0, nil, err
		}
		hosts[h] = len(own)
	}
	return len(identities), hosts, nil
}

// View reads the ledger without starting one: ok is false when there is
// none (no spawn yet, or it was terminated).
func (l *Budget) View(ctx context.Context) (v workflows.BudgetView, ok bool, err error) {
	resp, err := l.query(ctx)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("querying the budget ledger: %w", err)
	}
	return v, true, resp.Get(&v)
}
