// Package hostbeat is a worker program's heartbeat socket: the agents of its
// host send their heartbeats there (fleet.LocalHeartbeat), and the watches
// of their processes hold them (activities.HeartbeatBoard) instead of each
// heartbeat being a signal and a workflow task on the server.
package hostbeat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// MaxSocketPath is what a Unix socket's path may hold on Linux
// (sun_path, 108 bytes with its terminating zero).
const MaxSocketPath = 107

// maxBody bounds a heartbeat's body.
const maxBody = fleet.MaxLocalHeartbeatBytes

// Signaller sends a heartbeat to a lifecycle directly: for a worker none of
// this host's watches holds (fleet.Client.SignalHeartbeat).
type Signaller interface {
	SignalHeartbeat(ctx context.Context, workerID string, hb workflows.Heartbeat) error
}

// Server answers POST fleet.LocalHeartbeatPath.
type Server struct {
	Board  *activities.HeartbeatBoard
	Signal Signaller
	Log    *slog.Logger
}

// Listen opens the socket at path, only for this user (its agents run as
// this user): a socket left by an earlier run of the program is replaced,
// anything else there is refused.
func Listen(path string) (net.Listener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("heartbeat socket %s: a Unix socket's path is at most %d bytes, this one is %d", path, MaxSocketPath, len(path))
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("heartbeat socket %s: something that is not a socket is there", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("heartbeat socket %s: another worker program listens there; give each its own --state-dir or --heartbeat-socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("heartbeat socket %s: remove the one left by an earlier run: %w", path, err)
		}
	}
	// Created 0600, not chmod-ed after: no moment in which another user
	// could connect.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("heartbeat socket: %w", err)
	}
	return l, nil
}

// Serve answers on l until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeHTTP takes one heartbeat: to the watch of its process when this
// host holds one, else as a signal to the lifecycle.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != fleet.LocalHeartbeatPath {
		// Not 404, which an agent reads as an unknown worker.
		answer(w, http.StatusBadRequest, fleet.LocalAnswer{Error: "no such endpoint; POST " + fleet.LocalHeartbeatPath})
		return
	}
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, fleet.LocalAnswer{Error: "POST a heartbeat"})
		return
	}
	path, err := s.take(r)
	if err != nil && s.Log != nil && !errors.Is(err, fleet.ErrInvalid) {
		s.Log.Warn("A local heartbeat was not taken", "error", err)
	}
	ans := fleet.LocalAnswer{Path: path}
	if err != nil {
		ans.Error = err.Error()
	}
	answer(w, fleet.LocalStatus(err), ans)
}

func (s *Server) take(r *http.Request) (string, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return "", fmt.Errorf("%w: heartbeat: reading the body: %v", fleet.ErrInvalid, err)
	}
	if len(raw) > maxBody {
		return "", fmt.Errorf("%w: heartbeat: the body is over %d bytes", fleet.ErrInvalid, maxBody)
	}
	var body fleet.LocalHeartbeat
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return "", fmt.Errorf("%w: heartbeat: not a heartbeat's JSON: %v", fleet.ErrInvalid, err)
	}
	if err := fleet.CheckID(body.WorkerID); err != nil {
		return "", err
	}
	hb := body.Heartbeat
	if hb.Path != "" || hb.Age != 0 {
		return "", fmt.Errorf("%w: heartbeat: path and age are the host's to set", fleet.ErrInvalid)
	}
	if err := hb.Validate(); err != nil {
		return "", fmt.Errorf("%w: heartbeat: %v", fleet.ErrInvalid, err)
	}
	if s.Board.Offer(body.WorkerID, activities.HostHeartbeat{TokensUsed: hb.TokensUsed, HealthScore: hb.HealthScore,
		Status: hb.Status, Message: hb.Message, SentAt: hb.SentAt, Process: hb.Process}) {
		return workflows.PathHost, nil
	}
	return workflows.PathSignal, s.Signal.SignalHeartbeat(r.Context(), body.WorkerID, hb)
}

func answer(w http.ResponseWriter, status int, ans fleet.LocalAnswer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ans)
}
