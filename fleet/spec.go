package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// specFile is a worker spec as the old system wrote it (the runbook's
// "Manual Worker Spec Creation"). Fields it only reports (status, heartbeat,
// created_at, ...) are accepted and ignored: a spec is a request here.
type specFile struct {
	WorkerID    *string         `json:"worker_id"`
	WorkerType  *string         `json:"worker_type"`
	TaskID      *string         `json:"task_id"`
	Priority    *string         `json:"priority"`
	Master      *string         `json:"master"`
	CreatedBy   *string         `json:"created_by"`
	Repo        *string         `json:"repo"`
	Scope       *specScope      `json:"scope"`
	TokenBudget *specBudget     `json:"token_budget"`
	Status      json.RawMessage `json:"status"`
	Heartbeat   json.RawMessage `json:"heartbeat"`
	CreatedAt   json.RawMessage `json:"created_at"`
	CompletedAt json.RawMessage `json:"completed_at"`
	PID         json.RawMessage `json:"pid"`
	Execution   json.RawMessage `json:"execution"`
	Cleanup     json.RawMessage `json:"cleanup"`
}

type specScope struct {
	Repository *string `json:"repository"`
}

type specBudget struct {
	Allocated *int64          `json:"allocated"`
	Used      json.RawMessage `json:"used"`
}

// ReadSpec reads a worker spec file and returns the spawn request it
// describes, with the type's defaults filled in, or an error naming every
// bad or missing field.
func (f *Client) ReadSpec(path string) (workflows.SpawnRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return workflows.SpawnRequest{}, fmt.Errorf("%w: spec %s: %v", ErrInvalid, path, err)
	}
	var s specFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return workflows.SpawnRequest{}, fmt.Errorf("%w: spec %s is not a valid worker spec: %v", ErrInvalid, path, err)
	}
	var errs []error
	req := workflows.SpawnRequest{MaxRestarts: -1}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	req.WorkerID, req.TaskID, req.Priority = str(s.WorkerID), str(s.TaskID), str(s.Priority)
	if req.WorkerType = str(s.WorkerType); req.WorkerType == "" {
		errs = append(errs, &workflows.FieldError{Field: "worker_type", Message: "worker_type is required"})
	}
	if req.TaskID == "" {
		errs = append(errs, &workflows.FieldError{Field: "task_id", Message: "task_id is required"})
	}
	switch {
	case s.Master != nil:
		req.Master = *s.Master
	case s.CreatedBy != nil:
		req.Master = *s.CreatedBy
	default:
		errs = append(errs, &workflows.FieldError{Field: "master", Message: "master (or created_by) is required"})
	}
	req.Repo = str(s.Repo)
	if s.Scope != nil && req.Repo == "" {
		req.Repo = str(s.Scope.Repository)
	}
	if s.TokenBudget != nil && s.TokenBudget.Allocated != nil {
		req.Budget = *s.TokenBudget.Allocated
		if req.Budget == 0 {
			errs = append(errs, &workflows.FieldError{Field: "token_budget.allocated",
				Message: fmt.Sprintf("token_budget.allocated 0 is not in %d..%d", workflows.MinBudget, workflows.MaxBudget)})
		}
	}
	if len(errs) == 0 {
		var err error
		if req, err = f.Resolve(req); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return req, invalid("spec "+path+": ", err)
	}
	return req, nil
}
