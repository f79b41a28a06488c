package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// receiver is a local webhook endpoint that answers each request with the
// next status of its script (200 once the script runs out).
type receiver struct {
	mu     sync.Mutex
	script []int
	got    []http.Header
	bodies [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req.Header.Clone())
	r.bodies = append(r.bodies, body)
	status := http.StatusOK
	if len(r.script) > 0 {
		status, r.script = r.script[0], r.script[1:]
	}
	w.WriteHeader(status)
}

func (r *receiver) requests() ([]http.Header, [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.got...), append([][]byte(nil), r.bodies...)
}

// log is an in-memory event log.
type log struct {
	mu     sync.Mutex
	events []workflows.Event
}

func (l *log) add(ev workflows.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev.Seq = int64(len(l.events) + 1)
	l.events = append(l.events, ev)
}

func (l *log) read(_ context.Context, after int64) ([]workflows.Event, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []workflows.Event
	for _, ev := range l.events {
		if ev.Seq > after {
			out = append(out, ev)
		}
	}
	return out, int64(len(l.events)), nil
}

func notifier(t *testing.T, src *log, dir string, hooks ...Webhook) *Notifier {
	return &Notifier{Source: src.read, Hooks: hooks, Dir: dir, Every: 20 * time.Millisecond,
		Tries: 3, Backoff: 10 * time.Millisecond, HTTP: http.DefaultClient, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func zombie(id string) workflows.Event {
	return workflows.Event{ID: id, Kind: workflows.EventZombie, At: time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC),
		WorkerID: "worker-fix-a1", WorkerType: "fix-worker", Host: "gpu-1", Message: "no heartbeat for 6s (zombie limit 6s)"}
}

// TestEachEventOnceToEachWebhook: the events of the past are not sent; each
// new one reaches each webhook once, in order, with its idempotency key
// and the documented payload; a failing endpoint is retried and then given
// up, and holds back nothing of the other; a restart sends nothing again.
func TestEachEventOnceToEachWebhook(t *testing.T) {
	src := &log{}
	src.add(zombie("old"))
	good, flaky := &receiver{script: []int{503}}, &receiver{script: []int{500, 502, 500, 500}}
	gs, fs := httptest.NewServer(good), httptest.NewServer(flaky)
	defer gs.Close()
	defer fs.Close()
	cursor := t.TempDir()
	var mu sync.Mutex
	results := map[string]int{}
	n := notifier(t, src, cursor, Webhook{URL: gs.URL, Format: FormatJSON}, Webhook{URL: fs.URL, Format: FormatSlack})
	n.Result = func(r string) { mu.Lock(); results[r]++; mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	require.Eventually(t, func() bool {
		for _, h := range n.Hooks {
			if _, err := os.Stat(n.CursorFile(h)); err != nil {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond, "both webhooks know where the log stands")
	src.add(zombie("e1"))
	src.add(zombie("e2"))
	require.Eventually(t, func() bool { h, _ := good.requests(); return len(h) == 3 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { h, _ := flaky.requests(); return len(h) == 5 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	headers, bodies := good.requests()
	require.Len(t, headers, 3, "e1 twice (a 503, then delivered), e2 once; the old event never")
	require.Equal(t, []string{"e1", "e1", "e2"}, []string{headers[0].Get("Idempotency-Key"), headers[1].Get("Idempotency-Key"), headers[2].Get("Idempotency-Key")})
	var p Payload
	require.NoError(t, json.Unmarshal(bodies[2], &p))
	require.Equal(t, "e2", p.ID)
	require.Equal(t, int64(3), p.Seq)
	require.Equal(t, workflows.EventZombie, p.Kind)
	require.Equal(t, "[zombie_detected] worker-fix-a1, fix-worker, on gpu-1: no heartbeat for 6s (zombie limit 6s)", p.Text)

	fh, fb := flaky.requests()
	require.Len(t, fh, 5, "e1 tried 3 times and given up, e2 delivered at its 2nd try")
	require.JSONEq(t, `{"text": "[zombie_detected] worker-fix-a1, fix-worker, on gpu-1: no heartbeat for 6s (zombie limit 6s)"}`, string(fb[4]))
	mu.Lock()
	require.Equal(t, map[string]int{"failed": 1, "delivered": 3}, results)
	mu.Unlock()

	// Restarted: nothing is sent again.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- notifier(t, src, cursor, Webhook{URL: gs.URL, Format: FormatJSON}).Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	headers, _ = good.requests()
	require.Len(t, headers, 3)
}

// An agent's text cannot ping a Slack channel or disguise a link.
func TestSlackBodyIsEscaped(t *testing.T) {
	ev := zombie("x")
	ev.Message = "needs attention: <!channel> see <https://evil.example|docs> & more"
	body, err := Body(FormatSlack, ev)
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal(body, &m))
	require.Equal(t, "[zombie_detected] worker-fix-a1, fix-worker, on gpu-1: needs attention: &lt;!channel&gt; see &lt;https://evil.example|docs&gt; &amp; more", m["text"])
}

// A log that started again (terminated and recreated) is delivered from
// its start, not skipped until its numbers pass the old cursor.
func TestLogStartedAgainIsDeliveredFromItsStart(t *testing.T) {
	src := &log{}
	r := &receiver{}
	s := httptest.NewServer(r)
	defer s.Close()
	dir := t.TempDir()
	n := notifier(t, src, dir, Webhook{URL: s.URL, Format: FormatJSON})
	require.NoError(t, writeCursor(n.CursorFile(n.Hooks[0]), 40))
	n.Source = func(ctx context.Context, after int64) ([]workflows.Event, int64, error) {
		evs, head, err := src.read(ctx, after)
		if after > head { // as fleet.Client.Events says it
			return nil, after, workflows.ErrEventLogReset
		}
		return evs, head, err
	}
	src.add(zombie("new-1"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	require.Eventually(t, func() bool { h, _ := r.requests(); return len(h) == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	h, _ := r.requests()
	require.Len(t, h, 1, "delivered once")
	require.Equal(t, "new-1", h[0].Get("Idempotency-Key"))
}

// A 4xx other than 408 and 429 is a refusal: not retried.
func TestRefusedIsNotRetried(t *testing.T) {
	r := &receiver{script: []int{400}}
	s := httptest.NewServer(r)
	defer s.Close()
	n := notifier(t, &log{}, t.TempDir())
	require.ErrorContains(t, n.deliver(context.Background(), Webhook{URL: s.URL, Format: FormatJSON}, zombie("x")), "400")
	h, _ := r.requests()
	require.Len(t, h, 1)
}

func TestParseWebhook(t *testing.T) {
	for _, tc := range []struct{ in, url, format, err string }{
		{"https://hooks.example.com/a", "https://hooks.example.com/a", FormatJSON, ""},
		{"slack=https://hooks.slack.com/services/T/B/x", "https://hooks.slack.com/services/T/B/x", FormatSlack, ""},
		{"http://127.0.0.1:9/x?a=b", "http://127.0.0.1:9/x?a=b", FormatJSON, ""},
		{"ftp://example.com/secret", "", "", `--notify-webhook ftp://example.com/…: not an http(s) URL`},
		{"hooks.example.com/a", "", "", `--notify-webhook hooks.example.com/…: not an http(s) URL`},
		{"teams=https://x.example.com/secret", "", "", `--notify-webhook https://x.example.com/…: format "teams" must be json or slack (FORMAT=URL)`},
	} {
		w, err := ParseWebhook(tc.in)
		if tc.err != "" {
			require.EqualError(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, Webhook{URL: tc.url, Format: tc.format}, w)
	}
}
