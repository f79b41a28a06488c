package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// offline is a client with no connection: any call that reached the
// network would panic, so a refusal here proves none was made.
func offline(t *testing.T) *Client {
	t.Helper()
	return mustNew(t, nil)
}

// fieldNames lists the JSON names of an InvalidError's fields.
func fieldNames(t *testing.T, err error) []string {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalid)
	var inv *InvalidError
	require.ErrorAs(t, err, &inv)
	var names []string
	for _, f := range inv.Fields {
		names = append(names, f.Field)
	}
	return names
}

// TestResolveNamesEveryBadField: a master gets every bad field at once, by
// its JSON name, with the message the lifecycle itself fails with.
func TestResolveNamesEveryBadField(t *testing.T) {
	f := offline(t)
	req := workflows.SpawnRequest{WorkerID: "worker-x-../y", WorkerType: "fix-worker", TaskID: "job 1",
		Priority: "urgent", Master: "m", Budget: -5, Limits: workflows.Limits{ZombieAfter: -time.Second}}
	_, err := f.Resolve(req)
	require.Equal(t, []string{"worker_id", "task_id", "priority", "budget", "limits.zombie_after"}, fieldNames(t, err))

	// The same messages as a lifecycle started raw with these fields.
	req.MaxRestarts = 0
	want := strings.ReplaceAll(req.Validate().Error(), "\n", "; ")
	require.Equal(t, "invalid request: "+want, err.Error())

	var inv *InvalidError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, `priority "urgent" must be one of low, medium, high, critical`, inv.Field("priority").Message)
	require.Nil(t, inv.Field("master"))
	var field *workflows.FieldError
	require.ErrorAs(t, err, &field, "the fields are reachable with errors.As too")
	require.Equal(t, "worker_id", field.Field)
}

func TestResolveUnknownWorkerType(t *testing.T) {
	_, err := offline(t).Resolve(workflows.SpawnRequest{WorkerType: "nope-worker", Master: "m"})
	require.Equal(t, []string{"worker_type"}, fieldNames(t, err))
	require.Contains(t, err.Error(), `unknown worker type "nope-worker"`)

	_, err = offline(t).Resolve(workflows.SpawnRequest{WorkerType: strings.Repeat("x", 200), Master: "m"})
	require.Equal(t, []string{"worker_type"}, fieldNames(t, err))
}

// TestResolveOrderOfLimits: limits that are each fine but out of order are
// one error on "limits".
func TestResolveOrderOfLimits(t *testing.T) {
	_, err := offline(t).Resolve(workflows.SpawnRequest{WorkerType: "fix-worker", Master: "m",
		Limits: workflows.Limits{HeartbeatWarning: time.Hour, HeartbeatCritical: time.Minute}})
	require.Equal(t, []string{"limits"}, fieldNames(t, err))
	require.Contains(t, err.Error(), "heartbeat limits must grow")
}

// TestResolveLeavesTheQueueTimeoutToThePool: a waiting spawn that sets no
// queue timeout keeps 0, which the lifecycle takes as its pool's.
func TestResolveLeavesTheQueueTimeoutToThePool(t *testing.T) {
	req, err := offline(t).Resolve(workflows.SpawnRequest{WorkerType: "fix-worker", Master: "m", WaitForBudget: true})
	require.NoError(t, err)
	require.Zero(t, req.QueueTimeout)
	req, err = offline(t).Resolve(workflows.SpawnRequest{WorkerType: "fix-worker", Master: "m", WaitForBudget: true, QueueTimeout: time.Hour})
	require.NoError(t, err)
	require.Equal(t, time.Hour, req.QueueTimeout)
}

// TestRefusedBeforeAnyCall: every operation checks its input first; the
// offline client has no connection, so reaching the network would panic.
func TestRefusedBeforeAnyCall(t *testing.T) {
	f := offline(t)
	ctx := context.Background()
	health := 101
	for name, c := range map[string]struct {
		call   func() error
		fields []string
		msg    string
	}{
		"spawn": {func() error {
			_, err := f.Spawn(ctx, workflows.SpawnRequest{WorkerType: "fix-worker", Master: "Bad Master"})
			return err
		}, []string{"master"}, "invalid request: master \"Bad Master\" must match"},
		"status of a bad id": {func() error { _, err := f.Status(ctx, "worker-../x"); return err },
			[]string{"worker_id"}, `invalid request: worker id "worker-../x" must match`},
		"heartbeat": {func() error {
			return f.Heartbeat(ctx, "worker-a-1", workflows.Heartbeat{TokensUsed: -1, HealthScore: &health, Status: "asleep"})
		}, []string{"tokens_used", "health_score", "status"}, "invalid request: heartbeat: tokens_used -1 is negative; health_score 101 is not in 0..100; status \"asleep\" must be busy, idle, blocked or awaiting_input"},
		"heartbeat to a bad id": {func() error { return f.Heartbeat(ctx, "x", workflows.Heartbeat{}) },
			[]string{"worker_id"}, "invalid request: worker id"},
		"shutdown": {func() error {
			_, err := f.Shutdown(ctx, "worker-a-1", workflows.ShutdownRequest{Grace: 2 * time.Hour})
			return err
		}, []string{"grace"}, "invalid request: grace 2h0m0s is not in 0..1h"},
		"kill": {func() error {
			_, err := f.Kill(ctx, "worker-a-1", workflows.KillRequest{Reason: strings.Repeat("r", 2000)})
			return err
		}, []string{"reason"}, "invalid request: reason is longer than 1024 bytes"},
		"cleanup": {func() error { _, _, err := f.Cleanup(ctx, "../etc"); return err }, []string{"worker_id"}, "invalid request: worker id"},
		"wait":    {func() error { _, err := f.Wait(ctx, ""); return err }, []string{"worker_id"}, "invalid request: worker id"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.call()
			require.Equal(t, c.fields, fieldNames(t, err))
			require.True(t, strings.HasPrefix(err.Error(), c.msg), "%q does not start with %q", err.Error(), c.msg)
		})
	}
}

func TestReadSpecNamesTheFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spec.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"token_budget": {"allocated": 0}}`), 0o600))
	_, err := offline(t).ReadSpec(path)
	require.Equal(t, []string{"worker_type", "task_id", "master", "token_budget.allocated"}, fieldNames(t, err))
	require.Equal(t, fmt.Sprintf("invalid request: spec %s: worker_type is required; task_id is required; master (or created_by) is required; token_budget.allocated 0 is not in 1..%d",
		path, workflows.MaxBudget), err.Error())

	// Fields that Resolve refuses are named the same way, once.
	require.NoError(t, os.WriteFile(path, []byte(`{"worker_type": "fix-worker", "task_id": "task-1", "master": "m", "priority": "urgent"}`), 0o600))
	_, err = offline(t).ReadSpec(path)
	require.Equal(t, []string{"priority"}, fieldNames(t, err))
	require.Equal(t, "invalid request: spec "+path+`: priority "urgent" must be one of low, medium, high, critical`, err.Error())
}

func TestNewRefusesABadTypesFile(t *testing.T) {
	_, err := New(nil, Options{WorkerTypesFile: filepath.Join(t.TempDir(), "missing.json")})
	require.Error(t, err)
	require.Contains(t, err.Error(), "missing.json")
	_, err = New(nil, Options{StartWait: -time.Second})
	require.ErrorIs(t, err, ErrInvalid)
}

// statusAnswer makes the mock answer the status query with spec.
func statusAnswer(t *testing.T, c *mocks.Client, id string, spec workflows.WorkerSpec) {
	v := mocks.NewEncodedValue(t)
	v.On("Get", mock.Anything).Run(func(args mock.Arguments) { *args.Get(0).(*workflows.WorkerSpec) = spec }).Return(nil)
	c.On("QueryWorkflow", mock.Anything, workflows.WorkflowID(id), "", workflows.QueryStatus).Return(v, nil)
}

// TestErrorMapping: Temporal's errors become the ones a master branches on.
func TestErrorMapping(t *testing.T) {
	ctx := context.Background()
	const id = "worker-a-1"
	gone := serviceerror.NewNotFound("workflow not found")

	t.Run("never spawned", func(t *testing.T) {
		c := mocks.NewClient(t)
		c.On("QueryWorkflow", mock.Anything, workflows.WorkflowID(id), "", workflows.QueryStatus).Return(nil, gone)
		c.On("DescribeWorkflowExecution", mock.Anything, workflows.WorkflowID(id), "").Return(nil, gone)
		_, err := mustNew(t, c).Status(ctx, id)
		require.ErrorIs(t, err, ErrUnknownWorker)
		require.EqualError(t, err, "unknown worker: no worker with id worker-a-1")
	})
	t.Run("ended", func(t *testing.T) {
		c := mocks.NewClient(t)
		c.On("SignalWorkflow", mock.Anything, workflows.WorkflowID(id), "", workflows.SignalHeartbeat, mock.Anything).
			Return(serviceerror.NewNotFound("workflow execution already completed"))
		c.On("DescribeWorkflowExecution", mock.Anything, workflows.WorkflowID(id), "").Return(&workflowservice.DescribeWorkflowExecutionResponse{}, nil)
		statusAnswer(t, c, id, workflows.WorkerSpec{WorkerID: id, Status: workflows.StatusCompleted})
		err := mustNew(t, c).Heartbeat(ctx, id, workflows.Heartbeat{})
		require.ErrorIs(t, err, ErrEnded)
		require.NotErrorIs(t, err, ErrUnknownWorker)
		require.EqualError(t, err, "worker has already ended: worker-a-1 (status completed)")
	})
	t.Run("an update refused because the worker ended", func(t *testing.T) {
		c := mocks.NewClient(t)
		c.On("UpdateWorkflow", mock.Anything, mock.Anything).
			Return(nil, temporal.NewApplicationError("worker-a-1 has already ended (completed)", "Ended"))
		_, err := mustNew(t, c).Shutdown(ctx, id, workflows.ShutdownRequest{})
		require.ErrorIs(t, err, ErrEnded)
	})
	t.Run("spawn refused for budget", func(t *testing.T) {
		c := mocks.NewClient(t)
		statusAnswer(t, c, id, workflows.WorkerSpec{WorkerID: id, Status: workflows.StatusFailed,
			Cleanup: &workflows.CleanupInfo{Reason: "insufficient budget: available 10 < required 500"}})
		_, err := mustNew(t, c).WaitStarted(ctx, id)
		require.ErrorIs(t, err, ErrSpawnFailed)
		require.ErrorIs(t, err, ErrBudgetRefused)
		require.EqualError(t, err, "spawn failed: worker-a-1: insufficient budget: available 10 < required 500")
	})
	t.Run("spawn failed otherwise", func(t *testing.T) {
		c := mocks.NewClient(t)
		statusAnswer(t, c, id, workflows.WorkerSpec{WorkerID: id, Status: workflows.StatusFailed,
			Cleanup: &workflows.CleanupInfo{Reason: "start process: exec: no such file"}})
		_, err := mustNew(t, c).WaitStarted(ctx, id)
		require.ErrorIs(t, err, ErrSpawnFailed)
		require.NotErrorIs(t, err, ErrBudgetRefused)
	})
	t.Run("server down passes as it is", func(t *testing.T) {
		c := mocks.NewClient(t)
		down := errors.New("connection refused")
		c.On("QueryWorkflow", mock.Anything, workflows.WorkflowID(id), "", workflows.QueryStatus).Return(nil, down)
		_, err := mustNew(t, c).Status(ctx, id)
		require.ErrorIs(t, err, down)
		for _, sentinel := range []error{ErrUnknownWorker, ErrEnded, ErrInvalid} {
			require.NotErrorIs(t, err, sentinel)
		}
	})
}

// mustNew is a client on c (a mock, or nil for none).
func mustNew(t *testing.T, c client.Client) *Client {
	t.Helper()
	f, err := New(c, Options{})
	require.NoError(t, err)
	return f
}
