package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/commit-relay/worker-lifecycle/fleet"
)

func (a *app) doctorCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the server, namespace, search attributes, worker programs, hosts, ledger and schedules",
		Example: `  # The runbook's troubleshooting, in one command
  starter doctor
  starter doctor --address temporal.internal:7233 -o json`,
		Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var checks []fleet.Check
			fc, err := a.connect()
			if err != nil {
				checks = []fleet.Check{{Name: "server", Detail: err.Error(),
					Fix: "start the server (make run starts a dev server) or set --address / TEMPORAL_ADDRESS"}}
			} else {
				checks = fc.Doctor(cmd.Context(), a.conn.Namespace)
			}
			failed := 0
			for _, c := range checks {
				if !c.OK {
					failed++
				}
			}
			if err := a.print(checks, func(w io.Writer) {
				for _, c := range checks {
					mark := "ok  "
					if !c.OK {
						mark = "FAIL"
					}
					fmt.Fprintf(w, "%s %-18s %s\n", mark, c.Name, c.Detail)
					if c.Fix != "" {
						fmt.Fprintf(w, "     fix: %s\n", c.Fix)
					}
				}
			}); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d checks failed", failed, len(checks))
			}
			return nil
		},
	}
}
