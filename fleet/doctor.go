package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Check is one finding of the doctor.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// pollerFresh is how recently a poller must have polled to count as alive.
const pollerFresh = 2 * time.Minute

// Doctor checks what the lifecycles need, each failure with its fix.
func (f *Client) Doctor(ctx context.Context, namespace string) []Check {
	var checks []Check
	add := func(c Check) { checks = append(checks, c) }

	if _, err := f.temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		add(Check{Name: "server", Detail: err.Error(), Fix: "start the server (make run starts a dev server) or set --address / TEMPORAL_ADDRESS"})
		return checks
	}
	add(Check{Name: "server", OK: true, Detail: "reachable"})

	if _, err := f.temporal.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace}); err != nil {
		add(Check{Name: "namespace", Detail: fmt.Sprintf("%s: %v", namespace, err),
			Fix: fmt.Sprintf("temporal operator namespace create --namespace %s", namespace)})
		return checks
	}
	add(Check{Name: "namespace", OK: true, Detail: namespace})
	add(f.checkSearchAttributes(ctx, namespace))

	shared := f.pollers(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if len(shared) == 0 {
		add(Check{Name: "worker program", Detail: "nobody polls task queue " + workflows.TaskQueue,
			Fix: "start a worker program: go run ./worker (see README)"})
	} else {
		add(Check{Name: "worker program", OK: true, Detail: fmt.Sprintf("%d polling %s", len(shared), workflows.TaskQueue)})
	}
	for _, host := range f.Hosts(ctx) {
		queue := workflows.HostTaskQueue(host)
		pollers := f.pollers(ctx, queue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if len(pollers) == 0 {
			add(Check{Name: "host " + host, Detail: "nobody polls " + queue, Fix: "restart the worker program of host " + host})
		} else {
			add(Check{Name: "host " + host, OK: true, Detail: "polls " + queue + containmentOf(pollers)})
		}
	}
	add(f.checkLedger(ctx))
	add(f.checkSchedules(ctx))
	return checks
}

func (f *Client) checkSearchAttributes(ctx context.Context, namespace string) Check {
	resp, err := f.temporal.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return Check{Name: "search attributes", Detail: err.Error()}
	}
	missing := notKeyword(resp.GetCustomAttributes())
	var fixes []string
	for _, name := range missing {
		fixes = append(fixes, fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type Keyword", namespace, name))
	}
	if len(missing) > 0 {
		return Check{Name: "search attributes", Detail: "missing (Keyword): " + strings.Join(missing, ", "),
			Fix: "starter setup --namespace " + namespace + " (or: " + strings.Join(fixes, "; ") + ")"}
	}
	return Check{Name: "search attributes", OK: true, Detail: strings.Join(workflows.SearchAttributeNames, ", ")}
}

func (f *Client) checkLedger(ctx context.Context) Check {
	desc, err := f.temporal.DescribeWorkflowExecution(ctx, workflows.LedgerWorkflowID, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return Check{Name: "budget ledger", OK: true, Detail: "not started yet; it starts with the first spawn or `starter budget show`"}
	case err != nil:
		return Check{Name: "budget ledger", Detail: err.Error()}
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return Check{Name: "budget ledger", Detail: "the ledger workflow is " + st.String(),
			Fix: "starter budget show starts a new ledger; then starter budget recalc"}
	}
	return Check{Name: "budget ledger", OK: true, Detail: "running (" + workflows.LedgerWorkflowID + ")"}
}

func (f *Client) checkSchedules(ctx context.Context) Check {
	iter, err := f.temporal.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return Check{Name: "schedules", Detail: err.Error()}
	}
	var names []string
	for iter.HasNext() {
		s, err := iter.Next()
		if err != nil {
			return Check{Name: "schedules", Detail: err.Error()}
		}
		names = append(names, s.ID)
	}
	if len(names) == 0 {
		return Check{Name: "schedules", OK: true, Detail: "none"}
	}
	sort.Strings(names)
	return Check{Name: "schedules", OK: true, Detail: strings.Join(names, ", ")}
}

// pollers returns the identities that polled queue recently (none when
// the server cannot say).
func (f *Client) pollers(ctx context.Context, queue string, kind enumspb.TaskQueueType) []string {
	out, _ := f.recentPollers(ctx, queue, kind)
	return out
}

// recentPollers returns the identities that polled queue recently.
func (f *Client) recentPollers(ctx context.Context, queue string, kind enumspb.TaskQueueType) ([]string, error) {
	resp, err := f.temporal.DescribeTaskQueue(ctx, queue, kind)
	if err != nil {
		return nil, fmt.Errorf("describing task queue %s: %w", queue, err)
	}
	var out []string
	for _, p := range resp.GetPollers() {
		if time.Since(p.GetLastAccessTime().AsTime()) < pollerFresh {
			out = append(out, p.GetIdentity())
		}
	}
	return out, nil
}

// containmentOf says how a host's worker programs contain their processes
// (README, Supervision); a process-group host is told what it does not
// cover.
func containmentOf(identities []string) string {
	var modes []string
	for _, id := range identities {
		if c := workflows.ContainmentOfIdentity(id); c != "" && !slices.Contains(modes, c) {
			modes = append(modes, c)
		}
	}
	if len(modes) == 0 {
		return ""
	}
	sort.Strings(modes)
	out := "; containment " + strings.Join(modes, ", ")
	if slices.Contains(modes, "process-group") {
		out += " (a descendant that clears its environment and leaves its group and session escapes a stop)"
	}
	return out
}

// Hosts names the hosts whose worker programs poll the shared queue
// (recently, and as far as the server says: an error names none).
func (f *Client) Hosts(ctx context.Context) []string {
	return hostsOf(f.pollers(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY))
}

// hostsOf reads the host names from worker program identities
// (workflows.HostIdentity).
func hostsOf(identities []string) []string {
	seen := map[string]bool{}
	var hosts []string
	for _, id := range identities {
		if host, ok := workflows.HostOfIdentity(id); ok && !seen[host] {
			seen[host] = true
			hosts = append(hosts, host)
		}
	}
	sort.Strings(hosts)
	return hosts
}
