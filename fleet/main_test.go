package fleet_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/devserver"
)

// The examples of this package run against a real system: TestMain starts a
// dev server and a worker program built from this module, and runs the
// package's tests and examples in a folder that holds the worker types
// file, so that an example reads as a master's code would
// (WorkerTypesFile: "worker-types.json", TEMPORAL_ADDRESS from the
// environment).

// exampleTypes run real processes: sleep stands in for a coding agent.
const exampleTypes = `{"types": {
  "implementation-worker": {"command": ["sleep", "600"], "token_budget": 10000, "timeout_minutes": 45, "max_restarts": 2}
}}`

// offlineExamples need no server; in -short mode only they run.
const offlineExamples = "ExampleInvalidError"

// address is the dev server's, for the package's tests.
var address string

func TestMain(m *testing.M) {
	flag.Parse()
	if list := flag.Lookup("test.list"); list != nil && list.Value.String() != "" {
		os.Exit(m.Run())
	}
	if testing.Short() {
		// `make test-short` promises no server: the unit tests and the
		// offline examples run, the examples that drive a lifecycle do not.
		if run := flag.Lookup("test.run"); run.Value.String() == "" {
			_ = run.Value.Set("^(Test|Fuzz)|^(" + offlineExamples + ")$")
		}
		os.Exit(m.Run())
	}
	code, err := withSystem(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet examples:", err)
		code = 1
	}
	os.Exit(code)
}

// withSystem runs m with a dev server and a worker program.
func withSystem(m *testing.M) (int, error) {
	ctx := context.Background()
	root, err := devserver.ModuleRoot()
	if err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp("", "fleet-examples-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "./worker")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building the worker program: %v\n%s", err, out)
	}
	types := filepath.Join(dir, "worker-types.json")
	if err := os.WriteFile(types, []byte(exampleTypes), 0o644); err != nil {
		return 1, err
	}
	server, err := devserver.Start(ctx, devserver.Options{LogFile: filepath.Join(dir, "temporal.log")})
	if err != nil {
		return 1, err
	}
	defer func() { _ = server.Stop() }()
	worker, err := devserver.StartWorker(ctx, server.Client, devserver.WorkerProgram{
		Binary: filepath.Join(dir, "worker"), Address: server.Address, TypesFile: types,
		LogDir: filepath.Join(dir, "logs"), StateDir: filepath.Join(dir, "state"), Host: "example-host",
		LogFile: filepath.Join(dir, "worker.log")})
	if err != nil {
		return 1, err
	}
	defer devserver.StopWorker(worker, syscall.SIGTERM, 20*time.Second)

	address = server.Address
	if err := os.Setenv("TEMPORAL_ADDRESS", server.Address); err != nil {
		return 1, err
	}
	if err := os.Chdir(dir); err != nil {
		return 1, err
	}
	code := m.Run()
	if code != 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "worker.log"))
		fmt.Fprintf(os.Stderr, "--- worker program log ---\n%s\n", log)
	}
	return code, nil
}
