package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/internal/control"
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
			fleet, err := a.connect()
			if err != nil {
				return err
			}
			report, err := fleet.RunArchival(cmd.Context(), req)
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
	cfg := control.ScheduleConfig{ArchiveCron: workflows.DefaultArchiveCron, Retention: workflows.DefaultRetention}
	install := &cobra.Command{
		Use:   "install",
		Short: "Create the archival schedule, or bring it up to date (idempotent)",
		Example: `  # The runbook's crontab line "0 2 * * *", as a Temporal Schedule
  starter schedule install
  starter schedule install --archive-at "30 3 * * *" --retention 240h`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fleet, err := a.connect()
			if err != nil {
				return err
			}
			created, err := fleet.InstallSchedules(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return a.print(map[string]any{"schedule_id": workflows.ArchivalScheduleID, "created": created}, func(w io.Writer) {
				if created {
					fmt.Fprintf(w, "installed schedule %s (%s, retention %s)\n", workflows.ArchivalScheduleID, cfg.ArchiveCron, cfg.Retention)
				} else {
					fmt.Fprintf(w, "schedule %s was installed already; updated to %s, retention %s\n", workflows.ArchivalScheduleID, cfg.ArchiveCron, cfg.Retention)
				}
			})
		},
	}
	install.Flags().StringVar(&cfg.ArchiveCron, "archive-at", cfg.ArchiveCron, "when the archival runs, as a cron expression (UTC)")
	install.Flags().DurationVar(&cfg.Retention, "retention", cfg.Retention, "archive workers that ended longer ago than this")

	describe := &cobra.Command{
		Use:     "describe",
		Short:   "Show the archival schedule: its spec, whether it is paused, its recent and next runs",
		Example: `  starter schedule describe -o json | jq .next_runs`,
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := a.scheduleHandle(cmd)
			if err != nil {
				return err
			}
			d, err := h.Describe(cmd.Context())
			if err != nil {
				return fmt.Errorf("schedule %s: %w (install it with `starter schedule install`)", workflows.ArchivalScheduleID, err)
			}
			out := map[string]any{
				"schedule_id": workflows.ArchivalScheduleID,
				"cron":        d.Schedule.Spec.CronExpressions,
				"paused":      d.Schedule.State.Paused,
				"next_runs":   d.Info.NextActionTimes,
				"runs":        d.Info.NumActions,
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "%s: cron %v, paused %v, %d runs so far\n", workflows.ArchivalScheduleID, d.Schedule.Spec.CronExpressions, d.Schedule.State.Paused, d.Info.NumActions)
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
				h, err := a.scheduleHandle(cmd)
				if err != nil {
					return err
				}
				if err := do(cmd, h); err != nil {
					return fmt.Errorf("schedule %s: %w", workflows.ArchivalScheduleID, err)
				}
				return a.print(map[string]string{"schedule_id": workflows.ArchivalScheduleID, "done": use}, func(w io.Writer) {
					fmt.Fprintf(w, "%s %s\n", workflows.ArchivalScheduleID, done)
				})
			},
		}
	}
	sched.AddCommand(install, describe,
		simple("trigger", "Run the archival now, as the schedule would", "  starter schedule trigger", "triggered",
			func(cmd *cobra.Command, h client.ScheduleHandle) error {
				return h.Trigger(cmd.Context(), client.ScheduleTriggerOptions{})
			}),
		simple("pause", "Pause the archival schedule", "  starter schedule pause", "paused",
			func(cmd *cobra.Command, h client.ScheduleHandle) error {
				return h.Pause(cmd.Context(), client.SchedulePauseOptions{Note: "paused with starter"})
			}),
		simple("unpause", "Resume the archival schedule", "  starter schedule unpause", "unpaused",
			func(cmd *cobra.Command, h client.ScheduleHandle) error {
				return h.Unpause(cmd.Context(), client.ScheduleUnpauseOptions{Note: "unpaused with starter"})
			}),
		simple("delete", "Delete the archival schedule (archives are kept)", "  starter schedule delete", "deleted",
			func(cmd *cobra.Command, h client.ScheduleHandle) error { return h.Delete(cmd.Context()) }),
	)
	return sched
}

func (a *app) scheduleHandle(cmd *cobra.Command) (client.ScheduleHandle, error) {
	fleet, err := a.connect()
	if err != nil {
		return nil, err
	}
	return fleet.Client.ScheduleClient().GetHandle(cmd.Context(), workflows.ArchivalScheduleID), nil
}
