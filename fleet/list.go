package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Filter selects lifecycles, as `list` and the bulk commands take it.
type Filter struct {
	Statuses []workflows.Status
	Type     string
	Master   string
	// Query is a raw visibility query, ANDed with the rest.
	Query string
	// Ended includes lifecycles that have ended; without it and without a
	// status filter only open lifecycles are listed.
	Ended bool
}

// knownStatuses are the values --status accepts.
var knownStatuses = []workflows.Status{
	workflows.StatusPending, workflows.StatusRunning, workflows.StatusIdle, workflows.StatusShuttingDown,
	workflows.StatusCompleted, workflows.StatusFailed, workflows.StatusZombie, workflows.StatusCleanedUp,
}

// ParseStatuses checks a comma-separated list of statuses.
func ParseStatuses(s string) ([]workflows.Status, error) {
	if s == "" {
		return nil, nil
	}
	var out []workflows.Status
	for _, part := range strings.Split(s, ",") {
		st := workflows.Status(strings.TrimSpace(part))
		known := false
		for _, k := range knownStatuses {
			known = known || st == k
		}
		if !known {
			names := make([]string, len(knownStatuses))
			for i, k := range knownStatuses {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("%w: unknown status %s (known: %s)", ErrInvalid, workflows.Quote(string(st)), strings.Join(names, ", "))
		}
		out = append(out, st)
	}
	return out, nil
}

// statusClause selects the runs that stand for a lifecycle in one of the
// statuses. A run keeps the status it had when it closed: one that
// continued as new (a zombie's first run, say) or was terminated (an
// abandoned zombie) says nothing of its lifecycle now, so a status a
// lifecycle holds while it runs is matched on open runs only, and an end
// on closed runs that did not continue as new.
func statusClause(statuses []workflows.Status) string {
	name := workflows.SearchAttrStatus.GetName()
	in := func(ss []workflows.Status) string {
		quoted := make([]string, len(ss))
		for i, s := range ss {
			quoted[i] = fmt.Sprintf("%q", s)
		}
		return fmt.Sprintf("%s IN (%s)", name, strings.Join(quoted, ", "))
	}
	var open, ended []workflows.Status
	failed := false
	for _, s := range statuses {
		switch {
		case s == workflows.StatusFailed:
			failed = true
		case s.Live() || s == workflows.StatusZombie:
			open = append(open, s)
		default:
			ended = append(ended, s)
		}
	}
	var clauses []string
	if len(open) > 0 {
		clauses = append(clauses, fmt.Sprintf(`(%s AND ExecutionStatus = "Running")`, in(open)))
	}
	if len(ended) > 0 {
		clauses = append(clauses, fmt.Sprintf(`(%s AND ExecutionStatus != "Running" AND ExecutionStatus != "ContinuedAsNew")`, in(ended)))
	}
	if failed {
		// Failed is a lifecycle's end, or a moment before its restart or
		// its zombie; a lifecycle whose workflow failed never began (its
		// start skipped validation) and may carry no status of its own.
		clauses = append(clauses, fmt.Sprintf(`(%s = %q AND ExecutionStatus != "ContinuedAsNew")`, name, workflows.StatusFailed), `ExecutionStatus = "Failed"`)
	}
	return "(" + strings.Join(clauses, " OR ") + ")"
}

// visibilityQuery turns the filter into a Temporal list query.
func (f *Client) visibilityQuery(flt Filter) (string, error) {
	var parts []string
	if len(flt.Statuses) > 0 {
		parts = append(parts, statusClause(flt.Statuses))
	} else if !flt.Ended {
		parts = append(parts, `ExecutionStatus = "Running"`)
	}
	if flt.Type != "" {
		t, err := f.types.Lookup(flt.Type)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		parts = append(parts, fmt.Sprintf("%s = %q", workflows.SearchAttrType.GetName(), t.Name))
	}
	if flt.Master != "" {
		if !workflows.MasterPattern.MatchString(flt.Master) {
			return "", fmt.Errorf("%w: master %s must match %s", ErrInvalid, workflows.Quote(flt.Master), workflows.MasterPattern)
		}
		parts = append(parts, fmt.Sprintf("%s = %q", workflows.SearchAttrMaster.GetName(), flt.Master))
	}
	if flt.Query != "" {
		parts = append(parts, "("+flt.Query+")")
	}
	return workflows.ListQuery(parts...), nil
}

// List returns the specs of the lifecycles the filter selects, healthiest
// first as the runbook's monitor sorted them.
func (f *Client) List(ctx context.Context, flt Filter) ([]workflows.WorkerSpec, error) {
	ids, err := f.ListIDs(ctx, flt)
	if err != nil {
		return nil, err
	}
	specs := make([]workflows.WorkerSpec, len(ids))
	errs := make([]error, len(ids))
	forEach(ids, 16, func(i int, id string) { specs[i], errs[i] = f.status(ctx, id) })
	out := specs[:0]
	var queued []*workflows.WorkerSpec
	for i, s := range specs {
		if errs[i] == nil {
			out = append(out, s)
			if s.Queue != nil {
				queued = append(queued, &out[len(out)-1])
			}
		}
	}
	if len(queued) > 0 {
		f.queuePositions(ctx, queued)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Heartbeat.HealthScore != out[j].Heartbeat.HealthScore {
			return out[i].Heartbeat.HealthScore > out[j].Heartbeat.HealthScore
		}
		return out[i].WorkerID < out[j].WorkerID
	})
	return out, nil
}

// ListIDs returns the worker ids the filter selects.
func (f *Client) ListIDs(ctx context.Context, flt Filter) ([]string, error) {
	query, err := f.visibilityQuery(flt)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = f.listExecutions(ctx, query, func(e *workflowpb.WorkflowExecutionInfo) {
		if id, ok := workflows.WorkerIDFromWorkflowID(e.Execution.WorkflowId); ok {
			ids = append(ids, id)
		}
	})
	var invalid *serviceerror.InvalidArgument
	switch {
	case errors.As(err, &invalid):
		// Only --query can make the server refuse the query.
		return nil, fmt.Errorf("%w: listing workers with %s: %v", ErrInvalid, query, err)
	case err != nil:
		return nil, fmt.Errorf("listing workers: %w", err)
	}
	sort.Strings(ids)
	return compactSorted(ids), nil
}

// listExecutions calls fn for every execution the visibility query
// matches, page by page.
func (f *Client) listExecutions(ctx context.Context, query string, fn func(*workflowpb.WorkflowExecutionInfo)) error {
	var token []byte
	for {
		resp, err := f.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token, PageSize: 1000})
		if err != nil {
			return err
		}
		for _, e := range resp.Executions {
			fn(e)
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return nil
		}
	}
}

// compactSorted drops repeats: a worker id reused after its first lifecycle
// ended is listed once, as its latest lifecycle.
func compactSorted(ids []string) []string {
	out := ids[:0]
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out
}

// forEach runs fn over items with at most n at a time.
func forEach(items []string, n int, fn func(int, string)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, item := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i, item)
		}()
	}
	wg.Wait()
}
