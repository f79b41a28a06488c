// Package metrics declares the fleet's Prometheus metrics (their names and
// labels, once, for the code that records them, the alert rules and the
// dashboards) and serves them with the Temporal SDK's own metrics on a
// worker program's /metrics.
//
// Three kinds of metric, by who can know them:
//   - Counters of what lifecycles decide (zombies, restarts, give-ups,
//     cleanups, heartbeats, state changes), recorded through the SDK's
//     metrics handler from workflow code, which skips replays, and by the
//     activities (ledger latency). They are exported
//     by whichever worker program ran the task: sum them over programs.
//   - Host gauges (processes, their CPU and memory, the age of the
//     heartbeats the host holds), read at each scrape by every program
//     about its own host.
//   - Fleet gauges (lifecycles by state and type, the budget by pool,
//     breakers, pollers), read at each scrape from the server by the one
//     program started with --metrics-fleet, so that a value is not
//     exported once per host.
//
// Labels are few and bounded: type (the worker type; the SDK's own metrics use worker_type for its kind of worker), state, pool, host, reason,
// operation, path, result. Never a worker id.
package metrics

import (
	"regexp"
	"sort"
)

// The metric names as Prometheus shows them. Counters recorded through the
// SDK's handler are named without _total (the exporter adds it); timers
// without _seconds (likewise).
const (
	// Lifecycle counters (workflow code).
	Transitions       = "worker_lifecycle_transitions"          // {type, state}: entries into each state
	ZombiesDetected   = "worker_lifecycle_zombies_detected"     // {type, judged_by}: no heartbeat within the zombie limit
	CleanupFailures   = "worker_lifecycle_cleanup_failures"     // {type}: a cleanup (stop or refund) that failed and will be retried
	Restarts          = "worker_lifecycle_restarts"             // {type, reason}: a process started again
	GiveUps           = "worker_lifecycle_give_ups"             // {type, reason}: a crash not restarted
	HostsLost         = "worker_lifecycle_host_lost_lifecycles" // {host}: lifecycles that found their host's program gone past its limit (one per lifecycle of the host)
	HeartbeatsApplied = "worker_lifecycle_heartbeats"           // {path, result}: heartbeats a lifecycle took (applied) or refused (rejected); path signal, host or invalid
	HeartbeatGap      = "worker_lifecycle_heartbeat_gap"        // timer {path}: how long a worker had been silent when a heartbeat came (its age just before)

	// Activity metrics.
	LedgerOperation = "worker_lifecycle_ledger_operation" // timer {operation}: ask, reserve, recheck, release or release_signal, as the activity saw it

	// The notifier (the program with --notify-webhook).
	Notifications = "worker_lifecycle_notifications" // {result}: delivered, or failed after their tries

	// Host gauges (every worker program, about its host).
	HostProcesses       = "worker_lifecycle_host_processes"                 // {host}: live worker processes started here
	HostCPU             = "worker_lifecycle_host_cpu_percent"               // {host}: their CPU, summed over their process trees
	HostRSS             = "worker_lifecycle_host_rss_bytes"                 // {host}: their resident memory, summed likewise
	HostHeartbeatAgeMax = "worker_lifecycle_host_heartbeat_age_max_seconds" // {host}: the oldest heartbeat the host holds for a live process

	// Fleet gauges (the program with --metrics-fleet).
	Lifecycles        = "worker_lifecycle_lifecycles"                 // {state, type}: open lifecycles
	BudgetTotal       = "worker_lifecycle_budget_total_tokens"        // {pool}: the root's total, or a pool's quota (0: none)
	BudgetHeld        = "worker_lifecycle_budget_held_tokens"         // {pool}
	BudgetAvailable   = "worker_lifecycle_budget_available_tokens"    // {pool}: the root's total - held; a pool with a quota: quota - held
	BudgetQueued      = "worker_lifecycle_budget_queued_tokens"       // {pool}: what waiting reservations ask for
	BudgetWindowSpent = "worker_lifecycle_budget_window_spent_tokens" // {pool}: spent in the open spend window
	BudgetWindowLimit = "worker_lifecycle_budget_window_limit_tokens" // {pool}
	BudgetAlert       = "worker_lifecycle_budget_alert"               // {pool}: 1 while its alert threshold is crossed
	BreakerOpen       = "worker_lifecycle_breaker_open"               // {type}: 1 while restarts of the type are stopped
	QueuePollers      = "worker_lifecycle_queue_pollers"              // {queue}: worker programs polling the shared queue ("shared") or a host's (the host)
	FleetReadErrors   = "worker_lifecycle_fleet_read_errors"          // {what}: reads of the fleet gauges that failed (counter)
	FleetReadDuration = "worker_lifecycle_fleet_read_duration_seconds"
)

// Label names.
const (
	LabelType      = "type"
	LabelState     = "state"
	LabelPool      = "pool"
	LabelHost      = "host"
	LabelReason    = "reason"
	LabelJudgedBy  = "judged_by"
	LabelOperation = "operation"
	LabelPath      = "path"
	LabelResult    = "result"
	LabelQueue     = "queue"
	LabelWhat      = "what"
)

// DeployFiles are the files, relative to the module root, whose queries
// name metrics: the alert rules and the dashboard. Every name they use must
// be served by a worker program (the integration test checks a real
// scrape).
var DeployFiles = []string{"deploy/prometheus/alerts.yml", "deploy/grafana/fleet.json"}

var metricRef = regexp.MustCompile(`\b((?:worker_lifecycle|temporal)_[a-z_]+)`)

// Referenced lists, sorted and once each, the names of this module's and
// the SDK's metrics that text uses.
func Referenced(text []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range metricRef.FindAllSubmatch(text, -1) {
		if name := string(m[1]); !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
