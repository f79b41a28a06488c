package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// poolCommand is `budget pool set|delete`: the pools below the root.
func (a *app) poolCommand() *cobra.Command {
	pool := &cobra.Command{
		Use:   "pool",
		Short: "Configure budget pools: quotas, borrowing, lending, worker caps, hold and drain",
		Example: `  starter budget pool set team-a --quota 100000 --borrow 50000
  starter budget pool delete team-a`,
		Args: args(0, "a subcommand: set or delete"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("budget pool needs a subcommand: set or delete")}
		},
	}
	var (
		defaults, drain  bool
		quota, borrow    int64
		lendLimit        int64
		maxWorkers       int
		hold, bestEffort bool
		concurrency      int
		window           time.Duration
		windowLimit      int64
		windowFrom       string
		alertAt          int
		queueTimeout     time.Duration
	)
	set := &cobra.Command{
		Use:   "set NAME | root | --defaults [flags]",
		Short: "Configure a pool (flags not given keep their value), the defaults of pools without settings, or the root's window and alert",
		Example: `  # A team's pool: 100k of its own, may borrow 50k more, lends at most 20k
  starter budget pool set team-a --quota 100000 --borrow 50000 --lend 20000 --max-workers 10
  # Every master's pool, created on first use, gets 50k
  starter budget pool set --defaults --quota 50000
  # No new admissions in team-a; --drain also shuts its workers down
  starter budget pool set team-a --hold --drain
  starter budget pool set team-a --hold=false
  # At most 2M tokens spent per day by team-a, alert at 80 %
  starter budget pool set team-a --window 24h --window-from 2026-12-01T00:00:00Z --window-limit 2000000 --alert-at 80
  # The whole budget's weekly limit
  starter budget pool set root --window 168h --window-limit 10000000
  # Queued spawns of team-a that set no --queue-timeout give up after 2 hours
  starter budget pool set team-a --queue-timeout 2h`,
		Args: func(_ *cobra.Command, argv []string) error {
			switch {
			case defaults && len(argv) > 0:
				return usageError{fmt.Errorf("give a pool NAME or --defaults, not both")}
			case !defaults && len(argv) != 1:
				return usageError{fmt.Errorf("expected a pool NAME (or --defaults), got %d argument(s)", len(argv))}
			case !defaults && argv[0] != workflows.PoolRoot:
				if err := workflows.ValidatePoolName(argv[0]); err != nil {
					return usageError{err}
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			name := ""
			if !defaults {
				name = argv[0]
			}
			f := cmd.Flags()
			if drain && !(f.Changed("hold") && hold) {
				return usageError{fmt.Errorf("--drain needs --hold: a drained pool must not admit new workers")}
			}
			if drain && defaults {
				return usageError{fmt.Errorf("--drain takes a pool NAME")}
			}
			if f.Changed("lend") && lendLimit < -1 {
				return usageError{fmt.Errorf("--lend %d must be -1 (lend all) or more", lendLimit)}
			}
			if drain && (concurrency < 1 || concurrency > 100) {
				return usageError{fmt.Errorf("--concurrency %d is not in 1..100", concurrency)}
			}
			fc, err := a.connect()
			if err != nil {
				return err
			}
			current, err := fc.Budget().Show(cmd.Context())
			if err != nil {
				return err
			}
			// The settings as they will be, checked here (exit 2); the
			// ledger takes only the flags given, so that a change made
			// meanwhile by someone else to another setting is kept.
			s := currentSettings(current, name)
			var fields []string
			change := func(flag, field string, apply func()) {
				if f.Changed(flag) {
					apply()
					fields = append(fields, field)
				}
			}
			change("quota", "quota", func() { s.Quota = quota })
			change("borrow", "borrow", func() { s.Borrow = borrow })
			change("lend", "lend", func() {
				s.Lend = nil
				if lendLimit >= 0 {
					s.Lend = &lendLimit
				}
			})
			change("max-workers", "max_workers", func() { s.MaxWorkers = maxWorkers })
			change("hold", "hold", func() { s.Hold = hold })
			change("best-effort", "best_effort", func() { s.BestEffort = bestEffort })
			change("window", "window", func() { s.Window = window })
			change("window-limit", "window_limit", func() { s.WindowLimit = windowLimit })
			if f.Changed("window-from") {
				from, err := time.Parse(time.RFC3339, windowFrom)
				if err != nil {
					return usageError{fmt.Errorf("--window-from %q is not a time like 2026-12-01T00:00:00Z", windowFrom)}
				}
				change("window-from", "window_from", func() { s.WindowFrom = from.UTC() })
			}
			if f.Changed("alert-at") && (alertAt < 1 || alertAt > 100) {
				return usageError{fmt.Errorf("--alert-at %d is not in 1..100 (percent)", alertAt)}
			}
			change("alert-at", "alert_at", func() { s.AlertAt = alertAt })
			change("queue-timeout", "queue_timeout", func() { s.QueueTimeout = queueTimeout })
			if len(fields) == 0 {
				return usageError{fmt.Errorf("nothing to set: give --quota, --borrow, --lend, --max-workers, --hold, --best-effort, --window, --window-limit, --window-from, --alert-at or --queue-timeout")}
			}
			v, err := fc.Budget().SetPool(cmd.Context(), name, s, fields...)
			if err != nil {
				return err
			}
			if drain {
				return a.drain(cmd, fc, name, v, concurrency)
			}
			return a.print(v, func(w io.Writer) {
				if p, ok := findPool(v, name); ok && p.Settings.Quota > 0 && p.Held > p.Settings.Quota+p.Settings.Borrow {
					fmt.Fprintf(w, "pool %s holds %d, above its new quota %d and borrowing limit %d: nothing is taken back, and it admits nothing until it fits\n",
						name, p.Held, p.Settings.Quota, p.Settings.Borrow)
				}
				printBudget(w, v)
			})
		},
	}
	f := set.Flags()
	f.BoolVar(&defaults, "defaults", false, "set the defaults of every pool without settings of its own (each master's pool, created on first use)")
	f.Int64Var(&quota, "quota", 0, "tokens the pool may hold (0: no quota, the root's total bounds it)")
	f.Int64Var(&borrow, "borrow", 0, "how far beyond its quota the pool may go with what other pools leave unused (needs --quota)")
	f.Int64Var(&lendLimit, "lend", -1, "how much of its unused quota other pools may take (-1: all of it)")
	f.IntVar(&maxWorkers, "max-workers", 0, "most live workers in the pool (0: no cap)")
	f.BoolVar(&hold, "hold", false, "admit nothing new (queued requests wait); --hold=false resumes")
	f.BoolVar(&drain, "drain", false, "with --hold: also shut the pool's workers down gracefully and withdraw its queued ones")
	f.BoolVar(&bestEffort, "best-effort", false, "let a smaller request pass a larger one of the pool that does not fit (default: strict order)")
	f.IntVar(&concurrency, "concurrency", 10, "with --drain, how many workers to stop at once")
	f.DurationVar(&window, "window", 0, "spend window, e.g. 24h or 168h (0: none); with --window-limit")
	f.Int64Var(&windowLimit, "window-limit", 0, "most tokens the pool's workers may spend per window, held tokens included")
	f.StringVar(&windowFrom, "window-from", "", "start of the first window, RFC 3339 (default: now)")
	f.IntVar(&alertAt, "alert-at", 0, "alert when the quota held or the window limit spent reaches this percent (default 75)")
	f.DurationVar(&queueTimeout, "queue-timeout", 0, "how long a queued spawn of the pool that sets no --queue-timeout waits before it fails holding nothing (0: 30m)")

	del := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Remove a pool's settings (refused while it holds or waits for budget)",
		Example: `  starter budget pool delete team-a`,
		Args: func(_ *cobra.Command, argv []string) error {
			if len(argv) != 1 {
				return usageError{fmt.Errorf("expected a pool NAME, got %d argument(s)", len(argv))}
			}
			if err := workflows.ValidatePoolName(argv[0]); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			v, err := fc.Budget().DeletePool(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { printBudget(w, v) })
		},
	}
	pool.AddCommand(set, del)
	return pool
}

// currentSettings are the pool's settings now: its own, or the defaults.
func currentSettings(v workflows.BudgetView, name string) workflows.PoolSettings {
	if name == workflows.PoolRoot {
		if v.Root != nil {
			return *v.Root
		}
		return workflows.PoolSettings{}
	}
	if p, ok := findPool(v, name); ok && p.Configured && name != "" {
		return p.Settings
	}
	if v.PoolDefaults != nil {
		return *v.PoolDefaults
	}
	return workflows.PoolSettings{}
}

func findPool(v workflows.BudgetView, name string) (workflows.PoolView, bool) {
	for _, p := range v.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return workflows.PoolView{}, false
}

// drain shuts down gracefully every worker that holds or waits for budget
// in the pool, which is on hold already, so that none takes their place.
func (a *app) drain(cmd *cobra.Command, fc *fleet.Client, name string, v workflows.BudgetView, concurrency int) error {
	var ids []string
	for _, al := range v.Allocations {
		if al.Pool == name {
			ids = append(ids, al.WorkerID)
		}
	}
	for _, q := range v.Queue {
		if q.Pool == name {
			ids = append(ids, q.WorkerID)
		}
	}
	if len(ids) == 0 {
		return a.print(v, func(w io.Writer) {
			fmt.Fprintf(w, "pool %s is on hold; no worker to drain\n", name)
			printBudget(w, v)
		})
	}
	req := workflows.ShutdownRequest{Reason: "pool " + name + " drained"}
	return a.forMany(cmd, ids, concurrency, "stopped", func(ctx context.Context, id string) (workflows.WorkerSpec, error) {
		if _, err := fc.Shutdown(ctx, id, req); err != nil {
			return workflows.WorkerSpec{}, err
		}
		return a.waitStopped(ctx, id)
	})
}

// printPools prints the pools below the root as a tree.
func printPools(w io.Writer, v workflows.BudgetView) {
	for i, p := range v.Pools {
		branch := "├──"
		if i == len(v.Pools)-1 {
			branch = "└──"
		}
		var limits []string
		s := p.Settings
		if s.Quota > 0 {
			limits = append(limits, fmt.Sprintf("quota %d", s.Quota))
			if s.Borrow > 0 {
				limits = append(limits, fmt.Sprintf("borrow %d", s.Borrow))
			}
			if s.Lend != nil {
				limits = append(limits, fmt.Sprintf("lend %d", *s.Lend))
			}
		}
		if s.MaxWorkers > 0 {
			limits = append(limits, fmt.Sprintf("max %d workers", s.MaxWorkers))
		}
		if s.BestEffort {
			limits = append(limits, "best effort")
		}
		if s.QueueTimeout > 0 {
			limits = append(limits, fmt.Sprintf("queue timeout %s", s.QueueTimeout))
		}
		if s.Hold {
			limits = append(limits, "ON HOLD")
		}
		if !p.Configured {
			limits = append(limits, "defaults")
		}
		fmt.Fprintf(w, "%s pool %-20s held %d (%d workers)", branch, p.Name, p.Held, p.Workers)
		if p.Borrowed > 0 {
			fmt.Fprintf(w, "  borrowed %d", p.Borrowed)
		}
		if p.Waiting > 0 {
			fmt.Fprintf(w, "  queued %d (%d requests)", p.Queued, p.Waiting)
		}
		if len(limits) > 0 {
			fmt.Fprintf(w, "  [%s]", strings.Join(limits, ", "))
		}
		fmt.Fprintln(w)
		printWindowAndAlert(w, "      ", p.Window, p.Alert)
	}
}

// printWindowAndAlert prints a spend window and a raised alert, if any.
func printWindowAndAlert(w io.Writer, indent string, win *workflows.WindowView, alert *workflows.AlertView) {
	if win != nil {
		fmt.Fprintf(w, "%swindow: spent %d", indent, win.Spent)
		if win.Limit > 0 {
			fmt.Fprintf(w, " of %d", win.Limit)
		}
		fmt.Fprintf(w, ", resets %s\n", win.Ends.Local().Format(time.RFC3339))
	}
	if alert != nil {
		fmt.Fprintf(w, "%sALERT since %s: %s\n", indent, alert.Since.Local().Format(time.RFC3339), alert.Message)
	}
}
