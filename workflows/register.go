package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/commit-relay/worker-lifecycle/activities"
)

// WorkflowRegistry is what registers workflows: a Temporal worker, the
// replayer, or a test environment.
type WorkflowRegistry interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers every workflow under its type name. The worker
// program, the replay test and the test harnesses all use it, so a workflow
// cannot be known to one and missing from another.
func Register(r WorkflowRegistry) {
	for _, w := range registered {
		r.RegisterWorkflowWithOptions(w.fn, workflow.RegisterOptions{Name: w.name})
	}
}

// registered pairs each workflow with its type name. Each name is also the
// function's own, so that a client passing the function (ExecuteWorkflow,
// continue-as-new, schedules) names the same type (TestRegisteredNames).
var registered = []struct {
	fn   any
	name string
}{
	{WorkerLifecycle, WorkflowTypeLifecycle},
	{BudgetLedger, WorkflowTypeLedger},
	{RestartBreaker, WorkflowTypeBreaker},
	{ReadLog, WorkflowTypeReadLog},
	{ArchiveCompleted, WorkflowTypeArchive},
	{SweepFleet, WorkflowTypeSweep},
	{FleetEvents, WorkflowTypeEvents},
}

// Registry is a Temporal worker as far as registering goes.
type Registry interface {
	WorkflowRegistry
	RegisterActivity(a interface{})
}

// RegisterShared sets up a worker of the shared queue (TaskQueue): every
// workflow and the activities any worker program can run.
func RegisterShared(w Registry, acts *activities.SharedActivities) {
	Register(w)
	w.RegisterActivity(acts)
}

// RegisterHost sets up a worker of one host's queue (HostTaskQueue): the
// activities on that host's processes, and nothing else.
func RegisterHost(w Registry, acts *activities.HostActivities) {
	w.RegisterActivity(acts)
}

// ActivityWatchProcess is the activity type of a worker's watch, the
// method name it is registered under: a reader finds the heartbeat its
// host holds in that pending activity's heartbeat details
// (activities.WatchDetails).
const ActivityWatchProcess = "WatchProcess"
