package adapters

import (
	"context"
	"errors"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Sweeper gives the sweep its view of the fleet, and the host activities
// theirs of who owns a process.
type Sweeper struct {
	Fleet *fleet.Client
}

var (
	_ activities.Sweeper       = (*Sweeper)(nil)
	_ activities.ProcessOwners = (*Sweeper)(nil)
)

// Zombies lists the lifecycles waiting in zombie.
func (s *Sweeper) Zombies(ctx context.Context) ([]string, error) {
	return s.Fleet.ListIDs(ctx, fleet.Filter{Statuses: []workflows.Status{workflows.StatusZombie}})
}

// CleanupZombie retries a zombie's compensation and returns its status.
func (s *Sweeper) CleanupZombie(ctx context.Context, workerID string) (string, error) {
	spec, _, err := s.Fleet.Cleanup(ctx, workerID)
	return string(spec.Status), err
}

// Hosts names the hosts whose worker programs poll.
func (s *Sweeper) Hosts(ctx context.Context) ([]string, error) {
	return s.Fleet.Hosts(ctx), nil
}

// OwnsProcess: a lifecycle that is not over holds the process when it
// recorded that PID on that host, or while it is starting one (pending),
// so a process started a moment ago is never taken for an orphan.
func (s *Sweeper) OwnsProcess(ctx context.Context, workerID, host string, pid int) (bool, error) {
	spec, err := s.Fleet.Status(ctx, workerID)
	if err != nil {
		return false, ignoreUnknown(err)
	}
	if !spec.Status.Live() && spec.Status != workflows.StatusZombie {
		return false, nil
	}
	return spec.Status == workflows.StatusPending || (spec.Host == host && spec.PID == pid), nil
}

// Recalc releases the ledger's orphaned allocations.
func (s *Sweeper) Recalc(ctx context.Context) ([]activities.Released, error) {
	r, err := s.Fleet.RecalcBudget(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]activities.Released, 0, len(r.Drift))
	for _, d := range r.Drift {
		out = append(out, activities.Released{WorkerID: d.WorkerID, Amount: d.Amount, Reason: d.Reason})
	}
	return out, nil
}

// ignoreUnknown: a process whose worker has no lifecycle at all is owned by
// nobody; that is an answer, not an error.
func ignoreUnknown(err error) error {
	if errors.Is(err, fleet.ErrUnknownWorker) {
		return nil
	}
	return err
}
