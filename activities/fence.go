package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/atomicfile"
	"github.com/commit-relay/worker-lifecycle/internal/monitor"
)

// Self-fencing (Nomad's disconnect.stop_on_client_after): a host cut off
// from the server stops its own workers before the server can count the
// host lost. Without it a partitioned host's agents run on and spend while
// their lifecycles are refunded, and a lifecycle whose rules restart a lost
// end would run its task twice. What the fence stopped is recorded next to
// the process's record, so that the watch reports the end as fenced (also
// after a restart of this program), and reported once the server answers.
// The time of the server's last answer is kept in the state folder too, so
// that a program restarted during a cut goes on from it.

const (
	// DefaultFenceAfter is the default --fence-after: 30 s less than the
	// default host-loss bound (2 min).
	DefaultFenceAfter = 90 * time.Second
	// MinFenceAfter keeps a blip of the network (a server restart) from
	// stopping workers, whatever a lifecycle's host-loss bound.
	MinFenceAfter = 5 * time.Second
	// fenceProbeTimeout bounds one health check: a server that takes
	// longer is as good as gone.
	fenceProbeTimeout = 3 * time.Second
	// fenceMaxEvery is the longest wait between two probes.
	fenceMaxEvery = 5 * time.Second
	// fenceDetectLag is how late the fence may notice that a bound has
	// passed: one probe's wait and its timeout.
	fenceDetectLag = fenceMaxEvery + fenceProbeTimeout
	// minFailedProbes is how many probes in a row must fail before
	// anything is fenced: one is a slow answer or a reconnect.
	minFailedProbes = 2
	// fenceSuffix ends the name of a fence record in the state folder.
	fenceSuffix = ".fenced.json"
	// contactFile keeps the time of the server's last answer.
	contactFile = "server-contact.json"
)

// FenceLimits are a lifecycle's clocks that its host's fence follows.
type FenceLimits struct {
	HostLossAfter  time.Duration `json:"host_loss_after,omitempty"`
	WatchHeartbeat time.Duration `json:"watch_heartbeat,omitempty"`
	Grace          time.Duration `json:"grace,omitempty"`
}

// FenceBound is how long a host cut off from the server lets one worker
// run, and the grace its stop then gives: after (the host's
// --fence-after; zero turns fencing off), shortened for a lifecycle whose
// host-loss bound is shorter, so that the stop (its grace, the kill, and
// the fence's own lag in noticing) is over before the server can count the
// host lost: at the earliest the host-loss bound plus a fifth of the
// watch's heartbeat timeout after the last answer (the SDK sends heartbeats
// at 4/5 of it). A grace that leaves no room is shortened; the bound never
// goes below MinFenceAfter, which a lifecycle with a host-loss bound of
// less than about 20 s cannot be kept to.
func FenceBound(after time.Duration, l FenceLimits) (bound, grace time.Duration) {
	if after <= 0 {
		return 0, l.Grace
	}
	bound, grace = after, l.Grace
	if l.HostLossAfter > 0 {
		deadline := l.HostLossAfter + l.WatchHeartbeat/5
		if room := deadline - killWait - fenceDetectLag - MinFenceAfter; grace > room {
			grace = max(room, 0)
		}
		bound = min(bound, deadline-grace-killWait-fenceDetectLag)
	}
	return max(bound, MinFenceAfter), grace
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
	// Resume starts the cut from the last answer recorded in the state
	// folder, instead of now: a program restarted during a cut goes on
	// from there.
	Resume bool
}

// FenceRecord is what the state folder keeps of a worker the fence
// stopped, as <worker_id>.<tag>.fenced.json.
type FenceRecord struct {
	WorkerID string `json:"worker_id"`
	PID      int    `json:"pid"`
	// CutOffSince is the last time the server answered this host.
	CutOffSince time.Time `json:"cut_off_since"`
	// FencedAt is when the stop began: an end before it is the
	// process's own.
	FencedAt time.Time `json:"fenced_at"`
	// Bound is the worker's FenceBound, HostLossAfter its lifecycle's
	// host-loss bound (zero when it did not say).
	Bound         time.Duration `json:"bound"`
	HostLossAfter time.Duration `json:"host_loss_after,omitempty"`
	// Stopped says how the stop ended: "stopping" while it runs,
	// "graceful" (it ended within its grace), "killed", "interrupted" (the
	// worker program stopped during the stop; it was gone when looked at
	// again), or the error of a stop that failed (the fence tries again on
	// its next probe).
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

// fencedEnd says whether the end of p was the fence's doing: it has a
// fence record, and its monitor did not see it end before the fence began.
func (a *HostActivities) fencedEnd(workerID string, p ProcessInfo) bool {
	rec, ok := a.fenceRecord(workerID, p)
	if !ok {
		return false
	}
	if p.Monitor != nil && p.Monitor.ExitFile != "" {
		if e, err := monitor.ReadExit(p.Monitor.ExitFile); err == nil && e.PID == p.PID && e.EndedAt.Before(rec.FencedAt) {
			return false
		}
	}
	return true
}

func (a *HostActivities) writeFenceRecord(rec FenceRecord, token string) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return atomicfile.Write(a.fencePath(rec.WorkerID, token), data)
}

// recordFenceLimits keeps the clocks a watch was given in the process's
// record, for the fence, also after a restart of this program.
func (a *HostActivities) recordFenceLimits(workerID string, p ProcessInfo, l FenceLimits) {
	if a.StateDir == "" || l == (FenceLimits{}) {
		return
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	data, err := os.ReadFile(a.statePath(workerID))
	var recorded ProcessInfo
	if err != nil || json.Unmarshal(data, &recorded) != nil || recorded.Token != p.Token || (recorded.Fence != nil && *recorded.Fence == l) {
		return
	}
	recorded.Fence = &l
	if data, err := json.Marshal(recorded); err == nil {
		_ = atomicfile.Write(a.statePath(workerID), data)
	}
}

// lastContact reads the time of the server's last answer from the state
// folder.
func (a *HostActivities) lastContact() (time.Time, bool) {
	var c struct {
		At time.Time `json:"at"`
	}
	data, err := os.ReadFile(filepath.Join(a.StateDir, contactFile))
	if err != nil || json.Unmarshal(data, &c) != nil || c.At.IsZero() {
		return time.Time{}, false
	}
	return c.At, true
}

func (a *HostActivities) recordContact(at time.Time) error {
	data, _ := json.Marshal(map[string]time.Time{"at": at.UTC()})
	if err := os.MkdirAll(a.StateDir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(a.StateDir, contactFile), data)
}

// HasWorkers says whether the host's state folder records any process: a
// program that cannot reach the server at its start then has something to
// fence. (Not a method of HostActivities, whose methods are activities.)
func (o Fence) HasWorkers() bool {
	return o.Host != nil && len(o.Host.workerRecords()) > 0
}

const (
	stopStopping    = "stopping"
	stopGraceful    = "graceful"
	stopKilled      = "killed"
	stopInterrupted = "interrupted"
)

// stopOver says whether a fence record's stop is over: nothing more to do
// for that start, whatever cut comes next.
func stopOver(stopped string) bool {
	return stopped == stopGraceful || stopped == stopKilled || stopped == stopInterrupted
}

// contactWriteEvery spaces the writes of the last answer: an older time
// on record can only make a restarted program fence sooner.
const contactWriteEvery = 10 * time.Second

// fenceRun is the state of one Run.
type fenceRun struct {
	Fence
	a            *HostActivities
	log          *slog.Logger
	lastContact  time.Time
	contactWrote time.Time
	everyVal     time.Duration
	everyAt      time.Time
	failures     int
	mu           sync.Mutex
	// busy holds the tokens whose stop runs.
	busy  map[string]bool
	stops sync.WaitGroup
}

// Run asks the server whether it answers until ctx ends. Once it has not
// answered for a worker's FenceBound, that worker is stopped (TERM, its
// grace, then KILL) and recorded; once it answers again, what was stopped
// is reported. Stops in progress are seen through before Run returns.
// Fencing off (After zero), it only reports what an earlier run fenced,
// at the first answer.
func (o Fence) Run(ctx context.Context) {
	a := o.Host
	if o.Probe == nil || a == nil || a.StateDir == "" {
		return
	}
	r := &fenceRun{Fence: o, a: a, log: o.Log, lastContact: time.Now(), busy: map[string]bool{}}
	if r.log == nil {
		r.log = slog.Default()
	}
	if at, ok := a.lastContact(); ok && o.Resume && at.Before(r.lastContact) {
		r.lastContact = at
	}
	a.settleInterrupted(r.log)
	defer r.stops.Wait()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.every()):
			}
		}
		pctx, cancel := context.WithTimeout(ctx, fenceProbeTimeout)
		err := o.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			r.contact()
			if o.After <= 0 {
				// A time on record would be stale if fencing were turned
				// on later: it would fence at once after a restart.
				_ = os.Remove(filepath.Join(a.StateDir, contactFile))
				return
			}
			continue
		}
		r.failures++
		if r.failures == 1 {
			r.log.Warn("The server does not answer; this host's workers are stopped if it stays so", "error", err, "fence_after", o.After)
		}
		if o.After > 0 && r.failures >= minFailedProbes {
			r.fenceDue(time.Now())
		}
	}
}

// contact notes an answer of the server and reports what was fenced.
func (r *fenceRun) contact() {
	now := time.Now()
	if r.failures > 0 {
		r.log.Warn("The server answers again", "cut_off_for", now.Sub(r.lastContact).Round(time.Second))
	}
	r.failures = 0
	r.mu.Lock()
	r.lastContact = now
	r.mu.Unlock()
	if r.After > 0 && now.Sub(r.contactWrote) >= contactWriteEvery {
		if err := r.a.recordContact(now); err != nil {
			r.log.Warn("Recording the server's answer failed; a restart during a cut would fence from an older one", "error", err)
		}
		r.contactWrote = now
	}
	r.a.reportFenced(r.log, now)
}

// settleInterrupted marks the stops an earlier run of this program did not
// live to finish: they are reported like the others, and their starts are
// taken as fenced.
func (a *HostActivities) settleInterrupted(log *slog.Logger) {
	files, _ := filepath.Glob(filepath.Join(a.StateDir, "*"+fenceSuffix))
	for _, f := range files {
		rec, err := readFenceRecord(f)
		if err != nil || rec.Stopped != stopStopping {
			continue
		}
		rec.Stopped = stopInterrupted
		data, _ := json.Marshal(rec)
		if err := atomicfile.Write(f, data); err != nil {
			log.Error("Recording an interrupted fence failed", "file", f, "error", err)
		}
	}
}

// every is how often the fence probes: o.Every, or a fifth of the
// shortest bound of this host's workers, within 1 to 5 s. The records are
// read again at most every everyFor: not on every probe of a host with a
// thousand workers.
func (r *fenceRun) every() time.Duration {
	if r.Every > 0 {
		return r.Every
	}
	if r.everyVal > 0 && time.Since(r.everyAt) < everyFor {
		return r.everyVal
	}
	shortest := fenceMaxEvery * 5
	for _, w := range r.a.workerRecords() {
		bound, _ := FenceBound(r.After, r.limitsOf(w))
		shortest = min(shortest, bound)
	}
	r.everyVal, r.everyAt = min(max(shortest/5, time.Second), fenceMaxEvery), time.Now()
	return r.everyVal
}

// everyFor is how long the probe interval is kept before the records are
// read again; a new worker's shorter bound waits at most this long.
const everyFor = 30 * time.Second

func (r *fenceRun) limitsOf(w workerRecord) FenceLimits {
	var l FenceLimits
	if w.info.Fence != nil {
		l = *w.info.Fence
	}
	if l.Grace == 0 {
		l.Grace = r.Grace
	}
	return l
}

// fenceDue starts the stop of each recorded worker whose bound the time
// since the last answer has passed, unless its stop runs or it was
// stopped in this cut. It does not wait for the stops: one long grace must
// not hold up the others.
func (r *fenceRun) fenceDue(now time.Time) {
	for _, w := range r.a.workerRecords() {
		if w.info.PID <= 0 || w.info.Token == "" {
			continue // a start in flight: the next probe sees it recorded
		}
		bound, grace := FenceBound(r.After, r.limitsOf(w))
		if now.Sub(r.lastContact) < bound {
			continue
		}
		if rec, ok := r.a.fenceRecord(w.workerID, w.info); ok && stopOver(rec.Stopped) {
			continue // fenced already, in this cut or an earlier one
		}
		r.mu.Lock()
		skip := r.busy[w.info.Token]
		r.busy[w.info.Token] = true
		lastContact := r.lastContact
		r.mu.Unlock()
		if skip {
			continue
		}
		r.stops.Add(1)
		go func() {
			defer r.stops.Done()
			r.a.fenceOne(r.log, w, bound, grace, lastContact)
			r.mu.Lock()
			delete(r.busy, w.info.Token)
			r.mu.Unlock()
		}()
	}
}

// fenceOne records the fence first, so that however the process ends from
// here its end is reported as fenced, then stops the tree (on a context of
// its own: a stop begun is seen through, also when the program stops). A
// tree with nothing left leaves no new record; one left by an earlier
// attempt is kept, settled.
func (a *HostActivities) fenceOne(log *slog.Logger, w workerRecord, bound, grace time.Duration, lastContact time.Time) {
	rec := FenceRecord{WorkerID: w.workerID, PID: w.info.PID, CutOffSince: lastContact.UTC(), FencedAt: time.Now().UTC(),
		Bound: bound, Stopped: stopStopping}
	if w.info.Fence != nil {
		rec.HostLossAfter = w.info.Fence.HostLossAfter
	}
	old, hadOld := a.fenceRecord(w.workerID, w.info)
	if hadOld {
		rec.CutOffSince, rec.FencedAt = old.CutOffSince, old.FencedAt // a retry of a failed or interrupted stop
	}
	if err := a.writeFenceRecord(rec, w.info.Token); err != nil {
		log.Error("Recording a fence failed; the worker is stopped all the same", "worker_id", w.workerID, "error", err)
	}
	res, err := a.stopTree(context.Background(), StopInput{WorkerID: w.workerID, Process: w.info, Grace: grace}, func() {})
	switch {
	case err == nil && res.AlreadyGone && !hadOld:
		// Nothing of it ran: its end, whenever it was, is its own.
		if rerr := os.Remove(a.fencePath(w.workerID, w.info.Token)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			log.Error("Removing a fence record failed", "worker_id", w.workerID, "error", rerr)
		}
		return
	case err == nil && res.AlreadyGone:
		rec.Stopped = stopInterrupted
	case err != nil:
		rec.Stopped = "stop failed: " + err.Error()
	case res.Killed:
		rec.Stopped = stopKilled
	default:
		rec.Stopped = stopGraceful
	}
	if werr := a.writeFenceRecord(rec, w.info.Token); werr != nil {
		log.Error("Recording a fence failed", "worker_id", w.workerID, "error", werr)
	}
	msg := "Stopped a worker: this host has not reached the server for longer than its fence bound"
	if err != nil {
		msg = "Stopping a worker failed; tried again at the next probe: this host has not reached the server for longer than its fence bound"
	}
	log.Warn(msg, "worker_id", w.workerID, "pid", w.info.PID, "cut_off_since", rec.CutOffSince, "bound", bound, "grace", grace, "stopped", rec.Stopped)
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
		if err != nil || rec.ReportedAt != nil || rec.Stopped == stopStopping {
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
