// Package integration runs the real system: a Temporal dev server started by
// the test, the worker program and the starter CLI built from this module,
// and real OS processes as workers.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// h is the system under test, shared by the tests of this package. They run
// one after another: each leaves no live worker behind.
var h *harness

type harness struct {
	root      string // module root
	dir       string // scratch folder of this run
	temporal  string // Temporal CLI binary
	address   string
	uiAddress string
	typesFile string
	logDir    string
	client    client.Client
	fleet     *fleet.Client
	workers   map[string]*exec.Cmd // worker programs by host
	external  bool                 // the server is not the harness's own
	// metricsAddr is where the worker program of primaryHost serves
	// /metrics, with the fleet's gauges (--metrics-fleet).
	metricsAddr string
}

// primaryHost is the host whose worker program runs for the whole suite.
const primaryHost = "it-host-a"

// ServerEnv names a running, set-up Temporal server to test against instead
// of a dev server of the test's own (host:port, namespace default). It must
// be a server for the tests alone, as scripts/test-cluster.sh makes: no
// worker program of its own (it would take the tests' spawns), and the
// harness deletes its archival and sweep schedules.
const ServerEnv = "LIFECYCLE_TEST_SERVER"

// testTypes are real commands, run without a shell unless the type itself
// is a shell script. agent is the testagent binary.
func testTypes(agent, dir string) string {
	return fmt.Sprintf(`{"types": {
  "sleeper-worker": {"command": ["sleep", "300"], "token_budget": 1000, "timeout_minutes": 10, "max_restarts": 0},
  "crasher-worker": {"command": ["sh", "-c", "sleep 1; exit 3"], "token_budget": 700, "timeout_minutes": 10, "max_restarts": 0},
  "finisher-worker": {"command": ["sh", "-c", "echo done with $TASK_ID; exit 0"], "token_budget": 300, "timeout_minutes": 10, "max_restarts": 0},
  "napper-worker": {"command": ["sleep", "1"], "token_budget": 100, "timeout_minutes": 10, "max_restarts": 0},
  "missing-worker": {"command": ["/nonexistent/agent", "--task", "$TASK_ID"], "token_budget": 500, "timeout_minutes": 10, "max_restarts": 0},
  "tree-worker": {"command": [%[1]q, "tree"], "token_budget": 800, "timeout_minutes": 10, "max_restarts": 0},
  "flaky-worker": {"command": [%[1]q, "flaky", "2", %[2]q], "token_budget": 900, "timeout_minutes": 10, "max_restarts": 3},
  "crashloop-worker": {"command": ["sh", "-c", "sleep 0.3; exit 1"], "token_budget": 600, "timeout_minutes": 10, "max_restarts": 2},
  "hog-worker": {"command": [%[1]q, "hog", "700"], "token_budget": 1000, "timeout_minutes": 10, "max_restarts": 0},
  "printer-worker": {"command": [%[1]q, "print"], "token_budget": 400, "timeout_minutes": 10, "max_restarts": 0, "heartbeat": "output"},
  "mute-worker": {"command": [%[1]q, "silent"], "token_budget": 400, "timeout_minutes": 10, "max_restarts": 0, "heartbeat": "output"},
  "daemon-worker": {"command": [%[1]q, "daemon", %[3]q], "token_budget": 300, "timeout_minutes": 10, "max_restarts": 0},
  "exit-on-worker": {"command": [%[1]q, "exit-on", %[4]q, "0"], "token_budget": 300, "timeout_minutes": 10, "max_restarts": 2},
  "exit3-on-worker": {"command": [%[1]q, "exit-on", %[4]q, "3"], "token_budget": 300, "timeout_minutes": 10, "max_restarts": 2,
    "exit_rules": [{"exit_codes": [3], "action": "fail"}]},
  "capped-hog-worker": {"command": [%[1]q, "hog", "700"], "token_budget": 300, "timeout_minutes": 10, "max_restarts": 2,
    "resources": {"memory": "64M", "processes": 32}, "exit_rules": [{"cause": "oom", "action": "fail"}]},
  "last-word-worker": {"command": ["sh", "-c", "trap '\"$0\" heartbeat \"$WORKER_ID\" --tokens-used 77; exit 0' TERM; while :; do sleep 0.1; done", %[5]q],
    "token_budget": 300, "timeout_minutes": 10, "max_restarts": 0},
  "host-beat-worker": {"command": ["sh", "-c", "i=0; while [ ! -e \"$1-$WORKER_ID\" ]; do i=$((i+1)); \"$0\" heartbeat \"$WORKER_ID\" --tokens-used $i --message \"beat $i\" >/dev/null 2>&1; sleep 0.2; done; sleep 300", %[5]q, %[6]q],
    "token_budget": 300, "timeout_minutes": 10, "max_restarts": 0},
  "host-only-beat-worker": {"command": ["sh", "-c", "i=0; while :; do i=$((i+1)); \"$0\" heartbeat \"$WORKER_ID\" --address 127.0.0.1:1 --tokens-used $i --message \"beat $i\" >/dev/null 2>&1; sleep 0.2; done", %[5]q],
    "token_budget": 300, "timeout_minutes": 10, "max_restarts": 0},
  "implementation-worker": {"command": ["sleep", "300"]}
}}`, agent, filepath.Join(dir, "flaky-$WORKER_ID.count"), filepath.Join(dir, "daemon-$WORKER_ID.pid"), filepath.Join(dir, "exit-$WORKER_ID"),
		filepath.Join(filepath.Dir(agent), "starter"), filepath.Join(dir, "silence"))
}

func TestMain(m *testing.M) {
	// `make test-short` promises no dev server: every test here needs one
	// (and the programs built), so in -short mode none runs.
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped in -short mode (the tests need a dev server)")
		os.Exit(0)
	}
	// `go test -list` only lists: no server, no builds.
	if list := flag.Lookup("test.list"); list != nil && list.Value.String() != "" {
		os.Exit(m.Run())
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration harness:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx := context.Background()
	// The programs are built with -race, whose runtime sleeps a second at
	// every exit to report late races: an agent that runs `starter
	// heartbeat` in a loop would beat once a second, not at its pace.
	if err := os.Setenv("GORACE", "atexit_sleep_ms=0"); err != nil {
		return 1, err
	}
	temporalCLI, err := devserver.FindTemporalCLI()
	if err != nil {
		return 1, fmt.Errorf("the integration tests need the Temporal CLI: %w", err)
	}
	root, err := devserver.ModuleRoot()
	if err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp("", "lifecycle-it-")
	if err != nil {
		return 1, err
	}
	h = &harness{root: root, dir: dir, temporal: temporalCLI, logDir: filepath.Join(dir, "logs")}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}()

	// The programs under test get the race detector; the test agent must
	// not, since its shadow memory would distort the memory it reports.
	for _, args := range [][]string{
		{"build", "-race", "-o", filepath.Join(dir, "bin") + "/", "./worker", "./cmd/starter"},
		{"build", "-o", filepath.Join(dir, "bin") + "/", "./internal/integration/testagent"},
		// A worker program that can be stopped at a named point, so that a
		// fault test can kill it there (activities/failpoint.go).
		{"build", "-race", "-tags", "failpoints", "-o", filepath.Join(dir, "bin-failpoints") + "/", "./worker"},
	} {
		build := exec.Command("go", args...)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("building the programs: %v\n%s", err, out)
		}
	}
	h.typesFile = filepath.Join(dir, "worker-types.json")
	if err := os.WriteFile(h.typesFile, []byte(testTypes(filepath.Join(dir, "bin", "testagent"), dir)), 0o644); err != nil {
		return 1, err
	}

	if addr := os.Getenv(ServerEnv); addr != "" {
		// A server started outside the test: scripts/cluster.sh's cluster
		// on PostgreSQL (`make test-cluster`), already set up.
		h.address, h.external = addr, true
		c, err := client.Dial(client.Options{HostPort: addr, Namespace: "default"})
		if err != nil {
			return 1, fmt.Errorf("%s=%s: %w", ServerEnv, addr, err)
		}
		defer c.Close()
		h.client = c
		// The cluster's hourly sweep would clean zombies that a test is
		// looking at; the tests that need the schedules install them.
		for _, id := range []string{workflows.ArchivalScheduleID, workflows.SweepScheduleID} {
			_ = c.ScheduleClient().GetHandle(ctx, id).Delete(ctx)
		}
	} else {
		stop, err := h.startDevServer(ctx)
		if err != nil {
			return 1, err
		}
		defer stop()
	}
	if h.fleet, err = fleet.New(h.client, fleet.Options{WorkerTypesFile: h.typesFile}); err != nil {
		return 1, err
	}

	h.workers = map[string]*exec.Cmd{}
	defer h.stopWorkers()
	port, err := devserver.FreePort()
	if err != nil {
		return 1, err
	}
	h.metricsAddr = "127.0.0.1:" + port
	if err := h.startWorker(primaryHost); err != nil {
		return 1, err
	}

	code := m.Run()
	// A run of the append-only histories (histories_helpers_test.go) leaves
	// the committed ledger history as it is.
	if code == 0 {
		if err := h.saveHistory("budget-ledger", workflows.LedgerWorkflowID); err != nil {
			return 1, err
		}
	}
	if code != 0 {
		keep = true
		fmt.Fprintf(os.Stderr, "integration: logs kept in %s\n--- worker program log (tail) ---\n%s\n", dir, tail(filepath.Join(dir, "worker-it-host-a.log"), 40))
	}
	return code, nil
}

// startDevServer starts the harness's own dev server, with the Web UI and
// the search attributes, and returns how to stop it.
func (h *harness) startDevServer(ctx context.Context) (stop func(), err error) {
	server, err := devserver.Start(ctx, devserver.Options{
		CLI:     h.temporal,
		UI:      true,
		LogFile: filepath.Join(h.dir, "temporal.log"),
	})
	if err != nil {
		return nil, err
	}
	h.address, h.uiAddress, h.client = server.Address, server.UIAddress, server.Client
	return func() { _ = server.Stop() }, nil
}

// needsDevServer fails a test that only makes sense on the harness's own dev
// server (its Web UI) when the suite runs against an outside server.
func (h *harness) needsDevServer(t *testing.T) {
	t.Helper()
	if h.external {
		t.Fatalf("this test needs the harness's own dev server; run it without %s", ServerEnv)
	}
}

// startWorker starts a worker program for host. Each host has its own
// state folder, as separate machines would.
func (h *harness) startWorker(host string) error {
	return h.startWorkerWith(host, filepath.Join(h.dir, "bin", "worker"))
}

// startWorkerWith starts the given worker program binary for host, with env
// added to its environment.
func (h *harness) startWorkerWith(host, binary string, env ...string) error {
	if host == primaryHost {
		env = append([]string{"WORKER_METRICS_LISTEN=" + h.metricsAddr, "WORKER_METRICS_FLEET=true"}, env...)
	}
	logFile := filepath.Join(h.dir, "worker-"+host+".log")
	cmd, err := devserver.StartWorker(context.Background(), h.client, devserver.WorkerProgram{
		Binary: binary, Address: h.address, TypesFile: h.typesFile, LogDir: h.logDir,
		StateDir: filepath.Join(h.dir, "state", host), Host: host, Env: env, LogFile: logFile})
	if err != nil {
		return fmt.Errorf("%w:\n%s", err, tail(logFile, 10))
	}
	h.workers[host] = cmd
	return nil
}

// stopWorker ends a host's worker program with sig (SIGKILL: a crash) and
// waits for it to exit.
func (h *harness) stopWorker(host string, sig syscall.Signal) {
	cmd := h.workers[host]
	if cmd == nil {
		return
	}
	delete(h.workers, host)
	devserver.StopWorker(cmd, sig, 15*time.Second)
}

// crashWorker kills a host's worker program as a crash would. The host
// a is started again after the test if the test did not, so that one
// failing test does not take the others down.
func (h *harness) crashWorker(t *testing.T, host string) {
	t.Helper()
	h.stopWorker(host, syscall.SIGKILL)
	if host == "it-host-a" {
		t.Cleanup(func() {
			if h.workers[host] == nil {
				require.NoError(t, h.startWorker(host))
			}
		})
	}
}

func (h *harness) stopWorkers() {
	for host := range h.workers {
		h.stopWorker(host, syscall.SIGTERM)
	}
}

// starter runs the starter CLI as an operator would.
func (h *harness) starter(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return h.starterWith(t, nil, args...)
}

// starterWith runs the starter against this harness's server, with env
// added last (a later entry wins), e.g. another address or TLS settings.
func (h *harness) starterWith(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.dir, "bin", "starter"), args...)
	cmd.Env = append(append(os.Environ(), "TEMPORAL_ADDRESS="+h.address, "TEMPORAL_NAMESPACE=default", "WORKER_TYPES_FILE="+h.typesFile), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("running starter %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// releaseWait bounds how long the end of a test waits for a spawned
// worker's lifecycle to end and its lease to leave the ledger.
const releaseWait = 60 * time.Second

// spawn runs `starter spawn --worker-id id args...` and, when the test ends
// (after the cleanups the test registers later, such as a kill), checks that
// the worker's lifecycle has ended and that the ledger holds no lease of
// it: the budget is back. For tests whose worker ends within the test; not
// for those that leave a zombie or a lost host behind on purpose.
func (h *harness) spawn(t *testing.T, id string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Cleanup(func() { h.requireReleased(t, id) })
	return h.starter(t, append([]string{"spawn", "--worker-id", id}, args...)...)
}

// spawnOK is spawn that requires the spawn to succeed.
func (h *harness) spawnOK(t *testing.T, id string, args ...string) string {
	t.Helper()
	out, errOut, code := h.spawn(t, id, args...)
	require.Zero(t, code, "starter spawn %s %v failed: %s", id, args, errOut)
	return out
}

// requireReleased waits up to releaseWait until the lifecycle of id has
// ended and the ledger holds no allocation for it, and fails the test
// otherwise. A test that failed already is not held up: its own failure
// says more.
func (h *harness) requireReleased(t *testing.T, id string) {
	t.Helper()
	if t.Failed() {
		return
	}
	deadline := time.Now().Add(releaseWait)
	for {
		held := h.stillHeld(t, id)
		if held == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s is not released %s after the test: %s", id, releaseWait, held)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stillHeld says what of worker id is not released yet: its lifecycle
// still runs, or the ledger still holds its lease; "" when neither.
func (h *harness) stillHeld(t *testing.T, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := h.client.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		// Refused before its lifecycle started: nothing to release.
	case err != nil:
		return "describing its lifecycle: " + err.Error()
	case desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		status := "unknown"
		if spec, err := h.fleet.Status(ctx, id); err == nil {
			status = string(spec.Status)
		}
		return "its lifecycle still runs (status " + status + ")"
	}
	out, errOut, code := h.starter(t, "budget", "show", "-o", "json")
	if code != 0 {
		return "budget show: " + errOut
	}
	var view workflows.BudgetView
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		return fmt.Sprintf("budget show: %v: %s", err, out)
	}
	for _, al := range view.Allocations {
		if al.WorkerID == id {
			return fmt.Sprintf("the ledger still holds %d tokens for it (lease %s)", al.Amount, al.Lease)
		}
	}
	return ""
}

// starterOK runs the starter and requires it to succeed.
func (h *harness) starterOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := h.starter(t, args...)
	require.Zero(t, code, "starter %v failed: %s", args, errOut)
	return out
}

// starterJSON runs the starter with -o json and decodes its output.
func starterJSON[T any](t *testing.T, args ...string) T {
	t.Helper()
	var v T
	out := h.starterOK(t, append(args, "-o", "json")...)
	require.NoError(t, json.Unmarshal([]byte(out), &v), "output: %s", out)
	return v
}

func (h *harness) budget(t *testing.T) workflows.BudgetView {
	t.Helper()
	return starterJSON[workflows.BudgetView](t, "budget", "show")
}

func (h *harness) status(t *testing.T, id string) workflows.WorkerSpec {
	t.Helper()
	spec, err := h.fleet.Status(context.Background(), id)
	require.NoError(t, err)
	return spec
}

// waitStatus polls until the worker reaches want, and returns its spec.
func (h *harness) waitStatus(t *testing.T, id string, want workflows.Status, within time.Duration) workflows.WorkerSpec {
	t.Helper()
	deadline := time.Now().Add(within)
	var spec workflows.WorkerSpec
	var err error
	for time.Now().Before(deadline) {
		spec, err = h.fleet.Status(context.Background(), id)
		if err == nil && spec.Status == want {
			return spec
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not reach %s within %s: last status %q, error %v, spec %+v", id, want, within, spec.Status, err, spec)
	return spec
}

// requireGone waits briefly for pid to disappear.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for procfs.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	require.False(t, procfs.Alive(pid), "process %d (%s) is still alive", pid, procfs.Cmdline(pid))
}

var idSeq = time.Now().UnixNano() % 1_000_000

// newID is a fresh worker id of the given short type.
func newID(short string) string {
	idSeq++
	return "worker-" + short + "-it" + strconv.FormatInt(idSeq, 36)
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// recordHistory saves a workflow's history under testdata/histories when
// RECORD_HISTORIES is set (`make replay-record`); the replay tests of the
// workflows package replay every file there on each CI run.
func (h *harness) recordHistory(t *testing.T, name, workflowID string) {
	t.Helper()
	require.NoError(t, h.saveHistory(name, workflowID))
}

// recordLatest records the history of the newest run of a workflow type.
func (h *harness) recordLatest(t *testing.T, name, workflowType string) {
	t.Helper()
	if os.Getenv("RECORD_HISTORIES") == "" {
		return
	}
	resp, err := h.client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf(`WorkflowType = %q AND ExecutionStatus = "Completed"`, workflowType), PageSize: 1})
	require.NoError(t, err)
	require.NotEmpty(t, resp.Executions, "no completed %s to record", workflowType)
	h.recordHistory(t, name, resp.Executions[0].Execution.WorkflowId)
}

// recordingRelease is the tag RECORD_HISTORIES=1 adds to the files this
// code records: the first release's have none, the second's end in -r2,
// the third's (release signal, reservation recheck) in -r3, the fourth's
// (reservations by signal, the budget queue) in -r4, this one's (budget
// pools) in -r5, the sixth's (the ask update) in -r6, the seventh's (ends
// judged by exit rules on the host) in -r7, the eighth's (heartbeats
// drained after supervision, named by their process) in -r8. Bump it with
// each release whose workflows changed, so that a new recording never
// meets an old file.
const recordingRelease = "r8"

// saveHistory writes the history of workflowID's latest run to
// testdata/histories when RECORD_HISTORIES is set.
func (h *harness) saveHistory(name, workflowID string) error {
	_, err := h.saveRun(name, workflowID, "")
	return err
}

// saveRun writes the history of one run (the latest when runID is empty)
// to testdata/histories/<name>-<tag>.json when RECORD_HISTORIES is set, and
// returns it. The tag is recordingRelease for RECORD_HISTORIES=1, else the
// variable's value (letters, digits, '.', '-'). The files there are
// append-only (the replay tests hold every change of the workflows to
// them): an existing file is never overwritten.
func (h *harness) saveRun(name, workflowID, runID string) ([]byte, error) {
	tag := os.Getenv("RECORD_HISTORIES")
	switch {
	case tag == "":
		return nil, nil
	case tag == "1":
		tag = recordingRelease
	case !historyTag.MatchString(tag):
		return nil, fmt.Errorf("RECORD_HISTORIES=%q: give 1, or a tag of letters, digits, '.' and '-' to add to the file names", tag)
	}
	path := filepath.Join(h.root, "testdata", "histories", name+"-"+tag+".json")
	if _, err := os.Stat(path); err == nil {
		return nil, existingHistory(path)
	}
	args := []string{"workflow", "show", "--address", h.address, "--namespace", "default", "--workflow-id", workflowID, "--output", "json"}
	if runID != "" {
		args = append(args, "--run-id", runID)
	}
	out, err := exec.Command(h.temporal, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("fetching the history of %s: %w", workflowID, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, existingHistory(path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return nil, err
	}
	return out, f.Close()
}

var historyTag = regexp.MustCompile(`^[A-Za-z0-9.-]+$`)

func existingHistory(path string) error {
	return fmt.Errorf("%s exists and recorded histories are append-only: record under a new name (RECORD_HISTORIES=<tag> writes <name>-<tag>.json)", path)
}
