package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/commit-relay/worker-lifecycle/internal/atomicfile"
)

// Archive is where final specs of ended workers are kept, and what finds
// them. The worker program wires it to visibility and the lifecycles'
// results.
type Archive interface {
	// Ended lists lifecycles that ended completed or cleaned_up before
	// closedBefore.
	Ended(ctx context.Context, closedBefore time.Time) ([]EndedLifecycle, error)
	// FinalSpec returns the final spec of one lifecycle run, as JSON.
	FinalSpec(ctx context.Context, workflowID, runID string) ([]byte, error)
}

// EndedLifecycle is one lifecycle run that has ended.
type EndedLifecycle struct {
	WorkerID   string    `json:"worker_id"`
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	ClosedAt   time.Time `json:"closed_at"`
}

// ArchiveInput asks to archive these lifecycles.
type ArchiveInput struct {
	Lifecycles []EndedLifecycle `json:"lifecycles"`
	DryRun     bool             `json:"dry_run"`
}

// ArchiveResult says what was archived now and what had been before.
type ArchiveResult struct {
	Archived        []string `json:"archived"`
	AlreadyArchived int      `json:"already_archived"`
}

// ListEnded lists the lifecycles that ended before closedBefore.
func (a *SharedActivities) ListEnded(ctx context.Context, closedBefore time.Time) ([]EndedLifecycle, error) {
	if a.Archive == nil {
		return nil, errors.New("this worker program has no archive configured")
	}
	return a.Archive.Ended(ctx, closedBefore)
}

// ArchiveSpecs writes each lifecycle's final spec to ArchiveDir as
// <worker_id>_<run_id>.json. A file that exists already means the run was
// archived before: it is counted, not written again.
func (a *SharedActivities) ArchiveSpecs(ctx context.Context, in ArchiveInput) (ArchiveResult, error) {
	res := ArchiveResult{Archived: []string{}}
	if a.Archive == nil || a.ArchiveDir == "" {
		return res, errors.New("this worker program has no archive configured")
	}
	if err := os.MkdirAll(a.ArchiveDir, 0o755); err != nil {
		return res, err
	}
	for i, l := range in.Lifecycles {
		activity.RecordHeartbeat(ctx, i)
		if !workerIDPattern.MatchString(l.WorkerID) || !runIDPattern.MatchString(l.RunID) {
			return res, fmt.Errorf("refusing to archive %q run %q: not a worker id and run id", l.WorkerID, l.RunID)
		}
		path := filepath.Join(a.ArchiveDir, l.WorkerID+"_"+l.RunID+".json")
		if _, err := os.Stat(path); err == nil {
			res.AlreadyArchived++
			continue
		}
		if in.DryRun {
			res.Archived = append(res.Archived, l.WorkerID)
			continue
		}
		spec, err := a.Archive.FinalSpec(ctx, l.WorkflowID, l.RunID)
		if err != nil {
			return res, fmt.Errorf("final spec of %s: %w", l.WorkerID, err)
		}
		if err := atomicfile.Write(path, append(spec, '\n')); err != nil {
			return res, err
		}
		res.Archived = append(res.Archived, l.WorkerID)
		if a.Archived != nil {
			if err := a.Archived(l.WorkerID); err != nil {
				activity.GetLogger(ctx).Warn("Moving the spec file to archived/ failed", "worker_id", l.WorkerID, "error", err)
			}
		}
		a.Event.record("worker_archived", map[string]any{"worker_id": l.WorkerID, "run_id": l.RunID, "archive": path})
	}
	return res, nil
}
