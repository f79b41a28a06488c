package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/notify"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// webhook is a local endpoint that records what it is sent.
type webhook struct {
	mu     sync.Mutex
	status int
	keys   []string
	bodies map[string][]byte
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	defer w.mu.Unlock()
	key := r.Header.Get("Idempotency-Key")
	w.keys = append(w.keys, key)
	w.bodies[key] = body
	rw.WriteHeader(w.status)
}

// got counts the posts of each event.
func (w *webhook) got() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := map[string]int{}
	for _, k := range w.keys {
		n[k]++
	}
	return n
}

func (w *webhook) payload(t *testing.T, key string) notify.Payload {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var p notify.Payload
	require.NoError(t, json.Unmarshal(w.bodies[key], &p))
	return p
}

// TestNotificationsAndEvents: a worker program given two webhooks, one that
// works and one that always fails, posts each event that needs a person
// once to the first, with the documented payload; the failing one is
// tried five times an event and given up, and no lifecycle waits for it.
// `starter events --follow` prints a zombie's events as they happen, and
// `starter events` lists them after.
func TestNotificationsAndEvents(t *testing.T) {
	h.needsDevServer(t)
	ctx := context.Background()
	good, bad := &webhook{status: http.StatusOK, bodies: map[string][]byte{}}, &webhook{status: http.StatusBadGateway, bodies: map[string][]byte{}}
	gs, bs := httptest.NewServer(good), httptest.NewServer(bad)
	defer gs.Close()
	defer bs.Close()

	// The notifying program: a host of its own, with metrics to count its
	// deliveries.
	const notifier = "it-host-notify"
	port, err := devserver.FreePort()
	require.NoError(t, err)
	require.NoError(t, h.startWorkerWith(notifier, filepath.Join(h.dir, "bin", "worker"),
		"WORKER_NOTIFY_WEBHOOK="+gs.URL+"/hook slack="+bs.URL+"/hook", "WORKER_METRICS_LISTEN=127.0.0.1:"+port))
	t.Cleanup(func() { h.stopWorker(notifier, syscall.SIGTERM) })

	// starter events --follow, from before the zombie.
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	follow := exec.CommandContext(fctx, filepath.Join(h.dir, "bin", "starter"), "events", "--follow", "-o", "json",
		"--type", "zombie_detected", "--type", "worker_failed")
	follow.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+h.address, "TEMPORAL_NAMESPACE=default", "WORKER_TYPES_FILE="+h.typesFile)
	out, err := follow.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, follow.Start())
	defer func() { stopFollow(); _ = follow.Wait() }()
	followed := make(chan workflows.Event, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev workflows.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				followed <- ev
			}
		}
		close(followed)
	}()

	// A zombie on the suite's own host: no heartbeat within 5 s.
	zombie := newID("sleeper")
	h.starterOK(t, "spawn", "--type", "sleeper-worker", "--task-id", "task-notify-zombie", "--master", "notify-master",
		"--worker-id", zombie, "--host", primaryHost, "--zombie-after", "5s", "--max-restarts", "0")
	spawned := time.Now()
	var kinds []workflows.EventKind
	var zombieID string
	for len(kinds) < 2 {
		select {
		case ev := <-followed:
			if ev.WorkerID != zombie {
				continue
			}
			if ev.Kind == workflows.EventZombie {
				zombieID = ev.ID
				require.WithinDuration(t, spawned.Add(5*time.Second), time.Now(), 10*time.Second, "printed as it happened")
				require.Contains(t, ev.Message, "no heartbeat for 5s")
			}
			kinds = append(kinds, ev.Kind)
		case <-time.After(60 * time.Second):
			t.Fatalf("starter events --follow printed %v for %s in 60s", kinds, zombie)
		}
	}
	require.Equal(t, []workflows.EventKind{workflows.EventZombie, workflows.EventWorkerFailed}, kinds)
	require.Equal(t, workflows.StatusCleanedUp, h.waitStatus(t, zombie, workflows.StatusCleanedUp, 30*time.Second).Status,
		"the lifecycle ended, whatever the failing webhook")

	// Each event posted once to the webhook that works.
	require.Eventually(t, func() bool { return good.got()[zombieID] == 1 }, 30*time.Second, 100*time.Millisecond)
	p := good.payload(t, zombieID)
	require.Equal(t, workflows.EventZombie, p.Kind)
	require.Equal(t, zombie, p.WorkerID)
	require.Equal(t, "sleeper-worker", p.WorkerType)
	require.Equal(t, primaryHost, p.Host)
	require.Positive(t, p.Seq)
	require.Equal(t, "notify-master", p.Pool, "the master's own pool")
	require.Equal(t, "[zombie_detected] "+zombie+", sleeper-worker, on "+primaryHost+", pool notify-master: "+p.Message, p.Text)
	failedID := strings.Replace(zombieID, "/zombie_detected/1", "/worker_failed/2", 1)
	require.Eventually(t, func() bool { return good.got()[failedID] == 1 }, 30*time.Second, 100*time.Millisecond)

	// The failing one: five tries (1+2+4+8 s apart), then given up.
	// Earlier events on that webhook (of tests before) cost it 15 s each.
	require.Eventually(t, func() bool { return bad.got()[zombieID] == 5 }, 2*time.Minute, 200*time.Millisecond)
	time.Sleep(time.Second)
	require.Equal(t, 5, bad.got()[zombieID], "given up after five tries")
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://127.0.0.1:" + port + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `worker_lifecycle_notifications_total{result="failed"} `) &&
			strings.Contains(string(body), `worker_lifecycle_notifications_total{result="delivered"} `)
	}, 30*time.Second, 200*time.Millisecond, "deliveries counted")

	// An agent that says it waits for a person: shown, and notified once.
	asking := newID("sleeper")
	h.spawnOK(t, asking, "--type", "sleeper-worker", "--task-id", "task-notify-ask", "--master", "notify-master")
	t.Cleanup(func() { _, _, _ = h.starter(t, "kill", asking) })
	for range 2 {
		h.starterOK(t, "heartbeat", asking, "--status", "awaiting_input", "--message", "which branch?")
	}
	require.Contains(t, h.starterOK(t, "list", "--master", "notify-master"), "running (awaiting_input)")
	require.Contains(t, h.starterOK(t, "status", asking), "NEEDS ATTENTION: awaiting_input (which branch?)")
	var askID string
	require.Eventually(t, func() bool {
		for key := range good.got() {
			if strings.Contains(key, asking) && strings.Contains(key, "/attention_needed/") {
				askID = key
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the attention notified")
	ask := good.payload(t, askID)
	require.Equal(t, workflows.EventAttention, ask.Kind)
	require.Equal(t, "needs attention: awaiting_input: which branch?", ask.Message)
	time.Sleep(2 * time.Second)
	for key, n := range good.got() {
		require.Equal(t, 1, n, "event %s posted once (the attention was sent twice)", key)
	}

	// After the fact: the events, filtered, and bad filters refused.
	listed, _, code := h.starter(t, "events", "--since", "10m", "--type", "zombie_detected", "-o", "json")
	require.Zero(t, code)
	require.Contains(t, listed, zombieID)
	text := h.starterOK(t, "events", "--since", "10m")
	require.Contains(t, text, "[worker_failed] "+zombie+", sleeper-worker, on "+primaryHost+", pool notify-master:")
	_, errOut, code := h.starter(t, "events", "--type", "party")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown event type "party": give one of zombie_detected, cleanup_failed, host_lost, worker_failed, budget_alert, breaker_opened, attention_needed`)
	_, errOut, code = h.starter(t, "events", "--since", "-1h")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--since -1h0m0s: must not be negative")

	if os.Getenv("RECORD_HISTORIES") != "" {
		recordRun(t, "lifecycle-zombie-events", fetchHistory(t, workflows.WorkflowID(zombie), ""))
		recordRun(t, "fleet-events", fetchHistory(t, workflows.EventsWorkflowID, ""))
	}
}
