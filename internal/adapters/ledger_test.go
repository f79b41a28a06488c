package adapters

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestRefusalsAgree: the ledger words its refusal with the activities'
// error; fleet trims that word off to wrap its own, so both must read
// the same.
func TestRefusalsAgree(t *testing.T) {
	require.Equal(t, activities.ErrBudgetRefused.Error(), fleet.ErrBudgetRefused.Error())
}

// TestLedgerRefusalIsTheActivitiesRefusal: the budget activity recognises
// the refusal (and makes it non-retryable) by activities.ErrBudgetRefused;
// the message stays the ledger's.
func TestLedgerRefusalIsTheActivitiesRefusal(t *testing.T) {
	c := mocks.NewClient(t)
	h := mocks.NewWorkflowUpdateHandle(t)
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(h, nil)
	h.On("Get", mock.Anything, nil).Return(temporal.NewNonRetryableApplicationError(
		"insufficient budget: available 5 < required 10", activities.ErrTypeBudgetRefused, nil)).Once()
	ledger := &Ledger{Budget: fleet.NewBudget(c)}

	err := ledger.Reserve(context.Background(), "worker-a-1", "lease-1", 10)
	require.ErrorIs(t, err, activities.ErrBudgetRefused)
	require.ErrorIs(t, err, fleet.ErrBudgetRefused)
	require.EqualError(t, err, "insufficient budget: available 5 < required 10")

	other := errors.New("workflow update was aborted")
	h.On("Get", mock.Anything, nil).Return(other).Once()
	err = ledger.Reserve(context.Background(), "worker-a-1", "lease-1", 10)
	require.ErrorIs(t, err, other)
	require.NotErrorIs(t, err, activities.ErrBudgetRefused, "only a refusal is one")
}

// TestReleaseOfAnUnknownLeaseGivesBackNothing: a lifecycle whose
// reservation failed before the ledger wrote it releases to be sure; the
// ledger refuses the unknown lease, and for the lifecycle that is a release
// of nothing, not a failed compensation to retry for ever.
func TestReleaseOfAnUnknownLeaseGivesBackNothing(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, temporal.NewNonRetryableApplicationError(
		`unknown lease "lease-1": worker worker-a-1 holds nothing under it`, workflows.ErrTypeUnknownLease, nil)).Once()
	ledger := &Ledger{Budget: fleet.NewBudget(c)}
	n, err := ledger.Release(context.Background(), "worker-a-1", "lease-1", 0)
	require.NoError(t, err)
	require.Zero(t, n)

	down := errors.New("connection refused")
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, down).Once()
	_, err = ledger.Release(context.Background(), "worker-a-1", "lease-1", 0)
	require.ErrorIs(t, err, down, "any other failure is one, and is retried")
}
