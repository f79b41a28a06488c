package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"
)

// Limits are the lifecycle's clocks. The defaults are the old system's;
// tests shorten them to seconds.
type Limits struct {
	HeartbeatWarning  time.Duration `json:"heartbeat_warning,omitempty"`
	HeartbeatCritical time.Duration `json:"heartbeat_critical,omitempty"`
	ZombieAfter       time.Duration `json:"zombie_after,omitempty"`
	IdleAfter         time.Duration `json:"idle_after,omitempty"`
	ShutdownGrace     time.Duration `json:"shutdown_grace,omitempty"`
	// MaxSignalsPerRun bounds one run's history: the lifecycle continues as
	// new after this many heartbeats, since the server's own suggestion does
	// not count signals.
	MaxSignalsPerRun int `json:"max_signals_per_run,omitempty"`
	// WatchHeartbeat is the watcher's activity heartbeat timeout: a worker
	// program that died is noticed after this long.
	WatchHeartbeat time.Duration `json:"watch_heartbeat,omitempty"`
	// HostLossAfter is how long the host's queue may go unpolled before
	// the host counts as lost (the host activities' schedule-to-start).
	HostLossAfter time.Duration `json:"host_loss_after,omitempty"`
	// SampleEvery is how often the watcher measures the process tree.
	SampleEvery time.Duration `json:"sample_every,omitempty"`
	// RestartDelay doubles with each restart up to RestartMaxDelay; a run
	// of HealthyRun resets the count.
	RestartDelay    time.Duration `json:"restart_delay,omitempty"`
	RestartMaxDelay time.Duration `json:"restart_max_delay,omitempty"`
	HealthyRun      time.Duration `json:"healthy_run,omitempty"`
}

// defaultLimits fill what a request leaves zero, for the lifecycles started
// from now on. Changing them changes no lifecycle that has started: each
// resolves its limits once (resolveLimits). A variable so that tests can
// prove that.
var defaultLimits = Limits{
	HeartbeatWarning:  DefaultHeartbeatWarning,
	HeartbeatCritical: DefaultHeartbeatCritical,
	ZombieAfter:       DefaultZombieAfter,
	IdleAfter:         DefaultIdleAfter,
	ShutdownGrace:     DefaultShutdownGrace,
	MaxSignalsPerRun:  DefaultMaxSignals,
	WatchHeartbeat:    DefaultWatchHeartbeat,
	HostLossAfter:     DefaultHostLossAfter,
	SampleEvery:       DefaultSampleEvery,
	RestartDelay:      DefaultRestartDelay,
	RestartMaxDelay:   DefaultRestartMaxDelay,
	HealthyRun:        DefaultHealthyRun,
}

// limitsV1 are the defaults of the first release, which resolved the limits
// anew on every run and every replay. Its lifecycles keep these values for
// good, whatever defaultLimits become. Never change them.
var limitsV1 = Limits{
	HeartbeatWarning:  60 * time.Second,
	HeartbeatCritical: 120 * time.Second,
	ZombieAfter:       300 * time.Second,
	IdleAfter:         5 * time.Minute,
	ShutdownGrace:     5 * time.Second,
	MaxSignalsPerRun:  1000,
	WatchHeartbeat:    20 * time.Second,
	HostLossAfter:     2 * time.Minute,
	SampleEvery:       30 * time.Second,
	RestartDelay:      30 * time.Second,
	RestartMaxDelay:   300 * time.Second,
	HealthyRun:        10 * time.Minute,
}

// WithDefaults fills the zero limits from today's defaults.
func (l Limits) WithDefaults() Limits { return l.withDefaults(defaultLimits) }

// withDefaults fills the zero limits from d. A zombie limit shorter than the
// default warning or critical limits pulls them below it, so that a short
// --zombie-after still warns before it reaps.
func (l Limits) withDefaults(d Limits) Limits {
	if l.ZombieAfter == 0 {
		l.ZombieAfter = d.ZombieAfter
	}
	if l.HeartbeatWarning == 0 {
		l.HeartbeatWarning = min(d.HeartbeatWarning, l.ZombieAfter/5)
	}
	if l.HeartbeatCritical == 0 {
		l.HeartbeatCritical = min(d.HeartbeatCritical, l.ZombieAfter*2/5)
	}
	if l.IdleAfter == 0 {
		l.IdleAfter = d.IdleAfter
	}
	if l.ShutdownGrace == 0 {
		l.ShutdownGrace = d.ShutdownGrace
	}
	if l.MaxSignalsPerRun == 0 {
		l.MaxSignalsPerRun = d.MaxSignalsPerRun
	}
	if l.WatchHeartbeat == 0 {
		l.WatchHeartbeat = d.WatchHeartbeat
	}
	if l.HostLossAfter == 0 {
		l.HostLossAfter = d.HostLossAfter
	}
	if l.SampleEvery == 0 {
		l.SampleEvery = d.SampleEvery
	}
	if l.RestartDelay == 0 {
		l.RestartDelay = d.RestartDelay
	}
	if l.RestartMaxDelay == 0 {
		l.RestartMaxDelay = max(d.RestartMaxDelay, l.RestartDelay)
	}
	if l.HealthyRun == 0 {
		l.HealthyRun = d.HealthyRun
	}
	return l
}

// resolveLimits sets the limits this lifecycle runs with: resolved once, at
// its first run, and handed from run to run in the state, so that a later
// change of the defaults never changes a lifecycle already started (a
// lowered zombie limit would turn a recorded warning timer into a zombie
// branch and fail its replay forever).
func (w *lifecycle) resolveLimits(ctx workflow.Context) {
	switch {
	case w.st.Limits != nil:
		// Handed over by the previous run.
	case w.st.Spec.Status != "":
		// A later run of a lifecycle the first release started, which
		// handed over no limits.
		w.st.Limits = ptr(w.st.Request.Limits.withDefaults(limitsV1))
	case w.version(ctx, VersionFrozenLimits, 1) == workflow.DefaultVersion:
		// The first run of a lifecycle the first release started.
		w.st.Limits = ptr(w.st.Request.Limits.withDefaults(limitsV1))
	default:
		// Recorded in the history, so that a replay after the defaults
		// changed still sees what this lifecycle started with.
		var l Limits
		if err := workflow.SideEffect(ctx, func(workflow.Context) any {
			return w.st.Request.Limits.WithDefaults()
		}).Get(&l); err != nil {
			// Today's defaults would bring back what this guards against:
			// fail the task until a worker can read what was recorded.
			panic(fmt.Sprintf("reading the limits recorded at the start: %v", err))
		}
		w.st.Limits = &l
	}
	w.limits = *w.st.Limits
}

func ptr[T any](v T) *T { return &v }
