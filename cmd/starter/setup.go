package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func (a *app) setupCommand() *cobra.Command {
	cfg := fleet.SetupConfig{
		Retention: fleet.DefaultNamespaceRetention,
		Schedules: fleet.ScheduleConfig{ArchiveCron: workflows.DefaultArchiveCron, Retention: workflows.DefaultRetention, SweepCron: workflows.DefaultSweepCron},
	}
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare a Temporal server: namespace, search attributes and schedules (idempotent)",
		Long: `setup does what a new server needs before the first lifecycle, and skips
what is done already, so a deployment can run it at every start: it registers
the namespace (with --create-namespace), adds the Keyword search attributes the
lifecycles upsert (` + strings.Join(workflows.SearchAttributeNames, ", ") + `), and installs
the archival and zombie-sweep schedules as "schedule install" does.`,
		Example: `  # A new cluster (scripts/cluster.sh and docker-compose.yml run this)
  starter setup --create-namespace --wait 2m
  # An existing namespace, e.g. on Temporal Cloud
  TEMPORAL_API_KEY=... starter setup --namespace fleet.a1b2c --address fleet.a1b2c.tmprl.cloud:7233`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Namespace = a.conn.Namespace
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			if wait > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, wait)
				defer cancel()
			}
			// Every step is idempotent, so a retry repeats the setup whole;
			// what an earlier attempt did is kept for the report.
			var report fleet.SetupReport
			for {
				fc, err := a.connect()
				if err == nil {
					var got fleet.SetupReport
					got, err = fc.Setup(ctx, cfg)
					report = mergeSetup(report, got)
				}
				if err == nil {
					break
				}
				switch {
				case errors.Is(err, fleet.ErrNoNamespace):
					return fmt.Errorf("%w; give --create-namespace to register it", err)
				case errors.Is(err, fleet.ErrRetentionTooShort):
					return fmt.Errorf("%w; give --update-retention to raise it to %s (--namespace-retention), or archive sooner with --retention", err, cfg.Retention)
				case wait == 0 || !serverStarting(err):
					return err
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("the server was not ready within --wait %s: %w", wait, err)
				case <-time.After(2 * time.Second):
				}
			}
			return a.print(report, func(w io.Writer) {
				switch {
				case report.NamespaceCreated:
					fmt.Fprintf(w, "registered namespace %s (retention %s)\n", cfg.Namespace, report.Retention)
				case report.RetentionUpdated:
					fmt.Fprintf(w, "namespace %s: retention raised to %s\n", cfg.Namespace, report.Retention)
				default:
					fmt.Fprintf(w, "namespace %s exists (retention %s)\n", cfg.Namespace, report.Retention)
				}
				if len(report.AttributesAdded) > 0 {
					fmt.Fprintf(w, "added search attributes %s\n", strings.Join(report.AttributesAdded, ", "))
				} else {
					fmt.Fprintln(w, "search attributes present")
				}
				for _, id := range report.SchedulesCreated {
					fmt.Fprintf(w, "installed schedule %s\n", id)
				}
				for _, id := range report.SchedulesUpToDate {
					fmt.Fprintf(w, "schedule %s was installed already; brought up to date\n", id)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&cfg.CreateNamespace, "create-namespace", false, "register the namespace if it is missing")
	cmd.Flags().BoolVar(&cfg.UpdateRetention, "update-retention", false, "raise the namespace's retention to --namespace-retention if the archival needs more")
	cmd.Flags().DurationVar(&cfg.Retention, "namespace-retention", cfg.Retention, "history retention of a namespace this creates or updates; at least --retention + 24h")
	cmd.Flags().StringVar(&cfg.Schedules.ArchiveCron, "archive-at", cfg.Schedules.ArchiveCron, "when the archival runs, as a cron expression (UTC)")
	cmd.Flags().DurationVar(&cfg.Schedules.Retention, "retention", cfg.Schedules.Retention, "archive workers that ended longer ago than this")
	cmd.Flags().StringVar(&cfg.Schedules.SweepCron, "sweep-at", cfg.Schedules.SweepCron, "when the zombie sweep runs, as a cron expression (UTC)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep trying this long while the server is starting (unreachable or not serving yet)")
	return cmd
}

// serverStarting tells the errors of a server that is not up yet, worth
// another try, from a refusal that another try would repeat.
func serverStarting(err error) bool {
	if errors.Is(err, fleet.ErrInvalid) {
		return false
	}
	var unavailable *serviceerror.Unavailable
	var notFound *serviceerror.NamespaceNotFound
	return errors.As(err, &unavailable) || errors.As(err, &notFound) ||
		strings.Contains(err.Error(), "connecting to Temporal") || strings.Contains(err.Error(), "connection refused")
}

// mergeSetup keeps what an earlier, failed attempt did.
func mergeSetup(before, after fleet.SetupReport) fleet.SetupReport {
	after.NamespaceCreated = after.NamespaceCreated || before.NamespaceCreated
	after.RetentionUpdated = after.RetentionUpdated || before.RetentionUpdated
	for _, name := range before.AttributesAdded {
		if !slices.Contains(after.AttributesAdded, name) {
			after.AttributesAdded = append(after.AttributesAdded, name)
		}
	}
	for _, id := range before.SchedulesCreated {
		if !slices.Contains(after.SchedulesCreated, id) {
			after.SchedulesCreated = append(after.SchedulesCreated, id)
		}
	}
	after.SchedulesUpToDate = slices.DeleteFunc(after.SchedulesUpToDate, func(id string) bool { return slices.Contains(after.SchedulesCreated, id) })
	return after
}
