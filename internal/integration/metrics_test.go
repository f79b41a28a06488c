package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/metrics"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// prometheus is a real Prometheus (Debian's package, `make tools`) scraping
// the suite's primary worker program every second, with the alert rules of
// deploy/prometheus.
type prometheus struct {
	base string
}

func startPrometheus(t *testing.T) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	require.NoError(t, err, "the metrics test scrapes with a real Prometheus: apt-get install prometheus (make tools does)")
	dir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join(h.root, "deploy", "prometheus", "alerts.yml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644))
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: worker-lifecycle
    static_configs: [{targets: [%q]}]
`, h.metricsAddr)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644))
	port, err := devserver.FreePort()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:"+port, "--log.level=warn")
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(logFile.Name(), 20))
		}
	})
	p := &prometheus{base: "http://127.0.0.1:" + port}
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond, "prometheus ready")
	return p
}

// api calls one endpoint of the HTTP API and decodes its data.
func (p *prometheus) api(t *testing.T, path string, params url.Values, data any) {
	t.Helper()
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, "%s %v: %s", path, params, body.Error)
	require.NoError(t, json.Unmarshal(body.Data, data))
}

// value is the one value of an instant query; ok is false when the result
// is empty.
func (p *prometheus) value(t *testing.T, query string) (float64, bool) {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query", url.Values{"query": {query}}, &data)
	if len(data.Result) == 0 {
		return 0, false
	}
	require.Len(t, data.Result, 1, "query %s", query)
	v, err := strconv.ParseFloat(data.Result[0].Value[1].(string), 64)
	require.NoError(t, err)
	return v, true
}

// eventually waits until query's value is want, within a scrape or two.
func (p *prometheus) eventually(t *testing.T, query string, want func() float64, msg string) {
	t.Helper()
	var got, w float64
	var ok bool
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		w = want()
		if got, ok = p.value(t, query); ok && got == w {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: %s = %v (present %v), want %v", msg, query, got, ok, w)
}

// TestPrometheusScrapesTheFleet: a real Prometheus scrapes the primary
// worker program while lifecycles run, and PromQL answers what `starter`
// says: open lifecycles by state, a zombie counted, a restart and a
// give-up counted, the budget held as `budget show` has it, the host's
// processes; the SDK's own metrics are there too. Every metric the alert
// rules and the dashboard use is then in the scrape, and the rules load.
func TestPrometheusScrapesTheFleet(t *testing.T) {
	h.needsDevServer(t)
	ctx := context.Background()
	prom := startPrometheus(t)
	count := func(q string) float64 {
		v, _ := prom.value(t, q+" or vector(0)")
		return v
	}
	// The counters of the tests before are the baselines, once scraped.
	require.Eventually(t, func() bool {
		up, ok := prom.value(t, `up{job="worker-lifecycle"}`)
		_, scraped := prom.value(t, `worker_lifecycle_host_processes{host="`+primaryHost+`"}`)
		return ok && up == 1 && scraped
	}, 30*time.Second, 200*time.Millisecond, "the worker program scraped")
	zombiesBefore := count(`sum(worker_lifecycle_zombies_detected_total{type="sleeper-worker"})`)
	restartsBefore := count(`sum(worker_lifecycle_restarts_total{type="flaky-worker",reason="exit_code"})`)

	// The master's pool, with a quota and a spend window.
	h.starterOK(t, "budget", "pool", "set", "metrics-master", "--quota", "100000", "--window", "24h", "--window-limit", "1000000")
	t.Cleanup(func() { _, _, _ = h.starter(t, "budget", "pool", "delete", "metrics-master") })
	ids := spawnMany(t, 3, "metrics-master", nil)
	t.Cleanup(func() {
		for _, id := range ids {
			_, _, _ = h.starter(t, "kill", id)
		}
	})
	openOf := func(state workflows.Status, typ string) func() float64 {
		return func() float64 {
			counts, err := h.fleet.OpenByState(ctx)
			require.NoError(t, err)
			n := 0
			for _, c := range counts {
				if c.State == state && c.WorkerType == typ {
					n += c.Count
				}
			}
			return float64(n)
		}
	}
	require.Eventually(t, func() bool { return openOf(workflows.StatusRunning, "sleeper-worker")() >= 3 }, 30*time.Second, 200*time.Millisecond)
	prom.eventually(t, `sum(worker_lifecycle_lifecycles{state="running",type="sleeper-worker"})`, openOf(workflows.StatusRunning, "sleeper-worker"),
		"the running sleepers, as visibility lists them")
	prom.eventually(t, `worker_lifecycle_budget_held_tokens{pool="root"}`, func() float64 { return float64(h.budget(t).Used) },
		"the budget held, as `budget show` has it")
	prom.eventually(t, `worker_lifecycle_budget_held_tokens{pool="metrics-master"}`, func() float64 { return 3000 }, "the master's pool")
	prom.eventually(t, `worker_lifecycle_budget_available_tokens{pool="metrics-master"}`, func() float64 { return 97000 }, "its quota less what it holds")
	prom.eventually(t, `worker_lifecycle_budget_window_limit_tokens{pool="metrics-master"}`, func() float64 { return 1000000 }, "its spend window")
	prom.eventually(t, `worker_lifecycle_host_processes{host="`+primaryHost+`"} >= 3`, func() float64 {
		v, _ := prom.value(t, `worker_lifecycle_host_processes{host="`+primaryHost+`"}`)
		return v
	}, "the host's live processes")
	prom.eventually(t, `worker_lifecycle_queue_pollers{queue="shared"} > 0`, func() float64 {
		v, _ := prom.value(t, `worker_lifecycle_queue_pollers{queue="shared"}`)
		return v
	}, "worker programs poll the shared queue")

	// A zombie: no heartbeat within 6 s; without restarts it gives up.
	zombie := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-metrics-zombie", "--master", "metrics-master",
		"--worker-id", zombie, "--zombie-after", "6s", "--max-restarts", "0")
	spec := h.waitStatus(t, zombie, workflows.StatusCleanedUp, 60*time.Second)
	require.Contains(t, spec.Cleanup.Reason, "no heartbeat")
	prom.eventually(t, `sum(worker_lifecycle_zombies_detected_total{type="sleeper-worker"})`, func() float64 { return zombiesBefore + 1 },
		"the zombie counted once")
	require.Positive(t, count(`sum(worker_lifecycle_give_ups_total{type="sleeper-worker",reason="no_restarts"})`))

	// Restarts: the flaky worker fails twice, then completes; its type's
	// breaker, which counted the crashes, stays closed.
	flaky := newID("flaky")
	h.starterOK(t, "spawn", "--type", "flaky-worker", "--task-id", "task-metrics-flaky", "--master", "metrics-master",
		"--worker-id", flaky, "--restart-delay", "1s")
	require.Len(t, h.waitStatus(t, flaky, workflows.StatusCompleted, 60*time.Second).Restarts, 2)
	prom.eventually(t, `sum(worker_lifecycle_restarts_total{type="flaky-worker",reason="exit_code"})`, func() float64 { return restartsBefore + 2 },
		"both restarts counted")
	prom.eventually(t, `worker_lifecycle_breaker_open{type="flaky-worker"}`, func() float64 { return 0 }, "the breaker, closed")

	// Heartbeats applied and their gaps, the oldest one a host holds, a
	// ledger operation timed, the SDK's own metrics.
	require.NoError(t, h.fleet.SignalHeartbeat(ctx, ids[0], workflows.Heartbeat{TokensUsed: 5}))
	require.NoError(t, h.fleet.SignalHeartbeat(ctx, ids[0], workflows.Heartbeat{TokensUsed: 6}))
	beating := newID("hostbeat")
	h.spawnOK(t, beating, "--type", "host-beat-worker", "--task-id", "task-metrics-beat", "--master", "metrics-master")
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", beating) })
	prom.eventually(t, `worker_lifecycle_host_heartbeat_age_max_seconds{host="`+primaryHost+`"} < 5`, func() float64 {
		v, _ := prom.value(t, `worker_lifecycle_host_heartbeat_age_max_seconds{host="`+primaryHost+`"}`)
		return v
	}, "the host holds its agent's heartbeats")
	require.Positive(t, count(`sum(worker_lifecycle_heartbeat_gap_seconds_count{path="signal"})`))

	// A host crashes under two workers: one's lifecycle finds the host
	// lost; the other's turns zombie, and its stop, which cannot reach the
	// host, fails (a cleanup failure) until the host is back.
	const lostHost = "it-host-metrics-lost"
	stuck, pid := spawnOnOwnHost(t, lostHost, "task-metrics-stuck", "--zombie-after", "6s")
	gone := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-metrics-gone", "--master", "cleanup-master",
		"--worker-id", gone, "--host", lostHost, "--host-loss-after", "3s", "--watch-heartbeat", "3s")
	t.Cleanup(func() { killAll(workerProcesses(gone)) })
	h.crashWorker(t, lostHost)
	require.Eventually(t, func() bool {
		s, err := h.fleet.Status(ctx, stuck)
		return err == nil && s.Status == workflows.StatusZombie && s.Cleanup != nil && strings.Contains(s.Cleanup.Reason, "cleanup incomplete")
	}, 60*time.Second, 200*time.Millisecond, "the zombie's stop fails")
	require.Contains(t, h.waitStatus(t, gone, workflows.StatusCleanedUp, 60*time.Second).Cleanup.Reason, "host "+lostHost+" lost")
	prom.eventually(t, `sum(worker_lifecycle_host_lost_lifecycles_total{host="`+lostHost+`"})`, func() float64 { return 1 }, "the lost host counted")
	prom.eventually(t, `sum(worker_lifecycle_cleanup_failures_total{type="sleeper-worker"}) > 0`, func() float64 {
		return count(`sum(worker_lifecycle_cleanup_failures_total{type="sleeper-worker"})`)
	}, "the failed stop counted")
	require.NoError(t, h.startWorker(lostHost))
	require.Equal(t, workflows.StatusCleanedUp, starterJSON[workflows.WorkerSpec](t, "cleanup", stuck).Status)
	requireGone(t, pid)

	require.Positive(t, count(`sum(worker_lifecycle_ledger_operation_seconds_count{operation="ask"})`))
	require.Positive(t, count(`sum(temporal_workflow_completed_total)`), "the SDK's metrics are served")

	// Every metric a rule or a panel uses is served.
	var names []string
	prom.api(t, "/api/v1/label/__name__/values", url.Values{}, &names)
	served := map[string]bool{}
	for _, n := range names {
		served[n] = true
	}
	// Notifications are counted by a program with --notify-webhook
	// (TestNotificationsAndEvents), which this one is not.
	eventOnly := map[string]bool{metrics.Notifications + "_total": true}
	for _, f := range metrics.DeployFiles {
		data, err := os.ReadFile(filepath.Join(h.root, f))
		require.NoError(t, err)
		used := metrics.Referenced(data)
		require.NotEmpty(t, used, f)
		for _, name := range used {
			base := name
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && served[b+"_count"] {
					base = b + "_count"
				}
			}
			require.True(t, served[base] || eventOnly[name], "%s (used in %s) is not in the scrape", name, f)
		}
	}

	// The rules load in Prometheus itself, and the zombie's alert fires.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
				State  string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	require.Eventually(t, func() bool {
		prom.api(t, "/api/v1/rules", url.Values{}, &rules)
		if len(rules.Groups) != 1 || len(rules.Groups[0].Rules) != 10 {
			return false
		}
		for _, r := range rules.Groups[0].Rules {
			if r.Health != "ok" || (r.Name == "WorkerZombiesAppearing" && r.State != "firing") {
				return false
			}
		}
		return true
	}, 30*time.Second, 500*time.Millisecond, "10 rules, all healthy, the zombie alert firing: %+v", rules)

	// `RECORD_SCREENSHOT=1` refreshes the picture in the README: this run
	// in Prometheus's own graph page.
	if os.Getenv("RECORD_SCREENSHOT") != "" {
		page := prom.base + "/graph?g0.expr=" + url.QueryEscape(`sum by (state) (worker_lifecycle_lifecycles)`) +
			"&g0.tab=0&g0.range_input=5m&g1.expr=" + url.QueryEscape(`sum by (type) (worker_lifecycle_transitions_total)`) + "&g1.tab=0&g1.range_input=5m"
		_, err := chromium(t, "--window-size=1400,1100", "--screenshot="+h.root+"/docs/prometheus-graph.png", page)
		require.NoError(t, err)
	}
}
