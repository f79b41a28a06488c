package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/commit-relay/worker-lifecycle/internal/control"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
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
	server    *testsuite.DevServer
	client    client.Client
	fleet     *control.Fleet
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
func startEnv(ctx context.Context, dir string) (e *env, err error) {
	e = &env{dir: dir, workerLog: filepath.Join(dir, "worker.log")}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	root, err := moduleRoot()
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
	registry, err := workertypes.Load(types)
	if err != nil {
		return e, err
	}

	if addr := os.Getenv("TEMPORAL_ADDRESS"); addr != "" {
		e.address = addr
		if e.client, err = client.Dial(client.Options{HostPort: addr, Namespace: "default", Logger: quietLogger()}); err != nil {
			return e, fmt.Errorf("connecting to TEMPORAL_ADDRESS=%s: %w", addr, err)
		}
	} else if err := e.startServer(ctx, root); err != nil {
		return e, err
	}
	e.fleet = &control.Fleet{Client: e.client, Registry: registry, StartWait: 2 * time.Minute}
	return e, e.startWorker(ctx, types)
}

// startServer starts a dev server that keeps its state in a SQLite file, as
// `make run` does, so that every event is written durably.
func (e *env) startServer(ctx context.Context, root string) error {
	cli, err := temporalCLI(root)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(e.dir, "temporal.log"))
	if err != nil {
		return err
	}
	var args []string
	for _, name := range workflows.SearchAttributeNames {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	e.server, err = testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Namespace: "default", Logger: quietLogger()},
		DBFilename:    filepath.Join(e.dir, "temporal.db"),
		LogLevel:      "warn",
		ExtraArgs:     args,
		Stdout:        logFile,
		Stderr:        logFile,
	})
	if err != nil {
		return fmt.Errorf("starting the dev server: %w", err)
	}
	e.address = e.server.FrontendHostPort()
	e.client = e.server.Client()
	return nil
}

// startWorker runs the worker program and waits until it polls its host's
// queue.
func (e *env) startWorker(ctx context.Context, types string) error {
	logFile, err := os.Create(e.workerLog)
	if err != nil {
		return err
	}
	defer logFile.Close()
	e.worker = exec.Command(filepath.Join(e.dir, "worker"), "--address", e.address,
		"--worker-types", types, "--log-dir", filepath.Join(e.dir, "logs"),
		"--state-dir", filepath.Join(e.dir, "state"), "--host", benchHost)
	e.worker.Stdout, e.worker.Stderr = logFile, logFile
	if err := e.worker.Start(); err != nil {
		return fmt.Errorf("starting the worker program: %w", err)
	}
	identity := strconv.Itoa(e.worker.Process.Pid) + "@"
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := e.client.DescribeTaskQueue(ctx, workflows.HostTaskQueue(benchHost), enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err == nil {
			for _, p := range resp.Pollers {
				if strings.HasPrefix(p.Identity, identity) {
					return nil
				}
			}
		}
		if syscall.Kill(e.worker.Process.Pid, 0) != nil {
			break
		}
	}
	return fmt.Errorf("the worker program did not start polling (log %s)", e.workerLog)
}

// close stops the worker program, then the server. The worker program
// leaves its processes running by design (they survive its restarts), so
// every phase stops its own lifecycles before this.
func (e *env) close() {
	if e.worker != nil && e.worker.Process != nil {
		_ = e.worker.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.worker.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = e.worker.Process.Kill()
			<-done
		}
	}
	if e.client != nil && e.server == nil {
		e.client.Close()
	}
	if e.server != nil {
		_ = e.server.Stop()
	}
}

// quietLogger keeps the SDK's informational lines off stdout, where the
// table goes; warnings still reach stderr.
func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// temporalCLI finds the pinned Temporal CLI: TEMPORAL_CLI, then the one
// `make tools` builds, then PATH.
func temporalCLI(root string) (string, error) {
	if p := os.Getenv("TEMPORAL_CLI"); p != "" {
		_, err := os.Stat(p)
		return p, err
	}
	candidates := []string{filepath.Join(root, ".tools", "bin", "temporal")}
	if p, err := exec.LookPath("temporal"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("no Temporal CLI: run `make tools`, set TEMPORAL_CLI, or point TEMPORAL_ADDRESS at a server")
}

// moduleRoot is the folder of go.mod, found from the working directory up:
// the bench builds ./worker and runs bench/old-ledger.sh from there.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside the worker-lifecycle module (no go.mod above the working directory)")
		}
		dir = parent
	}
}

// procUsage is a process's resident memory and the CPU time it has used.
type procUsage struct {
	rssBytes int64
	cpu      time.Duration
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux this runs on.
const clockTicks = 100

// readUsage reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime
// and stime).
func readUsage(pid int) (procUsage, error) {
	var u procUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			u.rssBytes = kb * 1024
		}
	}
	fields, err := statFields(pid)
	if err != nil {
		return u, err
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	u.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	return u, nil
}

// statFields are the fields of /proc/<pid>/stat after the command name
// (which may hold spaces): [0] is the state, [11] and [12] utime and stime.
func statFields(pid int) ([]string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return fields, nil
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	fields, err := statFields(pid)
	return err == nil && fields[0] != "Z" && fields[0] != "X"
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
