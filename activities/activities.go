// Package activities holds the side effects of a worker lifecycle: reserving
// and refunding token budget, and starting, watching and stopping the worker's
// OS process. Every activity is idempotent, because Temporal retries them and a
// retry must never reserve twice, refund twice or spawn twice.
package activities

import (
	"context"
	"errors"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
)

// Error types carried by non-retryable application errors, so that workflows
// can tell a refusal from an outage.
const (
	ErrTypeBudgetRefused     = "BudgetRefused"
	ErrTypeUnknownWorkerType = "UnknownWorkerType"
	ErrTypeSpawnFailed       = "SpawnFailed"
	// ErrTypeLedgerNotRunning: no ledger runs to take a release signal.
	ErrTypeLedgerNotRunning = "LedgerNotRunning"
)

// ErrBudgetRefused is wrapped by a Ledger when a reservation does not fit.
var ErrBudgetRefused = errors.New("insufficient budget")

// ErrLedgerNotRunning is wrapped by a Ledger's Give when no ledger runs.
var ErrLedgerNotRunning = errors.New("no budget ledger is running")

// Ledger is the token budget as seen by the activities. The worker program
// wires it to the budget ledger workflow; tests may use a fake.
type Ledger interface {
	// Reserve allocates amount to the lease. Reserving again with the same
	// lease returns nil without allocating twice. A reservation that does
	// not fit returns an error wrapping ErrBudgetRefused.
	Reserve(ctx context.Context, workerID, lease string, amount int64) error
	// Release frees what the lease holds and returns how much that was; a
	// second release of the same lease returns 0.
	Release(ctx context.Context, workerID, lease string, spent int64) (int64, error)
	// Recheck is Reserve asked again of the ledger itself, never answered
	// from a cache: a restart checks its lease still holds the allocation.
	Recheck(ctx context.Context, workerID, lease, pool string, amount int64) error
	// Ask sends the reservation (in.Ask), answered in the result when
	// in.Update and the ledger takes the update, else to the lifecycle as
	// a signal; a retry of the same lease is answered again and reserves
	// nothing more.
	Ask(ctx context.Context, in ReserveInput) (ReserveResult, error)
	// Give sends the lease's release as the ledger's release signal, with
	// no answer: sent twice, it releases nothing more. An error wraps
	// ErrLedgerNotRunning when no ledger runs to take it.
	Give(ctx context.Context, workerID, lease string, spent int64) error
}

// HostActivities run on one host's own task queue
// (workflows.HostTaskQueue): starting, watching and stopping the processes
// of that host, stopping its orphans and reading its logs. They carry what
// only the host has: its registry of commands, its folders and its process
// table. Workflows refer to the methods through a nil *HostActivities.
type HostActivities struct {
	Registry *workertypes.Registry
	// LogDir is the root of the per-worker log folders:
	// LogDir/<worker_id>/worker.log.
	LogDir string
	// Host names this worker program; it is recorded with each process.
	Host string
	// TemporalAddress and TemporalNamespace are passed to each process so it
	// can send its heartbeats.
	TemporalAddress   string
	TemporalNamespace string
	// Procs tracks the processes this worker program started.
	Procs *ProcessTable
	// StateDir keeps one file per started process, so that a restarted
	// worker program re-adopts its processes instead of spawning again.
	StateDir string
	// Reporter sends the watcher's samples and output heartbeats to the
	// lifecycles; nil disables both.
	Reporter Reporter
	// Owners says whether a lifecycle still holds a process, for the
	// orphan sweep; nil makes this host refuse to sweep.
	Owners ProcessOwners
	// Event records what the sweep did in the operators' events file;
	// nil records nothing.
	Event EventRecorder
	// Monitor is the command that runs a monitor (the worker program's own
	// binary); each process is started under one, which records its end in
	// StateDir so that it survives a restart of this program. Empty: this
	// program parents the processes itself, and the end of one that
	// outlived a restart is unknown.
	Monitor []string
	// CgroupRoot is the cgroup v2 folder under which each process gets a
	// cgroup of its own; empty contains workers by process group and token.
	CgroupRoot string
	// Limiter applies the resource limits of a worker type to its cgroup;
	// nil where the host cannot (a type with limits is then refused).
	Limiter *cgroup.Limiter
	// WatchPoll is how often WatchProcess checks a process it did not start
	// and heartbeats to Temporal; zero means one second.
	WatchPoll time.Duration
	// Beats takes the heartbeats this host's agents send to its socket
	// (HeartbeatSocket, given to each process in HeartbeatSocketEnv) for
	// the watches; nil: agents signal their lifecycles themselves.
	Beats           *HeartbeatBoard
	HeartbeatSocket string
}

// SharedActivities run on the shared task queue, on any worker program:
// the ledger, choosing a host, the circuit breakers, the archival and the
// fleet-wide part of the sweep. Workflows refer to the methods through a nil
// *SharedActivities.
type SharedActivities struct {
	Ledger Ledger
	// Registry refuses a reservation for a type this program does not know.
	Registry *workertypes.Registry
	// Host is what PickHost answers: the worker program that takes the
	// task becomes the new worker's host.
	Host string
	// Breakers records crashes per worker type and says whether a restart
	// is allowed; nil allows every restart.
	Breakers Breakers
	// Archive finds ended lifecycles and their final specs; ArchiveDir is
	// where the archival writes them.
	Archive    Archive
	ArchiveDir string
	// Sweeper lets the sweep find zombies, hosts and ledger drift.
	Sweeper Sweeper
	// Event records what the archival and the sweep did in the operators'
	// events file, when this worker program keeps one; nil records nothing.
	Event EventRecorder
	// Archived moves an archived worker's spec file to archived/, when this
	// worker program keeps the coordination files.
	Archived func(workerID string) error
	// Events is the fleet's event log (RecordEvent); nil records none.
	Events EventLog
}

// EventRecorder writes one entry of the operators' events file.
type EventRecorder func(eventType string, data map[string]any)

func (r EventRecorder) record(eventType string, data map[string]any) {
	if r != nil {
		r(eventType, data)
	}
}

// ReserveInput asks for budget for one worker.
type ReserveInput struct {
	WorkerID   string `json:"worker_id"`
	WorkerType string `json:"worker_type"`
	// Lease identifies the lifecycle that holds the allocation, so that a
	// retried reservation is recognised and never counted twice.
	Lease  string `json:"lease"`
	Amount int64  `json:"amount"`
	// Recheck asks whether the lease still holds its allocation (a restart)
	// rather than reserving it.
	Recheck bool `json:"recheck,omitempty"`
	// Ask sends the reservation to the ledger as a signal and returns: the
	// ledger answers the lifecycle with a signal of its own (granted,
	// queued or refused). Priority orders the queue; Wait lets it queue.
	Ask      bool   `json:"ask,omitempty"`
	Priority string `json:"priority,omitempty"`
	Wait     bool   `json:"wait,omitempty"`
	// Pool is the budget pool it reserves in.
	Pool string `json:"pool,omitempty"`
	// Update asks with the ledger's ask update first, whose answer comes
	// back in ReserveResult; the signal stays the fallback (with Ask).
	Update bool `json:"update,omitempty"`
}

// ReserveResult is the ledger's answer to an Ask when it came back in the
// call (Answered); otherwise the request went as a signal and the answer
// follows as one. Its fields are those of the ledger's answer.
type ReserveResult struct {
	Answered bool   `json:"answered,omitempty"`
	Granted  bool   `json:"granted,omitempty"`
	Queued   bool   `json:"queued,omitempty"`
	Position int    `json:"position,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// QueueTimeout is the pool's, with a queued answer.
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
}

// ReleaseInput returns a lease's allocation to the budget.
type ReleaseInput struct {
	WorkerID string `json:"worker_id"`
	Lease    string `json:"lease"`
	// Spent is the tokens the worker reported using, for spend windows.
	Spent int64 `json:"spent,omitempty"`
}

// ReleaseResult says how much a release gave back (0 when it had been given
// back already).
type ReleaseResult struct {
	Released int64 `json:"released"`
}

// StartInput names the worker whose process to start. The command is never
// part of it: it comes from the worker-type registry of the host.
type StartInput struct {
	WorkerID   string `json:"worker_id"`
	WorkerType string `json:"worker_type"`
	TaskID     string `json:"task_id"`
	// Lease names the lifecycle (workflows.Lease). A process recorded under
	// another lease is a leftover of an earlier lifecycle with the same
	// worker id: it is stopped, never taken over. Empty matches any lease,
	// for activities scheduled before the field existed.
	Lease string `json:"lease,omitempty"`
	// HoldBeatsFor is set by a lifecycle that takes the heartbeats its
	// host relays: the host holds its agent's heartbeats from the start,
	// for at most this long without a watch (HeartbeatBoard.Expect). Zero
	// (a lifecycle of an earlier release, or one that may not relay): they
	// are signalled until its watch runs.
	HoldBeatsFor time.Duration `json:"hold_beats_for,omitempty"`
}

// ProcessInfo identifies a started process beyond its PID, so that a PID
// reused by another process is never signalled.
type ProcessInfo struct {
	PID  int `json:"pid"`
	PGID int `json:"pgid"`
	// StartTicks is field 22 of /proc/<pid>/stat: the start time of the
	// process in clock ticks since boot. PID plus start time names one
	// process for the life of the machine.
	StartTicks uint64    `json:"start_ticks"`
	Host       string    `json:"host"`
	LogPath    string    `json:"log_path"`
	StartedAt  time.Time `json:"started_at"`
	// Token is put in the process's environment as WORKER_LIFECYCLE_TOKEN.
	// Every descendant inherits it, also one that left the process group or
	// session, so the whole tree can be found and stopped.
	Token string `json:"token,omitempty"`
	// Lease is StartInput.Lease of the lifecycle that started the process.
	Lease string `json:"lease,omitempty"`
	// Cgroup is the worker's own cgroup v2, whose members are its
	// processes; empty where the host contains it by process group.
	Cgroup string `json:"cgroup,omitempty"`
	// Monitor is the process's parent that records its end; nil when the
	// worker program parents it itself.
	Monitor *MonitorProcess `json:"monitor,omitempty"`
	// WorkerType is the type it was started as, whose exit rules judge
	// its end.
	WorkerType string `json:"worker_type,omitempty"`
	// LimitCgroups are the v1 cgroups holding its resource limits on a
	// hybrid host (its cgroup v2 holds them elsewhere).
	LimitCgroups []string `json:"limit_cgroups,omitempty"`
	// HoldBeatsFor is StartInput.HoldBeatsFor of its start, for a worker
	// program started again to hold its heartbeats too (ExpectRecorded).
	HoldBeatsFor time.Duration `json:"hold_beats_for,omitempty"`
	// Fence holds the lifecycle's clocks its watch was given, kept in the
	// host's record for the fence (a re-adopted record hands it back to
	// the lifecycle, which does not use it).
	Fence *FenceLimits `json:"fence,omitempty"`
}

// ResourceSample is what the watcher measured of a worker's whole process
// tree on its host.
type ResourceSample struct {
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   int64   `json:"rss_bytes"`
	Processes  int     `json:"processes"`
}

// Reporter carries what the watcher observes to the worker's lifecycle.
type Reporter interface {
	// Sample reports the resources of the worker's process tree.
	Sample(ctx context.Context, workerID string, s ResourceSample) error
	// OutputHeartbeat heartbeats on behalf of a worker that cannot: its log
	// grew since the last interval.
	OutputHeartbeat(ctx context.Context, workerID string, s ResourceSample) error
	// RelayHeartbeat passes on a heartbeat the host took from the agent,
	// received age ago.
	RelayHeartbeat(ctx context.Context, workerID string, hb HostHeartbeat, age time.Duration) error
	// ShowWatch records d as the heartbeat of the watch whose task token
	// it is, at once: the SDK's own activity heartbeats are throttled to
	// a fraction of the heartbeat timeout, too late for a reader.
	ShowWatch(ctx context.Context, taskToken []byte, d WatchDetails) error
}

// WatchInput asks to watch a worker's process until it ends.
type WatchInput struct {
	WorkerID string      `json:"worker_id"`
	Process  ProcessInfo `json:"process"`
	// SampleEvery is how often the tree's resources are measured; zero
	// disables sampling and output heartbeats.
	SampleEvery time.Duration `json:"sample_every,omitempty"`
	// OutputHeartbeat makes the watcher heartbeat for the worker whenever
	// its log grew during the last SampleEvery.
	OutputHeartbeat bool `json:"output_heartbeat,omitempty"`
	// HostLossAfter is the lifecycle's host-loss bound, WatchHeartbeat
	// its watch's heartbeat timeout and Grace its shutdown grace: a host
	// cut off from the server stops the process early enough that the
	// stop is over before the server can count the host lost
	// (FenceBound). Zero, from a lifecycle of an earlier release: the
	// host's own --fence-after and the default grace.
	HostLossAfter  time.Duration `json:"host_loss_after,omitempty"`
	WatchHeartbeat time.Duration `json:"watch_heartbeat,omitempty"`
	Grace          time.Duration `json:"grace,omitempty"`
	// Relay says the lifecycle takes heartbeats relayed by its host
	// (PathHost): the watch then holds the agent's heartbeats sent to this
	// host's socket, shows the latest in its activity heartbeat and relays
	// what the lifecycle acts on (relayReason). ZombieAfter is the
	// lifecycle's zombie limit, TokenBudget its allocation and PriorTokens
	// what its earlier processes used. False, from a lifecycle of an
	// earlier release: heartbeats sent here are signalled as they come.
	Relay       bool          `json:"relay,omitempty"`
	ZombieAfter time.Duration `json:"zombie_after,omitempty"`
	TokenBudget int64         `json:"token_budget,omitempty"`
	PriorTokens int64         `json:"prior_tokens,omitempty"`
}

// ExitStatus is how a watched process ended.
type ExitStatus struct {
	// ExitCode is the process's exit code, 128+N when signal N ended it,
	// and -1 when unknown.
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	// Lost is true when the process vanished while this host did not hold
	// its exit status (for example after a restart of the worker program).
	Lost bool `json:"lost,omitempty"`
	// OOM is true when the kernel's out-of-memory killer ended it.
	OOM bool `json:"oom,omitempty"`
	// Fenced is true when its own host stopped it, cut off from the
	// server for longer than its fence bound (Fence).
	Fenced bool `json:"fenced,omitempty"`
	// Action is what the type's exit rules make of this end
	// (workertypes.ExitAction: complete, restart, fail, ignore); empty
	// from a host of an earlier release, whose lifecycles judge by the
	// exit code alone.
	Action string `json:"action,omitempty"`
	// Rule names the exit rule that chose Action; empty for a default.
	Rule string `json:"rule,omitempty"`
	// LastHeartbeat is the latest heartbeat the host took from the agent
	// that it had not relayed yet (a last tokens_used); nil when none.
	LastHeartbeat *HostHeartbeat `json:"last_heartbeat,omitempty"`
}

// StopInput asks to stop a process group: SIGTERM, Grace, then SIGKILL.
// A zero Grace sends SIGKILL at once.
type StopInput struct {
	WorkerID string        `json:"worker_id"`
	Process  ProcessInfo   `json:"process"`
	Grace    time.Duration `json:"grace"`
}

// StopResult reports what a stop did.
type StopResult struct {
	// AlreadyGone is true when no process of the group was alive (or the
	// PID belonged to another process) when the stop began.
	AlreadyGone bool `json:"already_gone"`
	// Killed is true when SIGKILL had to be sent.
	Killed bool `json:"killed"`
}
