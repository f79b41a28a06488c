package fleet

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// FuzzReadSpec: any spec file is either a valid spawn request or refused as
// invalid input; it never panics.
func FuzzReadSpec(f *testing.F) {
	f.Add([]byte(`{"worker_type": "fix-worker", "task_id": "task-1", "created_by": "development-master", "token_budget": {"allocated": 100}}`))
	f.Add([]byte(`{"worker_id": "worker-x-../y", "worker_type": "fix-worker", "task_id": "job", "master": "m"}`))
	f.Add([]byte(`{"worker_type": 7}`))
	f.Add([]byte(`{"token_budget": {"allocated": -99999999999}}`))
	f.Add([]byte(`{}{}`))
	f.Add([]byte(`null`))
	fleet := &Client{types: workertypes.Defaults()}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "spec.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		req, err := fleet.ReadSpec(path)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("a bad spec must be invalid input, got %v", err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted a spec that does not validate: %v", err)
		}
		if !workflows.WorkerIDPattern.MatchString(req.WorkerID) {
			t.Fatalf("accepted worker id %q", req.WorkerID)
		}
	})
}
