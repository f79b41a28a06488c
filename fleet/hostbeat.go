package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// The local heartbeat path: a worker program listens on a Unix socket
// (its --heartbeat-socket) and gives its path to each process it starts in
// workflows.HeartbeatSocketEnv. An agent POSTs its heartbeats there as
// JSON, a LocalHeartbeat; the host holds them in the process's watch and
// relays to the lifecycle only what it acts on (docs/LIFECYCLE.md).
//
//	curl --unix-socket "$WORKER_HEARTBEAT_SOCKET" -d '{"worker_id":"'"$WORKER_ID"'","tokens_used":1200}' http://host/v1/heartbeat
const (
	// LocalHeartbeatPath is the URL path of the endpoint.
	LocalHeartbeatPath = "/v1/heartbeat"
	// localHeartbeatWait bounds a local heartbeat: the host answers at
	// once, or signals the lifecycle when no watch holds the worker; past
	// it the heartbeat goes by signal.
	localHeartbeatWait = 5 * time.Second
	// MaxLocalHeartbeatBytes bounds a request's body and its answer: a
	// heartbeat's message is at most workflows.MaxMessageBytes.
	MaxLocalHeartbeatBytes = 16 << 10
)

// LocalHeartbeat is the body of a heartbeat sent to the host's socket, at
// most MaxLocalHeartbeatBytes.
type LocalHeartbeat struct {
	WorkerID string `json:"worker_id"`
	workflows.Heartbeat
}

// LocalAnswer is the host's answer: the path the heartbeat took
// (workflows.PathHost, or PathSignal when the host signalled the lifecycle
// because none of its watches holds the worker), or why it was refused.
type LocalAnswer struct {
	Path  string `json:"path,omitempty"`
	Error string `json:"error,omitempty"`
}

// HeartbeatVia sends a heartbeat and says which path it took. A process
// started by a worker program with a heartbeat socket
// (workflows.HeartbeatSocketEnv set, and WORKER_ID its own worker id) sends
// it to its host; if the host cannot be reached, and everywhere else, it
// is a signal to the lifecycle.
func (f *Client) HeartbeatVia(ctx context.Context, workerID string, hb workflows.Heartbeat) (string, error) {
	path, err := HeartbeatToHost(ctx, workerID, hb)
	if !errors.Is(err, ErrNoHost) {
		return path, err
	}
	if os.Getenv("WORKER_ID") == workerID && hb.Process == "" {
		hb.Process = os.Getenv(workflows.ProcessEnv)
	}
	return workflows.PathSignal, f.SignalHeartbeat(ctx, workerID, hb)
}

// ErrNoHost: HeartbeatToHost found no host to send to (not the worker's
// own process, no socket in its environment, or the worker program does
// not answer on it); the heartbeat must be a signal.
var ErrNoHost = errors.New("no heartbeat socket of the worker's host")

// HeartbeatToHost sends a heartbeat of the worker whose process this is to
// its host's socket, without a connection to the server: what `starter
// heartbeat` run by an agent does first. It returns ErrNoHost when the
// heartbeat must go by signal instead (HeartbeatVia does that).
func HeartbeatToHost(ctx context.Context, workerID string, hb workflows.Heartbeat) (string, error) {
	if err := CheckID(workerID); err != nil {
		return "", err
	}
	local := os.Getenv("WORKER_ID") == workerID
	if hb.Process == "" && local {
		hb.Process = os.Getenv(workflows.ProcessEnv)
	}
	if err := hb.Validate(); err != nil {
		return "", invalid("heartbeat: ", err)
	}
	if hb.Path != "" || hb.Age != 0 {
		// Only a host relays.
		return "", invalidField("path", "path and age are set by a worker's host on the heartbeats it relays")
	}
	socket := os.Getenv(workflows.HeartbeatSocketEnv)
	if !local || socket == "" {
		return "", ErrNoHost
	}
	path, err := postLocal(ctx, socket, LocalHeartbeat{WorkerID: workerID, Heartbeat: hb})
	var unreachable *hostUnreachableError
	if errors.As(err, &unreachable) {
		// The worker program is down or restarting: the lifecycle still
		// takes the heartbeat directly.
		return "", fmt.Errorf("%w: %v", ErrNoHost, err)
	}
	return path, err
}

// SignalHeartbeat sends a heartbeat as a signal to the lifecycle, whatever
// the environment: what a master does, and a host for a worker none of its
// watches holds.
func (f *Client) SignalHeartbeat(ctx context.Context, workerID string, hb workflows.Heartbeat) error {
	if err := CheckID(workerID); err != nil {
		return err
	}
	if err := hb.Validate(); err != nil {
		return invalid("heartbeat: ", err)
	}
	if err := f.temporal.SignalWorkflow(ctx, workflows.WorkflowID(workerID), "", workflows.SignalHeartbeat, hb); err != nil {
		return f.explain(ctx, workerID, err)
	}
	return nil
}

// hostUnreachableError: the host's socket did not take the request.
type hostUnreachableError struct{ err error }

func (e *hostUnreachableError) Error() string { return "host heartbeat socket: " + e.err.Error() }
func (e *hostUnreachableError) Unwrap() error { return e.err }

// postLocal sends one heartbeat to the host's socket.
func postLocal(ctx context.Context, socket string, body LocalHeartbeat) (string, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, localHeartbeatWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://host"+LocalHeartbeatPath, bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return "", err
		}
		// Refused, or no answer in time (a worker program that is
		// starting or stuck): the lifecycle takes a signal instead.
		return "", &hostUnreachableError{err}
	}
	defer resp.Body.Close()
	var ans LocalAnswer
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, MaxLocalHeartbeatBytes))
	if err := json.Unmarshal(raw, &ans); err != nil {
		return "", fmt.Errorf("host heartbeat socket answered %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	if resp.StatusCode == http.StatusBadGateway {
		// The host's own signal failed; the agent's may not.
		return "", &hostUnreachableError{errors.New(ans.Error)}
	}
	return ans.Path, LocalStatusError(resp.StatusCode, ans.Error)
}

// LocalStatus is the HTTP status the host answers an error with, the
// inverse of LocalStatusError.
func LocalStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusAccepted
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownWorker):
		return http.StatusNotFound
	case errors.Is(err, ErrEnded):
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// LocalStatusError is the error of a host's answer, the one a signal
// would have returned, so that an agent branches on it alike.
func LocalStatusError(status int, msg string) error {
	var kind error
	switch status {
	case http.StatusOK, http.StatusAccepted:
		return nil
	case http.StatusBadRequest:
		kind = ErrInvalid
	case http.StatusNotFound:
		kind = ErrUnknownWorker
	case http.StatusConflict:
		kind = ErrEnded
	}
	if kind != nil {
		return fmt.Errorf("%w: %s", kind, strings.TrimPrefix(msg, kind.Error()+": "))
	}
	return fmt.Errorf("host heartbeat socket: %d: %s", status, msg)
}
