// Command starter is the operator's and the masters' CLI: spawn workers,
// look at them, heartbeat on their behalf, stop them, and manage the token
// budget.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/connection"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks a mistake in how the command was called.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &app{stdout: stdout}
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if app.client != nil {
		app.client.Close()
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "error:", err)
	if isUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// isUsage tells a mistake in the command line from a failure of the work.
// Cobra reports its own checks (required flags, unknown commands) as plain
// errors, recognised here by their wording.
func isUsage(err error) bool {
	var usage usageError
	if errors.As(err, &usage) || errors.Is(err, fleet.ErrInvalid) {
		return true
	}
	msg := err.Error()
	for _, prefix := range []string{"required flag(s)", "unknown command", "unknown flag", "unknown shorthand flag", "invalid argument"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// app holds what every command shares.
type app struct {
	stdout    io.Writer
	conn      connection.Options
	output    string
	typesFile string

	client client.Client
	fleet  *fleet.Client
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "starter",
		Short: "Spawn, watch and stop AI worker processes through their Temporal lifecycles",
		Long: `starter drives durable worker lifecycles on Temporal. Each worker is a
workflow (ID worker-lifecycle/<worker_id>) that reserves token budget, runs the
worker's process, watches its heartbeats and always gives the budget back.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.validateGlobal,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	a.conn.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().StringVar(&a.typesFile, "worker-types", os.Getenv("WORKER_TYPES_FILE"), "JSON file adding or overriding worker types (env WORKER_TYPES_FILE)")
	root.AddCommand(a.doctorCommand(), a.spawnCommand(), a.validateCommand(), a.statusCommand(), a.listCommand(), a.logsCommand(), a.heartbeatCommand(),
		a.shutdownCommand(), a.killCommand(), a.cleanupCommand(), a.budgetCommand(),
		a.archiveCommand(), a.scheduleCommand(), a.sweepCommand(), a.setupCommand(), a.eventsCommand())
	return root
}

func (a *app) validateGlobal(*cobra.Command, []string) error {
	if a.output != "text" && a.output != "json" {
		return usageError{fmt.Errorf("--output %q must be text or json", a.output)}
	}
	return nil
}

// connect dials Temporal once per invocation, after the arguments were
// checked, so a usage error never waits on the network.
func (a *app) connect() (*fleet.Client, error) {
	if a.fleet != nil {
		return a.fleet, nil
	}
	// The types file is checked before dialling, so that its error is not
	// hidden behind a connection's.
	if _, err := a.offline(); err != nil {
		return nil, err
	}
	c, err := a.conn.Dial(true)
	if err != nil {
		return nil, err
	}
	fc, err := fleet.New(c, fleet.Options{WorkerTypesFile: a.typesFile})
	if err != nil {
		c.Close()
		return nil, err
	}
	a.client, a.fleet = c, fc
	return fc, nil
}

// offline is the fleet without a connection, for commands that only check
// input.
func (a *app) offline() (*fleet.Client, error) {
	return fleet.New(nil, fleet.Options{WorkerTypesFile: a.typesFile})
}

// print writes v as JSON, or text() when the output is text.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.stdout)
	return nil
}

// args checks the number of positional arguments as a usage error.
func args(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, got []string) error {
		if len(got) != n {
			return usageError{fmt.Errorf("expected %s, got %d argument(s)", names, len(got))}
		}
		return nil
	}
}

// invalid marks a request that failed its own validation as a usage error,
// on one line; nil stays nil.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s", fleet.ErrInvalid, strings.ReplaceAll(err.Error(), "\n", "; "))
}

// workerIDArg takes one argument, a well-formed worker id. Checked here,
// before anything connects, bad input fails the same with or without a
// reachable server.
func workerIDArg(cmd *cobra.Command, got []string) error {
	if err := args(1, "WORKER_ID")(cmd, got); err != nil {
		return err
	}
	return fleet.CheckID(got[0])
}
