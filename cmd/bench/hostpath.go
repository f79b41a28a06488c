package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Heartbeat paths of the bench's rows.
const (
	beatBySignal = workflows.PathSignal
	beatByHost   = workflows.PathHost
)

// hostSender sends heartbeats to the worker program's socket, as each
// agent on its host does (`starter heartbeat`, fleet.HeartbeatToHost), for
// many workers at once over kept-alive connections.
type hostSender struct {
	client *http.Client
}

func newHostSender(socket string) *hostSender {
	return &hostSender{client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 256,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}}
}

// socketOf is where the bench's worker program listens (its default,
// <state-dir>/heartbeat.sock).
func socketOf(e *env) string { return filepath.Join(e.dir, "state", "heartbeat.sock") }

// send posts one heartbeat and returns the path the host says it took.
func (h *hostSender) send(ctx context.Context, id string, hb workflows.Heartbeat) (string, error) {
	data, err := json.Marshal(fleet.LocalHeartbeat{WorkerID: id, Heartbeat: hb})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://host"+fleet.LocalHeartbeatPath, bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ans fleet.LocalAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		return "", fmt.Errorf("heartbeat socket answered %s: %s", resp.Status, raw)
	}
	return ans.Path, fleet.LocalStatusError(resp.StatusCode, ans.Error)
}

// beat sends one heartbeat of a live worker by the given path.
func beat(ctx context.Context, e *env, hs *hostSender, path, id string, hb workflows.Heartbeat) error {
	if path == beatByHost {
		_, err := hs.send(ctx, id, hb)
		return err
	}
	return e.fleet.Heartbeat(ctx, id, hb)
}

// Spaced is what heartbeats at a steady pace cost in history, timers
// included: the default limits and a heartbeat every 30 s, scaled to the
// bench's clock (every limit and the spacing by the same factor, so the
// counts are those of the defaults).
type Spaced struct {
	Path               string  `json:"path"`
	EverySeconds       float64 `json:"every_seconds"`
	ZombieAfterSeconds float64 `json:"zombie_after_seconds"`
	Heartbeats         int     `json:"heartbeats"`
	// Signals is the heartbeat signals the lifecycle got: every one by
	// signal, what the host relayed by the host.
	Signals                   int     `json:"signals"`
	Events                    int     `json:"events"`
	EventsPerHeartbeat        float64 `json:"events_per_heartbeat"`
	WorkflowTasksPerHeartbeat float64 `json:"workflow_tasks_per_heartbeat"`
}

// measureSpaced runs one lifecycle per path side by side, heartbeating
// every `every` under the default limits scaled by every/30 s, and counts
// what the heartbeats added to their histories.
func measureSpaced(ctx context.Context, e *env, every time.Duration, beats int) ([]Spaced, error) {
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * every.Seconds() / 30) }
	limits := workflows.Limits{HeartbeatWarning: scale(workflows.DefaultHeartbeatWarning),
		HeartbeatCritical: scale(workflows.DefaultHeartbeatCritical), ZombieAfter: scale(workflows.DefaultZombieAfter)}
	hs := newHostSender(socketOf(e))
	paths := []string{beatBySignal, beatByHost}
	out := make([]Spaced, len(paths))
	err := forEach(ctx, len(paths), len(paths), func(ctx context.Context, i int) error {
		s := Spaced{Path: paths[i], EverySeconds: every.Seconds(), ZombieAfterSeconds: limits.ZombieAfter.Seconds(), Heartbeats: beats}
		spec, err := e.fleet.Spawn(ctx, spawnRequest(limits))
		if err != nil {
			return err
		}
		wid := workflows.WorkflowID(spec.WorkerID)
		before, err := runChain(ctx, e.client, wid)
		start := time.Now()
		for k := 0; k < beats && err == nil; k++ {
			if !sleepUntil(ctx, start.Add(time.Duration(k)*every)) {
				err = ctx.Err()
				break
			}
			err = beat(ctx, e, hs, paths[i], spec.WorkerID, workflows.Heartbeat{TokensUsed: int64(k + 1), Status: workflows.HeartbeatBusy})
		}
		// What the last heartbeats cost lands within a moment.
		sleepUntil(ctx, time.Now().Add(every))
		var after []runCount
		if err == nil {
			after, err = runChain(ctx, e.client, wid)
		}
		if err == nil {
			s.Signals, err = heartbeatSignals(ctx, e, wid)
		}
		if _, serr := shutdownOne(ctx, e.fleet, spec.WorkerID, false, nil); err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("%s path: %w", paths[i], err)
		}
		e0, t0 := total(before)
		e1, t1 := total(after)
		s.Events = e1 - e0
		s.EventsPerHeartbeat = math.Round(float64(e1-e0)/float64(beats)*100) / 100
		s.WorkflowTasksPerHeartbeat = math.Round(float64(t1-t0)/float64(beats)*100) / 100
		out[i] = s
		return nil
	})
	return out, err
}

// heartbeatSignals counts the heartbeat signals of a lifecycle's latest run.
func heartbeatSignals(ctx context.Context, e *env, wid string) (int, error) {
	it := e.client.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return n, err
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalHeartbeat {
			n++
		}
	}
	return n, nil
}

// tasksPerWorkerMinute is the workflow tasks the sampled lifecycles
// completed in [from, to), per lifecycle and minute: what a live worker
// costs the server whatever its heartbeat interval.
func tasksPerWorkerMinute(ctx context.Context, e *env, ids []string, from, to time.Time) (float64, error) {
	if len(ids) == 0 || !to.After(from) {
		return 0, nil
	}
	tasks := 0
	for _, id := range ids {
		it := e.client.GetWorkflowHistory(ctx, workflows.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return 0, err
			}
			at := ev.GetEventTime().AsTime()
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED && !at.Before(from) && at.Before(to) {
				tasks++
			}
		}
	}
	return math.Round(float64(tasks)/float64(len(ids))/to.Sub(from).Minutes()*100) / 100, nil
}
