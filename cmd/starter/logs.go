package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) logsCommand() *cobra.Command {
	var (
		lines  int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs WORKER_ID",
		Short: "Print a worker's log from its host (any machine can read it)",
		Example: `  # The runbook's "View logs"
  starter logs worker-implementation-001 -n 50
  # Follow it until the worker ends or Ctrl-C
  starter logs worker-implementation-001 -f`,
		Args: workerIDArg,
		RunE: func(cmd *cobra.Command, argv []string) error {
			if lines < 1 || lines > 10000 {
				return usageError{fmt.Errorf("-n %d is not in 1..10000", lines)}
			}
			fc, err := a.connect()
			if err != nil {
				return err
			}
			spec, err := fc.Status(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			chunk, err := fc.ReadLog(cmd.Context(), spec, lines, -1)
			if err != nil {
				return err
			}
			fmt.Fprint(a.stdout, chunk.Text)
			for follow && spec.Status.Live() {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				if spec, err = fc.Status(cmd.Context(), argv[0]); err != nil {
					return err
				}
				// One last read after the end catches the final lines.
				if chunk, err = fc.ReadLog(cmd.Context(), spec, 0, chunk.NextOffset); err != nil {
					return err
				}
				fmt.Fprint(a.stdout, chunk.Text)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 50, "how many of the last lines to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the worker ends")
	return cmd
}
