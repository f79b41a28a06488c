package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestRawStartWithBadFieldsFailsAndSaysWhy starts a lifecycle as another
// client could, skipping our validation: it fails at once with one error
// naming every bad field, nothing is reserved or started, and status and
// list say why instead of showing a spec of zero values.
func TestRawStartWithBadFieldsFailsAndSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := h.budget(t)
	id := newID("raw")
	run, err := h.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(id), TaskQueue: workflows.TaskQueue},
		workflows.WorkflowTypeLifecycle, workflows.NewLifecycleState(workflows.SpawnRequest{
			WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-raw-1", Priority: "urgent", Master: "development-master", Budget: -5,
		}))
	require.NoError(t, err)
	err = run.Get(ctx, nil)
	require.ErrorContains(t, err, "invalid spawn request")
	require.ErrorContains(t, err, `priority "urgent" must be one of low, medium, high, critical`)
	require.ErrorContains(t, err, "budget -5 is not in 1..200000")
	require.Equal(t, before, h.budget(t), "nothing reserved")
	require.Empty(t, workerProcesses(id), "nothing started")

	out := h.starterOK(t, "status", id)
	t.Logf("status:\n%s", out)
	require.Contains(t, out, "FAILED")
	require.Contains(t, out, `priority "urgent" must be one of`)
	require.NotContains(t, out, "0001-01-01", "no spec of zero values")
	require.Contains(t, out, `one of low, medium, high, critical; budget -5 is not in 1..200000`, "the reasons on one line")
	require.Contains(t, out, "health -, never started")
	spec := starterJSON[workflows.WorkerSpec](t, "status", id)
	require.Equal(t, workflows.StatusFailed, spec.Status)
	require.Equal(t, "sleeper-worker", spec.WorkerType)
	require.Equal(t, "task-raw-1", spec.TaskID)
	require.False(t, spec.CreatedAt.IsZero())
	require.NotNil(t, spec.CompletedAt)
	require.Contains(t, spec.Cleanup.Reason, "budget -5 is not in 1..200000")
	require.Zero(t, spec.TokenBudget.Allocated)

	// Listed among the failed workers, with its reason.
	var listed []workflows.WorkerSpec
	require.Eventually(t, func() bool {
		out := h.starterOK(t, "list", "--status", "failed", "--query", `WorkflowId = "`+workflows.WorkflowID(id)+`"`, "-o", "json")
		return json.Unmarshal([]byte(out), &listed) == nil && len(listed) == 1
	}, 10*time.Second, 200*time.Millisecond, "listed with --status failed")
	require.Equal(t, workflows.StatusFailed, listed[0].Status)
	require.True(t, strings.HasPrefix(listed[0].Cleanup.Reason, "invalid spawn request:"), listed[0].Cleanup.Reason)
}

// TestRawStartsOfABadIDOrAnUnknownTypeChangeNothing: a raw start with a
// worker id that breaks its pattern fails at once naming it; one with a
// type no host knows fails at its reservation, before anything is held
// (a type is known per host, from its program's registry, so it is not
// among the fields the workflow checks by itself). Either way nothing is
// reserved or started, and status says why.
func TestRawStartsOfABadIDOrAnUnknownTypeChangeNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := h.budget(t)
	for _, tc := range []struct {
		name, id, workerType, want string
	}{
		{"bad id", "worker-raw bad/id", "sleeper-worker", `invalid spawn request: worker id "worker-raw bad/id" must match`},
		{"unknown type", newID("raw"), "nonsense-worker", `unknown worker type "nonsense-worker"`},
	} {
		run, err := h.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(tc.id), TaskQueue: workflows.TaskQueue},
			workflows.WorkflowTypeLifecycle, workflows.NewLifecycleState(workflows.SpawnRequest{
				WorkerID: tc.id, WorkerType: tc.workerType, TaskID: "task-raw-2", Priority: "high", Master: "development-master", Budget: 500,
			}))
		require.NoError(t, err, tc.name)
		var spec workflows.WorkerSpec
		err = run.Get(ctx, &spec)
		if err == nil {
			require.Equal(t, workflows.StatusFailed, spec.Status, tc.name)
			require.Contains(t, spec.Cleanup.Reason, tc.want, tc.name)
		} else {
			require.ErrorContains(t, err, tc.want, tc.name)
		}
		require.Equal(t, before, h.budget(t), "%s: nothing reserved", tc.name)
		require.Empty(t, workerProcesses(tc.id), "%s: nothing started", tc.name)
		if tc.name == "bad id" {
			continue // no client takes such an id to ask its status
		}
		out := h.starterOK(t, "status", tc.id)
		require.Contains(t, out, "FAILED", tc.name)
		require.Contains(t, out, tc.want, tc.name)
	}
}
