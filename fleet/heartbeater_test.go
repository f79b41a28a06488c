package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/mocks"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

func TestHeartbeaterRefusesBadInput(t *testing.T) {
	f := offline(t)
	_, err := f.Heartbeater("not-a-worker", 10*time.Second)
	require.Equal(t, []string{"worker_id"}, fieldNames(t, err))
	_, err = f.Heartbeater("worker-a-1", 10*time.Millisecond)
	require.Equal(t, []string{"interval"}, fieldNames(t, err))

	hb, err := f.Heartbeater("worker-a-1", 10*time.Second)
	require.NoError(t, err)
	require.NoError(t, hb.SetTokens(500))
	require.NoError(t, hb.SetStatus(workflows.HeartbeatBusy, "working"))
	before := hb.Last()
	// A bad value is refused and changes nothing.
	require.Equal(t, []string{"tokens_used"}, fieldNames(t, hb.AddTokens(-501)))
	require.Equal(t, []string{"health_score"}, fieldNames(t, hb.SetHealth(-1)))
	require.Equal(t, []string{"status"}, fieldNames(t, hb.SetStatus("asleep", "")))
	require.Equal(t, before, hb.Last())
	require.Equal(t, int64(500), before.TokensUsed)
}

// TestHeartbeaterRun: a heartbeat at once, another at once on a change of
// status, and the loop ends when the lifecycle has ended.
func TestHeartbeaterRun(t *testing.T) {
	c := mocks.NewClient(t)
	sent := make(chan workflows.Heartbeat, 10)
	signal := c.On("SignalWorkflow", mock.Anything, workflows.WorkflowID("worker-a-1"), "", workflows.SignalHeartbeat, mock.Anything).
		Run(func(args mock.Arguments) { sent <- args.Get(4).(workflows.Heartbeat) }).Return(nil)
	hb, err := mustNew(t, c).Heartbeater("worker-a-1", 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, hb.SetTokens(150))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hb.Run(ctx) }()
	first := <-sent
	require.Equal(t, int64(150), first.TokensUsed)
	require.NotNil(t, first.SentAt)

	require.NoError(t, hb.AddTokens(50))
	require.NoError(t, hb.SetStatus(workflows.HeartbeatIdle, "task done"))
	select {
	case second := <-sent:
		require.Equal(t, workflows.Heartbeat{TokensUsed: 200, HealthScore: first.HealthScore, Status: workflows.HeartbeatIdle,
			Message: "task done", SentAt: second.SentAt}, second)
	case <-time.After(10 * time.Second):
		t.Fatal("a change of status was not sent at once")
	}
	cancel()
	require.NoError(t, <-done, "a cancelled context ends the loop without error")

	// The lifecycle ended: Run says so instead of heartbeating on.
	signal.Unset()
	c.On("SignalWorkflow", mock.Anything, workflows.WorkflowID("worker-a-1"), "", workflows.SignalHeartbeat, mock.Anything).
		Return(serviceerror.NewNotFound("workflow execution already completed"))
	c.On("DescribeWorkflowExecution", mock.Anything, workflows.WorkflowID("worker-a-1"), "").Return(nil, serviceerror.NewNotFound("gone"))
	err = hb.Run(context.Background())
	require.ErrorIs(t, err, ErrUnknownWorker)
}
