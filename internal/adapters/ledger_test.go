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
