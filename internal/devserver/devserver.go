// Package devserver starts the Temporal dev server of the pinned Temporal
// CLI (`make tools` builds it into .tools/bin) for the integration tests and
// the bench: the same binary, the same custom search attributes, never a
// download (there is no internet where this runs).
package devserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Module is the path of this module in go.mod.
const Module = "github.com/commit-relay/worker-lifecycle"

// CLIEnv names the Temporal CLI binary to use instead of the one
// `make tools` builds (the Makefile sets it).
const CLIEnv = "TEMPORAL_CLI"

// Namespace is the namespace the dev server creates and the clients use.
const Namespace = "default"

// ModuleRoot is the folder of this module's go.mod, found from the working
// directory up (`go test` runs a package's tests in its folder; the bench
// runs from anywhere inside the module).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if module, err := modulePath(filepath.Join(dir, "go.mod")); err == nil && module == Module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory: run this inside the module", Module)
		}
		dir = parent
	}
}

// modulePath reads the module line of a go.mod.
func modulePath(goMod string) (string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(lines.Text()), "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	if err := lines.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s has no module line", goMod)
}

// FindTemporalCLI finds the Temporal CLI: $TEMPORAL_CLI when set (it must
// exist), then <module root>/.tools/bin/temporal, then temporal on PATH.
func FindTemporalCLI() (string, error) {
	if p := os.Getenv(CLIEnv); p != "" {
		if err := isFile(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (run `make tools` to build the pinned Temporal CLI)", CLIEnv, p, err)
		}
		return p, nil
	}
	if root, err := ModuleRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", "temporal")
		if isFile(p) == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no Temporal CLI: run `make tools` (it builds .tools/bin/temporal), or set %s to one", CLIEnv)
}

func isFile(p string) error {
	info, err := os.Stat(p)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return errors.New("is a folder")
	}
	return nil
}

// Options describe the dev server to start.
type Options struct {
	// CLI is the Temporal CLI binary; "" finds it with FindTemporalCLI.
	CLI string
	// Address is the host:port of the frontend; "" takes a free port.
	Address string
	// DBFilename keeps the server's state in this SQLite file (a restart
	// on the same file and Address finds it again); "" keeps it in memory.
	DBFilename string
	// FullSync keeps the CLI's own SQLite settings for DBFilename (a
	// rollback journal, synchronous=FULL) instead of FilePragmas.
	FullSync bool
	// UI serves the Web UI, on UIPort or a free port when UIPort is "".
	UI     bool
	UIPort string
	// Bare registers none of the lifecycles' search attributes: a server
	// with nothing of ours, as `starter setup` and `starter doctor` meet
	// it. Otherwise workflows.SearchAttributeNames are there as Keyword.
	Bare bool
	// LogFile receives the server's output (created or appended to); ""
	// leaves it on this process's stdout and stderr.
	LogFile string
	// LogLevel of the server: "warn" when "".
	LogLevel string
	// Logger is the SDK logger of the returned client; nil is the SDK's
	// default.
	Logger log.Logger
}

// Server is a running dev server.
type Server struct {
	// Address is the frontend's host:port; UIAddress the Web UI's, "" when
	// it has none.
	Address   string
	UIAddress string
	// CLI is the Temporal CLI binary it runs, for `temporal workflow show`
	// and the like.
	CLI string
	// Client is connected to Namespace.
	Client client.Client

	dev *testsuite.DevServer
	log *os.File
}

// SearchAttributeArgs are the CLI flags that register the lifecycles'
// search attributes on `temporal server start-dev`.
func SearchAttributeArgs() []string {
	var args []string
	for _, name := range workflows.SearchAttributeNames {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	return args
}

// DynamicConfig is what this system needs of the server beyond its
// defaults, as `temporal server start-dev --dynamic-config-value` pairs;
// deploy/cluster/dynamicconfig.yaml sets the same for the cluster
// (TestClusterConfigMatchesDevServer).
//
// history.maxInFlightUpdates: lifecycles ask the one budget ledger for
// their reservation with an update (workflows.UpdateAsk), answered in the
// ledger's next workflow task. The server's default admits 10 in flight
// per workflow, so 50 concurrent spawns would mostly be turned away (and
// fall back to the slower signal path); 500 lets a wave of spawns share
// the ledger's tasks. The ledger continues as new after 500 updates that
// change it, or when the server suggests it (before the per-run total of
// history.maxTotalUpdates, 2000, which repeats and refusals count toward).
//
// matching.numTaskqueue{Read,Write}Partitions: one partition per task
// queue. A fleet has a handful of worker programs with two workflow pollers
// each, and the server's default of four partitions stops forwarding
// between them once a partition's backlog is a few seconds old: after a
// wave of 500 ends, a new lifecycle's first workflow task sat in partition
// 3 for over 30 s while the only worker program polled the others (CI of
// stop 22, TestWebUIShowsARunningLifecycle). One partition carries far more
// than the ledger's measured few hundred tasks a second.
var DynamicConfig = [][2]string{
	{"history.maxInFlightUpdates", "500"},
	{"matching.numTaskqueueReadPartitions", "1"},
	{"matching.numTaskqueueWritePartitions", "1"},
}

// FilePragmas are the SQLite settings of a dev server whose state is in a
// file (`make run`, the bench). The CLI's own are a rollback journal with
// synchronous=FULL: several fsyncs per commit, and every workflow task,
// signal and activity heartbeat is a commit. On this project's VM that
// single writer bounded the fleet a dev server carries (docs/BENCHMARKS.md,
// "The dev server's SQLite settings"). A write-ahead log with
// synchronous=NORMAL syncs at checkpoints only: a crash of the server
// process loses nothing, a power cut of the machine may lose the last
// commits but never corrupts the file. A dev server is one machine's
// store; production runs on PostgreSQL (docs/DEPLOYMENT.md).
var FilePragmas = []string{"journal_mode=wal", "synchronous=normal"}

// FilePragmaArgs are the CLI flags that set FilePragmas on
// `temporal server start-dev --db-filename`.
func FilePragmaArgs() []string {
	var args []string
	for _, p := range FilePragmas {
		args = append(args, "--sqlite-pragma", p)
	}
	return args
}

// DynamicConfigArgs are the CLI flags that set DynamicConfig on
// `temporal server start-dev`.
func DynamicConfigArgs() []string {
	var args []string
	for _, kv := range DynamicConfig {
		args = append(args, "--dynamic-config-value", kv[0]+"="+kv[1])
	}
	return args
}

// Start starts a dev server and returns once it accepts clients.
func Start(ctx context.Context, opts Options) (*Server, error) {
	cli := opts.CLI
	if cli == "" {
		var err error
		if cli, err = FindTemporalCLI(); err != nil {
			return nil, err
		}
	}
	s := &Server{CLI: cli}
	dev := testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{HostPort: opts.Address, Namespace: Namespace, Logger: opts.Logger},
		DBFilename:    opts.DBFilename,
		LogLevel:      opts.LogLevel,
	}
	if dev.LogLevel == "" {
		dev.LogLevel = "warn"
	}
	dev.ExtraArgs = DynamicConfigArgs()
	if opts.DBFilename != "" && !opts.FullSync {
		dev.ExtraArgs = append(dev.ExtraArgs, FilePragmaArgs()...)
	}
	if !opts.Bare {
		dev.ExtraArgs = append(dev.ExtraArgs, SearchAttributeArgs()...)
	}
	if opts.UI {
		port := opts.UIPort
		if port == "" {
			var err error
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		dev.EnableUI, dev.UIPort = true, port
		s.UIAddress = "127.0.0.1:" + port
	}
	if opts.LogFile != "" {
		f, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		s.log = f
		dev.Stdout, dev.Stderr = f, f
	}
	var err error
	if s.dev, err = testsuite.StartDevServer(ctx, dev); err != nil {
		if s.log != nil {
			s.log.Close()
		}
		if opts.LogFile != "" {
			return nil, fmt.Errorf("starting the dev server (%s, log %s): %w", cli, opts.LogFile, err)
		}
		return nil, fmt.Errorf("starting the dev server (%s): %w", cli, err)
	}
	s.Address = s.dev.FrontendHostPort()
	s.Client = s.dev.Client()
	return s, nil
}

// Stop closes the client, stops the server and waits for it to exit.
func (s *Server) Stop() error {
	s.Client.Close()
	err := s.dev.Stop()
	if s.log != nil {
		s.log.Close()
	}
	return err
}

// FreePort is a TCP port free on 127.0.0.1 now.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}
