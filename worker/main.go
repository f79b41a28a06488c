// Command worker is the Temporal worker program: it runs the lifecycle and
// budget ledger workflows and the activities that start, watch and stop
// worker processes on this host.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/adapters"
	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/connection"
	"github.com/commit-relay/worker-lifecycle/internal/coordination"
	"github.com/commit-relay/worker-lifecycle/internal/hostbeat"
	"github.com/commit-relay/worker-lifecycle/internal/metrics"
	"github.com/commit-relay/worker-lifecycle/internal/monitor"
	"github.com/commit-relay/worker-lifecycle/internal/notify"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// maxHostActivities bounds the activities a host runs at once: the watches
// of its live processes plus their starts and stops. An idle watch costs a
// goroutine and a timer.
const maxHostActivities = 10000

// The fleet's gauges are read from the server at most once per
// fleetReadEvery, however often Prometheus scrapes (a read lists every open
// lifecycle and queries the ledger and each breaker), and a read gives up
// after fleetReadTimeout, keeping the previous values.
const (
	fleetReadEvery   = 5 * time.Second
	fleetReadTimeout = 10 * time.Second
)

// notifyTries bounds the posts of one notification to one webhook (1 s,
// 2 s, 4 s, 8 s apart): past them it is given up, logged and counted.
const notifyTries = 5

// gcPercent is the program's GOGC unless the environment sets one. Most of
// its heap is what each live worker keeps while it lives (its lifecycle in
// the workflow cache, its watch, its relay), so the Go default of 100 lets
// the heap grow to twice that between collections: a profile at 1,723 live
// workers had 206 MB of heap in use for 116 MB allocated. 25 collects at
// one and a quarter times, for more CPU, of which the program uses a
// third of a core at 2,000 live workers: at 50 its peak was 313 MB there,
// at 25 280 MB, CPU 25 % and 31 % (docs/BENCHMARKS.md, "Held before the
// watch").
const gcPercent = 25

// collectEarlier sets gcPercent, unless GOGC is set.
func collectEarlier() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gcPercent)
	}
}

// envBool reads a true/false environment variable; unset is false.
func envBool(name string) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q is not true or false", name, v)
	}
	return b, nil
}

// envList is a space-separated environment variable as a list.
func envList(name string) []string { return strings.Fields(os.Getenv(name)) }

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		var bad badSetting
		if errors.As(err, &bad) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// badSetting is a setting refused at start: the program exits 2, as for a
// bad command line.
type badSetting struct{ error }

func (b badSetting) Unwrap() error { return b.error }

func command() *cobra.Command {
	var (
		conn       connection.Options
		typesFile  string
		logDir     string
		stateDir   string
		archiveDir string
		coordDir   string
		host       string
		// reserveBySignal: see workflows.SetReserveBySignal; askByUpdate:
		// workflows.SetAskByUpdate.
		reserveBySignal bool
		askByUpdate     bool
		// compat: workflows.SetCompat.
		compat      string
		containment string
		cgroupRoot  string
		useMonitor  bool
		fenceAfter  time.Duration
		// beatSocket: where agents send their heartbeats (hostbeat).
		beatSocket string
		// metricsListen: where /metrics is served ("" for nowhere);
		// metricsFleet: this program also exports the fleet's gauges.
		metricsListen string
		metricsFleet  bool
		// notifyHooks: where the fleet's events are posted (notify).
		notifyHooks []string
	)
	fenceDefault, fenceEnvErr := envDuration("WORKER_FENCE_AFTER", activities.DefaultFenceAfter)
	fleetDefault, fleetEnvErr := envBool("WORKER_METRICS_FLEET")
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
			collectEarlier()
			registry, err := workertypes.Load(typesFile)
			if err != nil {
				return err
			}
			// A type whose program is missing is refused now, not at the
			// first spawn of it.
			if err := registry.CheckCommands(); err != nil {
				return err
			}
			if missing := registry.Unrunnable(); len(missing) > 0 {
				slog.Warn("Worker types whose program is missing here; spawning them will fail", "types", missing)
			}
			fenceFrom := "--fence-after"
			if !cmd.Flags().Changed("fence-after") {
				if fenceEnvErr != nil {
					return fenceEnvErr
				}
				if os.Getenv("WORKER_FENCE_AFTER") != "" {
					fenceFrom = "WORKER_FENCE_AFTER"
				}
			}
			if fenceAfter < 0 || (fenceAfter > 0 && fenceAfter < activities.MinFenceAfter) {
				return fmt.Errorf("%s %s: must be 0 (no self-fencing) or at least %s", fenceFrom, fenceAfter, activities.MinFenceAfter)
			}
			if err := workflows.SetCompat(compat); err != nil {
				return fmt.Errorf("--compat: %w", err)
			}
			if compat != "" {
				slog.Warn("New lifecycles take no change of a release after --compat, so that its worker programs can replay them; restart without it once every worker program is upgraded", "compat", compat)
			}
			if !workflows.HostPattern.MatchString(host) {
				return fmt.Errorf("--host %q must match %s", host, workflows.HostPattern)
			}
			if logDir, err = filepath.Abs(logDir); err != nil {
				return err
			}
			if stateDir == "" {
				stateDir = filepath.Join(filepath.Dir(logDir), "state", host)
			}
			if stateDir, err = filepath.Abs(stateDir); err != nil {
				return err
			}
			beatSocket, err = chooseHeartbeatSocket(beatSocket, cmd.Flags().Changed("heartbeat-socket"), stateDir)
			if err != nil {
				return err
			}
			if archiveDir == "" {
				archiveDir = filepath.Join(filepath.Dir(logDir), "archive")
			}
			if archiveDir, err = filepath.Abs(archiveDir); err != nil {
				return err
			}
			contained, err := chooseContainment(containment, cgroupRoot, host)
			if err != nil {
				return err
			}
			limiter, err := chooseLimiter(registry, contained, host, useMonitor)
			if err != nil {
				return err
			}
			var monitorCmd []string
			if useMonitor {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("--monitor: find this program's binary: %w", err)
				}
				monitorCmd = []string{exe}
			}
			var store *coordination.Store
			if coordDir != "" {
				// A folder that cannot be written is refused now, not at
				// the first lifecycle.
				if store, err = coordination.Open(filepath.Join(coordDir, "coordination")); err != nil {
					return err
				}
			}
			var record activities.EventRecorder
			if store != nil {
				record = func(eventType string, data map[string]any) {
					if err := store.Record(eventType, "worker-lifecycle/"+host, data); err != nil {
						slog.Warn("Recording an event failed", "type", eventType, "error", err)
					}
				}
			}
			hostActs := &activities.HostActivities{
				Registry:          registry,
				LogDir:            logDir,
				Host:              host,
				TemporalAddress:   conn.Address,
				TemporalNamespace: conn.Namespace,
				Procs:             activities.NewProcessTable(),
				StateDir:          stateDir,
				Event:             record,
				Monitor:           monitorCmd,
				CgroupRoot:        contained.root,
				Limiter:           limiter,
			}
			if beatSocket != "" {
				// The socket opens once the server answers (below): until
				// then agents find nobody there and signal.
				if err := os.MkdirAll(filepath.Dir(beatSocket), 0o700); err != nil {
					return fmt.Errorf("--heartbeat-socket: %w", err)
				}
				hostActs.Beats, hostActs.HeartbeatSocket = activities.NewHeartbeatBoard(), beatSocket
			}
			if _, err := conn.ClientOptions(nil); err != nil {
				return err // a TLS file that cannot be read: refused before anything runs
			}
			if fleetEnvErr != nil && !cmd.Flags().Changed("metrics-fleet") {
				return badSetting{fleetEnvErr}
			}
			var hooks []notify.Webhook
			for _, raw := range notifyHooks {
				for _, one := range strings.Fields(raw) {
					h, err := notify.ParseWebhook(one)
					if err != nil {
						return badSetting{err}
					}
					hooks = append(hooks, h)
				}
			}
			var exporter *metrics.Exporter
			if metricsListen != "" {
				// Bound now, before anything runs: an address in use is
				// refused at start.
				l, err := metrics.Listen(metricsListen)
				if err != nil {
					return badSetting{err}
				}
				defer l.Close()
				if exporter, err = metrics.New(slog.Default()); err != nil {
					return err
				}
				defer exporter.Close()
				conn.Metrics = exporter.Handler
				exporter.Registry.MustRegister(&adapters.HostCollector{Host: host, Procs: hostActs.Procs, Beats: hostActs.Beats})
				ctx, stop := context.WithCancel(context.Background())
				defer stop()
				go func() {
					if err := exporter.Serve(ctx, l); err != nil {
						slog.Error("The metrics endpoint stopped", "error", err)
					}
				}()
				slog.Info("Serving metrics", "address", l.Addr().String(), "path", metrics.Path, "fleet", metricsFleet)
			} else if metricsFleet {
				return badSetting{errors.New("--metrics-fleet needs --metrics-listen: the fleet's gauges are served on this program's /metrics")}
			}
			// The fence runs for the program's whole life, from before the
			// first connection: a program restarted during a cut fences from
			// the server's last answer kept in its state folder. A stop it
			// has begun is seen through before the program exits.
			var live atomic.Pointer[client.Client]
			fenceCtx, stopFence := context.WithCancel(context.Background())
			fenceDone := make(chan struct{})
			fence := activities.Fence{Host: hostActs, After: fenceAfter, Grace: workflows.DefaultShutdownGrace, Log: slog.Default(), Resume: true,
				Probe: func(ctx context.Context) error {
					if c := live.Load(); c != nil {
						_, err := (*c).CheckHealth(ctx, &client.CheckHealthRequest{})
						return err
					}
					c, err := conn.DialContext(ctx, true)
					if err == nil {
						c.Close()
					}
					return err
				}}
			go func() {
				defer close(fenceDone)
				fence.Run(fenceCtx)
			}()
			defer func() { stopFence(); <-fenceDone }()
			c, err := dialFencing(conn, fence)
			if err != nil {
				return err
			}
			defer c.Close()
			live.Store(&c)
			fc, err := fleet.New(c, fleet.Options{WorkerTypesFile: typesFile})
			if err != nil {
				return err
			}
			if metricsFleet {
				exporter.Registry.MustRegister(&adapters.FleetCollector{Fleet: fc, Log: slog.Default(),
					MinInterval: fleetReadEvery, Timeout: fleetReadTimeout})
			}
			sweeper := &adapters.Sweeper{Fleet: fc}
			if len(hooks) > 0 {
				n := &notify.Notifier{Hooks: hooks, Dir: stateDir,
					Every: time.Second, Tries: notifyTries, Backoff: time.Second, HTTP: &http.Client{}, Log: slog.Default(),
					Source: func(ctx context.Context, after int64) ([]workflows.Event, int64, error) {
						return fc.Events(ctx, after, fleet.EventFilter{})
					}}
				if exporter != nil {
					delivered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.Notifications + "_total",
						Help: "Notifications posted to a webhook (delivered), or given up after their tries (failed)."}, []string{metrics.LabelResult})
					exporter.Registry.MustRegister(delivered)
					n.Result = func(r string) { delivered.WithLabelValues(r).Inc() }
				}
				if err := os.MkdirAll(stateDir, 0o700); err != nil {
					return err
				}
				ctx, stop := context.WithCancel(context.Background())
				defer stop()
				go func() {
					if err := n.Run(ctx); err != nil {
						slog.Error("Notifications stopped", "error", err)
					}
				}()
				slog.Info("Notifying the fleet's events", "webhooks", len(hooks))
			}
			sharedActs := &activities.SharedActivities{
				Ledger:     &adapters.Ledger{Budget: fc.Budget()},
				Registry:   registry,
				Host:       host,
				Breakers:   &adapters.Breakers{Client: c},
				Archive:    &adapters.Archive{Fleet: fc},
				ArchiveDir: archiveDir,
				Sweeper:    sweeper,
				Event:      record,
				Events:     &adapters.EventLog{Fleet: fc},
			}
			if store != nil {
				sharedActs.Archived = store.MoveArchived
			}
			hostActs.Reporter = &adapters.Reporter{Client: c}
			if beatSocket != "" {
				held := activities.ExpectRecorded(hostActs)
				l, err := hostbeat.Listen(beatSocket)
				if err != nil {
					return fmt.Errorf("--heartbeat-socket: %w", err)
				}
				slog.Info("Heartbeat socket open", "path", beatSocket, "processes_held_for_their_watches", held)
				ctx, stop := context.WithCancel(context.Background())
				defer stop()
				srv := &hostbeat.Server{Board: hostActs.Beats, Signal: fc, Log: slog.Default()}
				go func() {
					if err := srv.Serve(ctx, l); err != nil {
						slog.Error("The heartbeat socket stopped; agents signal their lifecycles", "error", err)
					}
				}()
			}
			hostActs.Owners = sweeper
			// The shared queue runs the workflows and the work any host can
			// do; the host's own queue runs the work on its processes.
			// The identity names the host, so `starter doctor` can find
			// every host's queue from the shared one.
			hostname, _ := os.Hostname()
			opts := sdkworker.Options{Identity: workflows.HostIdentity(os.Getpid(), hostname, host, contained.mode)}
			shared := sdkworker.New(c, workflows.TaskQueue, opts)
			workflows.SetReserveBySignal(reserveBySignal)
			if !reserveBySignal {
				slog.Warn("New lifecycles reserve with the update (--reserve-by-signal=false): no budget queue until it is on")
			}
			workflows.SetAskByUpdate(askByUpdate)
			if !askByUpdate && reserveBySignal {
				slog.Warn("New lifecycles ask for their budget by signal alone (--ask-by-update=false), as the previous release did")
			}
			workflows.RegisterShared(shared, sharedActs)
			// Every live process holds one of its host queue's activity
			// slots for its whole life (its watch), and stopping it takes
			// another: with the SDK's default of 1000 slots, a host with
			// 1000 processes could not stop any of them.
			hostOpts := opts
			hostOpts.MaxConcurrentActivityExecutionSize = maxHostActivities
			own := sdkworker.New(c, workflows.HostTaskQueue(host), hostOpts)
			workflows.RegisterHost(own, hostActs)

			slog.Info("Worker program starting", "task_queue", workflows.TaskQueue, "host_queue", workflows.HostTaskQueue(host),
				"types", registry.Names(), "log_dir", logDir, "state_dir", stateDir, "address", conn.Address, "namespace", conn.Namespace,
				"containment", contained.mode, "cgroup_root", contained.root, "monitor", useMonitor, "fence_after", fenceAfter, "heartbeat_socket", beatSocket)
			if contained.why != "" {
				slog.Warn("Workers are contained by process group and token: a descendant that clears its environment and leaves its group and session escapes a stop", "why", contained.why)
			}
			if err := own.Start(); err != nil {
				return err
			}
			defer own.Stop()
			if store != nil {
				ctx, stop := context.WithCancel(context.Background())
				defer stop()
				mirror := &coordination.Mirror{Store: store, Every: coordination.MirrorEvery, Log: slog.Default(),
					Source: &adapters.MirrorSource{Fleet: fc}}
				go func() { _ = mirror.Run(ctx) }()
				slog.Info("Mirroring the coordination files", "dir", store.Dir)
			}
			// Spawned processes run under their monitors (or lead their
			// own process groups), so they outlive this program; their
			// lifecycles pick them up again.
			return shared.Run(sdkworker.InterruptCh())
		},
	}
	conn.AddFlags(cmd.Flags())
	hostname, _ := os.Hostname()
	cmd.Flags().StringVar(&typesFile, "worker-types", os.Getenv("WORKER_TYPES_FILE"), "JSON file adding or overriding worker types (env WORKER_TYPES_FILE)")
	cmd.Flags().StringVar(&logDir, "log-dir", defaultLogDir(), "folder of the per-worker logs, <dir>/<worker_id>/worker.log (env WORKER_LOG_DIR)")
	cmd.Flags().StringVar(&stateDir, "state-dir", os.Getenv("WORKER_STATE_DIR"), "folder of the records of started processes, for re-adoption after a restart (env WORKER_STATE_DIR; default <log-dir>/../state/<host>)")
	cmd.Flags().StringVar(&archiveDir, "archive-dir", os.Getenv("WORKER_ARCHIVE_DIR"), "where the archival writes final specs; the same folder for every worker program (env WORKER_ARCHIVE_DIR; default <log-dir>/../archive)")
	cmd.Flags().StringVar(&coordDir, "coordination-dir", os.Getenv("COMMIT_RELAY_HOME"), "keep the old system's files in DIR/coordination: worker specs by state, token-budget.json, dashboard-events.jsonl (env COMMIT_RELAY_HOME)")
	cmd.Flags().StringVar(&host, "host", envOr("WORKER_HOST", hostname), "name of this host, recorded with each process (env WORKER_HOST)")
	cmd.Flags().BoolVar(&reserveBySignal, "reserve-by-signal", envOr("RESERVE_BY_SIGNAL", "true") != "false",
		"new lifecycles ask the ledger for budget by signal, with the queue; false while upgrading from a release without it (env RESERVE_BY_SIGNAL; docs/DEPLOYMENT.md)")
	cmd.Flags().BoolVar(&askByUpdate, "ask-by-update", envOr("ASK_BY_UPDATE", "true") != "false",
		"new lifecycles ask the ledger for budget with its ask update, answered in the call; false while upgrading from a release without it (env ASK_BY_UPDATE; docs/DEPLOYMENT.md)")
	cmd.Flags().StringVar(&compat, "compat", os.Getenv("WORKER_COMPAT"),
		"r7 while worker programs of r7 still run: new lifecycles take none of the later releases' changes, so those programs can replay them (env WORKER_COMPAT; docs/DEPLOYMENT.md, Upgrading to r8)")
	cmd.Flags().StringVar(&containment, "containment", envOr("WORKER_CONTAINMENT", "auto"),
		"how each worker's processes are kept together: cgroup (one cgroup v2 per worker; refused at start where the host cannot), process-group (group, token and parent walk), or auto: cgroup where the host allows it (env WORKER_CONTAINMENT; README, Supervision)")
	cmd.Flags().StringVar(&cgroupRoot, "cgroup-root", os.Getenv("WORKER_CGROUP_ROOT"),
		"cgroup v2 folder under which each worker gets its cgroup, in a folder per host (env WORKER_CGROUP_ROOT; default: "+cgroup.SubtreeName+" under this program's own cgroup)")
	cmd.Flags().BoolVar(&useMonitor, "monitor", envOr("WORKER_MONITOR", "true") != "false",
		"start each process under a small monitor (this binary) that records its exact end in the state folder, so that it survives a restart of this program (env WORKER_MONITOR)")
	cmd.Flags().StringVar(&beatSocket, "heartbeat-socket", os.Getenv(workflows.HeartbeatSocketEnv),
		"Unix socket where this host's agents send their heartbeats, given to each in "+workflows.HeartbeatSocketEnv+"; \"off\" for none (env "+workflows.HeartbeatSocketEnv+"; default <state-dir>/heartbeat.sock)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", os.Getenv("WORKER_METRICS_LISTEN"),
		"serve Prometheus metrics on host:port at /metrics, such as :9464 (env WORKER_METRICS_LISTEN; default: none)")
	cmd.Flags().BoolVar(&metricsFleet, "metrics-fleet", fleetDefault,
		"also export the fleet's gauges (lifecycles by state, budget, breakers, pollers): one worker program per fleet (env WORKER_METRICS_FLEET=true)")
	cmd.Flags().StringArrayVar(&notifyHooks, "notify-webhook", envList("WORKER_NOTIFY_WEBHOOK"),
		"post each event that needs a person to URL, or FORMAT=URL with FORMAT json or slack; repeatable; one worker program per fleet (env WORKER_NOTIFY_WEBHOOK, space-separated)")
	cmd.Flags().DurationVar(&fenceAfter, "fence-after", fenceDefault,
		"stop this host's workers (TERM, grace, KILL) once the server has not answered for this long, sooner for a lifecycle whose --host-loss-after is shorter, so that none runs on after its lifecycle counts the host lost; 0 turns it off (env WORKER_FENCE_AFTER; README, Supervision)")
	cmd.AddCommand(&cobra.Command{
		Use:                monitor.Command,
		Short:              "Run as the monitor of one worker process (started by the worker program itself)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { os.Exit(monitor.Main(args)) },
	})
	return cmd
}

// dialFencing connects to the server. When it does not answer and this
// host has workers to fence, it keeps trying (the fence, running already,
// stops them if it stays so) until it answers or the program is told to
// stop: a program restarted during a cut (a crash, a deploy) must not exit
// in a loop while its agents run on. An error that retrying cannot mend (a
// refused certificate or key, an unknown namespace) and a host without
// workers get the error at once, as before.
func dialFencing(conn connection.Options, fence activities.Fence) (client.Client, error) {
	c, err := conn.Dial(false)
	if err == nil || fence.After <= 0 || !unreachable(err) || !fence.HasWorkers() {
		return c, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	slog.Warn("The server does not answer at start; retrying, and this host's workers are stopped if it stays so, counted from its last answer", "error", err)
	for tries := 1; ; tries++ {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped while waiting for the server: %w", err)
		case <-time.After(2 * time.Second):
		}
		if c, err = conn.Dial(true); err == nil {
			return c, nil
		}
		if !unreachable(err) {
			return nil, err
		}
		if tries%15 == 0 {
			slog.Warn("The server still does not answer", "error", err)
		}
	}
}

// unreachable tells a server that does not answer from one that refuses
// this program (its certificate, key or namespace), which retrying cannot
// mend.
func unreachable(err error) bool {
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	switch {
	case strings.Contains(err.Error(), "authentication handshake failed"):
		return false
	case errors.As(err, &unavailable), errors.As(err, &deadline), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// containment is what chooseContainment decided.
type containment struct {
	mode string // activities.ContainmentCgroup or ContainmentProcessGroup
	root string // the cgroup root, for cgroup
	why  string // why auto fell back to process-group
}

// chooseContainment applies --containment: cgroup is refused when the host
// cannot give one, auto falls back to process-group and says why.
//
// Each host gets its own folder under the root: two worker programs on one
// machine sweep only their own workers' cgroups.
func chooseContainment(mode, root, host string) (containment, error) {
	switch mode {
	case activities.ContainmentProcessGroup:
		return containment{mode: mode}, nil
	case activities.ContainmentCgroup, "auto":
	default:
		return containment{}, fmt.Errorf("--containment %q: must be auto, %s or %s", mode, activities.ContainmentCgroup, activities.ContainmentProcessGroup)
	}
	var err error
	if root == "" {
		root, err = cgroup.Detect()
	} else {
		// Recorded with each process: it must mean the same after a
		// restart in another working directory.
		root, err = filepath.Abs(root)
	}
	if err == nil {
		root, err = cgroup.Prepare(filepath.Join(root, host))
	}
	switch {
	case err == nil:
		return containment{mode: activities.ContainmentCgroup, root: root}, nil
	case mode == "auto":
		return containment{mode: activities.ContainmentProcessGroup, why: err.Error()}, nil
	default:
		return containment{}, fmt.Errorf("--containment cgroup: %w", err)
	}
}

// chooseLimiter finds how this host applies the types' resource limits,
// when a type sets any: a types file whose limits this host cannot apply
// is refused at start, not at the first spawn.
func chooseLimiter(registry *workertypes.Registry, contained containment, host string, useMonitor bool) (*cgroup.Limiter, error) {
	var limited []string
	for _, name := range registry.Names() {
		if t, err := registry.Lookup(name); err == nil && t.Resources.Limits().Any() {
			limited = append(limited, name)
		}
	}
	if len(limited) == 0 {
		return nil, nil
	}
	if contained.mode != activities.ContainmentCgroup {
		return nil, fmt.Errorf("worker types %s set resources, which need cgroups; this host contains by %s: %s",
			strings.Join(limited, ", "), contained.mode, cmp.Or(contained.why, "--containment "+contained.mode))
	}
	l, err := cgroup.DetectLimiter(contained.root, host)
	if err != nil {
		return nil, fmt.Errorf("worker types %s set resources, which this host cannot apply: %w", strings.Join(limited, ", "), err)
	}
	if !l.V2 && !useMonitor {
		return nil, fmt.Errorf("worker types %s set resources, which on this hybrid cgroup host need --monitor (its held start joins the v1 controllers)", strings.Join(limited, ", "))
	}
	return &l, nil
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

// envDuration is the duration in the environment variable name, or def,
// and an error naming a value that is not a duration: reported at start,
// where as a flag's default it would be silently lost.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q is not a duration (such as 90s or 2m)", name, v)
	}
	return d, nil
}

// chooseHeartbeatSocket is where the heartbeat socket listens: the path
// given, none for "off", else <state-dir>/heartbeat.sock. A default path
// too long for a Unix socket turns the local path off with a warning (the
// agents signal their lifecycles, as before); one given is refused.
func chooseHeartbeatSocket(given string, set bool, stateDir string) (string, error) {
	switch {
	case given == "off":
		return "", nil
	case given != "":
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", err
		}
		if len(abs) > hostbeat.MaxSocketPath {
			return "", fmt.Errorf("--heartbeat-socket %s: a Unix socket's path is at most %d bytes, this one is %d", abs, hostbeat.MaxSocketPath, len(abs))
		}
		return abs, nil
	case set:
		return "", fmt.Errorf("--heartbeat-socket: give a path, or off")
	}
	path := filepath.Join(stateDir, "heartbeat.sock")
	if len(path) > hostbeat.MaxSocketPath {
		slog.Warn("No heartbeat socket: the default path is too long for a Unix socket; give --heartbeat-socket", "path", path)
		return "", nil
	}
	return path, nil
}
