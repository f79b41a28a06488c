// Package workflows holds the durable parts of the worker lifecycle manager:
// one lifecycle workflow per worker and the token budget ledger. It also owns
// the names and payloads that masters, workers and the starter CLI use to talk
// to those workflows.
package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// Workflow type names. Workers register the workflows under these names
// (Register) and visibility queries select by them (ListQuery), so a rename
// here reaches both; a rename also breaks every running workflow of the type.
const (
	WorkflowTypeLifecycle = "WorkerLifecycle"
	WorkflowTypeLedger    = "BudgetLedger"
	WorkflowTypeBreaker   = "RestartBreaker"
	WorkflowTypeReadLog   = "ReadLog"
	WorkflowTypeArchive   = "ArchiveCompleted"
	WorkflowTypeSweep     = "SweepFleet"
	WorkflowTypeEvents    = "FleetEvents"
)

// TaskQueue is the shared queue polled by every worker program.
const TaskQueue = "worker-lifecycle"

// HostTaskQueue is the queue of one host's worker program. Starting,
// watching and stopping a process run there, on the host that owns it.
func HostTaskQueue(host string) string { return TaskQueue + "-host-" + host }

// Names of the lifecycle workflow's messages.
const (
	// SignalHeartbeat carries a Heartbeat from the worker process.
	SignalHeartbeat = "heartbeat"
	// SignalSample carries the watcher's activities.ResourceSample of the
	// worker's process tree.
	SignalSample = "resource-sample"
	// SignalOutputHeartbeat is the watcher's heartbeat on behalf of a
	// worker whose log grew (heartbeat mode "output"), with a sample.
	SignalOutputHeartbeat = "output-heartbeat"
	// UpdateShutdown stops the worker gracefully (ShutdownRequest).
	UpdateShutdown = "shutdown"
	// UpdateKill stops the worker at once (KillRequest).
	UpdateKill = "kill"
	// UpdateCleanup retries the compensation of a zombie now.
	UpdateCleanup = "cleanup"
	// QueryStatus returns the WorkerSpec.
	QueryStatus = "status"
	// SignalBudgetAnswer is the ledger's BudgetAnswer to a reservation the
	// lifecycle asked for with SignalReserve: queued, granted or refused.
	SignalBudgetAnswer = "budget-answer"
)

// Names of the budget ledger's messages.
const (
	LedgerWorkflowID = "token-budget-ledger"
	UpdateReserve    = "reserve"
	UpdateRelease    = "release"
	// SignalRelease is the release as a signal, with the same
	// ReleaseRequest and no answer: what lifecycles send.
	SignalRelease = "release"
	// SignalReserve is a reservation as a signal (ReserveRequest, with
	// Priority and Wait), sent by a lifecycle; the ledger answers with
	// SignalBudgetAnswer to WorkflowID(WorkerID). It is how a request
	// waits in the queue, and, having no answer to wait for, is not held
	// to the server's ten updates in flight per workflow.
	SignalReserve = "reserve"
	// UpdateAsk is the same reservation as SignalReserve, answered in the
	// update's result (a BudgetAnswer) instead of a signal back: granted,
	// queued or refused in the ledger's next workflow task. A queued
	// request's grant or refusal still comes later as SignalBudgetAnswer.
	// The ledger refuses the update while it closes for continue-as-new
	// (ErrTypeLedgerClosing); the asker then sends SignalReserve, which
	// is handed to the next run (fleet.Budget.Request).
	UpdateAsk      = "ask"
	UpdateSetTotal = "set_total"
	// UpdatePoolSet configures a pool or the pools' defaults
	// (PoolSetRequest); UpdatePoolDelete removes a pool's settings.
	UpdatePoolSet    = "pool_set"
	UpdatePoolDelete = "pool_delete"
	QueryBudget      = "budget"
	// DefaultBudgetTotal is the ledger's total when it is first created;
	// `starter budget set --total N` changes it.
	DefaultBudgetTotal int64 = 500000
)

// Search attributes upserted on every state change, so the Web UI and
// `temporal workflow list --query` can filter lifecycles. All are Keyword.
var (
	SearchAttrStatus   = temporal.NewSearchAttributeKeyKeyword("WorkerStatus")
	SearchAttrType     = temporal.NewSearchAttributeKeyKeyword("WorkerType")
	SearchAttrMaster   = temporal.NewSearchAttributeKeyKeyword("Master")
	SearchAttrTaskID   = temporal.NewSearchAttributeKeyKeyword("TaskId")
	SearchAttrPriority = temporal.NewSearchAttributeKeyKeyword("Priority")
)

// SearchAttributeNames lists the custom search attributes the server must
// have registered, in the order of SearchAttributes.
var SearchAttributeNames = []string{
	SearchAttrStatus.GetName(), SearchAttrType.GetName(), SearchAttrMaster.GetName(),
	SearchAttrTaskID.GetName(), SearchAttrPriority.GetName(),
}

// SearchAttributes are the values a lifecycle in this state shows to
// visibility queries: the client sets them at start, the workflow upserts
// them on each transition. The order is part of recorded histories.
func SearchAttributes(spec WorkerSpec) []temporal.SearchAttributeUpdate {
	updates := []temporal.SearchAttributeUpdate{
		SearchAttrStatus.ValueSet(string(spec.Status)),
		SearchAttrType.ValueSet(spec.WorkerType),
		SearchAttrMaster.ValueSet(spec.Master),
		SearchAttrPriority.ValueSet(spec.Priority),
	}
	if spec.TaskID != "" {
		updates = append(updates, SearchAttrTaskID.ValueSet(spec.TaskID))
	}
	return updates
}

// ListQuery is the visibility query of the lifecycle workflows, narrowed by
// the conditions given (joined with AND).
func ListQuery(conditions ...string) string {
	return strings.Join(append([]string{fmt.Sprintf("WorkflowType = %q", WorkflowTypeLifecycle)}, conditions...), " AND ")
}

// lifecyclePrefix starts every lifecycle workflow ID.
const lifecyclePrefix = "worker-lifecycle/"

// WorkflowID is the lifecycle workflow ID of a worker.
func WorkflowID(workerID string) string { return lifecyclePrefix + workerID }

// WorkerIDFromWorkflowID is the inverse of WorkflowID; ok is false for the
// ID of another workflow.
func WorkerIDFromWorkflowID(workflowID string) (workerID string, ok bool) {
	workerID, ok = strings.CutPrefix(workflowID, lifecyclePrefix)
	return workerID, ok && workerID != ""
}

// hostIdentityMark separates a worker program's identity from the host it
// serves, so the hosts can be read off the pollers of the shared queue.
const hostIdentityMark = "@host="

// containmentMark introduces, after the host, how that worker program
// contains its processes, so `starter doctor` can say it.
const containmentMark = "@contain="

// HostIdentity is the Temporal worker identity of a worker program: the
// SDK's usual pid@hostname, then the host whose queue it polls and how it
// contains its processes.
//
// The containment goes before the host, which stays last: a previous
// release reads everything after hostIdentityMark as the host.
func HostIdentity(pid int, hostname, host, containment string) string {
	id := fmt.Sprintf("%d@%s", pid, hostname)
	if containment != "" {
		id += containmentMark + containment
	}
	return id + hostIdentityMark + host
}

// HostOfIdentity reads the host back from a HostIdentity; ok is false for a
// poller that is not one of our worker programs.
func HostOfIdentity(identity string) (host string, ok bool) {
	_, host, ok = strings.Cut(identity, hostIdentityMark)
	// An unreleased build put the containment after the host.
	host, _, _ = strings.Cut(host, containmentMark)
	return host, ok && host != ""
}

// ContainmentOfIdentity reads how the worker program contains its
// processes; "" for one of a release that did not say.
func ContainmentOfIdentity(identity string) string {
	_, c, _ := strings.Cut(identity, containmentMark)
	c, _, _ = strings.Cut(c, hostIdentityMark)
	return c
}

// Heartbeat is what a worker process sends, every 30 s by default.
type Heartbeat struct {
	TokensUsed  int64  `json:"tokens_used"`
	HealthScore *int   `json:"health_score,omitempty"`
	Status      string `json:"status,omitempty"` // "busy", "idle", "blocked", "awaiting_input" or empty
	Message     string `json:"message,omitempty"`
	// SentAt is the sender's clock. It is kept for display only: staleness
	// is always judged by when the workflow received the heartbeat.
	SentAt *time.Time `json:"sent_at,omitempty"`
	// Process names the process that sends it: the WORKER_PROCESS entry
	// of its environment (activities.ProcessEnv). A heartbeat of an
	// earlier process of the worker is counted as rejected, not applied;
	// one without it (a master's) is applied to the current process.
	Process string `json:"process,omitempty"`
	// Path is PathHost on a heartbeat the worker's host relays, which it
	// received Age ago: the lifecycle counts it from then. Empty (or
	// PathSignal) on a heartbeat sent to the lifecycle directly.
	Path string        `json:"path,omitempty"`
	Age  time.Duration `json:"age,omitempty"`
}

// Heartbeat paths (HeartbeatInfo.Path).
const (
	PathSignal = activities.PathSignal
	PathHost   = activities.PathHost
)

// HeartbeatSocketEnv names the entry of a worker process's environment
// that holds its host's heartbeat socket, when the host has one
// (activities.HeartbeatSocketEnv).
const HeartbeatSocketEnv = activities.HeartbeatSocketEnv

// ProcessEnv names the entry of a worker process's environment that holds
// its start's name, for Heartbeat.Process (set by its host).
const ProcessEnv = activities.ProcessEnv

// Heartbeat statuses. Blocked and awaiting input say the agent needs a
// person (HeartbeatInfo.Attention, the attention_needed event): it counts
// as busy, never idle.
const (
	HeartbeatBusy          = "busy"
	HeartbeatIdle          = "idle"
	HeartbeatBlocked       = "blocked"
	HeartbeatAwaitingInput = "awaiting_input"
)

// NeedsAttention says whether a heartbeat status asks for a person.
func NeedsAttention(status string) bool {
	return status == HeartbeatBlocked || status == HeartbeatAwaitingInput
}

// ShutdownRequest asks for a graceful stop.
type ShutdownRequest struct {
	// Grace between SIGTERM and SIGKILL; zero means the lifecycle's default.
	Grace  time.Duration `json:"grace,omitempty"`
	Reason string        `json:"reason,omitempty"`
}

// KillRequest asks for an immediate stop.
type KillRequest struct {
	Reason string `json:"reason,omitempty"`
}

// WorkerSpec is a worker as operators see it, in the runbook's shape.
type WorkerSpec struct {
	WorkerID    string        `json:"worker_id"`
	WorkerType  string        `json:"worker_type"`
	Status      Status        `json:"status"`
	TaskID      string        `json:"task_id,omitempty"`
	Priority    string        `json:"priority"`
	Master      string        `json:"master"`
	Repo        string        `json:"repo,omitempty"`
	TokenBudget TokenBudget   `json:"token_budget"`
	Heartbeat   HeartbeatInfo `json:"heartbeat"`
	PID         int           `json:"pid,omitempty"`
	Host        string        `json:"host,omitempty"`
	LogPath     string        `json:"log_path,omitempty"`
	// Containment is how its host keeps the process's tree together:
	// "cgroup" or "process-group" (README, Supervision).
	Containment string     `json:"containment,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at"`
	ExitCode    *int       `json:"exit_code"`
	// ExitReason says how the last process ended: "exit", "signal",
	// "oom" (the out-of-memory killer, read from its cgroup), "lost"
	// (nobody saw its end) or "fenced" (its own host stopped it, cut off
	// from the server).
	ExitReason string       `json:"exit_reason,omitempty"`
	Cleanup    *CleanupInfo `json:"cleanup,omitempty"`
	// Health is the true health: the old system's formula over the sampled
	// CPU and memory of the whole process tree and the tokens remaining.
	Health HealthInfo `json:"health"`
	// Restarts lists every restart of the worker's process.
	Restarts []RestartRecord `json:"restarts,omitempty"`
	// Transitions is the recent history of states, oldest first (bounded).
	Transitions []Transition `json:"transitions"`
	// Queue is set while the worker waits, pending, for its budget.
	Queue *QueueInfo `json:"queue,omitempty"`
}

// QueueInfo is a pending worker's place in the budget queue.
type QueueInfo struct {
	// Position is its place when it was queued, from 1; the client reads
	// the current one from the ledger (fleet.Client.Status).
	Position int `json:"position"`
	// Pool is the pool it waits in; Position is its place there.
	Pool  string    `json:"pool,omitempty"`
	Since time.Time `json:"since"`
	// Deadline is when its queue timeout ends it; nil when it has none.
	Deadline *time.Time `json:"deadline,omitempty"`
}

// TokenBudget is a worker's allocation and what it reported using.
type TokenBudget struct {
	Allocated int64 `json:"allocated"`
	Used      int64 `json:"used"`
	// Pool is the budget pool it reserves in; empty for lifecycles
	// started before pools, which reserve in the root alone.
	Pool string `json:"pool,omitempty"`
}

// HeartbeatInfo is the worker's liveness as the workflow saw it.
type HeartbeatInfo struct {
	// LastSeen is when the workflow received the last heartbeat, by its own
	// clock; nil until the first one.
	LastSeen *time.Time `json:"last_seen"`
	// HealthScore is the computed score (Health.Score), where the old
	// system's scripts read it.
	HealthScore int `json:"health_score"`
	// ReportedHealthScore is what the worker said of itself, if anything.
	ReportedHealthScore *int   `json:"reported_health_score,omitempty"`
	Message             string `json:"message,omitempty"`
	// Alert is "warning" or "critical" while heartbeats are late. A
	// lifecycle that carries its clocks (ZombieAfter set) keeps only the
	// alert of its end here, and readers compute the live one (AlertAt).
	Alert string `json:"alert,omitempty"`
	// WarningAfter, CriticalAfter and ZombieAfter are the lifecycle's
	// heartbeat clocks, measured from the last heartbeat or the start of
	// the process. Zero in lifecycles of releases before r8, which set
	// Alert themselves with a timer for each level.
	WarningAfter  time.Duration `json:"warning_after,omitempty"`
	CriticalAfter time.Duration `json:"critical_after,omitempty"`
	ZombieAfter   time.Duration `json:"zombie_after,omitempty"`
	// Count is every heartbeat accepted over the whole lifecycle; a host
	// relays some of those its agent sends it (Path).
	Count int64 `json:"count"`
	// Path is how the last heartbeat came: PathSignal, or PathHost when
	// the worker's host relayed it. Empty in lifecycles before r8. A
	// reader of a worker on the host path takes the freshest heartbeat
	// from the host's watch (fleet.Client.Status): the lifecycle hears
	// only what it acts on, and a keepalive once per zombie limit.
	Path string `json:"path,omitempty"`
	// Attention is the agent's last status that asks for a person
	// (blocked, awaiting_input), until it reports busy or idle again.
	Attention string `json:"attention,omitempty"`
	// Rejected counts heartbeats and samples whose payload was invalid and
	// was ignored; LastRejected says why for the latest.
	Rejected     int64  `json:"rejected,omitempty"`
	LastRejected string `json:"last_rejected,omitempty"`
}

// AlertAt is the heartbeat alert of the worker at now: the one its
// lifecycle recorded, or, for a supervised worker whose lifecycle carries
// its clocks, the level the age of its last heartbeat reaches. The
// lifecycle arms no timer for a warning (VersionOneDeadlineTimer), so
// every reader (status, list, the mirror) asks this with its own clock.
func (s WorkerSpec) AlertAt(now time.Time) string {
	hb := s.Heartbeat
	base, ok := s.alertBase()
	if !ok || hb.Alert == AlertCritical {
		return hb.Alert
	}
	switch age := now.Sub(base); {
	case age >= hb.CriticalAfter:
		return AlertCritical
	case age >= hb.WarningAfter:
		return AlertWarning
	}
	return hb.Alert
}

// heartbeatBase is the time staleness is measured from: the last
// heartbeat, or the start of the process for a worker that has not sent
// one yet. A worker whose process has not started has none (ok false) and
// is never flagged.
func (s WorkerSpec) heartbeatBase() (base time.Time, ok bool) {
	if s.StartedAt == nil {
		return time.Time{}, false
	}
	base = *s.StartedAt
	if hb := s.Heartbeat.LastSeen; hb != nil && hb.After(base) {
		base = *hb
	}
	return base, true
}

// alertBase is heartbeatBase for a worker whose alert readers compute: a
// supervised one (running or idle) whose lifecycle carries its clocks.
func (s WorkerSpec) alertBase() (time.Time, bool) {
	if s.Heartbeat.ZombieAfter == 0 || (s.Status != StatusRunning && s.Status != StatusIdle) {
		return time.Time{}, false
	}
	return s.heartbeatBase()
}

// Heartbeat alert levels.
const (
	AlertWarning  = "warning"
	AlertCritical = "critical"
)

// CleanupInfo says why and how a worker's resources were given back.
type CleanupInfo struct {
	Reason    string     `json:"reason"`
	CleanedAt *time.Time `json:"cleaned_at,omitempty"`
	// Automated is false when an operator asked for the stop.
	Automated bool `json:"automated"`
	// Refunded is the number of tokens returned to the budget.
	Refunded int64 `json:"refunded"`
	// Process says what became of the process: "stopped", "already gone"
	// (exited, or its PID now names another process) or "lost" (its host
	// disappeared).
	Process string `json:"process,omitempty"`
}

// HealthInfo is the worker's health as computed by the lifecycle.
type HealthInfo struct {
	Score      int        `json:"score"`
	Band       string     `json:"band"` // healthy, degraded or unhealthy
	CPUPercent float64    `json:"cpu_percent"`
	RSSBytes   int64      `json:"rss_bytes"`
	Processes  int        `json:"processes"`
	SampledAt  *time.Time `json:"sampled_at,omitempty"`
}

// RestartRecord is one restart of a crashed worker.
type RestartRecord struct {
	At       time.Time     `json:"at"`
	ExitCode *int          `json:"exit_code"`
	Reason   string        `json:"reason"`
	Delay    time.Duration `json:"delay"`
	// Counted is false for a restart an exit rule's ignore made: not
	// counted against max_restarts nor by the breaker.
	Counted *bool `json:"counted,omitempty"`
}

// Process outcomes recorded in CleanupInfo.Process.
const (
	ProcessStopped     = "stopped"
	ProcessAlreadyGone = "already gone"
	ProcessLost        = "lost"
)

// Transition is one change of state.
type Transition struct {
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}
