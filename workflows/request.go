package workflows

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/commit-relay/worker-lifecycle/internal/workertypes"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// Patterns of the old system's worker-spec schema. A worker id that matches
// cannot contain '/', '.', spaces or shell characters, so it is safe in paths.
var (
	WorkerIDPattern = regexp.MustCompile(`^worker-[a-z]+-[0-9A-Za-z]+$`)
	TaskIDPattern   = regexp.MustCompile(`^task-[0-9A-Za-z._-]+$`)
	RepoPattern     = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	MasterPattern   = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	HostPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// Priorities, lowest first.
var Priorities = []string{"low", "medium", "high", "critical"}

// Bounds of inputs.
const (
	MinBudget                int64 = workertypes.MinBudget
	MaxBudget                int64 = workertypes.MaxBudget
	MaxIDLength                    = 128
	MaxMessageBytes                = 4096
	DefaultMaxSignals              = 1000
	MinHealthScore                 = 0
	MaxHealthScore                 = 100
	defaultHealthScore             = 100
	maxTransitions                 = 50
	maxReasonBytes                 = 1024
	maxLimitDuration               = 7 * 24 * time.Hour
	DefaultPriority                = "medium"
	DefaultShutdownGrace           = 5 * time.Second
	DefaultHeartbeatWarning        = 60 * time.Second
	DefaultHeartbeatCritical       = 120 * time.Second
	DefaultZombieAfter             = 300 * time.Second
	DefaultIdleAfter               = 5 * time.Minute
	DefaultWatchHeartbeat          = 20 * time.Second
	DefaultHostLossAfter           = 2 * time.Minute
	DefaultSampleEvery             = 30 * time.Second
	DefaultRestartDelay            = 30 * time.Second
	DefaultRestartMaxDelay         = 300 * time.Second
	DefaultHealthyRun              = 10 * time.Minute
	// DefaultQueueTimeout is how long a spawn that waits for budget stays
	// queued, unless it says otherwise.
	DefaultQueueTimeout       = 30 * time.Minute
	MaxRestartsLimit          = workertypes.MaxRestartsLimit
	defaultCompensationWindow = 10 * time.Minute
	retryCleanupEvery         = 10 * time.Minute
)

// Heartbeat modes of a worker type, as the registry defines them.
const (
	// HeartbeatModeSignal: the worker process sends its own heartbeats.
	HeartbeatModeSignal = workertypes.HeartbeatSignal
	// HeartbeatModeOutput: the watcher heartbeats for the worker whenever
	// its log grew, for commands that cannot send heartbeats.
	HeartbeatModeOutput = workertypes.HeartbeatOutput
)

// SpawnRequest is what a master asks for. Zero limits take the defaults.
type SpawnRequest struct {
	WorkerID   string `json:"worker_id"`
	WorkerType string `json:"worker_type"`
	TaskID     string `json:"task_id,omitempty"`
	Priority   string `json:"priority"`
	Master     string `json:"master"`
	Repo       string `json:"repo,omitempty"`
	Budget     int64  `json:"budget"`
	// Timeout is the longest the worker may run; zero means no limit.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Host pins the worker to one host; empty lets any host take it.
	Host string `json:"host,omitempty"`
	// MaxRestarts is how often a crashed worker is started again.
	MaxRestarts int `json:"max_restarts,omitempty"`
	// HeartbeatMode is HeartbeatModeSignal (empty) or HeartbeatModeOutput.
	HeartbeatMode string `json:"heartbeat_mode,omitempty"`
	Limits        Limits `json:"limits"`
	// WaitForBudget queues the reservation, in pending, when the budget
	// cannot cover it now, instead of failing the spawn.
	WaitForBudget bool `json:"wait_for_budget,omitempty"`
	// QueueTimeout ends a queued lifecycle failed, holding nothing, after
	// this long; zero takes its pool's queue timeout (PoolSettings), which
	// is DefaultQueueTimeout unless set. (Lifecycles that ask by signal
	// alone, of earlier releases or under --ask-by-update=false, wait
	// until admitted or stopped when it is zero.)
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
	// Pool is the budget pool to reserve in; empty is the master's own
	// pool (pools.go).
	Pool string `json:"pool,omitempty"`
}

// Validate names every field of the request that is wrong, with the zero
// limits taken from today's defaults. It does not check the worker type
// against a registry: the caller and the host do.
func (r SpawnRequest) Validate() error {
	if err := r.validateFields(); err != nil {
		return err
	}
	return r.Limits.WithDefaults().checkOrder()
}

// validateFields checks each field alone: nothing here depends on the
// defaults, so a replay decides as the first run did.
func (r SpawnRequest) validateFields() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !WorkerIDPattern.MatchString(r.WorkerID) || len(r.WorkerID) > MaxIDLength {
		bad("worker_id", "worker id %s must match %s (at most %d characters)", Quote(r.WorkerID), WorkerIDPattern, MaxIDLength)
	}
	if r.WorkerType == "" {
		bad("worker_type", "worker type is required")
	}
	if r.TaskID != "" && (!TaskIDPattern.MatchString(r.TaskID) || len(r.TaskID) > MaxIDLength) {
		bad("task_id", "task id %s must match %s (at most %d characters)", Quote(r.TaskID), TaskIDPattern, MaxIDLength)
	}
	if !ValidPriority(r.Priority) {
		bad("priority", "priority %s must be one of low, medium, high, critical", Quote(r.Priority))
	}
	if !MasterPattern.MatchString(r.Master) || len(r.Master) > MaxIDLength {
		bad("master", "master %s must match %s", Quote(r.Master), MasterPattern)
	}
	if r.Pool != "" {
		if err := ValidatePoolName(r.Pool); err != nil {
			bad("pool", "%s", err)
		}
	}
	if r.Repo != "" && (!RepoPattern.MatchString(r.Repo) || len(r.Repo) > 2*MaxIDLength) {
		bad("repo", "repo %s must be owner/name", Quote(r.Repo))
	}
	if r.Budget < MinBudget || r.Budget > MaxBudget {
		bad("budget", "budget %d is not in %d..%d", r.Budget, MinBudget, MaxBudget)
	}
	if r.Timeout < 0 || r.Timeout > maxLimitDuration {
		bad("timeout", "timeout %s is not in 0..%s", r.Timeout, maxLimitDuration)
	}
	l := r.Limits
	for _, d := range []struct {
		name, field string
		v           time.Duration
	}{
		{"heartbeat warning", "limits.heartbeat_warning", l.HeartbeatWarning},
		{"heartbeat critical", "limits.heartbeat_critical", l.HeartbeatCritical},
		{"zombie limit", "limits.zombie_after", l.ZombieAfter},
		{"idle limit", "limits.idle_after", l.IdleAfter},
		{"shutdown grace", "limits.shutdown_grace", l.ShutdownGrace},
		{"watch heartbeat", "limits.watch_heartbeat", l.WatchHeartbeat},
		{"host loss limit", "limits.host_loss_after", l.HostLossAfter},
		{"sample interval", "limits.sample_every", l.SampleEvery},
		{"restart delay", "limits.restart_delay", l.RestartDelay},
		{"restart max delay", "limits.restart_max_delay", l.RestartMaxDelay},
		{"healthy run", "limits.healthy_run", l.HealthyRun},
	} {
		if d.v < 0 || d.v > maxLimitDuration {
			bad(d.field, "%s %s is not in 0..%s", d.name, d.v, maxLimitDuration)
		}
	}
	if r.QueueTimeout < 0 || r.QueueTimeout > maxLimitDuration {
		bad("queue_timeout", "queue timeout %s is not in 0..%s", r.QueueTimeout, maxLimitDuration)
	} else if r.QueueTimeout > 0 && !r.WaitForBudget {
		bad("queue_timeout", "queue timeout %s needs wait_for_budget: a spawn that does not wait is never queued", r.QueueTimeout)
	}
	if r.Host != "" && !HostPattern.MatchString(r.Host) {
		bad("host", "host %s must match %s", Quote(r.Host), HostPattern)
	}
	if r.MaxRestarts < 0 || r.MaxRestarts > MaxRestartsLimit {
		bad("max_restarts", "max restarts %d is not in 0..%d", r.MaxRestarts, MaxRestartsLimit)
	}
	if r.HeartbeatMode != "" && r.HeartbeatMode != HeartbeatModeSignal && r.HeartbeatMode != HeartbeatModeOutput {
		bad("heartbeat_mode", "heartbeat mode %s must be signal or output", Quote(r.HeartbeatMode))
	}
	if l.MaxSignalsPerRun < 0 || l.MaxSignalsPerRun > 5000 {
		bad("limits.max_signals_per_run", "max signals per run %d is not in 0..5000", l.MaxSignalsPerRun)
	}
	return errors.Join(errs...)
}

// checkOrder refuses resolved limits whose alerts do not come in order.
func (l Limits) checkOrder() error {
	if l.HeartbeatWarning > l.HeartbeatCritical || l.HeartbeatCritical > l.ZombieAfter {
		return &FieldError{Field: "limits", Message: fmt.Sprintf("heartbeat limits must grow: warning %s <= critical %s <= zombie %s", l.HeartbeatWarning, l.HeartbeatCritical, l.ZombieAfter)}
	}
	return nil
}

// ValidPriority reports whether p is one of Priorities.
func ValidPriority(p string) bool {
	for _, known := range Priorities {
		if p == known {
			return true
		}
	}
	return false
}

// Validate checks a heartbeat payload. Signals cannot be refused, so the
// workflow ignores (and counts) an invalid one; senders validate first.
func (h Heartbeat) Validate() error {
	var errs []error
	if h.TokensUsed < 0 {
		errs = append(errs, fieldError("tokens_used", "tokens_used %d is negative", h.TokensUsed))
	}
	if h.HealthScore != nil && (*h.HealthScore < MinHealthScore || *h.HealthScore > MaxHealthScore) {
		errs = append(errs, fieldError("health_score", "health_score %d is not in %d..%d", *h.HealthScore, MinHealthScore, MaxHealthScore))
	}
	if h.Status != "" && h.Status != HeartbeatBusy && h.Status != HeartbeatIdle && !NeedsAttention(h.Status) {
		errs = append(errs, fieldError("status", "status %s must be busy, idle, blocked or awaiting_input", Quote(h.Status)))
	}
	if len(h.Message) > MaxMessageBytes || !utf8.ValidString(h.Message) {
		errs = append(errs, fieldError("message", "message must be valid UTF-8 of at most %d bytes", MaxMessageBytes))
	}
	switch {
	case h.Path != "" && h.Path != PathSignal && h.Path != PathHost:
		errs = append(errs, fieldError("path", "path %s must be %s or %s", Quote(h.Path), PathSignal, PathHost))
	case h.Age < 0 || h.Age > maxLimitDuration:
		errs = append(errs, fieldError("age", "age %s is not in 0..%s", h.Age, maxLimitDuration))
	case h.Age != 0 && h.Path != PathHost:
		errs = append(errs, fieldError("age", "age is set by a worker's host on the heartbeats it relays (path %s)", PathHost))
	}
	if h.Process != "" && !processTagPattern.MatchString(h.Process) {
		errs = append(errs, fieldError("process", "process %s is not a process's name (%s, from %s)", Quote(h.Process), processTagPattern, activities.ProcessEnv))
	}
	return errors.Join(errs...)
}

// processTagPattern is what activities.ProcessTag gives.
var processTagPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Validate checks a shutdown request.
func (r ShutdownRequest) Validate() error {
	if r.Grace < 0 || r.Grace > time.Hour {
		return fieldError("grace", "grace %s is not in 0..1h", r.Grace)
	}
	if len(r.Reason) > maxReasonBytes {
		return fieldError("reason", "reason is longer than %d bytes", maxReasonBytes)
	}
	return nil
}

// Validate checks a kill request.
func (r KillRequest) Validate() error {
	if len(r.Reason) > maxReasonBytes {
		return fieldError("reason", "reason is longer than %d bytes", maxReasonBytes)
	}
	return nil
}

// FieldError is one bad field of a request: Field is its JSON name (a dotted
// path below "limits"), Message says what is wrong and is the message the
// workflow has always failed with, so that histories replay and callers
// that matched the text keep working. A request's Validate joins one per bad
// field; errors.As finds the first, FieldErrors lists them all.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string { return e.Message }

func fieldError(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// FieldErrors lists the bad fields that err carries, however it was
// wrapped or joined, in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			if inner := u.Unwrap(); inner != nil {
				walk(inner)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// Quote quotes a value for an error message, cut short when it is long: an
// error must name the bad value, not echo 70 KiB of it.
func Quote(v string) string {
	const keep = 64
	if len(v) <= keep {
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(strings.ToValidUTF8(v[:keep], "")), len(v))
}
