package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/devserver"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// Results is everything one run measured, as written to the JSON file.
type Results struct {
	Machine    Machine        `json:"machine"`
	Config     config         `json:"config"`
	Ceilings   []Ceiling      `json:"ceilings"`
	Lifecycles []Lifecycles   `json:"lifecycles"`
	Spawn      []SpawnLatency `json:"spawn_latency"`
	Live       []Live         `json:"live"`
	// Cost is the same fleet held at the interval and at three times it,
	// under one zombie limit: what a live worker costs the server at each.
	Cost    []Live    `json:"cost"`
	Spaced  []Spaced  `json:"spaced"`
	Zombie  ZombieLag `json:"zombie_lag"`
	History History   `json:"history"`
	Ledger  []Ledger  `json:"ledger"`
	// LedgerSignals are the paths lifecycles reserve by: the ask update,
	// then the signal it falls back to; Admission how soon a refund admits
	// the queue's head.
	LedgerSignals []LedgerSignals `json:"ledger_signals"`
	Admission     AdmissionLag    `json:"admission"`
	// BudgetExact: the ledger holds nothing once every lifecycle ended.
	BudgetExact bool `json:"budget_exact"`
	// LeftoverProcesses of this run found after it and killed; must be 0.
	LeftoverProcesses int      `json:"leftover_processes"`
	Targets           []Target `json:"targets"`
	Errors            []string `json:"errors,omitempty"`
}

// Machine is where and how the figures were taken.
type Machine struct {
	Date      string `json:"date"`
	CPUs      int    `json:"cpus"`
	MemTotal  string `json:"mem_total"`
	GoVersion string `json:"go_version"`
	Server    string `json:"server"`
	Command   string `json:"command"`
	Seconds   int    `json:"seconds"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	Name  string `json:"name"`
	Want  string `json:"want"`
	Got   string `json:"got"`
	Met   bool   `json:"met"`
	Bound string `json:"bound,omitempty"`
}

// run measures everything in order, each phase leaving no live lifecycle
// behind. A failed phase is recorded and the others still run.
func run(ctx context.Context, cfg config, log io.Writer) (*Results, error) {
	began := time.Now()
	res := &Results{Config: cfg, Machine: machine(began)}
	dir, err := os.MkdirTemp("", "lifecycle-bench-")
	if err != nil {
		return nil, err
	}
	step := func(format string, args ...any) {
		fmt.Fprintf(log, "%s  %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	fail := func(phase string, err error) {
		if err != nil {
			step("%s failed: %v", phase, err)
			res.Errors = append(res.Errors, phase+": "+err.Error())
		}
	}
	step("starting the server and the worker program in %s", dir)
	e, err := startEnv(ctx, dir, cfg.SQLiteSync)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	res.Machine.Server = e.address
	if e.server != nil {
		res.Machine.Server = "dev server (pinned Temporal CLI, SQLite file) at " + e.address
	}
	root, _ := devserver.ModuleRoot()
	f := e.fleet

	// Each level of concurrency gets its own ceiling, measured right
	// before the lifecycles it is compared with.
	var signalCeiling float64
	for _, c := range cfg.Concurrency {
		step("ceiling: no-op workflows and signals, %d in flight, %s each", c, cfg.CeilingFor)
		ceiling, err := measureCeiling(ctx, e.client, c, cfg.CeilingFor)
		res.Ceilings = append(res.Ceilings, ceiling)
		fail(fmt.Sprintf("ceiling at %d", c), err)
		signalCeiling = max(signalCeiling, ceiling.SignalsPerSecond)

		step("full lifecycles: %d, %d in flight", cfg.Lifecycles, c)
		l, err := measureLifecycles(ctx, f, cfg.Lifecycles, c)
		l.RatioToNoop = ratio(l.PerSecond, ceiling.NoopPerSecond)
		res.Lifecycles = append(res.Lifecycles, l)
		fail(fmt.Sprintf("lifecycles at %d", c), err)
	}
	// The fleet of the capacity runs is set up and taken down at a rate the
	// ledger sustains, 20 spawns in flight: each waits for its lifecycle to
	// run (awaitRunning), so with 10 the bench's own spawner, not the
	// system, bounded a 2,000 fleet's spawning at about 5 a second. Only
	// the hold is measured.
	fleetConcurrency := min(20, 2*slices.Max(cfg.Concurrency))

	for _, c := range cfg.SpawnLevels {
		rounds := (cfg.SpawnSamples + c - 1) / c
		step("spawn latency: %d concurrent spawns, %d rounds", c, rounds)
		lat, err := measureSpawnLatency(ctx, e.client, f, c, rounds)
		res.Spawn = append(res.Spawn, lat)
		fail(fmt.Sprintf("spawn latency at %d", c), err)
	}

	step("zombie lag: %d silent workers, zombie limit %s", cfg.Zombies, cfg.ZombieAfter)
	res.Zombie, err = measureZombieLag(ctx, f, cfg.Zombies, cfg.ZombieAfter)
	fail("zombie lag", err)

	step("history: a lifecycle, %d heartbeats one by one, %d in a burst", cfg.Amortised, cfg.Burst)
	res.History, err = measureHistory(ctx, f, cfg.Amortised, cfg.Burst, cfg.BurstSenders, cfg.RunSignals)
	fail("history", err)

	oldDir := filepath.Join(dir, "old-ledger")
	if err := os.MkdirAll(oldDir, 0o755); err != nil {
		fail("ledger", err)
	}
	for _, m := range cfg.LedgerMasters {
		step("budget ledger: %d reservations from %d masters, ours then the old jq procedure", cfg.LedgerReserves, m)
		l, err := measureLedger(ctx, f, m, cfg.LedgerReserves, signalCeiling)
		fail(fmt.Sprintf("ledger at %d", m), err)
		fail(fmt.Sprintf("old ledger at %d", m), measureOldLedger(ctx, root, oldDir, m, cfg.LedgerReserves, &l))
		res.Ledger = append(res.Ledger, l)
	}
	for _, path := range []string{pathAsk, pathSignal} {
		for _, m := range cfg.LedgerSignalMasters {
			step("budget ledger by %s: %d reservations from %d masters, answered in the call or to each one's own workflow", path, cfg.LedgerReserves, m)
			s, err := measureLedgerSignals(ctx, e.client, f.Budget(), path, m, cfg.LedgerReserves, signalCeiling)
			res.LedgerSignals = append(res.LedgerSignals, s)
			fail(fmt.Sprintf("ledger by %s at %d", path, m), err)
		}
	}
	step("queue admission lag: %d queued requests, one refund at a time", cfg.AdmissionQueued)
	res.Admission, err = measureAdmissionLag(ctx, e.client, f.Budget(), cfg.AdmissionQueued)
	fail("admission lag", err)

	step("steady heartbeats: %d every %s by signal and through the host, default limits scaled by %s/30s", cfg.SpacedBeats, cfg.SpacedEvery, cfg.SpacedEvery)
	res.Spaced, err = measureSpaced(ctx, e, cfg.SpacedEvery, cfg.SpacedBeats)
	fail("steady heartbeats", err)

	for _, n := range cfg.Live {
		step("heartbeat capacity: %d live lifecycles, one heartbeat each per %s by %s, held %s", n, cfg.Interval, cfg.LivePath, cfg.Hold)
		l, err := measureLive(ctx, e, cfg.LivePath, n, cfg.Interval, 3*cfg.Interval, cfg.Hold, cfg.SpawnWithin, cfg.LagSample, fleetConcurrency, signalCeiling)
		res.Live = append(res.Live, l)
		fail(fmt.Sprintf("live %d", n), err)
	}
	if cfg.CostLive > 0 {
		// The same fleet at the interval and at three times it, under one
		// zombie limit (three of the longer interval): with the limits
		// fixed, a live worker should cost the server the same whatever
		// its heartbeat interval. Each is held for two zombie limits at
		// least, so the keepalives and backstop timers are in the count.
		zombieAfter := 3 * 3 * cfg.Interval
		hold := max(cfg.Hold, 2*zombieAfter)
		for _, interval := range []time.Duration{cfg.Interval, 3 * cfg.Interval} {
			step("server cost: %d live lifecycles, one heartbeat each per %s by %s, zombie limit %s, held %s", cfg.CostLive, interval, cfg.LivePath, zombieAfter, hold)
			l, err := measureLive(ctx, e, cfg.LivePath, cfg.CostLive, interval, zombieAfter, hold, cfg.SpawnWithin, cfg.LagSample, fleetConcurrency, signalCeiling)
			res.Cost = append(res.Cost, l)
			fail(fmt.Sprintf("cost %d at %s", cfg.CostLive, interval), err)
		}
	}

	// A fresh context: an interrupted run must still check and clean up.
	cleanCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if view, err := f.Budget().Show(cleanCtx); err != nil {
		fail("final ledger", err)
	} else {
		res.BudgetExact = view.Used == 0
		if !res.BudgetExact {
			fail("final ledger", fmt.Errorf("%d tokens in %d allocations still held after every lifecycle ended", view.Used, len(view.Allocations)))
		}
	}
	e.close()
	res.LeftoverProcesses = killLeftovers()
	if res.LeftoverProcesses > 0 {
		fail("cleanup", fmt.Errorf("%d worker processes of this run outlived it (killed now)", res.LeftoverProcesses))
	}
	if cfg.Keep || len(res.Errors) > 0 {
		step("run folder kept: %s", dir)
	} else {
		_ = os.RemoveAll(dir)
	}
	res.Machine.Seconds = int(time.Since(began).Seconds())
	res.Targets = res.targets()
	if len(res.Errors) > 0 {
		return res, errors.New(strings.Join(res.Errors, "; "))
	}
	return res, nil
}

func machine(now time.Time) Machine {
	m := Machine{Date: now.UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Command: strings.Join(os.Args, " ")}
	// Under `go run` the program is a temporary binary; name the command
	// that reproduces the run instead.
	if strings.Contains(os.Args[0], "go-build") && !strings.HasSuffix(os.Args[0], ".test") {
		m.Command = strings.Join(append([]string{"go run ./cmd/bench"}, os.Args[1:]...), " ")
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return m
}

// killLeftovers kills every process that a lifecycle of this run started
// (found by the WORKER_ID in its environment) and returns how many there
// were. The worker program leaves its processes running on purpose, so a
// failed phase could otherwise leave `sleep`s behind.
func killLeftovers() int {
	pids, _ := procfs.PIDs()
	marker := "WORKER_ID=worker-bench-" + runTag + "x"
	n := 0
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		env, err := procfs.Environ(pid)
		if err != nil || !slices.ContainsFunc(env, func(v string) bool { return strings.HasPrefix(v, marker) }) || !procfs.Alive(pid) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		n++
	}
	return n
}

// targets compares the run with the targets.
func (r *Results) targets() []Target {
	var ts []Target
	add := func(name, want, got string, met bool, bound string) {
		t := Target{Name: name, Want: want, Got: got, Met: met}
		if !met {
			t.Bound = bound
		}
		ts = append(ts, t)
	}
	for _, l := range r.Lifecycles {
		// Issue 16's target (issue 11's was 15 %).
		add(fmt.Sprintf("full lifecycle throughput, %d in flight", l.Concurrency), ">= 25% of the no-op ceiling", pct(l.RatioToNoop),
			l.RatioToNoop >= 0.25 && l.Failed == 0,
			"a lifecycle is 4 or 5 workflow tasks and 3 activities, with the ask to the one ledger workflow; see docs/BENCHMARKS.md")
	}
	add("history per heartbeat", "<= 4 events", fmt.Sprintf("%.2f events", r.History.EventsPerHeartbeat),
		r.History.EventsPerHeartbeat > 0 && r.History.EventsPerHeartbeat <= 4, "a signal is 4 events when it wakes the workflow alone")
	add("history of a lifecycle without heartbeat", "<= 40 events, <= 5 workflow tasks",
		fmt.Sprintf("%d events, %d workflow tasks", r.History.LifecycleEvents, r.History.LifecycleWorkflowTasks),
		r.History.LifecycleEvents > 0 && r.History.LifecycleEvents <= 40 && r.History.LifecycleWorkflowTasks <= 5,
		"a lean lifecycle (version lean-lifecycle) is 35 to 39 events and 4 or 5 workflow tasks; more means a worker program runs with --reserve-by-signal or --ask-by-update off, or a slow ledger ask kept its workflow task alive")
	for _, s := range r.Spaced {
		want := 1.0
		if s.Path == beatBySignal {
			want = 4
		}
		add(fmt.Sprintf("history per heartbeat %gs apart by %s, default limits scaled", s.EverySeconds, s.Path), fmt.Sprintf("<= %g events, timers included", want),
			fmt.Sprintf("%.2f events (%d signals for %d heartbeats)", s.EventsPerHeartbeat, s.Signals, s.Heartbeats),
			s.EventsPerHeartbeat > 0 && s.EventsPerHeartbeat <= want,
			"through the host a keepalive per zombie limit (4 events, and 2 as it arms the backstop again: relay-rearm); by signal 4 events each, and the deadline timer (5) once per zombie limit")
	}
	if len(r.Live) > 0 {
		big := r.Live[0]
		for _, l := range r.Live {
			if l.Lifecycles > big.Lifecycles {
				big = l
			}
		}
		add(fmt.Sprintf("%d live lifecycles, 1 heartbeat/%gs by %s", big.Lifecycles, big.IntervalSeconds, big.Path),
			"all running in 5 min, no false zombie, heartbeat → status p99 < 1 s, worker RSS < 300 MB and CPU < 50%",
			fmt.Sprintf("%d running in %gs, %d false zombies (%d status unanswered), p99 %.0f ms, %.0f MB, %.1f%%", big.Running, big.SpawnSeconds, big.FalseZombies, big.StatusUnanswered, big.Lag.P99ms, big.WorkerRSSPeakMB, big.WorkerCPUPercent),
			big.Running == big.Lifecycles && big.SpawnSeconds <= 300 && big.FalseZombies == 0 && big.StatusUnanswered == 0 && big.SendErrors == 0 && big.Lag.Samples > 0 && big.LagUnrecorded == 0 &&
				big.Lag.P99ms < 1000 && big.WorkerRSSPeakMB > 0 && big.WorkerRSSPeakMB < 300 && big.WorkerCPUPercent < 50,
			"see docs/BENCHMARKS.md for what bounds the fleet on this machine's dev server")
	}
	if len(r.Cost) == 2 {
		a, b := r.Cost[0], r.Cost[1]
		rate := ratio(a.WorkflowTasksPerWorkerMinute, b.WorkflowTasksPerWorkerMinute)
		add("server cost per live worker, independent of its heartbeat interval",
			fmt.Sprintf("at %gs within 1.5x of at %gs, zombie limit %gs", a.IntervalSeconds, b.IntervalSeconds, a.ZombieAfterSeconds),
			fmt.Sprintf("%.2f vs %.2f workflow tasks per worker-minute (%.2fx)", a.WorkflowTasksPerWorkerMinute, b.WorkflowTasksPerWorkerMinute, rate),
			a.WorkflowTasksPerWorkerMinute > 0 && b.WorkflowTasksPerWorkerMinute > 0 && rate <= 1.5 && rate >= 1/1.5 && a.healthy() && b.healthy(),
			"by signal every heartbeat is a workflow task, so the cost follows the interval (3x)")
	}
	for _, s := range r.Spawn {
		if s.Concurrency == 50 {
			add("spawn → running p99, 50 concurrent", "< 2 s", fmt.Sprintf("%.0f ms (%.1f× the no-op burst's %.0f ms)", s.P99ms, ratio(s.P99ms, s.Noop.P99ms), s.Noop.P99ms),
				s.Samples > 0 && s.P99ms < 2000,
				"a spawn is 4 workflow tasks and 3 activity tasks of the server's before running, where a no-op workflow is 1: the same burst of no-op workflows is the floor; see docs/BENCHMARKS.md")
		}
	}
	add("zombie detection lag p99", "< 2 s", fmt.Sprintf("%.0f ms", r.Zombie.P99ms),
		r.Zombie.Samples == r.Zombie.Workers && r.Zombie.P99ms < 2000, "timer, stop and refund activities queue behind each other")
	lost, old := 0, 0
	for _, l := range r.Ledger {
		lost += l.OursLost
		old += l.OldLost
	}
	for _, s := range r.LedgerSignals {
		lost += s.Lost
		if s.Masters == 50 && s.Path == pathAsk {
			add("ledger reservations/s as lifecycles ask, 50 masters", ">= 150/s", fmt.Sprintf("%.1f/s (%d by signal)", s.PerSecond, s.Fallbacks), s.PerSecond >= 150 && s.Lost == 0 && s.Refused == 0,
				"one ledger workflow's tasks run one at a time, each a round trip through the server's store: see docs/BENCHMARKS.md")
		}
	}
	add("lost budget updates", "0", fmt.Sprintf("%d (old procedure: %d)", lost, old),
		len(r.Ledger) > 0 && lost == 0 && r.BudgetExact, "")
	return ts
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

func (r *Results) write(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// print writes the table that docs/BENCHMARKS.md shows.
func (r *Results) print(out io.Writer) {
	m := r.Machine
	fmt.Fprintf(out, "\n%s · %d CPUs · %s RAM · %s · %s\n%s\n\n", m.Date, m.CPUs, m.MemTotal, m.GoVersion, m.Server, m.Command)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(cells ...any) {
		s := make([]string, len(cells))
		for i, c := range cells {
			s[i] = fmt.Sprint(c)
		}
		fmt.Fprintln(w, "| "+strings.Join(s, "\t| ")+"\t|")
	}
	row("measure", "figure", "ratio to ceiling", "notes")
	row("---", "---", "---", "---")
	for i, c := range r.Ceilings {
		row(fmt.Sprintf("ceiling: no-op workflows/s, %d in flight", c.Concurrency), c.NoopPerSecond, "1", fmt.Sprintf("%d runs", c.NoopWorkflows))
		row(fmt.Sprintf("ceiling: signals/s into open workflows, %d senders", c.Concurrency), c.SignalsPerSecond, "1", fmt.Sprintf("%d sent, %d received", c.Signals, c.SignalsReceived))
		if i < len(r.Lifecycles) {
			l := r.Lifecycles[i]
			row(fmt.Sprintf("full lifecycles/s, %d in flight", l.Concurrency), l.PerSecond, pct(l.RatioToNoop)+" of no-op",
				fmt.Sprintf("%d lifecycles, %d failed, %d/%d heartbeats recorded", l.Count, l.Failed, l.HeartbeatsRecorded, 3*l.Count))
		}
	}
	for _, s := range r.Spawn {
		row(fmt.Sprintf("spawn → running, %d concurrent", s.Concurrency), fmt.Sprintf("p50 %.0f / p95 %.0f / p99 %.0f ms", s.P50ms, s.P95ms, s.P99ms), fmt.Sprintf("%.1f× the no-op p99", ratio(s.P99ms, s.Noop.P99ms)),
			fmt.Sprintf("%d spawns; the same burst of no-op workflows: p50 %.0f / p99 %.0f ms", s.Samples, s.Noop.P50ms, s.Noop.P99ms))
	}
	for i, v := range append(slices.Clone(r.Live), r.Cost...) {
		name := fmt.Sprintf("%d live at %gs by %s", v.Lifecycles, v.IntervalSeconds, v.Path)
		if i >= len(r.Live) {
			name = fmt.Sprintf("cost: %d live at %gs by %s, zombie limit %gs", v.Lifecycles, v.IntervalSeconds, v.Path, v.ZombieAfterSeconds)
		}
		row(name+": heartbeats/s", fmt.Sprintf("%.1f of %.1f offered", v.SignalsPerSecond, v.OfferedPerSecond),
			pct(v.RatioToSignalCeiling)+" of signals", fmt.Sprintf("%d running after %gs of spawning (%d failed to start), held %gs, %d send errors", v.Running, v.SpawnSeconds, v.StartFailed, v.HoldSeconds, v.SendErrors))
		row(name+": false zombies / alerts", fmt.Sprintf("%d / %d", v.FalseZombies, v.Alerts), "",
			fmt.Sprintf("zombie limit %gs; %d status queries unanswered at the check (15 s)", v.ZombieAfterSeconds, v.StatusUnanswered))
		row(name+": heartbeat → status", fmt.Sprintf("p50 %.0f / p99 %.0f ms", v.Lag.P50ms, v.Lag.P99ms), "",
			fmt.Sprintf("%d samples from %d lifecycles, %d not shown within half an interval", v.Lag.Samples, r.Config.LagSample, v.LagUnrecorded))
		row(name+": server cost", fmt.Sprintf("%.2f workflow tasks per worker-minute", v.WorkflowTasksPerWorkerMinute), "", fmt.Sprintf("%d sampled lifecycles over the hold", r.Config.LagSample))
		row(name+": worker program", fmt.Sprintf("RSS peak %.0f MB, CPU %.1f%%", v.WorkerRSSPeakMB, v.WorkerCPUPercent), "", "CPU in % of one core over the hold")
	}
	for _, s := range r.Spaced {
		row(fmt.Sprintf("history: heartbeats %gs apart by %s", s.EverySeconds, s.Path), fmt.Sprintf("%.2f events, %.2f workflow tasks per heartbeat", s.EventsPerHeartbeat, s.WorkflowTasksPerHeartbeat), "",
			fmt.Sprintf("%d heartbeats, %d signals, zombie limit %gs (the defaults scaled by %g/30)", s.Heartbeats, s.Signals, s.ZombieAfterSeconds, s.EverySeconds))
	}
	z := r.Zombie
	row("zombie deadline → cleaned_up", fmt.Sprintf("p50 %.0f / p99 %.0f ms", z.P50ms, z.P99ms), "",
		fmt.Sprintf("%d workers, limit %gs, %d cleaned up, refunded, process gone", z.Workers, z.ZombieAfter, z.CleanedUp))
	h := r.History
	row("history: lifecycle without heartbeat", fmt.Sprintf("%d events, %d workflow tasks", h.LifecycleEvents, h.LifecycleWorkflowTasks), "", "spawn, running, shutdown, completed")
	row("history: per heartbeat", fmt.Sprintf("%.2f events, %.2f workflow tasks", h.EventsPerHeartbeat, h.WorkflowTasksPerHeartbeat), "", fmt.Sprintf("amortised over %d, one at a time", h.AmortisedHeartbeats))
	row(fmt.Sprintf("history: longest run after %d heartbeats", h.Heartbeats), fmt.Sprintf("%d events", h.LongestRunEvents), "",
		fmt.Sprintf("%d runs (continue-as-new every %d), %d recorded", h.Runs, h.MaxSignalsPerRun, h.HeartbeatsRecorded))
	for _, g := range r.Ledger {
		row(fmt.Sprintf("ledger reservations/s, %d masters", g.Masters), fmt.Sprintf("%.1f (lost %d)", g.OursPerSecond, g.OursLost), pct(g.OursRatioToSignalCap)+" of signals",
			fmt.Sprintf("old jq+mv: %.1f/s, lost %d of %d, drift %d", g.OldPerSecond, g.OldLost, g.Reservations, g.OldDrift))
	}
	for _, s := range r.LedgerSignals {
		notes := fmt.Sprintf("request → answer p50 %.0f / p99 %.0f ms", s.AnswerP50ms, s.AnswerP99ms)
		if s.Path == pathAsk {
			notes += fmt.Sprintf(", %d fell back to the signal", s.Fallbacks)
		}
		row(fmt.Sprintf("ledger reservations/s by %s, %d masters", s.Path, s.Masters), fmt.Sprintf("%.1f (lost %d, refused %d)", s.PerSecond, s.Lost, s.Refused),
			pct(s.RatioToSignalCeiling)+" of signals", notes)
	}
	a := r.Admission
	row("queue admission lag: refund → next granted", fmt.Sprintf("p50 %.0f / p99 %.0f ms", a.Lag.P50ms, a.Lag.P99ms), "", fmt.Sprintf("%d queued, one refund at a time", a.Queued))
	row("budget exact after the run / leftover processes", fmt.Sprintf("%v / %d", r.BudgetExact, r.LeftoverProcesses), "", "")
	_ = w.Flush()
	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row("target", "wanted", "this run", "met")
	row("---", "---", "---", "---")
	for _, t := range r.Targets {
		met := "yes"
		if !t.Met {
			met = "NO: " + t.Bound
		}
		row(t.Name, t.Want, t.Got, met)
	}
	_ = w.Flush()
	fmt.Fprintf(out, "\n%d s in all\n", m.Seconds)
}

// roundMB is bytes in MB with one decimal.
func roundMB(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }
