package adapters

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/mocks"

	"github.com/commit-relay/worker-lifecycle/fleet"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// TestOwnsProcess: who holds a process, as the orphan check asks it.
func TestOwnsProcess(t *testing.T) {
	const id, host, pid = "worker-a-1", "host-a", 4242
	for name, c := range map[string]struct {
		spec    workflows.WorkerSpec
		err     error
		owns    bool
		wantErr bool
	}{
		"pending, starting one":   {spec: workflows.WorkerSpec{Status: workflows.StatusPending}, owns: true},
		"running with it":         {spec: workflows.WorkerSpec{Status: workflows.StatusRunning, Host: host, PID: pid}, owns: true},
		"running another pid":     {spec: workflows.WorkerSpec{Status: workflows.StatusRunning, Host: host, PID: pid + 1}},
		"running on another host": {spec: workflows.WorkerSpec{Status: workflows.StatusIdle, Host: "host-b", PID: pid}},
		"zombie still holds it":   {spec: workflows.WorkerSpec{Status: workflows.StatusZombie, Host: host, PID: pid}, owns: true},
		"completed":               {spec: workflows.WorkerSpec{Status: workflows.StatusCompleted, Host: host, PID: pid}},
		"no lifecycle at all":     {err: serviceerror.NewNotFound("gone")},
		"server down":             {err: errors.New("connection refused"), wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			client := mocks.NewClient(t)
			if c.err != nil {
				client.On("QueryWorkflow", mock.Anything, workflows.WorkflowID(id), "", workflows.QueryStatus).Return(nil, c.err)
				if !c.wantErr {
					client.On("DescribeWorkflowExecution", mock.Anything, workflows.WorkflowID(id), "").Return(nil, serviceerror.NewNotFound("gone"))
				}
			} else {
				v := mocks.NewEncodedValue(t)
				v.On("Get", mock.Anything).Run(func(args mock.Arguments) { *args.Get(0).(*workflows.WorkerSpec) = c.spec }).Return(nil)
				client.On("QueryWorkflow", mock.Anything, workflows.WorkflowID(id), "", workflows.QueryStatus).Return(v, nil)
			}
			fc, err := fleet.New(client, fleet.Options{})
			require.NoError(t, err)
			owns, err := (&Sweeper{Fleet: fc}).OwnsProcess(context.Background(), id, host, pid)
			if c.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.owns, owns)
		})
	}
}
