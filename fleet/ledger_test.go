package fleet

import (
	"context"
	"errors"
	"testing"

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
