package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// Names the bench gives to what it spawns. The type's short name "bench"
// makes worker ids of the form worker-bench-<suffix>.
const (
	benchType   = "bench-worker"
	benchHost   = "bench-host"
	benchMaster = "bench-master"
	benchBudget = 100
)

// env is the system being measured: a Temporal server (a dev server of its
// own, or the one at TEMPORAL_ADDRESS), the real worker program built from
// this module, and a client for both.
type env struct {
	dir       string
	address   string
	server    *devserver.Server
	client    client.Client
	fleet     *fleet.Client
	worker    *exec.Cmd
	workerLog string
}

// typesFile holds the one worker type of the bench: a real process that
// does nothing for an hour, so that what is measured is supervision alone.
const typesFile = `{"types": {
  "bench-worker": {"command": ["sleep", "3600"], "token_budget": 100, "timeout_minutes": 60, "max_restarts": 0}
}}`

// startEnv builds and starts everything in dir. On error, what was
// started is stopped again.
func startEnv(ctx context.Context, dir string, sync string) (e *env, err error) {
	e = &env{dir: dir, workerLog: filepath.Join(dir, "worker.log")}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	root, err := devserver.ModuleRoot()
	if err != nil {
		return e, err
	}
	// The worker program is built without the race detector even under
	// `go test -race`: its memory and CPU are part of the figures.
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "worker"), "./worker")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return e, fmt.Errorf("building the worker program: %v\n%s", err, out)
	}
	types := filepath.Join(dir, "worker-types.json")
	if err := os.WriteFile(types, []byte(typesFile), 0o644); err != nil {
		return e, err
	}

	if addr := os.Getenv("TEMPORAL_ADDRESS"); addr != "" {
		e.address = addr
		if e.client, err = client.Dial(client.Options{HostPort: addr, Namespace: "default", Logger: quietLogger()}); err != nil {
			return e, fmt.Errorf("connecting to TEMPORAL_ADDRESS=%s: %w", addr, err)
		}
	} else if err := e.startServer(ctx, sync == syncFull); err != nil {
		return e, err
	}
	if e.fleet, err = fleet.New(e.client, fleet.Options{WorkerTypesFile: types, StartWait: 2 * time.Minute}); err != nil {
		return e, err
	}
	return e, e.startWorker(ctx, types)
}

// startServer starts a dev server that keeps its state in a SQLite file, as
// `make run` does, so that every event is written to disk; fullSync keeps
// the CLI's own SQLite settings instead of devserver.FilePragmas.
func (e *env) startServer(ctx context.Context, fullSync bool) error {
	cli, err := devserver.FindTemporalCLI()
	if err != nil {
		return fmt.Errorf("%w; or point TEMPORAL_ADDRESS at a server", err)
	}
	e.server, err = devserver.Start(ctx, devserver.Options{
		CLI:        cli,
		DBFilename: filepath.Join(e.dir, "temporal.db"),
		FullSync:   fullSync,
		LogFile:    filepath.Join(e.dir, "temporal.log"),
		Logger:     quietLogger(),
	})
	if err != nil {
		return err
	}
	e.address = e.server.Address
	e.client = e.server.Client
	return nil
}

// startWorker runs the worker program and waits until it polls its host's
// queue.
func (e *env) startWorker(ctx context.Context, types string) (err error) {
	e.worker, err = devserver.StartWorker(ctx, e.client, devserver.WorkerProgram{
		Binary: filepath.Join(e.dir, "worker"), Address: e.address, TypesFile: types,
		LogDir: filepath.Join(e.dir, "logs"), StateDir: filepath.Join(e.dir, "state"), Host: benchHost,
		LogFile: e.workerLog, ReadyWithin: 30 * time.Second})
	return err
}

// close stops the worker program, then the server. The worker program
// leaves its processes running by design (they survive its restarts), so
// every phase stops its own lifecycles before this.
func (e *env) close() {
	devserver.StopWorker(e.worker, syscall.SIGTERM, 20*time.Second)
	if e.server != nil {
		_ = e.server.Stop()
	} else if e.client != nil {
		e.client.Close()
	}
}

// quietLogger keeps the SDK's informational lines off stdout, where the
// table goes; warnings still reach stderr.
func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// procUsage is a process's resident memory and the CPU time it has used.
type procUsage struct {
	rssBytes int64
	cpu      time.Duration
}

// readUsage reads the resident memory (VmRSS) and the CPU time (utime and
// stime) of pid.
func readUsage(pid int) (procUsage, error) {
	var u procUsage
	rss, err := procfs.RSS(pid)
	if err != nil {
		return u, err
	}
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return u, err
	}
	u.rssBytes = rss
	u.cpu = time.Duration(st.CPUTicks) * time.Second / procfs.ClockTicks
	return u, nil
}

// rssSampler records the peak resident memory of a process until stopped.
type rssSampler struct {
	stop chan struct{}
	done chan int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan int64, 1)}
	go func() {
		var peak int64
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if u, err := readUsage(pid); err == nil && u.rssBytes > peak {
				peak = u.rssBytes
			}
			select {
			case <-s.stop:
				s.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// peak stops the sampler and returns the highest RSS seen.
func (s *rssSampler) peak() int64 {
	close(s.stop)
	return <-s.done
}
