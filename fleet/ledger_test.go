package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// reserveUpdate is the update Reserve sends for lease "lease-1".
var reserveUpdate = client.UpdateWorkflowOptions{
	WorkflowID:   workflows.LedgerWorkflowID,
	UpdateName:   workflows.UpdateReserve,
	UpdateID:     "reserve/lease-1",
	Args:         []any{workflows.ReserveRequest{WorkerID: "worker-a-1", Lease: "lease-1", Amount: 10}},
	WaitForStage: client.WorkflowUpdateStageCompleted,
}

// TestReserveUpdatesTheRunningLedger: the common path is a plain update,
// and the ledger's refusal comes back as ErrBudgetRefused with the
// ledger's own message.
func TestReserveUpdatesTheRunningLedger(t *testing.T) {
	c := mocks.NewClient(t)
	h := mocks.NewWorkflowUpdateHandle(t)
	c.On("UpdateWorkflow", mock.Anything, reserveUpdate).Return(h, nil)
	refusal := temporal.NewNonRetryableApplicationError("insufficient budget: available 5 < required 10", activities.ErrTypeBudgetRefused, nil)
	h.On("Get", mock.Anything, nil).Return(refusal).Once()
	err := NewBudget(c).Reserve(context.Background(), "worker-a-1", "lease-1", 10)
	require.ErrorIs(t, err, ErrBudgetRefused)
	require.EqualError(t, err, "insufficient budget: available 5 < required 10")

	h.On("Get", mock.Anything, nil).Return(nil).Once()
	require.NoError(t, NewBudget(c).Reserve(context.Background(), "worker-a-1", "lease-1", 10))
}

// TestReserveStartsTheLedgerWhenNoneRuns: when no ledger runs the same
// update goes with a start of the ledger at the default total, joining a
// ledger someone else started a moment ago.
func TestReserveStartsTheLedgerWhenNoneRuns(t *testing.T) {
	c := mocks.NewClient(t)
	h := mocks.NewWorkflowUpdateHandle(t)
	c.On("UpdateWorkflow", mock.Anything, reserveUpdate).Return(nil, serviceerror.NewNotFound("no ledger"))
	c.On("NewWithStartWorkflowOperation", client.StartWorkflowOptions{
		ID:                       workflows.LedgerWorkflowID,
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, mock.Anything, workflows.NewLedgerState(workflows.DefaultBudgetTotal)).Return(nil)
	c.On("UpdateWithStartWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWithStartWorkflowOptions) bool {
		return assert.ObjectsAreEqual(reserveUpdate, o.UpdateOptions)
	})).Return(h, nil)
	h.On("Get", mock.Anything, nil).Return(nil)
	require.NoError(t, NewBudget(c).Reserve(context.Background(), "worker-a-1", "lease-1", 10))
}

// TestReserveOtherErrors pass as they are: only the ledger's refusal is a
// refusal.
func TestReserveOtherErrors(t *testing.T) {
	c := mocks.NewClient(t)
	down := errors.New("connection refused")
	c.On("UpdateWorkflow", mock.Anything, reserveUpdate).Return(nil, down)
	err := NewBudget(c).Reserve(context.Background(), "worker-a-1", "lease-1", 10)
	require.ErrorIs(t, err, down)
	require.NotErrorIs(t, err, ErrBudgetRefused)
}

// TestRecheckReachesTheLedger: a restart's check of its reservation must
// not reuse the reservation's update ID, or the server answers from its
// cache of that ledger run, "reserved", even after the lease was released.
func TestRecheckReachesTheLedger(t *testing.T) {
	c := mocks.NewClient(t)
	h := mocks.NewWorkflowUpdateHandle(t)
	recheck := reserveUpdate
	recheck.UpdateID = "" // the SDK gives each call an ID of its own
	c.On("UpdateWorkflow", mock.Anything, recheck).Return(h, nil)
	released := temporal.NewNonRetryableApplicationError("the reservation of worker worker-a-1 was released already", workflows.ErrTypeLedgerRefused, nil)
	h.On("Get", mock.Anything, nil).Return(released)
	err := NewBudget(c).Recheck(context.Background(), "worker-a-1", "lease-1", "", 10)
	require.ErrorContains(t, err, "released already")
	require.NotErrorIs(t, err, ErrBudgetRefused)
}

// TestReleaseOfAnUnknownLease is ErrUnknownLease, with the ledger's words.
func TestReleaseOfAnUnknownLease(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError(`unknown lease "lease-1": worker worker-a-1 holds nothing under it`, workflows.ErrTypeUnknownLease, nil))
	n, err := NewBudget(c).Release(context.Background(), "worker-a-1", "lease-1")
	require.ErrorIs(t, err, ErrUnknownLease)
	require.Zero(t, n)
	require.EqualError(t, err, `unknown lease "lease-1": worker worker-a-1 holds nothing under it`)
}

// askUpdate is the update Request sends: no update ID of its own, so that
// a retry reaches the ledger and is answered as the lease stands now.
var askRequest = workflows.ReserveRequest{WorkerID: "worker-a-1", Lease: "lease-1", Amount: 10, Wait: true}

var askUpdate = client.UpdateWorkflowOptions{
	WorkflowID:   workflows.LedgerWorkflowID,
	UpdateName:   workflows.UpdateAsk,
	Args:         []any{askRequest},
	WaitForStage: client.WorkflowUpdateStageCompleted,
}

// TestRequestIsAnsweredInTheCall: the ledger's answer to the ask update
// comes back, and no signal is sent.
func TestRequestIsAnsweredInTheCall(t *testing.T) {
	c := mocks.NewClient(t)
	h := mocks.NewWorkflowUpdateHandle(t)
	c.On("UpdateWorkflow", mock.Anything, askUpdate).Return(h, nil)
	h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*workflows.BudgetAnswer) = workflows.BudgetAnswer{WorkerID: "worker-a-1", Lease: "lease-1", Queued: true, Position: 3}
	}).Return(nil)
	ans, answered, err := NewBudget(c).Request(context.Background(), askRequest)
	require.NoError(t, err)
	require.True(t, answered)
	require.Equal(t, workflows.BudgetAnswer{WorkerID: "worker-a-1", Lease: "lease-1", Queued: true, Position: 3}, ans)
}

// TestRequestFallsBackToTheSignal: whatever keeps the update from the
// ledger (no ledger yet, more updates in flight than the server admits,
// the ledger closing its run, an update it does not know), the same
// request goes as the reserve signal, which starts a ledger if none runs.
func TestRequestFallsBackToTheSignal(t *testing.T) {
	for name, updateErr := range map[string]error{
		"no ledger":  serviceerror.NewNotFound("workflow not found"),
		"in flight":  serviceerror.NewResourceExhausted(0, "limit on number of concurrent in-flight updates has been reached"),
		"closing":    temporal.NewApplicationError("the budget ledger is continuing as new", workflows.ErrTypeLedgerClosing),
		"old ledger": serviceerror.NewInvalidArgument(`unknown update ask`),
	} {
		t.Run(name, func(t *testing.T) {
			c := mocks.NewClient(t)
			h := mocks.NewWorkflowUpdateHandle(t)
			if _, ok := updateErr.(*temporal.ApplicationError); ok {
				// A rejection by the ledger's validator comes from Get.
				c.On("UpdateWorkflow", mock.Anything, askUpdate).Return(h, nil)
				h.On("Get", mock.Anything, mock.Anything).Return(updateErr)
			} else {
				c.On("UpdateWorkflow", mock.Anything, askUpdate).Return(nil, updateErr)
			}
			c.On("SignalWithStartWorkflow", mock.Anything, workflows.LedgerWorkflowID, workflows.SignalReserve, askRequest,
				mock.Anything, mock.Anything, workflows.NewLedgerState(workflows.DefaultBudgetTotal)).Return(nil, nil).Once()
			ans, answered, err := NewBudget(c).Request(context.Background(), askRequest)
			require.NoError(t, err)
			require.False(t, answered, "the answer comes by signal")
			require.Zero(t, ans)
		})
	}
}

// TestRequestFallsBackWhenTheUpdateStalls: the SDK retries an update the
// server turns away for its in-flight limit (ResourceExhausted) until the
// deadline it is given, so the fallback must not wait for the caller's: past
// askWithin the request goes as the signal while the caller still waits.
func TestRequestFallsBackWhenTheUpdateStalls(t *testing.T) {
	defer func(d time.Duration) { askWithin = d }(askWithin)
	askWithin = 50 * time.Millisecond
	c := mocks.NewClient(t)
	c.On("UpdateWorkflow", mock.Anything, askUpdate).Run(func(args mock.Arguments) {
		<-args.Get(0).(context.Context).Done() // retrying the in-flight limit
	}).Return(nil, context.DeadlineExceeded)
	c.On("SignalWithStartWorkflow", mock.Anything, workflows.LedgerWorkflowID, workflows.SignalReserve, askRequest,
		mock.Anything, mock.Anything, workflows.NewLedgerState(workflows.DefaultBudgetTotal)).Return(nil, nil).Once()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // the activity's
	defer cancel()
	_, answered, err := NewBudget(c).Request(ctx, askRequest)
	require.NoError(t, err)
	require.False(t, answered, "the answer comes by signal")
}

// TestRequestWithAnEndedContextSendsNothingMore: a caller that gave up is
// not answered by a signal it did not wait for.
func TestRequestWithAnEndedContextSendsNothingMore(t *testing.T) {
	c := mocks.NewClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.On("UpdateWorkflow", mock.Anything, askUpdate).Return(nil, context.Canceled)
	_, answered, err := NewBudget(c).Request(ctx, askRequest)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, answered)
}
