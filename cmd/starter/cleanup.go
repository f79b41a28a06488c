package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func (a *app) cleanupCommand() *cobra.Command {
	var (
		zombies     bool
		ff          filterFlags
		concurrency int
	)
	cmd := &cobra.Command{
		Use:   "cleanup WORKER_ID | --zombies [filters]",
		Short: "Finish the compensation of zombies now: stop what is left of the process, refund the budget",
		Long: `A worker whose cleanup could not finish (its host was away, say) waits in
zombie and retries every 10 minutes by itself. cleanup retries now. It is
idempotent: on a worker that has ended cleanly it changes nothing and says so.`,
		Example: `  # The runbook's "Cleanup Single Zombie" and "Bulk Cleanup"
  starter cleanup worker-implementation-001
  starter cleanup --zombies`,
		Args: func(_ *cobra.Command, argv []string) error {
			switch {
			case zombies && len(argv) > 0:
				return usageError{fmt.Errorf("give a WORKER_ID or --zombies, not both")}
			case !zombies && len(argv) != 1:
				return usageError{fmt.Errorf("expected WORKER_ID (or --zombies), got %d argument(s)", len(argv))}
			case !zombies:
				return fleet.CheckID(argv[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			if !zombies {
				spec, changed, err := fc.Cleanup(cmd.Context(), argv[0])
				if err != nil {
					return err
				}
				return a.print(spec, func(w io.Writer) {
					if !changed {
						fmt.Fprintf(w, "nothing to clean up: %s is %s\n", spec.WorkerID, spec.Status)
						return
					}
					fmt.Fprintf(w, "%s %s (%s; refunded %d tokens)\n", spec.WorkerID, spec.Status, spec.Cleanup.Reason, spec.Cleanup.Refunded)
				})
			}
			flt, err := ff.filter()
			if err != nil {
				return err
			}
			flt.Statuses = []workflows.Status{workflows.StatusZombie}
			ids, err := fc.ListIDs(cmd.Context(), flt)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return a.print([]bulkResult{}, func(w io.Writer) { fmt.Fprintln(w, "no zombie to clean up") })
			}
			return a.forMany(cmd, ids, concurrency, "cleaned up", func(ctx context.Context, id string) (workflows.WorkerSpec, error) {
				spec, _, err := fc.Cleanup(ctx, id)
				return spec, err
			})
		},
	}
	cmd.Flags().BoolVar(&zombies, "zombies", false, "every worker in zombie that the filters select")
	cmd.Flags().IntVar(&concurrency, "concurrency", 10, "with --zombies, how many to clean up at once")
	ff.add(cmd)
	return cmd
}
