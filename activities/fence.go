package activities

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/atomicfile"
)

// Self-fencing (Nomad's disconnect.stop_on_client_after): a host cut off
// from the server stops its own workers before the server can count the
// host lost. Without it a partitioned host's agents run on and spend while
// their lifecycles are refunded, and a lifecycle whose rules restart a lost
// end would run its task twice. What the fence stopped is recorded next to
// the process's record, so that the watch reports the end as fenced (also
// after a restart of this program), and reported once the server answers.

const (
	// DefaultFenceAfter is the default --fence-after:
	// FenceBound of the default host-loss bound (2 min) and grace.
	DefaultFenceAfter = 90 * time.Second
	// minFenceBound keeps a blip of the network (a server restart) from
	// stopping workers, whatever a lifecycle's host-loss bound.
	minFenceBound = 5 * time.Second
	// fenceSuffix ends the name of a fence record in the state folder.
	fenceSuffix = ".fenced.json"
)

// FenceBound is how long a host cut off from the server lets one worker
// run: after (the host's --fence-after; zero turns fencing off), shortened
// for a lifecycle whose host-loss bound is shorter, so that the stop (grace
// included) is over a quarter of that bound, and at least grace plus 5 s,
// before the server can count the host lost. The server needs the watch's
// heartbeat timeout on top of the host-loss bound, which is slack beyond
// this lead.
func FenceBound(after, hostLoss, grace time.Duration) time.Duration {
	if after <= 0 {
		return 0
	}
	bound := after
	if hostLoss > 0 {
		lead := max(hostLoss/4, grace+5*time.Second)
		bound = min(bound, hostLoss-lead)
	}
	return max(bound, minFenceBound)
}

// Fence is a host's self-fencing: Run it beside the host's activities.
type Fence struct {
	Host *HostActivities
	// After is the host's fence bound (--fence-after); zero: no fence.
	After time.Duration
	// Probe asks the server whether it answers (a health check).
	Probe func(context.Context) error
	// Every is how often it asks; zero: a fifth of the shortest bound of
	// the host's workers, within 1 to 5 s.
	Every time.Duration
	// Grace is a worker's grace when its lifecycle did not say (one of an
	// earlier release).
	Grace time.Duration
	Log   *slog.Logger
}

// fenceLimits are what a lifecycle told its watch of its clocks.
type fenceLimits struct {
	hostLoss, grace time.Duration
}

// FenceRecord is what the state folder keeps of a worker the fence
// stopped, as <worker_id>.<tag>.fenced.json.
type FenceRecord struct {
	WorkerID string `json:"worker_id"`
	PID      int    `json:"pid"`
	// CutOffSince is the last time the server answered this host.
	CutOffSince time.Time `json:"cut_off_since"`
	FencedAt    time.Time `json:"fenced_at"`
	// Bound is the worker's FenceBound, HostLossAfter its lifecycle's
	// host-loss bound (zero when it did not say).
	Bound         time.Duration `json:"bound"`
	HostLossAfter time.Duration `json:"host_loss_after,omitempty"`
	// Stopped says how the stop ended: "graceful" (it ended within its
	// grace), "killed", "already gone", or the error of a stop that
	// failed (the fence tries again on its next probe).
	Stopped string `json:"stopped"`
	// ReportedAt is when the server answered again and this was
	// reported (logged, and in the operators' events file).
	ReportedAt *time.Time `json:"reported_at,omitempty"`
}

func (a *HostActivities) fencePath(workerID, token string) string {
	return filepath.Join(a.StateDir, workerID+"."+tokenTag(token)+fenceSuffix)
}

func readFenceRecord(path string) (FenceRecord, error) {
	var rec FenceRecord
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	return rec, err
}

// fenceRecord returns the fence record of the start p of workerID, if
// the fence stopped it.
func (a *HostActivities) fenceRecord(workerID string, p ProcessInfo) (FenceRecord, bool) {
	if a.StateDir == "" || p.Token == "" {
		return FenceRecord{}, false
	}
	rec, err := readFenceRecord(a.fencePath(workerID, p.Token))
	return rec, err == nil && rec.PID == p.PID
}

func (a *HostActivities) writeFenceRecord(rec FenceRecord, token string) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return atomicfile.Write(a.fencePath(rec.WorkerID, token), data)
}

// Run asks the server whether it answers every o.Every until ctx ends.
// Once it has not answered for a worker's FenceBound, that worker is
// stopped (TERM, its grace, then KILL) and recorded; once it answers
// again, what was stopped is reported.
func (o Fence) Run(ctx context.Context) {
	a := o.Host
	if o.After <= 0 || o.Probe == nil || a == nil || a.StateDir == "" {
		return
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	lastContact := time.Now()
	failures := 0
	// Fences of an earlier run of this program are reported once the
	// server answers, like those of this run.
	for {
		every := o.every(a)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		err := o.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if err == nil {
			if failures > 0 {
				log.Warn("The server answers again", "cut_off_for", now.Sub(lastContact).Round(time.Second))
			}
			failures, lastContact = 0, now
			a.reportFenced(log, now)
			continue
		}
		failures++
		if failures == 1 {
			log.Warn("The server does not answer; this host's workers are stopped if it stays so", "error", err, "fence_after", o.After)
		}
		// One failed probe is not a partition: a slow answer, a
		// reconnect.
		if failures >= minFailedProbes {
			a.fenceDue(ctx, o, log, lastContact, now)
		}
	}
}

// minFailedProbes is how many probes in a row must fail before anything
// is fenced.
const minFailedProbes = 2

// every is how often the fence probes: o.Every, or a fifth of the
// shortest bound of this host's live workers, within 1 to 5 s, so that
// a short bound is kept to within a fifth.
func (o Fence) every(a *HostActivities) time.Duration {
	if o.Every > 0 {
		return o.Every
	}
	shortest := FenceBound(o.After, 0, 0)
	a.fenceLimits.Range(func(_, v any) bool {
		lim := v.(fenceLimits)
		shortest = min(shortest, FenceBound(o.After, lim.hostLoss, cmp.Or(lim.grace, o.Grace)))
		return true
	})
	return min(max(shortest/5, time.Second), 5*time.Second)
}

// fenceDue stops, all at once, the live workers whose bound the time since
// lastContact has passed.
func (a *HostActivities) fenceDue(ctx context.Context, o Fence, log *slog.Logger, lastContact, now time.Time) {
	var wg sync.WaitGroup
	for _, w := range a.liveWorkers() {
		lim := fenceLimits{grace: o.Grace}
		if v, ok := a.fenceLimits.Load(w.workerID); ok {
			lim = v.(fenceLimits)
			if lim.grace == 0 {
				lim.grace = o.Grace
			}
		}
		bound := FenceBound(o.After, lim.hostLoss, lim.grace)
		if now.Sub(lastContact) < bound {
			continue
		}
		if rec, ok := a.fenceRecord(w.workerID, w.info); ok && rec.FencedAt.After(lastContact) {
			if _, over := stopOutcomes[rec.Stopped]; over {
				continue // stopped in this cut already; a failed stop is tried again
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.fenceOne(ctx, log, w, lim, bound, lastContact)
		}()
	}
	wg.Wait()
}

// stopOutcomes are the FenceRecord.Stopped of a stop that is over.
var stopOutcomes = map[string]struct{}{"graceful": {}, "killed": {}, "already gone": {}}

// fenceOne records the fence first, so that however the process ends from
// here its end is reported as fenced, then stops it.
func (a *HostActivities) fenceOne(ctx context.Context, log *slog.Logger, w workerRecord, lim fenceLimits, bound time.Duration, lastContact time.Time) {
	rec := FenceRecord{WorkerID: w.workerID, PID: w.info.PID, CutOffSince: lastContact.UTC(), FencedAt: time.Now().UTC(),
		Bound: bound, HostLossAfter: lim.hostLoss, Stopped: "stopping"}
	if err := a.writeFenceRecord(rec, w.info.Token); err != nil {
		log.Error("Recording a fence failed; the worker is stopped all the same", "worker_id", w.workerID, "error", err)
	}
	res, err := a.stopTree(ctx, StopInput{WorkerID: w.workerID, Process: w.info, Grace: lim.grace}, func() {})
	switch {
	case err != nil:
		rec.Stopped = "stop failed: " + err.Error()
	case res.AlreadyGone:
		rec.Stopped = "already gone"
	case res.Killed:
		rec.Stopped = "killed"
	default:
		rec.Stopped = "graceful"
	}
	if werr := a.writeFenceRecord(rec, w.info.Token); werr != nil {
		log.Error("Recording a fence failed", "worker_id", w.workerID, "error", werr)
	}
	log.Warn("Stopped a worker: this host has not reached the server for longer than its fence bound",
		"worker_id", w.workerID, "pid", w.info.PID, "cut_off_since", rec.CutOffSince, "bound", bound, "stopped", rec.Stopped)
}

// liveWorkers are the processes of this host's state folder that still
// run.
func (a *HostActivities) liveWorkers() []workerRecord {
	var out []workerRecord
	for _, r := range a.workerRecords() {
		if r.info.PID <= 0 || r.info.Token == "" {
			continue // a start in flight: the next probe sees it
		}
		if running, err := sameProcessRunning(r.info.PID, r.info.StartTicks); err == nil && running {
			out = append(out, r)
		}
	}
	return out
}

// reportFenced reports, once the server answers, each fence not reported
// yet: a warning in the log and an entry in the operators' events file.
// A lifecycle still waiting for its host hears of the end from its watch
// (ExitStatus.Fenced).
func (a *HostActivities) reportFenced(log *slog.Logger, now time.Time) {
	files, _ := filepath.Glob(filepath.Join(a.StateDir, "*"+fenceSuffix))
	sort.Strings(files)
	for _, f := range files {
		rec, err := readFenceRecord(f)
		if err != nil || rec.ReportedAt != nil {
			continue
		}
		// Reported before it is marked so: a crash in between reports it
		// twice rather than never.
		log.Warn("Reported a worker this host stopped while cut off from the server",
			"worker_id", rec.WorkerID, "pid", rec.PID, "cut_off_since", rec.CutOffSince, "fenced_at", rec.FencedAt, "stopped", rec.Stopped)
		a.Event.record("worker_fenced", map[string]any{
			"worker_id": rec.WorkerID, "host": a.Host, "pid": rec.PID,
			"cut_off_since": rec.CutOffSince, "fenced_at": rec.FencedAt, "bound": rec.Bound.String(), "stopped": rec.Stopped,
			"reason": fmt.Sprintf("host %s could not reach the server for %s", a.Host, rec.FencedAt.Sub(rec.CutOffSince).Round(time.Second)),
		})
		at := now.UTC()
		rec.ReportedAt = &at
		data, err := json.Marshal(rec)
		if err == nil {
			err = atomicfile.Write(f, data)
		}
		if err != nil {
			log.Error("Recording the report of a fence failed; it is reported again", "file", f, "error", err)
		}
	}
}
