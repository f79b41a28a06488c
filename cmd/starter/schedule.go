package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func (a *app) archiveCommand() *cobra.Command {
	req := workflows.ArchiveRequest{OlderThan: workflows.DefaultRetention}
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Archive the final specs of workers that ended longer ago than the retention, now",
		Example: `  # The runbook's "Archive Old Completed Workers"
  starter archive --older-than 168h
  starter archive --older-than 24h --dry-run`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			report, err := fc.RunArchival(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(report, func(w io.Writer) {
				verb := "archived"
				if report.DryRun {
					verb = "would archive"
				}
				for _, id := range report.Archived {
					fmt.Fprintf(w, "%s %s\n", verb, id)
				}
				fmt.Fprintf(w, "%d %s, %d archived before (ended before %s)\n", len(report.Archived), verb,
					report.AlreadyArchived, report.Cutoff.Format(time.RFC3339))
			})
		},
	}
	cmd.Flags().DurationVar(&req.OlderThan, "older-than", req.OlderThan, "retention: archive workers that ended longer ago than this")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "say what would be archived, write nothing")
	return cmd
}

func (a *app) scheduleCommand() *cobra.Command {
	sched := &cobra.Command{
		Use:   "schedule",
		Short: "Manage the archival schedule (a Temporal Schedule, visible in the Web UI)",
		Example: `  starter schedule install && starter schedule describe
  starter schedule trigger`,
		Args: args(0, "a subcommand"),
		RunE: func(*cobra.Command, []string) error {
			return usageError{fmt.Errorf("schedule needs a subcommand: install, describe, trigger, pause, unpause or delete")}
		},
	}
	cfg := fleet.ScheduleConfig{ArchiveCron: workflows.DefaultArchiveCron, Retention: workflows.DefaultRetention, SweepCron: workflows.DefaultSweepCron}
	which := "archival"
	install := &cobra.Command{
		Use:   "install",
		Short: "Create the archival and zombie-sweep schedules, or bring them up to date (idempotent)",
		Example: `  # The runbook's crontab line "0 2 * * *", as a Temporal Schedule
  starter schedule install
  starter schedule install --archive-at "30 3 * * *" --retention 240h`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			created, err := fc.InstallSchedules(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.print(map[string]any{"created": created}, func(w io.Writer) {
				for _, s := range []struct{ id, what string }{
					{workflows.ArchivalScheduleID, fmt.Sprintf("%s, retention %s", cfg.ArchiveCron, cfg.Retention)},
					{workflows.SweepScheduleID, cfg.SweepCron},
				} {
					if slices.Contains(created, s.id) {
						fmt.Fprintf(w, "installed schedule %s (%s)\n", s.id, s.what)
					} else {
						fmt.Fprintf(w, "schedule %s was installed already; updated to %s\n", s.id, s.what)
					}
				}
			})
		},
	}
	install.Flags().StringVar(&cfg.ArchiveCron, "archive-at", cfg.ArchiveCron, "when the archival runs, as a cron expression (UTC)")
	install.Flags().DurationVar(&cfg.Retention, "retention", cfg.Retention, "archive workers that ended longer ago than this")
	install.Flags().StringVar(&cfg.SweepCron, "sweep-at", cfg.SweepCron, "when the zombie sweep runs, as a cron expression (UTC)")

	describe := &cobra.Command{
		Use:     "describe",
		Short:   "Show a schedule: its spec, whether it is paused, its runs so far and next runs",
		Example: `  starter schedule describe -o json | jq .next_runs`,
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, h, err := a.scheduleHandle(cmd, which)
			if err != nil {
				return err
			}
			d, err := h.Describe(cmd.Context())
			if err != nil {
				return fmt.Errorf("schedule %s: %w (install it with `starter schedule install`)", id, err)
			}
			out := map[string]any{
				"schedule_id": id,
				"cron":        d.Schedule.Spec.CronExpressions,
				"paused":      d.Schedule.State.Paused,
				"next_runs":   d.Info.NextActionTimes,
				"runs":        d.Info.NumActions,
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "%s: cron %v, paused %v, %d runs so far\n", id, d.Schedule.Spec.CronExpressions, d.Schedule.State.Paused, d.Info.NumActions)
				for _, t := range d.Info.NextActionTimes {
					fmt.Fprintf(w, "  next run %s\n", t.UTC().Format(time.RFC3339))
				}
			})
		},
	}
	simple := func(use, short, example, done string, do func(*cobra.Command, client.ScheduleHandle) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Example: example, Args: args(0, "no arguments"),
			RunE: func(cmd *cobra.Command, _ []string) error {
				id, h, err := a.scheduleHandle(cmd, which)
				if err != nil {
					return err
				}
				if err := do(cmd, h); err != nil {
					return fmt.Errorf("schedule %s: %w", id, err)
				}
				return a.print(map[string]string{"schedule_id": id, "done": use}, func(w io.Writer) {
					fmt.Fprintf(w, "%s %s\n", id, done)
				})
			},
		}
	}
	sched.AddCommand(install, describe,
		simple("trigger", "Run a scheduled workflow now, as its schedule would", "  starter schedule trigger\n  starter schedule trigger --schedule sweep", "triggered",
			func(cmd *cobra.Command, h client.ScheduleHandle) error {
				return h.Trigger(cmd.Context(), client.ScheduleTriggerOptions{})
			}),
		simple("pause", "Pause a schedule", "  starter schedule pause --schedule sweep", "paused",
			func(cmd *cobra.Command, h client.ScheduleHandle) error {
				return h.Pause(cmd.Context(), client.SchedulePauseOptions{Note: "paused with starter"})
			}),
		simple("unpause", "Resume a schedule", "  starter schedule unpause --schedule sweep", "unpaused",
			func(cmd *cobra.Command, h client.ScheduleHandle) error {
				return h.Unpause(cmd.Context(), client.ScheduleUnpauseOptions{Note: "unpaused with starter"})
			}),
		simple("delete", "Delete a schedule (archives are kept)", "  starter schedule delete", "deleted",
			func(cmd *cobra.Command, h client.ScheduleHandle) error { return h.Delete(cmd.Context()) }),
	)
	for _, c := range sched.Commands() {
		if c != install {
			c.Flags().StringVar(&which, "schedule", which, "which schedule: archival or sweep")
		}
	}
	return sched
}

// scheduleHandle names and opens the schedule --schedule chose.
func (a *app) scheduleHandle(cmd *cobra.Command, which string) (string, client.ScheduleHandle, error) {
	if _, ok := fleet.Schedules[which]; !ok {
		return "", nil, usageError{fmt.Errorf("--schedule %q must be archival or sweep", which)}
	}
	fc, err := a.connect()
	if err != nil {
		return "", nil, err
	}
	return fc.Schedule(cmd.Context(), which)
}

func (a *app) sweepCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "sweep",
		Short: "Run the zombie sweep now: clean zombies, stop processes no lifecycle owns, reconcile the budget",
		Example: `  # The runbook's "cleanup-zombie-workers.sh", on demand
  starter sweep
  starter sweep -o json | jq '.orphans'`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc, err := a.connect()
			if err != nil {
				return err
			}
			r, err := fc.RunSweep(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				for _, z := range r.Zombies {
					fmt.Fprintf(w, "zombie %s: %s%s\n", z.WorkerID, z.Status, z.Error)
				}
				for _, o := range r.Orphans {
					fmt.Fprintf(w, "orphan process %d of %s on %s: stopped %v %s\n", o.PID, o.WorkerID, o.Host, o.Stopped, o.Error)
				}
				for _, h := range r.Unreachable {
					fmt.Fprintf(w, "host %s did not answer\n", h)
				}
				for _, d := range r.Released {
					fmt.Fprintf(w, "released %d tokens held by %s: %s\n", d.Amount, d.WorkerID, d.Reason)
				}
				fmt.Fprintf(w, "%d zombies, %d orphan processes, %d tokens released\n", len(r.Zombies), len(r.Orphans), sumReleased(r))
			})
		},
	}
}

func sumReleased(r workflows.SweepReport) int64 {
	var n int64
	for _, d := range r.Released {
		n += d.Amount
	}
	return n
}
