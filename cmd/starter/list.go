package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// filterFlags are the selection flags shared by list and the bulk commands.
type filterFlags struct {
	status string
	typ    string
	master string
	query  string
}

func (ff *filterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&ff.status, "status", "", "only these statuses, comma-separated (pending, running, idle, shutting_down, completed, failed, zombie, cleaned_up)")
	cmd.Flags().StringVar(&ff.typ, "type", "", "only this worker type")
	cmd.Flags().StringVar(&ff.master, "master", "", "only workers of this master")
	cmd.Flags().StringVar(&ff.query, "query", "", `raw visibility query, ANDed with the rest, e.g. 'Priority = "high"'`)
}

func (ff *filterFlags) filter() (fleet.Filter, error) {
	statuses, err := fleet.ParseStatuses(ff.status)
	if err != nil {
		return fleet.Filter{}, err
	}
	return fleet.Filter{Statuses: statuses, Type: ff.typ, Master: ff.master, Query: ff.query}, nil
}

func (a *app) listCommand() *cobra.Command {
	var (
		ff       filterFlags
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List workers with their health, heartbeat age and token use, healthiest first",
		Long: `list shows the open lifecycles (or those of --status), one line each. The
heartbeat column is the age of the last heartbeat as the lifecycle received
it, so a dead worker never looks alive.`,
		Example: `  # The runbook's worker monitor and its filters
  starter list
  starter list --status running
  starter list --type implementation-worker --master development-master
  starter list --query 'Priority = "critical"' -o json | jq -r '.[].worker_id'
  # A live dashboard, refreshed every 2 s until Ctrl-C
  starter list --watch`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := ff.filter()
			if err != nil {
				return err
			}
			if watch && a.output == "json" {
				return usageError{fmt.Errorf("--watch shows a table; it does not combine with -o json")}
			}
			fc, err := a.connect()
			if err != nil {
				return err
			}
			for {
				specs, err := fc.List(cmd.Context(), flt)
				if err != nil {
					if watch && cmd.Context().Err() != nil {
						return nil // interrupted mid-refresh: the dashboard just ends
					}
					return err
				}
				if !watch {
					if specs == nil {
						specs = []workflows.WorkerSpec{}
					}
					return a.print(specs, func(w io.Writer) { printTable(w, specs, time.Now()) })
				}
				// Home the cursor and clear, so the table refreshes in place.
				fmt.Fprint(a.stdout, "\033[H\033[2J")
				fmt.Fprintf(a.stdout, "%s  %d workers  (Ctrl-C to stop)\n\n", time.Now().Format("15:04:05"), len(specs))
				printTable(a.stdout, specs, time.Now())
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	ff.add(cmd)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh in place until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval of --watch")
	return cmd
}

func printTable(w io.Writer, specs []workflows.WorkerSpec, now time.Time) {
	if len(specs) == 0 {
		fmt.Fprintln(w, "no workers match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER ID\tTYPE\tSTATUS\tHEALTH\tHEARTBEAT\tTOKENS\tPID\tHOST")
	for _, s := range specs {
		pct := int64(0)
		if s.TokenBudget.Allocated > 0 {
			pct = s.TokenBudget.Used * 100 / s.TokenBudget.Allocated
		}
		alert := ""
		if s.Heartbeat.Alert != "" {
			alert = " " + strings.ToUpper(s.Heartbeat.Alert)
		}
		status := string(s.Status)
		if s.Heartbeat.Attention != "" {
			status += " (" + s.Heartbeat.Attention + ")"
		}
		if s.Queue != nil {
			status = fmt.Sprintf("%s (queued #%d)", s.Status, s.Queue.Position)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d %s\t%s%s\t%d/%d %d%%\t%s\t%s\n", s.WorkerID, s.WorkerType, status,
			s.Heartbeat.HealthScore, s.Health.Band, heartbeatAge(s, now), alert,
			s.TokenBudget.Used, s.TokenBudget.Allocated, pct, orDash(pidText(s.PID)), orDash(s.Host))
	}
	_ = tw.Flush()
}

// heartbeatAge is how long ago the lifecycle last heard from the worker.
func heartbeatAge(s workflows.WorkerSpec, now time.Time) string {
	if s.Heartbeat.LastSeen == nil {
		return "never"
	}
	return now.Sub(*s.Heartbeat.LastSeen).Round(time.Second).String()
}

func pidText(pid int) string {
	if pid == 0 {
		return ""
	}
	return fmt.Sprint(pid)
}
