package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func (a *app) spawnCommand() *cobra.Command {
	var (
		req      workflows.SpawnRequest
		wait     bool
		specPath string
	)
	cmd := &cobra.Command{
		Use:   "spawn",
		Short: "Spawn a worker: reserve its budget, start its process, watch it",
		Example: `  # The runbook's spawn: an implementation worker for task-001
  starter spawn --type implementation-worker --task-id task-001 \
      --master development-master --priority high --repo owner/repo

  # A short zombie limit, to see detection within seconds
  starter spawn --type scan-worker --task-id task-002 --master security-master --zombie-after 20s`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if specPath == "" {
				var missing []string
				for _, name := range []string{"type", "master"} {
					if !cmd.Flags().Changed(name) {
						missing = append(missing, "--"+name)
					}
				}
				if len(missing) > 0 && !isTerminal(os.Stdin) {
					return usageError{fmt.Errorf("missing required flags: %s (or give --from-spec FILE, or run on a terminal for the wizard)", strings.Join(missing, ", "))}
				}
				if len(missing) > 0 {
					registry, err := workertypes.Load(a.typesFile)
					if err != nil {
						return err
					}
					wz := &wizard{in: bufio.NewReader(os.Stdin), out: cmd.ErrOrStderr()}
					if err := wz.fill(&req, cmd.Flags().Changed, registry); err != nil {
						return usageError{err}
					}
				}
			}
			// Zero means "the type's default" inside; given on the command
			// line it is a mistake.
			// -1 means "the type's default" inside; given on the command
			// line, any negative count is a mistake.
			if cmd.Flags().Changed("max-restarts") && req.MaxRestarts < 0 {
				return fmt.Errorf("%w: max restarts %d is not in 0..%d", fleet.ErrInvalid, req.MaxRestarts, workflows.MaxRestartsLimit)
			}
			if cmd.Flags().Changed("budget") && req.Budget < workflows.MinBudget {
				return fmt.Errorf("%w: budget %d is not in %d..%d", fleet.ErrInvalid, req.Budget, workflows.MinBudget, workflows.MaxBudget)
			}
			// The request is complete and valid before anything connects.
			offline, err := a.offline()
			if err != nil {
				return err
			}
			if specPath != "" {
				if req, err = offline.ReadSpec(specPath); err != nil {
					return err
				}
			}
			if req, err = offline.Resolve(req); err != nil {
				return err
			}
			fc, err := a.connect()
			if err != nil {
				return err
			}
			resolved, err := fc.Start(cmd.Context(), req)
			if err != nil {
				return err
			}
			if !wait {
				return a.print(resolved, func(w io.Writer) { fmt.Fprintln(w, resolved.WorkerID) })
			}
			spec, err := fc.WaitStarted(cmd.Context(), resolved.WorkerID)
			if err != nil {
				return err
			}
			return a.print(spec, func(w io.Writer) {
				if q := spec.Queue; q != nil {
					fmt.Fprintf(w, "%s queued for budget: %s\n", spec.WorkerID, queueText(*q, time.Now()))
					return
				}
				fmt.Fprintln(w, spec.WorkerID)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.WorkerType, "type", "", "worker type, e.g. implementation-worker (required)")
	f.StringVar(&req.TaskID, "task-id", "", "task the worker works on, task-...; without one the worker starts idle")
	f.StringVar(&req.Master, "master", "", "master that owns the worker, e.g. development-master (required)")
	f.StringVar(&req.Priority, "priority", workflows.DefaultPriority, "low, medium, high or critical")
	f.StringVar(&req.Repo, "repo", "", "repository, owner/name")
	f.Int64Var(&req.Budget, "budget", 0, "token budget to reserve, 1..200000 (default: the type's)")
	f.StringVar(&req.WorkerID, "worker-id", "", "worker id, worker-<type>-<suffix> (default: generated)")
	f.DurationVar(&req.Timeout, "timeout", 0, "longest the worker may run (default: the type's)")
	f.DurationVar(&req.Limits.ZombieAfter, "zombie-after", 0, "reap the worker after this long without a heartbeat (default 5m)")
	f.DurationVar(&req.Limits.HeartbeatWarning, "heartbeat-warning", 0, "flag a late heartbeat after this long (default 60s, or 1/5 of --zombie-after)")
	f.DurationVar(&req.Limits.HeartbeatCritical, "heartbeat-critical", 0, "flag a heartbeat as critical after this long (default 120s, or 2/5 of --zombie-after)")
	f.DurationVar(&req.Limits.IdleAfter, "idle-after", 0, "shut an idle worker down after this long (default 5m)")
	f.DurationVar(&req.Limits.ShutdownGrace, "shutdown-grace", 0, "default grace between SIGTERM and SIGKILL (default 5s)")
	f.StringVar(&req.Host, "host", "", "run on this host (default: any host's worker program)")
	f.IntVar(&req.MaxRestarts, "max-restarts", -1, "restarts after a crash or hang, 0..10 (default: the type's)")
	f.DurationVar(&req.Limits.RestartDelay, "restart-delay", 0, "first restart delay, doubling each time (default 30s)")
	f.DurationVar(&req.Limits.RestartMaxDelay, "restart-max-delay", 0, "cap of the restart delay (default 300s)")
	f.DurationVar(&req.Limits.HealthyRun, "healthy-run", 0, "a run this long resets the restart count (default 10m)")
	f.DurationVar(&req.Limits.HostLossAfter, "host-loss-after", 0, "count the host as lost when its worker program is gone this long (default 2m)")
	f.DurationVar(&req.Limits.WatchHeartbeat, "watch-heartbeat", 0, "notice a dead worker program after this long (default 20s)")
	f.DurationVar(&req.Limits.SampleEvery, "sample-every", 0, "measure the process tree's CPU and memory this often (default 30s)")
	f.StringVar(&req.Pool, "pool", "", "budget pool to reserve in (default: the master's own pool)")
	f.BoolVar(&req.WaitForBudget, "wait-for-budget", false, "when the budget is short, wait in the queue (pending, by priority then arrival) instead of failing")
	f.DurationVar(&req.QueueTimeout, "queue-timeout", 0, "with --wait-for-budget: fail, holding nothing, after waiting this long (default: the pool's queue timeout, 30m unless `budget pool set --queue-timeout`)")
	f.BoolVar(&wait, "wait", true, "wait until the worker runs, is queued for budget, or failed to start")
	f.StringVar(&specPath, "from-spec", "", "spawn from a worker spec JSON file (the runbook's spec shape)")
	cmd.MarkFlagsMutuallyExclusive("from-spec", "type")
	return cmd
}

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a worker spec file before spawning it, naming every bad field",
		Example: `  # The runbook's "Validate Before Spawn"
  starter validate worker-implementation-001.json && starter spawn --from-spec worker-implementation-001.json`,
		Args: args(1, "FILE"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			fc, err := a.offline()
			if err != nil {
				return err
			}
			req, err := fc.ReadSpec(argv[0])
			if err != nil {
				return err
			}
			return a.print(req, func(w io.Writer) {
				fmt.Fprintf(w, "%s is valid: %s, type %s, task %s, budget %d, priority %s, master %s\n",
					argv[0], req.WorkerID, req.WorkerType, req.TaskID, req.Budget, req.Priority, req.Master)
			})
		},
	}
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status WORKER_ID",
		Short: "Show a worker's spec, live or ended",
		Example: `  # The runbook's "Check Individual Worker"
  starter status worker-implementation-001
  starter status worker-implementation-001 -o json | jq .heartbeat`,
		Args: workerIDArg,
		RunE: func(cmd *cobra.Command, argv []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			spec, err := fc.Status(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.print(spec, func(w io.Writer) { printSpec(w, spec, time.Now()) })
		},
	}
}

func (a *app) heartbeatCommand() *cobra.Command {
	var (
		hb     workflows.Heartbeat
		health int
	)
	cmd := &cobra.Command{
		Use:   "heartbeat WORKER_ID",
		Short: "Send a heartbeat for a worker (what a worker process does every 30 s)",
		Long: `Send a heartbeat for a worker. Run by the worker's own process (its
environment's WORKER_ID) on a host with a heartbeat socket (` + workflows.HeartbeatSocketEnv + `),
it goes to the host, which relays to the lifecycle only what it acts on;
elsewhere it is a signal to the lifecycle.`,
		Example: `  starter heartbeat worker-implementation-001 --tokens-used 1200 --health-score 95
  starter heartbeat worker-implementation-001 --status idle --message "waiting for review"`,
		Args: workerIDArg,
		RunE: func(cmd *cobra.Command, argv []string) error {
			if cmd.Flags().Changed("health-score") {
				hb.HealthScore = &health
			}
			if err := hb.Validate(); err != nil {
				return invalid(fmt.Errorf("heartbeat: %w", err))
			}
			now := time.Now().UTC()
			hb.SentAt = &now
			// An agent's own heartbeat goes to its host, which needs no
			// connection to the server.
			path, err := fleet.HeartbeatToHost(cmd.Context(), argv[0], hb)
			if errors.Is(err, fleet.ErrNoHost) {
				var fc *fleet.Client
				if fc, err = a.connect(); err != nil {
					return err
				}
				// The socket was tried: a signal, naming this process when
				// it is the worker's own.
				if os.Getenv("WORKER_ID") == argv[0] && hb.Process == "" {
					hb.Process = os.Getenv(workflows.ProcessEnv)
				}
				path, err = workflows.PathSignal, fc.SignalHeartbeat(cmd.Context(), argv[0], hb)
			}
			if err != nil {
				return err
			}
			return a.print(map[string]any{"worker_id": argv[0], "heartbeat": hb, "path": path}, func(w io.Writer) {
				fmt.Fprintf(w, "heartbeat sent to %s (%s)\n", argv[0], pathName(path))
			})
		},
	}
	f := cmd.Flags()
	f.Int64Var(&hb.TokensUsed, "tokens-used", 0, "tokens the worker has used so far")
	f.IntVar(&health, "health-score", 100, "health score 0..100")
	f.StringVar(&hb.Status, "status", "", "busy, idle, or blocked or awaiting_input when the agent needs a person (an attention_needed event)")
	f.StringVar(&hb.Message, "message", "", "free text shown with the worker")
	return cmd
}

func (a *app) shutdownCommand() *cobra.Command {
	var req workflows.ShutdownRequest
	cmd := a.stopCommand(&cobra.Command{
		Use:   "shutdown WORKER_ID",
		Short: "Stop a worker gracefully: SIGTERM to its process tree, grace, SIGKILL",
		Example: `  # The runbook's "Shutdown Single Worker"
  starter shutdown worker-implementation-001
  starter shutdown worker-implementation-001 --grace 30s`,
		PreRunE: func(*cobra.Command, []string) error { return invalid(req.Validate()) },
	}, &req.Reason, func(ctx context.Context, fc *fleet.Client, id string) (workflows.WorkerSpec, error) {
		return fc.Shutdown(ctx, id, req)
	})
	cmd.Flags().DurationVar(&req.Grace, "grace", 0, "time between SIGTERM and SIGKILL (default: the worker's, 5s)")
	return cmd
}

func (a *app) killCommand() *cobra.Command {
	var req workflows.KillRequest
	return a.stopCommand(&cobra.Command{
		Use:   "kill WORKER_ID",
		Short: "Stop a worker at once: SIGKILL to its whole process tree",
		Example: `  # The runbook's "Emergency Kill", for one worker
  starter kill worker-implementation-001 --reason "runaway token use"`,
		PreRunE: func(*cobra.Command, []string) error { return invalid(req.Validate()) },
	}, &req.Reason, func(ctx context.Context, fc *fleet.Client, id string) (workflows.WorkerSpec, error) {
		return fc.Kill(ctx, id, req)
	})
}

// stopCommand completes shutdown and kill, which differ only in the request
// they send: one worker by id, or every worker a filter selects with --all.
func (a *app) stopCommand(cmd *cobra.Command, reason *string, stop func(context.Context, *fleet.Client, string) (workflows.WorkerSpec, error)) *cobra.Command {
	var (
		wait, all, yes bool
		ff             filterFlags
		concurrency    int
	)
	cmd.Use += " | --all [filters]"
	cmd.Args = func(_ *cobra.Command, argv []string) error {
		switch {
		case all && len(argv) > 0:
			return usageError{fmt.Errorf("give a WORKER_ID or --all, not both")}
		case !all && len(argv) != 1:
			return usageError{fmt.Errorf("expected WORKER_ID (or --all), got %d argument(s)", len(argv))}
		case !all:
			return fleet.CheckID(argv[0])
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, argv []string) error {
		if !all {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			spec, err := stop(cmd.Context(), fc, argv[0])
			if err != nil {
				return err
			}
			return a.finishStop(cmd, spec, wait)
		}
		flt, err := ff.filter()
		if err != nil {
			return err
		}
		if concurrency < 1 || concurrency > 100 {
			return usageError{fmt.Errorf("--concurrency %d is not in 1..100", concurrency)}
		}
		fc, err := a.connect()
		if err != nil {
			return err
		}
		ids, err := fc.ListIDs(cmd.Context(), flt)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return fmt.Errorf("no live worker matches; nothing to %s", cmd.Name())
		}
		if cmd.Name() == "kill" && !yes {
			if err := a.confirm(fmt.Sprintf("kill %d workers at once (SIGKILL, no grace)?", len(ids))); err != nil {
				return err
			}
		}
		return a.forMany(cmd, ids, concurrency, "stopped", func(ctx context.Context, id string) (workflows.WorkerSpec, error) {
			if _, err := stop(ctx, fc, id); err != nil {
				return workflows.WorkerSpec{}, err
			}
			return a.waitStopped(ctx, id)
		})
	}
	cmd.Flags().StringVar(reason, "reason", "", "why, recorded in the spec")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the worker is stopped and its budget refunded")
	cmd.Flags().BoolVar(&all, "all", false, "every live worker the filters select")
	cmd.Flags().IntVar(&concurrency, "concurrency", 10, "with --all, how many workers to stop at once")
	if cmd.Name() == "kill" {
		cmd.Flags().BoolVarP(&yes, "yes", "y", false, "with --all, do not ask for confirmation")
	}
	ff.add(cmd)
	return cmd
}

// finishStop waits for the lifecycle to end, so that the operator sees the
// refund, and prints the final spec.
func (a *app) finishStop(cmd *cobra.Command, spec workflows.WorkerSpec, wait bool) error {
	if wait {
		final, err := a.waitStopped(cmd.Context(), spec.WorkerID)
		if err != nil {
			return err
		}
		spec = final
	}
	return a.print(spec, func(w io.Writer) {
		fmt.Fprintf(w, "%s %s", spec.WorkerID, spec.Status)
		if spec.Cleanup != nil && !spec.Status.Live() {
			fmt.Fprintf(w, " (%s; refunded %d tokens)", spec.Cleanup.Reason, spec.Cleanup.Refunded)
		}
		fmt.Fprintln(w)
	})
}

// waitStopped waits for a stopped worker's lifecycle to end. A stop that
// failed leaves the lifecycle open in zombie, retrying by itself; waiting
// for its end could take forever, so that is reported as a failure.
func (a *app) waitStopped(ctx context.Context, workerID string) (workflows.WorkerSpec, error) {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		final, err := a.fleet.Wait(waitCtx, workerID)
		cancel()
		if err == nil || ctx.Err() != nil {
			return final, err
		}
		// The wait timed out, or the lifecycle ended in a way Wait
		// reports as an error: its status tells which.
		spec, serr := a.fleet.Status(ctx, workerID)
		switch {
		case serr != nil:
			return spec, serr
		case spec.Status.Live():
			continue
		case spec.Status != workflows.StatusZombie:
			// Ended: its result is there at once.
			return a.fleet.Wait(ctx, workerID)
		}
		reason := ""
		if spec.Cleanup != nil {
			reason = spec.Cleanup.Reason
		}
		return spec, fmt.Errorf("%s is a zombie: its process could not be stopped (%s); its budget is refunded and the stop is retried every 10 minutes, or now with `starter cleanup %s`", workerID, reason, workerID)
	}
}

func (a *app) budgetCommand() *cobra.Command {
	budget := &cobra.Command{
		Use:   "budget",
		Short: "Show or change the token budget",
		Example: `  starter budget show
  starter budget recalc`,
		Args: args(0, "a subcommand: show, set, recalc or pool"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("budget needs a subcommand: show, set, recalc or pool")}
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show total, available and used tokens, and each live worker's allocation",
		Example: `  # The runbook's budget check
  starter budget show
  starter budget show -o json | jq .available`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			v, err := fc.Budget().Show(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { printBudget(w, v) })
		},
	}
	var total int64
	set := &cobra.Command{
		Use:     "set --total N",
		Short:   "Change the total token budget (never below what live workers hold)",
		Example: `  starter budget set --total 500000`,
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if total < 0 {
				return usageError{fmt.Errorf("--total %d must not be negative", total)}
			}
			fc, err := a.connect()
			if err != nil {
				return err
			}
			v, err := fc.Budget().SetTotal(cmd.Context(), total)
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { printBudget(w, v) })
		},
	}
	set.Flags().Int64Var(&total, "total", 0, "new total budget (required)")
	_ = set.MarkFlagRequired("total")
	var dryRun bool
	recalc := &cobra.Command{
		Use:   "recalc",
		Short: "Reconcile the ledger with the live lifecycles: release what belongs to none, print the drift",
		Example: `  # The runbook's "Recalculate budget after bulk cleanup"
  starter budget recalc
  starter budget recalc --dry-run -o json | jq '.drift'`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			r, err := fc.RecalcBudget(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				if len(r.Drift) == 0 && len(r.Missing) == 0 {
					fmt.Fprintln(w, "no drift: every allocation belongs to a live worker, and every live worker's is there")
				}
				for _, d := range r.Drift {
					verb := "would release"
					if d.Released {
						verb = "released"
					}
					fmt.Fprintf(w, "%s %d tokens held by %s: %s\n", verb, d.Amount, d.WorkerID, d.Reason)
				}
				for _, d := range r.Missing {
					verb := "would restore"
					if d.Restored {
						verb = "restored"
					}
					fmt.Fprintf(w, "%s %d tokens of %s: %s\n", verb, d.Amount, d.WorkerID, d.Reason)
				}
				printBudget(w, r.After)
			})
		},
	}
	recalc.Flags().BoolVar(&dryRun, "dry-run", false, "report the drift without releasing anything")
	budget.AddCommand(show, set, recalc, a.poolCommand())
	return budget
}

func printSpec(w io.Writer, s workflows.WorkerSpec, now time.Time) {
	fmt.Fprintf(w, "%s  %s\n", s.WorkerID, strings.ToUpper(string(s.Status)))
	fmt.Fprintf(w, "  type %s, task %s, priority %s, master %s, repo %s\n", s.WorkerType, orDash(s.TaskID), s.Priority, s.Master, orDash(s.Repo))
	pct := int64(0)
	if s.TokenBudget.Allocated > 0 {
		pct = s.TokenBudget.Used * 100 / s.TokenBudget.Allocated
	}
	fmt.Fprintf(w, "  tokens %d/%d (%d%%)\n", s.TokenBudget.Used, s.TokenBudget.Allocated, pct)
	hb := "never"
	if s.Heartbeat.LastSeen != nil {
		hb = fmt.Sprintf("%s ago", now.Sub(*s.Heartbeat.LastSeen).Round(time.Second))
	}
	fmt.Fprintf(w, "  heartbeat %s, %d received", hb, s.Heartbeat.Count)
	if s.Heartbeat.Path != "" {
		fmt.Fprintf(w, ", last %s", pathName(s.Heartbeat.Path))
	}
	if s.Heartbeat.Alert != "" {
		fmt.Fprintf(w, " [%s]", s.Heartbeat.Alert)
	}
	fmt.Fprintln(w)
	if s.Heartbeat.Attention != "" {
		fmt.Fprintf(w, "  NEEDS ATTENTION: %s (%s)\n", s.Heartbeat.Attention, orDash(s.Heartbeat.Message))
	}
	switch {
	case s.Health.Band == "":
		fmt.Fprintln(w, "  health -, never started")
	case s.Health.SampledAt == nil:
		fmt.Fprintf(w, "  health %d (%s), process tree not sampled yet\n", s.Health.Score, s.Health.Band)
	default:
		fmt.Fprintf(w, "  health %d (%s): cpu %.0f%%, rss %d MiB, %d processes, reported %s ago\n", s.Health.Score, s.Health.Band,
			s.Health.CPUPercent, s.Health.RSSBytes>>20, s.Health.Processes, now.Sub(*s.Health.SampledAt).Round(time.Second))
	}
	if s.Queue != nil {
		fmt.Fprintf(w, "  queued for budget: %s\n", queueText(*s.Queue, now))
	}
	if s.PID != 0 {
		fmt.Fprintf(w, "  pid %d on %s, log %s\n", s.PID, s.Host, s.LogPath)
		if s.Containment != "" {
			fmt.Fprintf(w, "  containment %s\n", s.Containment)
		}
	}
	for i, r := range s.Restarts {
		fmt.Fprintf(w, "  restart %d at %s after %s (delay %s)\n", i+1, r.At.Local().Format("15:04:05"), r.Reason, r.Delay)
	}
	fmt.Fprintf(w, "  created %s", s.CreatedAt.Format(time.RFC3339))
	if s.CompletedAt != nil {
		fmt.Fprintf(w, ", ended %s", s.CompletedAt.Format(time.RFC3339))
	}
	if s.ExitCode != nil {
		fmt.Fprintf(w, ", exit code %d", *s.ExitCode)
	}
	fmt.Fprintln(w)
	if s.Cleanup != nil && !s.Status.Live() {
		fmt.Fprintf(w, "  cleanup: %s (refunded %d tokens)\n", s.Cleanup.Reason, s.Cleanup.Refunded)
	}
	parts := make([]string, len(s.Transitions))
	for i, t := range s.Transitions {
		parts[i] = fmt.Sprintf("%s %s", t.Status, t.At.Local().Format("15:04:05"))
	}
	fmt.Fprintf(w, "  history: %s\n", strings.Join(parts, " -> "))
}

// queueText says where a queued worker stands: "position 3 in pool team-a, waiting 2m10s,
// times out in 27m50s".
func queueText(q workflows.QueueInfo, now time.Time) string {
	text := fmt.Sprintf("position %d", q.Position)
	if q.Pool != "" {
		text += " in pool " + q.Pool
	}
	text += fmt.Sprintf(", waiting %s", now.Sub(q.Since).Round(time.Second))
	if q.Deadline != nil {
		text += fmt.Sprintf(", times out in %s", q.Deadline.Sub(now).Round(time.Second))
	}
	return text
}

func printBudget(w io.Writer, v workflows.BudgetView) {
	fmt.Fprintf(w, "total %d  available %d  used %d", v.Total, v.Available, v.Used)
	if len(v.Queue) > 0 {
		fmt.Fprintf(w, "  queued %d (%d requests)", v.Queued, len(v.Queue))
	}
	fmt.Fprintln(w)
	// Queue timeouts the pools' lines do not show: the root's (for what
	// reserves in the root) and the defaults' (for pools created on use).
	if v.Root != nil && v.Root.QueueTimeout > 0 {
		fmt.Fprintf(w, "root queue timeout %s\n", v.Root.QueueTimeout)
	}
	if v.PoolDefaults != nil && v.PoolDefaults.QueueTimeout > 0 {
		fmt.Fprintf(w, "pool defaults: queue timeout %s\n", v.PoolDefaults.QueueTimeout)
	}
	printWindowAndAlert(w, "", v.Window, v.Alert)
	printPools(w, v)
	for _, al := range v.Allocations {
		fmt.Fprintf(w, "  %-40s %8d  %s\n", al.WorkerID, al.Amount, al.Pool)
	}
	for _, q := range v.Queue {
		fmt.Fprintf(w, "  queued %3d  %-40s %8d  %s since %s  %s\n", q.Position, q.WorkerID, q.Amount, q.Priority, q.Since.Local().Format("15:04:05"), q.Pool)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// pathName says how a heartbeat came.
func pathName(path string) string {
	if path == workflows.PathHost {
		return "through its host"
	}
	return "by signal"
}
