package workflows

import "go.temporal.io/sdk/workflow"

// WorkflowRegistry is what registers workflows: a Temporal worker, the
// replayer, or a test environment.
type WorkflowRegistry interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers every workflow under its type name. The worker
// program, the replay test and the test harnesses all use it, so a workflow
// cannot be known to one and missing from another.
func Register(r WorkflowRegistry) {
	for _, w := range []struct {
		fn   any
		name string
	}{
		{WorkerLifecycle, WorkflowTypeLifecycle},
		{BudgetLedger, WorkflowTypeLedger},
		{RestartBreaker, WorkflowTypeBreaker},
		{ReadLog, WorkflowTypeReadLog},
		{ArchiveCompleted, WorkflowTypeArchive},
		{SweepFleet, WorkflowTypeSweep},
	} {
		r.RegisterWorkflowWithOptions(w.fn, workflow.RegisterOptions{Name: w.name})
	}
}
