package hostbeat

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// signals stands in for the lifecycles a host signals when none of its
// watches holds the worker.
type signals struct {
	mu  sync.Mutex
	got []workflows.Heartbeat
	err error
}

func (s *signals) SignalHeartbeat(_ context.Context, _ string, hb workflows.Heartbeat) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, hb)
	return s.err
}

func (s *signals) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// serve runs a server on a socket in a fresh folder and points this
// process's environment at it, as a worker program does for its agents.
func serve(t *testing.T, id string) (*activities.HeartbeatBoard, *signals, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "hb")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "heartbeat.sock")
	l, err := Listen(path)
	require.NoError(t, err)
	board, sig := activities.NewHeartbeatBoard(), &signals{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = (&Server{Board: board, Signal: sig}).Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	t.Setenv("WORKER_ID", id)
	t.Setenv(workflows.HeartbeatSocketEnv, path)
	t.Setenv(workflows.ProcessEnv, "")
	return board, sig, path
}

func TestHeartbeatWithoutWatchIsSignalled(t *testing.T) {
	_, sig, path := serve(t, "worker-impl-1")
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "only this user's agents may send")

	start := time.Now()
	got, err := fleet.HeartbeatToHost(context.Background(), "worker-impl-1", workflows.Heartbeat{TokensUsed: 3})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "the host answers at once")
	assert.Equal(t, workflows.PathSignal, got)
	require.Equal(t, 1, sig.count())

	sig.err = fleet.ErrEnded
	_, err = fleet.HeartbeatToHost(context.Background(), "worker-impl-1", workflows.Heartbeat{TokensUsed: 3})
	require.ErrorIs(t, err, fleet.ErrEnded, "the agent learns its lifecycle ended, as from a signal")
}

func TestBadHeartbeatIsRefusedByTheHost(t *testing.T) {
	board, sig, path := serve(t, "worker-impl-1")
	// The client refuses first; a raw request gets the same from the host.
	_, err := fleet.HeartbeatToHost(context.Background(), "worker-impl-1", workflows.Heartbeat{TokensUsed: -1})
	require.ErrorIs(t, err, fleet.ErrInvalid)
	for body, want := range map[string]string{
		`{"worker_id":"worker-impl-1","tokens_used":-1}`:      "tokens_used -1 is negative",
		`{"worker_id":"../x","tokens_used":1}`:                "worker id",
		`{"worker_id":"worker-impl-1","path":"host","age":5}`: "path and age",
		`{"worker_id":"worker-impl-1","tokens":1}`:            "unknown field",
		`not json`: "not a heartbeat's JSON",
		`{"worker_id":"worker-impl-1","message":"` + strings.Repeat("x", 17<<10) + `"}`: "over",
	} {
		status, ans := rawPost(t, path, body)
		assert.Equal(t, 400, status, body)
		assert.Contains(t, ans, want, body)
	}
	assert.Zero(t, sig.count(), "nothing was signalled")
	assert.False(t, board.Offer("worker-impl-1", activities.HostHeartbeat{}), "nothing was held")
}

func TestListenRefusesWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "heartbeat.sock")
	require.NoError(t, os.WriteFile(path, []byte("data"), 0o644))
	_, err := Listen(path)
	require.ErrorContains(t, err, "not a socket")
	data, _ := os.ReadFile(path)
	assert.Equal(t, "data", string(data), "left as it was")

	_, err = Listen("/tmp/" + strings.Repeat("d", 120) + "/heartbeat.sock")
	require.ErrorContains(t, err, "at most 107 bytes")
}

func TestUnreachableHostMeansSignal(t *testing.T) {
	t.Setenv("WORKER_ID", "worker-impl-1")
	t.Setenv(workflows.HeartbeatSocketEnv, filepath.Join(t.TempDir(), "none.sock"))
	_, err := fleet.HeartbeatToHost(context.Background(), "worker-impl-1", workflows.Heartbeat{TokensUsed: 1})
	require.True(t, errors.Is(err, fleet.ErrNoHost), "%v", err)
	// Another worker's id: never through this process's host.
	_, err = fleet.HeartbeatToHost(context.Background(), "worker-impl-2", workflows.Heartbeat{TokensUsed: 1})
	require.ErrorIs(t, err, fleet.ErrNoHost)
}

// rawPost sends body as an agent written in any language would.
func rawPost(t *testing.T, socket, body string) (int, string) {
	t.Helper()
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://host"+fleet.LocalHeartbeatPath, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(data)
}

func TestListenRefusesASocketInUse(t *testing.T) {
	_, _, path := serve(t, "worker-impl-1")
	_, err := Listen(path)
	require.ErrorContains(t, err, "another worker program listens there")
	_, err = fleet.HeartbeatToHost(context.Background(), "worker-impl-1", workflows.Heartbeat{TokensUsed: 1})
	require.NoError(t, err, "the first still answers")
}

// TestSilentHostMeansSignal: a socket that takes the connection but never
// answers (a worker program starting, or stuck) does not hold the agent
// beyond the wait: its heartbeat goes by signal.
func TestSilentHostMeansSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hb.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	t.Setenv("WORKER_ID", "worker-impl-1")
	t.Setenv(workflows.HeartbeatSocketEnv, path)
	start := time.Now()
	_, err = fleet.HeartbeatToHost(context.Background(), "worker-impl-1", workflows.Heartbeat{TokensUsed: 1})
	require.ErrorIs(t, err, fleet.ErrNoHost)
	require.Less(t, time.Since(start), 8*time.Second)
}

func TestUnknownEndpointIsNoUnknownWorker(t *testing.T) {
	_, _, path := serve(t, "worker-impl-1")
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Post("http://host/v2/heartbeat", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
