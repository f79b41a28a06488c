package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// saga holds the compensations of the steps that succeeded, each added right
// after its step.
type saga struct {
	steps []sagaStep
}

type sagaStep struct {
	name string
	undo func(workflow.Context) error
}

func (s *saga) add(name string, undo func(workflow.Context) error) {
	s.steps = append(s.steps, sagaStep{name: name, undo: undo})
}

// drop forgets a compensation whose work was done on the normal path.
func (s *saga) drop(name string) {
	kept := s.steps[:0]
	for _, st := range s.steps {
		if st.name != name {
			kept = append(kept, st)
		}
	}
	s.steps = kept
}

func (s *saga) empty() bool { return len(s.steps) == 0 }

func (s *saga) has(name string) bool {
	for _, st := range s.steps {
		if st.name == name {
			return true
		}
	}
	return false
}

// compensate runs every compensation, newest first, on a disconnected
// context so that a cancelled lifecycle still gives back what it holds. It
// runs them all even when one fails, returns the failures, and keeps the
// failed ones for another try.
func (s *saga) compensate(ctx workflow.Context) []error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	var errs []error
	failed := make([]bool, len(s.steps))
	for i := len(s.steps) - 1; i >= 0; i-- {
		if err := s.steps[i].undo(dctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.steps[i].name, err))
			failed[i] = true
		}
	}
	kept := s.steps[:0]
	for i, st := range s.steps {
		if failed[i] {
			kept = append(kept, st)
		}
	}
	s.steps = kept
	return errs
}
