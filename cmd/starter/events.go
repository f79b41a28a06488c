package main

import (
	"encoding/json"
	"fmt"

	"time"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/notify"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// eventsFollowEvery is how often `events --follow` reads the log.
const eventsFollowEvery = time.Second

func (a *app) eventsCommand() *cobra.Command {
	var (
		kinds  []string
		since  time.Duration
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the events that need a person: zombies, failed cleanups, lost hosts, failed workers, budget alerts, breakers opened, agents waiting",
		Long: `Show the fleet's events, the ones the notifications carry (--notify-webhook
of the worker program), oldest first. With --follow, wait for new ones and
print each as it comes. With -o json, one JSON object per line.`,
		Example: `  starter events --since 1h
  starter events --follow --type zombie_detected --type cleanup_failed
  starter events --follow -o json | jq -r .worker_id`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt := fleet.EventFilter{}
			var err error
			if flt.Kinds, err = fleet.ParseEventKinds(kinds); err != nil {
				return err
			}
			if since < 0 {
				return usageError{fmt.Errorf("--since %s: must not be negative", since)}
			}
			if since > 0 {
				flt.Since = time.Now().Add(-since)
			}
			fc, err := a.connect()
			if err != nil {
				return err
			}
			print := func(ev workflows.Event) error {
				if a.output == "json" {
					return json.NewEncoder(a.stdout).Encode(ev)
				}
				_, err := fmt.Fprintf(a.stdout, "%s  %s\n", ev.At.Local().Format("2006-01-02 15:04:05"), notify.Text(ev))
				return err
			}
			if follow {
				return fc.FollowEvents(cmd.Context(), 0, eventsFollowEvery, flt, print, func(err error) {
					fmt.Fprintf(cmd.ErrOrStderr(), "starter: %v; trying again\n", err)
				})
			}
			evs, _, err := fc.Events(cmd.Context(), 0, flt)
			if err != nil {
				return err
			}
			if len(evs) == 0 && a.output != "json" {
				fmt.Fprintln(a.stdout, "no events")
			}
			for _, ev := range evs {
				if err := print(ev); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&kinds, "type", nil, "only events of this type (repeatable): zombie_detected, cleanup_failed, host_lost, worker_failed, budget_alert, breaker_opened, attention_needed")
	f.DurationVar(&since, "since", 0, "only events of this last while, such as 1h (default: all the log keeps, its last 1000)")
	f.BoolVarP(&follow, "follow", "f", false, "wait for new events and print each as it comes, until interrupted")
	return cmd
}
