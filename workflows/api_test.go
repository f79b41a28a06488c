package workflows

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/commit-relay/worker-lifecycle/activities"
)

func TestWorkerIDFromWorkflowIDInvertsWorkflowID(t *testing.T) {
	id, ok := WorkerIDFromWorkflowID(WorkflowID("worker-impl-1"))
	require.True(t, ok)
	require.Equal(t, "worker-impl-1", id)
	for _, other := range []string{LedgerWorkflowID, BreakerWorkflowID("impl"), "worker-lifecycle/", ArchivalWorkflowIDStart} {
		_, ok := WorkerIDFromWorkflowID(other)
		require.False(t, ok, other)
	}
}

func TestHostOfIdentityInvertsHostIdentity(t *testing.T) {
	host, ok := HostOfIdentity(HostIdentity(42, "box.example", "host-a", ""))
	require.True(t, ok)
	require.Equal(t, "host-a", host)
	require.Empty(t, ContainmentOfIdentity(HostIdentity(42, "box.example", "host-a", "")), "a release that did not say")

	id := HostIdentity(42, "box.example", "host-a", "cgroup")
	host, ok = HostOfIdentity(id)
	require.True(t, ok)
	require.Equal(t, "host-a", host)
	require.Equal(t, "cgroup", ContainmentOfIdentity(id))
	// A previous release takes what follows its mark as the host.
	_, prevHost, _ := strings.Cut(id, "@host=")
	require.Equal(t, "host-a", prevHost, "a previous release reads the host of %s", id)
	for _, other := range []string{"42@box", "42@box@host=", "temporal-cli"} {
		_, ok := HostOfIdentity(other)
		require.False(t, ok, other)
	}
}

// The names the server must register are exactly those the lifecycle sets.
func TestSearchAttributesUseTheRegisteredNames(t *testing.T) {
	spec := WorkerSpec{Status: StatusIdle, WorkerType: "impl", Master: "m", Priority: "high", TaskID: "task-1"}
	var names []string
	for key := range temporal.NewSearchAttributes(SearchAttributes(spec)...).GetUntypedValues() {
		names = append(names, key.GetName())
	}
	require.ElementsMatch(t, SearchAttributeNames, names)
	require.Len(t, SearchAttributes(WorkerSpec{Status: StatusPending}), len(SearchAttributeNames)-1, "no task id, no TaskId attribute")
}

func TestListQuerySelectsLifecycles(t *testing.T) {
	require.Equal(t, `WorkflowType = "WorkerLifecycle"`, ListQuery())
	require.Equal(t, `WorkflowType = "WorkerLifecycle" AND WorkerStatus = "idle" AND (x)`, ListQuery(`WorkerStatus = "idle"`, "(x)"))
}

// A client that passes a workflow function names it by the function's name:
// that must be the registered type name.
func TestRegisteredNames(t *testing.T) {
	for _, w := range registered {
		full := runtime.FuncForPC(reflect.ValueOf(w.fn).Pointer()).Name()
		require.Equal(t, w.name, full[strings.LastIndex(full, ".")+1:])
	}
}

func TestWatchActivityNameIsTheRegisteredMethod(t *testing.T) {
	_, ok := reflect.TypeOf(&activities.HostActivities{}).MethodByName(ActivityWatchProcess)
	require.True(t, ok, "HostActivities has no method %s: readers would never find the watch's heartbeat", ActivityWatchProcess)
}
