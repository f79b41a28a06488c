package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// spawnMany starts n sleepers of master concurrently through the client and
// waits until visibility lists them all.
func spawnMany(t *testing.T, n int, master string, extra func(i int, r *workflows.SpawnRequest)) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID("sleeper")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := workflows.SpawnRequest{WorkerID: id, WorkerType: "sleeper-worker", TaskID: "task-bulk", Master: master, MaxRestarts: -1}
			if extra != nil {
				extra(i, &r)
			}
			_, errs[i] = h.fleet.Spawn(context.Background(), r)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		got, err := h.fleet.ListIDs(context.Background(), fleet.Filter{Master: master})
		return err == nil && len(got) == n
	}, 15*time.Second, 200*time.Millisecond, "visibility must list the %d workers", n)
	return ids
}

func TestListFiltersAndFreshness(t *testing.T) {
	dev := spawnMany(t, 2, "list-master", func(i int, r *workflows.SpawnRequest) {
		r.Priority = []string{"high", "low"}[i]
	})
	other := spawnMany(t, 1, "other-list-master", nil)
	t.Cleanup(func() {
		h.starterOK(t, "kill", "--all", "--yes", "--query", `Master IN ("list-master", "other-list-master")`)
	})
	h.starterOK(t, "heartbeat", dev[0], "--tokens-used", "950") // under 10% left: health 60

	list := func(args ...string) []workflows.WorkerSpec {
		return starterJSON[[]workflows.WorkerSpec](t, append([]string{"list"}, args...)...)
	}
	ids := func(specs []workflows.WorkerSpec) []string {
		out := make([]string, len(specs))
		for i, s := range specs {
			out[i] = s.WorkerID
		}
		return out
	}
	byMaster := list("--master", "list-master")
	require.Equal(t, []string{dev[1], dev[0]}, ids(byMaster), "healthiest first")
	require.Equal(t, 60, byMaster[1].Heartbeat.HealthScore)
	require.Equal(t, other, ids(list("--master", "other-list-master")))
	require.Equal(t, []string{dev[0]}, ids(list("--master", "list-master", "--query", `Priority = "high"`)))
	require.Len(t, list("--type", "sleeper-worker", "--query", `Master IN ("list-master", "other-list-master")`), 3)
	require.Empty(t, list("--status", "idle", "--master", "list-master"))
	require.Len(t, list("--status", "running,idle", "--master", "list-master"), 2)

	// JSON field names are stable: scripts depend on them.
	out := h.starterOK(t, "list", "--master", "other-list-master", "-o", "json")
	var raw []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &raw))
	var keys []string
	for k := range raw[0] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	require.Equal(t, []string{"completed_at", "containment", "created_at", "exit_code", "health", "heartbeat", "host", "log_path", "master",
		"pid", "priority", "started_at", "status", "task_id", "token_budget", "transitions", "worker_id", "worker_type"}, keys)
	require.Subset(t, mapKeys(raw[0]["heartbeat"]), []string{"last_seen", "health_score", "count"})
	require.Subset(t, mapKeys(raw[0]["token_budget"]), []string{"allocated", "used"})

	text := h.starterOK(t, "list", "--master", "list-master")
	lines := strings.Split(strings.TrimSpace(text), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^WORKER ID\s+TYPE\s+STATUS\s+HEALTH\s+HEARTBEAT\s+TOKENS\s+PID\s+HOST$`, lines[0])
	require.Regexp(t, `^`+dev[1]+`\s+sleeper-worker\s+running\s+100 healthy\s+never\s+0/1000 0%\s+\d+\s+it-host-a$`, lines[1])
	require.Regexp(t, `^`+dev[0]+`\s+sleeper-worker\s+running\s+60 degraded\s+\d+s\s+950/1000 95%`, lines[2])

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"list", "--status", "sleeping"}, 2, `unknown status "sleeping"`},
		{[]string{"list", "--type", "astrologer-worker"}, 2, `unknown worker type "astrologer-worker"`},
		{[]string{"list", "--query", "Priority = = 'x'"}, 2, "listing workers with"},
		{[]string{"list", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"list", "--watch", "-o", "json"}, 2, "--watch shows a table"},
	} {
		_, errOut, code := h.starter(t, tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
	}
}

func mapKeys(v any) []string {
	m, _ := v.(map[string]any)
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func TestShutdownAllOverTwentyWorkers(t *testing.T) {
	before := h.budget(t)
	ids := spawnMany(t, 20, "bulk-master", nil)
	require.Equal(t, before.Available-20*1000, h.budget(t).Available)
	pids := make([]int, len(ids))
	for i, id := range ids {
		pids[i] = h.status(t, id).PID
	}

	out := h.starterOK(t, "shutdown", "--all", "--master", "bulk-master", "--grace", "1s")
	require.Contains(t, out, "20 stopped, 0 failed")
	for _, id := range ids {
		require.Regexp(t, id+`\s+completed \(refunded 1000 tokens\)`, out)
	}
	for _, pid := range pids {
		requireGone(t, pid)
	}
	require.Eventually(t, func() bool {
		got, err := h.fleet.ListIDs(context.Background(), fleet.Filter{Master: "bulk-master"})
		return err == nil && len(got) == 0
	}, 10*time.Second, 200*time.Millisecond, "no worker of the master is left running")
	require.Equal(t, before, h.budget(t), "the budget is exact")

	// Again: nothing matches now, and nothing changes.
	_, errOut, code := h.starter(t, "shutdown", "--all", "--master", "bulk-master")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no live worker matches; nothing to shutdown")
	require.Equal(t, before, h.budget(t))
}

func TestKillAllAsksFirst(t *testing.T) {
	before := h.budget(t)
	ids := spawnMany(t, 3, "kill-master", nil)

	_, errOut, code := h.starter(t, "kill", "--all", "--master", "kill-master")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "kill 3 workers at once (SIGKILL, no grace)? needs --yes when not run on a terminal")
	for _, id := range ids {
		require.Equal(t, workflows.StatusRunning, h.status(t, id).Status, "nothing is killed without confirmation")
	}

	results := starterJSON[[]map[string]any](t, "kill", "--all", "--yes", "--master", "kill-master")
	require.Len(t, results, 3)
	for _, r := range results {
		require.Equal(t, "completed", r["status"], fmt.Sprint(r))
		require.EqualValues(t, 1000, r["refunded"])
	}
	for _, id := range ids {
		require.Equal(t, 137, *h.status(t, id).ExitCode)
	}
	require.Equal(t, before, h.budget(t))

	_, errOut, code = h.starter(t, "kill", "--all", "--yes", ids[0])
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "give a WORKER_ID or --all, not both")
}

func TestRecalcFixesADriftedLedger(t *testing.T) {
	ctx := context.Background()
	before := h.budget(t)
	live := spawnMany(t, 1, "recalc-master", nil)[0]
	t.Cleanup(func() { h.starterOK(t, "kill", live) })

	// Drift, as the old system's lost updates made it: tokens held for a
	// worker that has no lifecycle, and for one whose lifecycle ended.
	ledger := h.fleet.Budget()
	require.NoError(t, ledger.Reserve(ctx, "worker-ghost-1", workflows.Lease(workflows.WorkflowID("worker-ghost-1"), "no-run"), 777))
	ended := newID("finisher")
	h.starterOK(t, "spawn", "--type", "finisher-worker", "--task-id", "task-drift", "--master", "recalc-master", "--worker-id", ended, "--wait=false")
	h.waitStatus(t, ended, workflows.StatusCompleted, 30*time.Second)
	desc, err := h.client.DescribeWorkflowExecution(ctx, workflows.WorkflowID(ended), "")
	require.NoError(t, err)
	staleLease := workflows.Lease(workflows.WorkflowID(ended), desc.WorkflowExecutionInfo.FirstRunId+"-old")
	require.NoError(t, ledger.Reserve(ctx, ended, staleLease, 123))
	drifted := h.budget(t)
	require.Equal(t, before.Available-1000-777-123, drifted.Available)

	dry := starterJSON[fleet.Recalc](t, "budget", "recalc", "--dry-run")
	require.Len(t, dry.Drift, 2)
	require.Equal(t, drifted, h.budget(t), "a dry run changes nothing")

	text := h.starterOK(t, "budget", "recalc")
	require.Contains(t, text, "released 777 tokens held by worker-ghost-1: no lifecycle of this worker exists")
	require.Contains(t, text, "released 123 tokens held by "+ended+": held for an earlier lifecycle of this worker")
	after := h.budget(t)
	require.Equal(t, before.Available-1000, after.Available, "only the live worker's allocation is left")
	require.Equal(t, before.Used+1000, after.Used)

	again := starterJSON[fleet.Recalc](t, "budget", "recalc")
	require.Empty(t, again.Drift, "a second run finds nothing")
}

func TestValidateAndSpawnFromSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	id := newID("implementation")
	// The runbook's manual spec, as operators write it today.
	good := write("good.json", fmt.Sprintf(`{
  "worker_id": %q,
  "worker_type": "implementation-worker",
  "status": "pending",
  "task_id": "task-001",
  "priority": "high",
  "created_by": "development-master",
  "scope": {"repository": "owner/repo"},
  "token_budget": {"allocated": 1500, "used": 0},
  "heartbeat": {"last_seen": null, "health_score": 100},
  "created_at": "2026-11-28T10:00:00Z"
}`, id))
	out := h.starterOK(t, "validate", good)
	require.Contains(t, out, good+" is valid: "+id+", type implementation-worker, task task-001, budget 1500, priority high, master development-master")

	for _, tc := range []struct{ name, body, want string }{
		{"not json", `{"worker_type": `, "is not a valid worker spec"},
		{"unknown field", `{"worker_type": "fix-worker", "task_id": "task-1", "created_by": "m", "colour": "red"}`, `unknown field "colour"`},
		{"missing fields", `{"priority": "high"}`, "worker_type is required; task_id is required; master (or created_by) is required"},
		{"bad values", `{"worker_id": "worker-x-../y", "worker_type": "fix-worker", "task_id": "job-1", "priority": "asap", "master": "m", "token_budget": {"allocated": 999999}}`,
			`worker id "worker-x-../y" must match`},
		{"wrong type", `{"worker_type": 7}`, "is not a valid worker spec"},
	} {
		path := write(tc.name+".json", tc.body)
		_, errOut, code := h.starter(t, "validate", path)
		assert.Equal(t, 2, code, tc.name)
		assert.Contains(t, errOut, tc.want, tc.name)
		_, _, code = h.starter(t, "spawn", "--from-spec", path)
		assert.Equal(t, 2, code, tc.name)
	}
	// Every bad field is named at once.
	_, errOut, _ := h.starter(t, "validate", dir+"/bad values.json")
	for _, want := range []string{"worker id", `task id "job-1"`, `priority "asap"`, "budget 999999 is not in 1..200000"} {
		assert.Contains(t, errOut, want)
	}

	before := h.budget(t)
	out = h.starterOK(t, "spawn", "--from-spec", good)
	require.Equal(t, id, strings.TrimSpace(out))
	spec := h.status(t, id)
	require.Equal(t, "owner/repo", spec.Repo)
	require.Equal(t, int64(1500), spec.TokenBudget.Allocated)
	require.Equal(t, before.Available-1500, h.budget(t).Available)
	h.starterOK(t, "kill", id)
	require.Equal(t, before, h.budget(t))
}

func TestDoctor(t *testing.T) {
	out := h.starterOK(t, "doctor")
	for _, want := range []string{`ok\s+server\s+reachable`, `ok\s+namespace\s+default`,
		`ok\s+search attributes\s+WorkerStatus, WorkerType, Master, TaskId, Priority`,
		`ok\s+worker program\s+\d+ polling worker-lifecycle`, `ok\s+host it-host-a\s+polls worker-lifecycle-host-it-host-a`,
		`ok\s+budget ledger`, `ok\s+schedules`} {
		require.Regexp(t, want, out)
	}

	// A server with nothing of ours: no search attributes, no worker.
	bare, err := devserver.Start(context.Background(), devserver.Options{CLI: h.temporal, Bare: true, LogLevel: "error"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bare.Stop() })
	out, _, code := h.starter(t, "doctor", "--address", bare.Address)
	require.Equal(t, 1, code)
	require.Regexp(t, `FAIL\s+search attributes\s+missing \(Keyword\): WorkerStatus, WorkerType, Master, TaskId, Priority`, out)
	require.Contains(t, out, "fix: starter setup --namespace default (or: temporal operator search-attribute create --namespace default --name WorkerStatus --type Keyword")
	require.Regexp(t, `FAIL\s+worker program\s+nobody polls task queue worker-lifecycle`, out)
	require.Contains(t, out, "fix: start a worker program: go run ./worker")

	checks := starterJSONCode[[]fleet.Check](t, 1, "doctor", "--address", "127.0.0.1:1")
	require.Len(t, checks, 1)
	require.False(t, checks[0].OK)
	require.Contains(t, checks[0].Fix, "start the server")
}

// TestSetupPreparesABareServer is what a deployment runs once per server
// (scripts/cluster.sh, the compose file's setup service): on a server with
// nothing of ours it adds what the lifecycles need, and a second run changes
// nothing.
func TestSetupPreparesABareServer(t *testing.T) {
	bare, err := devserver.Start(context.Background(), devserver.Options{CLI: h.temporal, Bare: true, LogLevel: "error"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bare.Stop() })
	at := []string{"--address", bare.Address}
	unchanged := func() {
		t.Helper()
		out, _, _ := h.starter(t, append(at, "doctor")...)
		require.Regexp(t, `FAIL\s+search attributes\s+missing \(Keyword\): WorkerStatus, WorkerType, Master, TaskId, Priority`, out)
		require.Regexp(t, `ok\s+schedules\s+none`, out)
	}

	// Refusals change nothing.
	_, errOut, code := h.starter(t, append(at, "setup", "--create-namespace", "--namespace-retention", "48h")...)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "the namespace retention 48h0m0s must be at least the archival retention 168h0m0s plus 24h0m0s")
	_, errOut, code = h.starter(t, append(at, "setup", "--namespace", "fleet-b")...)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "namespace does not exist: fleet-b; give --create-namespace to register it")
	// The dev server's namespace keeps histories a day: the archival, a
	// week later, would find nothing.
	_, errOut, code = h.starter(t, append(at, "setup")...)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "namespace default keeps closed histories 24h0m0s, but the archival (retention 168h0m0s, daily) reads them up to 192h0m0s after they close; give --update-retention")
	unchanged()

	schedules := []string{workflows.ArchivalScheduleID, workflows.SweepScheduleID}
	first := starterJSON[fleet.SetupReport](t, append(at, "setup", "--update-retention")...)
	require.Equal(t, fleet.SetupReport{RetentionUpdated: true, Retention: "216h0m0s", AttributesAdded: workflows.SearchAttributeNames, SchedulesCreated: schedules}, first)
	again := starterJSON[fleet.SetupReport](t, append(at, "setup")...)
	require.Equal(t, fleet.SetupReport{Retention: "216h0m0s", SchedulesUpToDate: schedules}, again, "a second run changes nothing")
	out, _, _ := h.starter(t, append(at, "doctor")...)
	require.Regexp(t, `ok\s+search attributes\s+WorkerStatus, WorkerType, Master, TaskId, Priority`, out)
	require.Regexp(t, `ok\s+schedules\s+worker-archival, zombie-sweep`, out)

	// A namespace of its own, as a second fleet on the same cluster would.
	other := starterJSON[fleet.SetupReport](t, append(at, "setup", "--namespace", "fleet-b", "--create-namespace")...)
	require.Equal(t, fleet.SetupReport{NamespaceCreated: true, Retention: "216h0m0s", AttributesAdded: workflows.SearchAttributeNames, SchedulesCreated: schedules}, other)
	out, _, _ = h.starter(t, append(at, "doctor", "--namespace", "fleet-b")...)
	require.Regexp(t, `ok\s+namespace\s+fleet-b`, out)
	require.Regexp(t, `ok\s+search attributes`, out)

	// Nobody answers: --wait gives up with the reason.
	start := time.Now()
	_, errOut, code = h.starter(t, "setup", "--address", "127.0.0.1:1", "--wait", "3s")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "the server was not ready within --wait 3s")
	require.Less(t, time.Since(start), 30*time.Second)
}

// starterJSONCode runs the starter with -o json, expecting exit code code.
func starterJSONCode[T any](t *testing.T, code int, args ...string) T {
	t.Helper()
	var v T
	out, errOut, got := h.starter(t, append(args, "-o", "json")...)
	require.Equal(t, code, got, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &v), "output: %s", out)
	return v
}

func TestLogsFromTheHost(t *testing.T) {
	id := newID("printer")
	h.starterOK(t, "spawn", "--type", "printer-worker", "--task-id", "task-logs", "--master", "inventory-master", "--worker-id", id)
	require.Eventually(t, func() bool {
		out, _, code := h.starter(t, "logs", id, "-n", "3")
		return code == 0 && len(strings.Split(strings.TrimSpace(out), "\n")) == 3
	}, 10*time.Second, 200*time.Millisecond)
	out := h.starterOK(t, "logs", id, "-n", "3")
	require.Regexp(t, `^working \d+\nworking \d+\nworking \d+\n$`, out)

	// Follow until the worker ends: the command returns by itself.
	time.AfterFunc(2*time.Second, func() { _, _, _ = h.starter(t, "shutdown", id) })
	followed := h.starterOK(t, "logs", id, "-n", "1", "-f")
	require.Greater(t, strings.Count(followed, "working"), 5, "new lines keep coming while it runs")

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"logs", newID("ghost")}, 1, "no worker with id"},
		{[]string{"logs", id, "-n", "0"}, 2, "-n 0 is not in 1..10000"},
	} {
		_, errOut, code := h.starter(t, tc.args...)
		assert.Equal(t, tc.code, code, errOut)
		assert.Contains(t, errOut, tc.want)
	}
}

// TestCleanupOfAZombieIsIdempotent kills a worker while its host's worker
// program is away: the process cannot be stopped, so the lifecycle waits in
// zombie, its budget already refunded. When the host is back, cleanup
// finishes the job; a second cleanup changes nothing.
func TestCleanupOfAZombieIsIdempotent(t *testing.T) {
	before := h.budget(t)
	require.NoError(t, h.startWorker("it-host-c"))
	t.Cleanup(func() { h.stopWorker("it-host-c", syscall.SIGTERM) })
	id := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-zombie", "--master", "cleanup-master",
		"--worker-id", id, "--host", "it-host-c", "--host-loss-after", "3s", "--watch-heartbeat", "30s")
	pid := h.status(t, id).PID
	t.Cleanup(func() { killAll(workerProcesses(id)) })

	h.crashWorker(t, "it-host-c")
	// The kill cannot reach the host: it says so instead of waiting forever.
	_, errOut, code := h.starter(t, "kill", id)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, id+" is a zombie: its process could not be stopped (kill requested; cleanup incomplete")
	require.Contains(t, errOut, "`starter cleanup "+id+"`")
	zombie := h.waitStatus(t, id, workflows.StatusZombie, 30*time.Second)
	require.Contains(t, zombie.Cleanup.Reason, "cleanup incomplete")
	require.True(t, procfs.Alive(pid), "nobody could stop it")
	require.Equal(t, before, h.budget(t), "the budget is refunded though the process is not stopped yet")
	requireListed(t, fmt.Sprintf(`WorkflowId = %q AND WorkerStatus = "zombie"`, workflows.WorkflowID(id)))

	_, errOut, code = h.starter(t, "cleanup", id, "--zombies")
	require.Equal(t, 2, code, errOut)

	require.NoError(t, h.startWorker("it-host-c"))
	out := h.starterOK(t, "cleanup", "--zombies", "--master", "cleanup-master")
	require.Contains(t, out, "1 cleaned up, 0 failed")
	requireGone(t, pid)
	final := h.status(t, id)
	require.Equal(t, workflows.StatusCompleted, final.Status, "a kill ends completed once its cleanup is done")
	require.Equal(t, workflows.ProcessStopped, final.Cleanup.Process)

	again := h.starterOK(t, "cleanup", id)
	require.Equal(t, "nothing to clean up: "+id+" is completed\n", again)
	require.Equal(t, "no zombie to clean up\n", h.starterOK(t, "cleanup", "--zombies", "--master", "cleanup-master"))
	require.Equal(t, before, h.budget(t), "refunded exactly once")
}

// TestSpawnWizardOnATerminal drives the wizard through a pseudo-terminal
// (script(1)), answering each question wrong once and then right.
func TestSpawnWizardOnATerminal(t *testing.T) {
	id := newID("sleeper")
	answers := strings.Join([]string{
		"astrologer", "sleeper-worker", // type
		"job-1", "task-wizard", // task id
		"",               // master: the default, development-master
		"urgent", "high", // priority
		"just-a-name", "owner/repo", // repo
		"0", "", // budget: the type's default
	}, "\n") + "\n"
	cmd := exec.Command("script", "-qec", strings.Join([]string{h.dir + "/bin/starter", "spawn", "--worker-id", id}, " "), "/dev/null")
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+h.address, "WORKER_TYPES_FILE="+h.typesFile)
	cmd.Stdin = strings.NewReader(answers)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	screen := string(out)
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", id) })
	for _, want := range []string{
		"Worker types (default token budget):", "sleeper-worker", "1000",
		`unknown worker type "astrologer"`,
		"a task id must match",
		"Master [development-master]:",
		"priority must be one of low, medium, high, critical",
		"a repository is owner/name",
		"Token budget [1000]:", "a budget is a number in 1..200000",
	} {
		require.Contains(t, screen, want)
	}
	spec := h.status(t, id)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.Equal(t, "sleeper-worker", spec.WorkerType)
	require.Equal(t, "task-wizard", spec.TaskID)
	require.Equal(t, "development-master", spec.Master)
	require.Equal(t, "high", spec.Priority)
	require.Equal(t, "owner/repo", spec.Repo)
	require.Equal(t, int64(1000), spec.TokenBudget.Allocated)
}

func TestListWatchRefreshesUntilInterrupted(t *testing.T) {
	ids := spawnMany(t, 1, "watch-master", nil)
	t.Cleanup(func() { h.starterOK(t, "kill", ids[0]) })
	cmd := exec.Command(h.dir+"/bin/starter", "list", "--watch", "--interval", "200ms", "--master", "watch-master")
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+h.address, "WORKER_TYPES_FILE="+h.typesFile)
	var out strings.Builder
	cmd.Stdout = &out
	require.NoError(t, cmd.Start())
	time.Sleep(2 * time.Second)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait(), "an interrupt ends the dashboard cleanly")
	frames := strings.Count(out.String(), "\033[H\033[2J")
	require.GreaterOrEqual(t, frames, 3, "it refreshes in place")
	require.Contains(t, out.String(), ids[0])
	require.Contains(t, out.String(), "1 workers  (Ctrl-C to stop)")
}

// TestKillAllOnATerminal answers the confirmation through a pseudo-terminal
// and sees the progress bar.
func TestKillAllOnATerminal(t *testing.T) {
	before := h.budget(t)
	ids := spawnMany(t, 2, "tty-master", nil)
	onTTY := func(answer string) (string, error) {
		cmd := exec.Command("script", "-qec", h.dir+"/bin/starter kill --all --master tty-master", "/dev/null")
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+h.address, "WORKER_TYPES_FILE="+h.typesFile)
		cmd.Stdin = strings.NewReader(answer)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := onTTY("n\n")
	require.Error(t, err)
	require.Contains(t, out, "kill 2 workers at once (SIGKILL, no grace)? [y/N]")
	require.Contains(t, out, "not confirmed; nothing was done")
	for _, id := range ids {
		require.Equal(t, workflows.StatusRunning, h.status(t, id).Status)
	}

	out, err = onTTY("y\n")
	require.NoError(t, err, out)
	require.Contains(t, out, "[##############################] 2/2")
	require.Contains(t, out, "2 stopped, 0 failed")
	require.Equal(t, before, h.budget(t))
}
