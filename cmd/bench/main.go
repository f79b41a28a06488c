// Command bench measures what the lifecycle manager costs against what the
// same Temporal server does with workflows that do nothing: lifecycles per
// second, spawn latency, heartbeat capacity, zombie detection lag, history
// events, and the budget ledger next to the old system's jq procedure. It
// starts its own dev server (or uses TEMPORAL_ADDRESS) and the real worker
// program, prints a table and writes the figures as JSON.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the size of each measurement.
type config struct {
	Smoke        bool          `json:"smoke"`
	Concurrency  []int         `json:"concurrency"`
	CeilingFor   time.Duration `json:"ceiling_for"`
	Lifecycles   int           `json:"lifecycles"`
	SpawnLevels  []int         `json:"spawn_levels"`
	SpawnSamples int           `json:"spawn_samples"`
	Live         []int         `json:"live"`
	Hold         time.Duration `json:"hold"`
	SpawnWithin  time.Duration `json:"spawn_within"`
	Interval     time.Duration `json:"heartbeat_interval"`
	// LivePath is how the live fleet heartbeats (beatByHost, beatBySignal);
	// CostLive lifecycles are held once more at three times the interval,
	// for the server's cost per live worker at two intervals.
	LivePath string `json:"live_path"`
	CostLive int    `json:"cost_live"`
	// SpacedEvery and SpacedBeats: heartbeats at a steady pace under the
	// default limits scaled to SpacedEvery/30 s, on each path.
	SpacedEvery    time.Duration `json:"spaced_every"`
	SpacedBeats    int           `json:"spaced_beats"`
	LagSample      int           `json:"lag_sample"`
	Zombies        int           `json:"zombies"`
	ZombieAfter    time.Duration `json:"zombie_after"`
	Amortised      int           `json:"amortised_heartbeats"`
	Burst          int           `json:"burst_heartbeats"`
	BurstSenders   int           `json:"burst_senders"`
	RunSignals     int           `json:"max_signals_per_run"`
	LedgerMasters  []int         `json:"ledger_masters"`
	LedgerReserves int           `json:"ledger_reservations"`
	// LedgerSignalMasters are the masters of the signal path's rows;
	// AdmissionQueued the requests queued for the admission lag.
	LedgerSignalMasters []int `json:"ledger_signal_masters"`
	AdmissionQueued     int   `json:"admission_queued"`
	// SQLiteSync is how the bench's own dev server writes its SQLite file:
	// syncNormal (devserver.FilePragmas, as `make run`) or syncFull (the
	// CLI's defaults), for the comparison in docs/BENCHMARKS.md.
	SQLiteSync string `json:"sqlite_sync"`
	Out        string `json:"-"`
	Keep       bool   `json:"-"`
}

// The two ways the bench's dev server writes its SQLite file.
const (
	syncNormal = "normal"
	syncFull   = "full"
)

// fullConfig is the run: about 15 minutes on two cores.
func fullConfig() config {
	return config{Concurrency: []int{10, 50}, CeilingFor: 15 * time.Second, Lifecycles: 150,
		SpawnLevels: []int{1, 10, 50}, SpawnSamples: 50,
		Live: []int{100, 2000}, Hold: 3 * time.Minute, SpawnWithin: 5 * time.Minute, Interval: 10 * time.Second, LagSample: 20,
		LivePath: beatByHost, CostLive: 100, SpacedEvery: 3 * time.Second, SpacedBeats: 60,
		Zombies: 50, ZombieAfter: 5 * time.Second, Amortised: 1000, Burst: 10000, BurstSenders: 4,
		LedgerMasters: []int{1, 10, 50}, LedgerReserves: 300, LedgerSignalMasters: []int{1, 10, 50, 200}, AdmissionQueued: 50,
		SQLiteSync: syncNormal, Out: "bench-results.json"}
}

// smokeConfig runs every measurement at a size that takes seconds, so CI
// keeps the bench working.
func smokeConfig() config {
	return config{Smoke: true, Concurrency: []int{4}, CeilingFor: 2 * time.Second, Lifecycles: 4,
		SpawnLevels: []int{1, 4}, SpawnSamples: 4,
		Live: []int{4}, Hold: 6 * time.Second, SpawnWithin: time.Minute, Interval: 2 * time.Second, LagSample: 2,
		LivePath: beatByHost, CostLive: 4, SpacedEvery: 500 * time.Millisecond, SpacedBeats: 30,
		Zombies: 3, ZombieAfter: 2 * time.Second, Amortised: 10, Burst: 30, BurstSenders: 2, RunSignals: 10,
		LedgerMasters: []int{1, 4}, LedgerReserves: 12, LedgerSignalMasters: []int{1, 4}, AdmissionQueued: 4, SQLiteSync: syncNormal, Out: "bench-results.json"}
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg, os.Stderr)
	if res != nil {
		res.print(os.Stdout)
		if werr := res.write(cfg.Out); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	smoke := fs.Bool("smoke", false, "tiny sizes: every measurement in seconds (what CI runs)")
	def := fullConfig()
	// The smoke profile is chosen before the other flags are applied, so
	// `--smoke --live 10` is a smoke run with 10 live lifecycles.
	for _, a := range args {
		if a == "--smoke" || a == "-smoke" || a == "--smoke=true" || a == "-smoke=true" {
			def = smokeConfig()
		}
	}
	cfg := def
	fs.StringVar(&cfg.Out, "out", def.Out, "where to write the figures as JSON")
	concurrency := fs.String("concurrency", joinInts(def.Concurrency), "callers in flight for the ceilings and the full lifecycles, one measurement per level")
	fs.DurationVar(&cfg.CeilingFor, "ceiling-for", def.CeilingFor, "how long each ceiling is measured")
	fs.IntVar(&cfg.Lifecycles, "lifecycles", def.Lifecycles, "full lifecycles to run")
	levels := fs.String("spawn", joinInts(def.SpawnLevels), "concurrent spawns for the spawn latency")
	fs.IntVar(&cfg.SpawnSamples, "spawn-samples", def.SpawnSamples, "spawns measured at least, per level")
	live := fs.String("live", joinInts(def.Live), "live lifecycles for the heartbeat capacity, one run per size")
	fs.DurationVar(&cfg.Hold, "hold", def.Hold, "how long the live lifecycles heartbeat")
	fs.DurationVar(&cfg.SpawnWithin, "spawn-within", def.SpawnWithin, "the live fleet stops growing after this long and is held as it is")
	fs.DurationVar(&cfg.Interval, "interval", def.Interval, "each live lifecycle's heartbeat interval")
	fs.IntVar(&cfg.LagSample, "lag-sample", def.LagSample, "live lifecycles whose heartbeat lag is measured")
	fs.StringVar(&cfg.LivePath, "live-path", def.LivePath, "how the live fleet heartbeats: host (the worker program's socket, as agents on the host do) or signal")
	fs.IntVar(&cfg.CostLive, "cost-live", def.CostLive, "live lifecycles held once more at 3 intervals, for the cost per live worker (0: none)")
	fs.DurationVar(&cfg.SpacedEvery, "spaced-every", def.SpacedEvery, "spacing of the steady heartbeats, under the default limits scaled by it/30s")
	fs.IntVar(&cfg.SpacedBeats, "spaced-beats", def.SpacedBeats, "steady heartbeats per path")
	fs.IntVar(&cfg.Zombies, "zombies", def.Zombies, "silent workers for the zombie detection lag")
	fs.DurationVar(&cfg.ZombieAfter, "zombie-after", def.ZombieAfter, "their zombie limit")
	fs.IntVar(&cfg.Amortised, "amortised", def.Amortised, "heartbeats the per-heartbeat history cost is averaged over (at most 4999)")
	fs.IntVar(&cfg.Burst, "burst", def.Burst, "heartbeats sent to one lifecycle for the longest run's history")
	fs.IntVar(&cfg.BurstSenders, "burst-senders", def.BurstSenders, "concurrent senders of the burst")
	fs.IntVar(&cfg.RunSignals, "run-signals", def.RunSignals, "heartbeats per run before continue-as-new in the burst (0: the default, 1000)")
	masters := fs.String("ledger-masters", joinInts(def.LedgerMasters), "concurrent masters for the budget ledger")
	fs.IntVar(&cfg.LedgerReserves, "ledger-reservations", def.LedgerReserves, "reservations per ledger measurement")
	signalMasters := fs.String("ledger-signal-masters", joinInts(def.LedgerSignalMasters), "concurrent masters for the ledger's signal path")
	fs.IntVar(&cfg.AdmissionQueued, "admission-queued", def.AdmissionQueued, "queued requests for the queue admission lag")
	fs.StringVar(&cfg.SQLiteSync, "sqlite-sync", def.SQLiteSync, "how the bench's dev server writes its SQLite file: normal (a write-ahead log, as make run) or full (the Temporal CLI's defaults)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the run's folder (server database, worker program log)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.Smoke = *smoke
	var err error
	if cfg.Concurrency, err = parseInts(*concurrency); err != nil {
		return cfg, fmt.Errorf("--concurrency: %w", err)
	}
	if cfg.SpawnLevels, err = parseInts(*levels); err != nil {
		return cfg, fmt.Errorf("--spawn: %w", err)
	}
	if cfg.Live, err = parseInts(*live); err != nil {
		return cfg, fmt.Errorf("--live: %w", err)
	}
	if cfg.LedgerMasters, err = parseInts(*masters); err != nil {
		return cfg, fmt.Errorf("--ledger-masters: %w", err)
	}
	if cfg.LedgerSignalMasters, err = parseInts(*signalMasters); err != nil {
		return cfg, fmt.Errorf("--ledger-signal-masters: %w", err)
	}
	if cfg.Amortised < 1 || cfg.Amortised > 4999 {
		return cfg, fmt.Errorf("--amortised %d is not in 1..4999 (one run must hold them all)", cfg.Amortised)
	}
	if cfg.Lifecycles < 1 || cfg.Zombies < 1 || cfg.Burst < 1 || cfg.BurstSenders < 1 || cfg.LedgerReserves < 1 || cfg.AdmissionQueued < 1 {
		return cfg, fmt.Errorf("every count must be at least 1")
	}
	if cfg.LivePath != beatByHost && cfg.LivePath != beatBySignal {
		return cfg, fmt.Errorf("--live-path %q: give host or signal", cfg.LivePath)
	}
	if cfg.SQLiteSync != syncNormal && cfg.SQLiteSync != syncFull {
		return cfg, fmt.Errorf("--sqlite-sync %q: give normal or full", cfg.SQLiteSync)
	}
	if cfg.SpacedEvery < 100*time.Millisecond || cfg.SpacedBeats < 1 || cfg.CostLive < 0 {
		return cfg, fmt.Errorf("--spaced-every must be at least 100ms, --spaced-beats at least 1, --cost-live not negative")
	}
	if cfg.Interval < time.Second || cfg.Hold < cfg.Interval || cfg.ZombieAfter < time.Second {
		return cfg, fmt.Errorf("--interval and --zombie-after must be at least 1s, --hold at least one interval")
	}
	return cfg, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
