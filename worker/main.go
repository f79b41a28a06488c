// Command worker is the Temporal worker program: it runs the lifecycle and
// budget ledger workflows and the activities that start, watch and stop
// worker processes on this host.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/connection"
	"github.com/commit-relay/worker-lifecycle/internal/control"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func command() *cobra.Command {
	var (
		conn      connection.Options
		typesFile string
		logDir    string
		host      string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the Temporal worker that supervises AI worker processes on this host",
		Example: `  # Against the local dev server, with the built-in worker types
  go run ./worker

  # With your own commands for the worker types
  go run ./worker --worker-types ./worker-types.json --log-dir /var/log/agents`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			registry, err := workertypes.Load(typesFile)
			if err != nil {
				return err
			}
			if logDir, err = filepath.Abs(logDir); err != nil {
				return err
			}
			c, err := conn.Dial(false)
			if err != nil {
				return err
			}
			defer c.Close()

			w := sdkworker.New(c, workflows.TaskQueue, sdkworker.Options{})
			w.RegisterWorkflowWithOptions(workflows.WorkerLifecycle, workflow.RegisterOptions{Name: "WorkerLifecycle"})
			w.RegisterWorkflowWithOptions(workflows.BudgetLedger, workflow.RegisterOptions{Name: "BudgetLedger"})
			w.RegisterActivity(&activities.Activities{
				Ledger:            &control.LedgerClient{Client: c},
				Registry:          registry,
				LogDir:            logDir,
				Host:              host,
				TemporalAddress:   conn.Address,
				TemporalNamespace: conn.Namespace,
				Procs:             activities.NewProcessTable(),
			})
			slog.Info("Worker program starting", "task_queue", workflows.TaskQueue, "host", host,
				"types", registry.Names(), "log_dir", logDir, "address", conn.Address, "namespace", conn.Namespace)
			// Spawned processes lead their own process groups, so they
			// outlive this program; their lifecycles pick them up again.
			return w.Run(sdkworker.InterruptCh())
		},
	}
	conn.AddFlags(cmd.Flags())
	hostname, _ := os.Hostname()
	cmd.Flags().StringVar(&typesFile, "worker-types", os.Getenv("WORKER_TYPES_FILE"), "JSON file adding or overriding worker types (env WORKER_TYPES_FILE)")
	cmd.Flags().StringVar(&logDir, "log-dir", defaultLogDir(), "folder of the per-worker logs, <dir>/<worker_id>/worker.log (env WORKER_LOG_DIR)")
	cmd.Flags().StringVar(&host, "host", envOr("WORKER_HOST", hostname), "name of this host, recorded with each process (env WORKER_HOST)")
	return cmd
}

// defaultLogDir follows the old system's layout when COMMIT_RELAY_HOME is
// set, so operators find logs where they always did.
func defaultLogDir() string {
	if d := os.Getenv("WORKER_LOG_DIR"); d != "" {
		return d
	}
	if home := os.Getenv("COMMIT_RELAY_HOME"); home != "" {
		return filepath.Join(home, "agents", "logs", "workers")
	}
	return filepath.Join("var", "logs", "workers")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
