package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// Live is the heartbeat capacity at one fleet size.
type Live struct {
	Lifecycles int `json:"lifecycles"`
	// Path is how the heartbeats went: beatBySignal, or beatByHost to the
	// worker program's socket, as each agent on the host sends them.
	Path            string  `json:"path"`
	IntervalSeconds float64 `json:"heartbeat_interval_seconds"`
	HoldSeconds     float64 `json:"hold_seconds"`
	SpawnSeconds    float64 `json:"spawn_seconds"`
	// Running is how many of Lifecycles were running when the hold began;
	// fewer when the fleet could not all be spawned by the spawn deadline.
	Running     int `json:"running"`
	StartFailed int `json:"start_failed"`
	// ZombieAfterSeconds is the zombie limit of these lifecycles: three
	// missed heartbeats in the capacity rows, far stricter than the default
	// 300 s; in the cost rows three of the longer interval's, for both.
	ZombieAfterSeconds   float64 `json:"zombie_after_seconds"`
	SignalsSent          int     `json:"signals_sent"`
	SendErrors           int     `json:"send_errors"`
	SignalsPerSecond     float64 `json:"signals_per_second"`
	OfferedPerSecond     float64 `json:"offered_per_second"`
	RatioToSignalCeiling float64 `json:"ratio_to_signal_ceiling"`
	// FalseZombies counts lifecycles the system ended although every one
	// of them heartbeated throughout: not running when checked at the end
	// of the hold, or, when their status did not answer then, ended as
	// zombies by the time their shutdown was answered.
	FalseZombies int `json:"false_zombies"`
	// StatusUnanswered counts lifecycles whose status query did not answer
	// within checkWait at the end of the hold (the server or the worker
	// program too far behind); what they ended as is in FalseZombies.
	StatusUnanswered int `json:"status_unanswered"`
	// NotRunning says, for each false zombie, what was found: its status
	// and reason.
	NotRunning []string `json:"not_running,omitempty"`
	// Alerts counts lifecycles showing a late-heartbeat warning at the end.
	Alerts int `json:"alerts"`
	// Lag is from the heartbeat's send to the moment fleet.Status (what
	// `starter status` shows) has it, over a sample of the lifecycles.
	Lag Percentiles `json:"heartbeat_to_status"`
	// LagUnrecorded counts sampled heartbeats not recorded within half an
	// interval; they are left out of Lag, so it must be 0 for Lag to hold.
	LagUnrecorded    int     `json:"lag_unrecorded"`
	WorkerRSSPeakMB  float64 `json:"worker_rss_peak_mb"`
	WorkerCPUPercent float64 `json:"worker_cpu_percent_of_one_core"`
	ShutdownFailed   int     `json:"shutdown_failed"`
	// WorkflowTasksPerWorkerMinute is what a live worker costs the server:
	// the workflow tasks the sampled lifecycles completed in the hold, per
	// lifecycle and minute.
	WorkflowTasksPerWorkerMinute float64 `json:"workflow_tasks_per_worker_minute"`
}

// healthy: every lifecycle ran, heartbeated, answered and ended as asked,
// so that what was measured of the fleet is of all of it.
func (l Live) healthy() bool {
	return l.Running == l.Lifecycles && l.FalseZombies == 0 && l.StatusUnanswered == 0 && l.SendErrors == 0 && l.ShutdownFailed == 0
}

// measureLive spawns n lifecycles, each heartbeating every interval from
// the moment it runs under the zombie limit zombieAfter, holds the whole
// fleet for hold once every one runs, checks that every one is still
// running, and shuts them all down. Only the hold is measured: sends, lag,
// memory and CPU.
func measureLive(ctx context.Context, e *env, path string, n int, interval, zombieAfter, hold, spawnWithin time.Duration, lagSample, concurrency int, signalCeiling float64) (Live, error) {
	res := Live{Lifecycles: n, Path: path, IntervalSeconds: interval.Seconds(), HoldSeconds: hold.Seconds(), ZombieAfterSeconds: zombieAfter.Seconds()}
	hs := newHostSender(socketOf(e))
	limits := workflows.Limits{HeartbeatWarning: min(2*interval, zombieAfter*2/3), HeartbeatCritical: zombieAfter * 5 / 6, ZombieAfter: zombieAfter}
	f := e.fleet
	var (
		sent, failed, unrecorded atomic.Int64
		lag                      collector
		wg                       sync.WaitGroup
		// window is the hold, once it has begun: [start, end) in Unix ns.
		windowStart, windowEnd atomic.Int64
	)
	inWindow := func(t time.Time) bool {
		s := windowStart.Load()
		return s != 0 && t.UnixNano() >= s && t.UnixNano() < windowEnd.Load()
	}
	hbCtx, stopHeartbeats := context.WithCancel(ctx)
	defer stopHeartbeats()
	// heartbeat sends one lifecycle's heartbeats on a fixed schedule, its
	// own slot of the interval, so the offered load stays n per interval.
	// Each lifecycle's heartbeats stop on their own cancel: at the end of
	// the run, or once its shutdown was answered in the teardown.
	var stopMu sync.Mutex
	stopOne := map[string]context.CancelFunc{}
	stopHeartbeatsOf := func(id string) {
		stopMu.Lock()
		defer stopMu.Unlock()
		if cancel, ok := stopOne[id]; ok {
			cancel()
		}
	}
	heartbeat := func(i int, id string) {
		defer wg.Done()
		stopMu.Lock()
		// Shadows the fleet's: this lifecycle's heartbeats end with either.
		hbCtx, cancel := context.WithCancel(hbCtx)
		stopOne[id] = cancel
		stopMu.Unlock()
		defer cancel()
		// The first heartbeat goes at once, as an agent's Heartbeater sends
		// it; waiting for the slot would add up to an interval to the first
		// gap, which a zombie limit of three intervals does not allow for.
		offset := interval * time.Duration(i) / time.Duration(n)
		first := time.Now().Add(offset)
		var ok int64
		for k := -1; k < 0 || sleepUntil(hbCtx, first.Add(time.Duration(k)*interval)); k++ {
			t0 := time.Now()
			err := beat(hbCtx, e, hs, path, id, workflows.Heartbeat{TokensUsed: ok + 1, Status: workflows.HeartbeatBusy})
			if hbCtx.Err() != nil {
				return
			}
			if err != nil {
				if inWindow(t0) {
					failed.Add(1)
				}
				continue
			}
			ok++
			if !inWindow(t0) {
				continue
			}
			sent.Add(1)
			if i < lagSample {
				if d, found := visibleLag(hbCtx, e, id, ok, t0, interval/2); found {
					lag.add(d)
				} else if hbCtx.Err() == nil {
					unrecorded.Add(1)
				}
			}
		}
	}

	// A fleet the system cannot carry stops growing at the spawn deadline,
	// and is held as it is: the figures then say how far it got.
	ids := make([]string, n)
	var failedStarts []string
	var mu sync.Mutex
	start := time.Now()
	spawnDeadline := start.Add(spawnWithin)
	err := forEach(ctx, n, concurrency, func(ctx context.Context, i int) error {
		if time.Now().After(spawnDeadline) {
			return nil
		}
		req, err := f.Start(ctx, spawnRequest(limits))
		if err != nil {
			return err
		}
		if err := awaitRunning(ctx, f, req.WorkerID, 500*time.Millisecond, spawnDeadline.Add(time.Minute)); err != nil {
			mu.Lock()
			failedStarts = append(failedStarts, req.WorkerID)
			mu.Unlock()
			return nil
		}
		ids[i] = req.WorkerID
		wg.Add(1)
		go heartbeat(i, req.WorkerID)
		return nil
	})
	res.SpawnSeconds = math.Round(time.Since(start).Seconds()*10) / 10
	ids = compact(ids)
	res.Running, res.StartFailed = len(ids), len(failedStarts)
	// Those that did not start end by themselves (failed, cleaned up); the
	// final ledger check sees whether they were refunded.
	if err != nil {
		stopHeartbeats()
		wg.Wait()
		_, _ = shutdownAll(ctx, f, ids, concurrency, true)
		return res, err
	}

	pid := e.worker.Process.Pid
	before, err := readUsage(pid)
	if err != nil {
		return res, err
	}
	rss := sampleRSS(pid, time.Second)
	holdStart := time.Now()
	windowEnd.Store(holdStart.Add(hold).UnixNano())
	windowStart.Store(holdStart.UnixNano())
	sleepUntil(ctx, holdStart.Add(hold))
	elapsed := time.Since(holdStart)
	var sampled []string
	for i := 0; i < len(ids) && i < max(lagSample, 1); i++ {
		sampled = append(sampled, ids[i])
	}
	res.WorkerRSSPeakMB = roundMB(rss.peak())
	if after, err := readUsage(pid); err == nil {
		res.WorkerCPUPercent = math.Round((after.cpu-before.cpu).Seconds()/elapsed.Seconds()*1000) / 10
	}

	// Heartbeats go on while the fleet is checked, so that a slow check
	// cannot make a zombie of its own. A lifecycle that does not answer
	// within checkWait is counted apart; what it ended as is read once its
	// shutdown is answered.
	const checkWait = 15 * time.Second
	var notRunning, unanswered, alerts atomic.Int64
	ended := make([]bool, len(ids))
	checkFailed := make([]bool, len(ids))
	why := make([]string, len(ids))
	_ = forEach(ctx, len(ids), teardownConcurrency, func(ctx context.Context, i int) error {
		qctx, cancel := context.WithTimeout(ctx, checkWait)
		defer cancel()
		spec, err := f.Status(qctx, ids[i])
		switch {
		case err != nil:
			unanswered.Add(1)
			checkFailed[i] = true
		case spec.Status != workflows.StatusRunning:
			notRunning.Add(1)
			ended[i] = !spec.Status.Live()
			why[i] = fmt.Sprintf("%s: %s", ids[i], spec.Status)
			if n := len(spec.Transitions); n > 0 {
				why[i] += " (" + spec.Transitions[n-1].Reason + ")"
			}
		}
		if spec.Heartbeat.Alert != "" {
			alerts.Add(1)
		}
		return nil
	})
	// A false zombie has ended by itself; it must still have been cleaned
	// up and refunded. The others are shut down, each heartbeating until
	// its shutdown is answered, so that a slow teardown makes no zombie of
	// its own: one found at the end is the system's.
	// One whose check did not answer is shut down the same way; if it
	// turns out to have ended as a zombie meanwhile, its teardown takes
	// that (silentOK) and it is counted as a false zombie below.
	var live, unchecked []string
	var bad atomic.Int64
	for i, id := range ids {
		switch {
		case checkFailed[i]:
			unchecked = append(unchecked, id)
			continue
		case !ended[i]:
			live = append(live, id)
			continue
		}
		stopHeartbeatsOf(id)
		if spec, err := f.Wait(ctx, id); err != nil || checkEnded(spec, workflows.StatusCleanedUp) != nil {
			bad.Add(1)
		}
	}
	stopFailed, _, err := shutdownEach(ctx, f, live, teardownConcurrency, false, stopHeartbeatsOf)
	n, zombies, uerr := shutdownEach(ctx, f, unchecked, teardownConcurrency, true, stopHeartbeatsOf)
	stopFailed += n
	if err == nil {
		err = uerr
	}
	stopHeartbeats()
	wg.Wait()
	// Those whose status did not answer and had ended as zombies before
	// their shutdown was asked are the system's (heartbeats went on until
	// then); one whose shutdown failed and went silent after is counted in
	// ShutdownFailed.
	for _, spec := range zombies {
		notRunning.Add(1)
		why = append(why, fmt.Sprintf("%s: %s (%s), its status unanswered at the check", spec.WorkerID, spec.Status, spec.Cleanup.Reason))
	}
	res.StatusUnanswered = int(unanswered.Load())
	res.SignalsSent, res.SendErrors = int(sent.Load()), int(failed.Load())
	res.SignalsPerSecond = perSecond(res.SignalsSent, elapsed)
	res.OfferedPerSecond = math.Round(float64(len(ids))/interval.Seconds()*10) / 10
	res.RatioToSignalCeiling = ratio(res.SignalsPerSecond, signalCeiling)
	res.Lag = percentiles(lag.all())
	res.LagUnrecorded = int(unrecorded.Load())
	res.FalseZombies, res.Alerts = int(notRunning.Load()), int(alerts.Load())
	for _, w := range why {
		if w != "" {
			res.NotRunning = append(res.NotRunning, w)
		}
	}
	res.ShutdownFailed = stopFailed + int(bad.Load())
	if tasks, terr := tasksPerWorkerMinute(ctx, e, sampled, holdStart, holdStart.Add(elapsed)); terr == nil {
		res.WorkflowTasksPerWorkerMinute = tasks
	} else if err == nil {
		err = terr
	}
	if err == nil && res.ShutdownFailed > 0 {
		err = fmt.Errorf("%d lifecycles did not end completed or cleaned up with their budget refunded", res.ShutdownFailed)
	}
	return res, err
}

// teardownConcurrency checks and stops a live fleet: a stop is cheap next to
// a spawn, and a fleet the system could not carry must still be taken down
// in bounded time.
const teardownConcurrency = 50

// awaitRunning polls the lifecycle every `every` until it has left
// pending. Fleet.Spawn polls every 100 ms, which is right for one operator
// but, with a whole fleet spawning at once, puts more queries on the worker
// program than the spawns themselves.
func awaitRunning(ctx context.Context, f *fleet.Client, workerID string, every time.Duration, deadline time.Time) error {
	for time.Now().Before(deadline) {
		if !sleepUntil(ctx, time.Now().Add(every)) {
			return ctx.Err()
		}
		spec, err := f.Status(ctx, workerID)
		if err != nil || spec.Status == workflows.StatusPending {
			continue
		}
		if spec.Status != workflows.StatusRunning {
			return fmt.Errorf("%s did not start: %s", workerID, spec.Status)
		}
		return nil
	}
	return fmt.Errorf("%s still pending at %s", workerID, deadline.Format(time.TimeOnly))
}

// visibleLag waits until fleet.Status shows the heartbeat that carried
// tokens (each heartbeat of a live worker carries one more) and returns
// how long after its send that was, to the 20 ms it polls at.
func visibleLag(ctx context.Context, e *env, id string, tokens int64, sent time.Time, within time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		spec, err := e.fleet.Status(ctx, id)
		if err == nil && spec.TokenBudget.Used >= tokens {
			return time.Since(sent), true
		}
		if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			break
		}
	}
	return 0, false
}

// sleepUntil returns false when ctx ends first.
func sleepUntil(ctx context.Context, at time.Time) bool {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func compact(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return out
}
