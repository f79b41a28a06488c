package devserver

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// fakeModule makes a folder that looks like this module's root, with a
// sub-folder to work in.
func fakeModule(t *testing.T, module string) (root, sub string) {
	t.Helper()
	root = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("// a comment\nmodule "+module+"\n\ngo 1.26\n"), 0o644))
	sub = filepath.Join(root, "internal", "x")
	require.NoError(t, os.MkdirAll(sub, 0o755))
	return root, sub
}

func executable(t *testing.T, path string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755))
	return path
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(root, "internal", "devserver", "devserver.go"))

	fake, sub := fakeModule(t, Module)
	t.Chdir(sub)
	root, err = ModuleRoot()
	require.NoError(t, err)
	assert.Equal(t, fake, root)

	// Another module's go.mod is not ours.
	_, other := fakeModule(t, "example.com/other")
	t.Chdir(other)
	_, err = ModuleRoot()
	require.ErrorContains(t, err, "no go.mod of "+Module)
}

func TestFindTemporalCLI(t *testing.T) {
	root, sub := fakeModule(t, Module)
	t.Chdir(sub)
	path := t.TempDir()
	t.Setenv("PATH", path)
	t.Setenv(CLIEnv, "")

	_, err := FindTemporalCLI()
	require.ErrorContains(t, err, "run `make tools`")

	onPath := executable(t, filepath.Join(path, "temporal"))
	got, err := FindTemporalCLI()
	require.NoError(t, err)
	assert.Equal(t, onPath, got)

	built := executable(t, filepath.Join(root, ".tools", "bin", "temporal"))
	got, err = FindTemporalCLI()
	require.NoError(t, err)
	assert.Equal(t, built, got, "the one `make tools` builds comes before PATH")

	named := executable(t, filepath.Join(t.TempDir(), "my-temporal"))
	t.Setenv(CLIEnv, named)
	got, err = FindTemporalCLI()
	require.NoError(t, err)
	assert.Equal(t, named, got, "TEMPORAL_CLI comes first")

	t.Setenv(CLIEnv, filepath.Join(root, "missing"))
	_, err = FindTemporalCLI()
	require.ErrorContains(t, err, "TEMPORAL_CLI="+filepath.Join(root, "missing"))
	require.ErrorContains(t, err, "make tools", "a TEMPORAL_CLI that is not there is an error, not a reason to look elsewhere")
}

func TestSearchAttributeArgs(t *testing.T) {
	args := SearchAttributeArgs()
	require.Len(t, args, 2*len(workflows.SearchAttributeNames))
	for i, name := range workflows.SearchAttributeNames {
		assert.Equal(t, []string{"--search-attribute", name + "=Keyword"}, args[2*i:2*i+2])
	}
}

// TestClusterConfigMatchesDevServer keeps the cluster's dynamic config and
// `make run`'s dev server on what the tests' dev server runs with.
func TestClusterConfigMatchesDevServer(t *testing.T) {
	root, err := ModuleRoot()
	require.NoError(t, err)
	yaml, err := os.ReadFile(filepath.Join(root, "deploy", "cluster", "dynamicconfig.yaml"))
	require.NoError(t, err)
	demo, err := os.ReadFile(filepath.Join(root, "scripts", "run-demo.sh"))
	require.NoError(t, err)
	require.NotEmpty(t, DynamicConfig)
	for _, kv := range DynamicConfig {
		assert.Contains(t, string(yaml), kv[0]+":\n  - value: "+kv[1]+"\n", "deploy/cluster/dynamicconfig.yaml")
		assert.Contains(t, string(demo), "--dynamic-config-value "+kv[0]+"="+kv[1], "scripts/run-demo.sh")
	}
	assert.Equal(t, []string{"--dynamic-config-value", "history.maxInFlightUpdates=500"}, DynamicConfigArgs()[:2])
	for _, p := range FilePragmas {
		assert.Contains(t, string(demo), "--sqlite-pragma "+p, "scripts/run-demo.sh writes its SQLite file as the bench's server does")
	}
}

// TestStart starts real dev servers: one as the tests and the bench use it
// (search attributes, Web UI, log file), and a bare one.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dev server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logFile := filepath.Join(t.TempDir(), "temporal.log")
	s, err := Start(ctx, Options{UI: true, LogFile: logFile, LogLevel: "info"})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Stop()
		}
	})
	require.NotEmpty(t, s.Address)
	require.NotEmpty(t, s.CLI)
	custom := customAttributes(ctx, t, s)
	for _, name := range workflows.SearchAttributeNames {
		assert.Equal(t, enumspb.INDEXED_VALUE_TYPE_KEYWORD, custom[name], name)
	}
	// One partition per task queue (DynamicConfig): the server's default
	// is four.
	parts, err := s.Client.WorkflowService().ListTaskQueuePartitions(ctx, &workflowservice.ListTaskQueuePartitionsRequest{
		Namespace: Namespace, TaskQueue: &taskqueuepb.TaskQueue{Name: workflows.TaskQueue}})
	require.NoError(t, err)
	assert.Len(t, parts.WorkflowTaskQueuePartitions, 1, "workflow task queue partitions of %s", workflows.TaskQueue)
	assert.Len(t, parts.ActivityTaskQueuePartitions, 1, "activity task queue partitions of %s", workflows.TaskQueue)
	require.NotEmpty(t, s.UIAddress)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + s.UIAddress + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond, "the Web UI answers on %s", s.UIAddress)
	require.NoError(t, s.Stop())
	stopped = true
	data, err := os.ReadFile(logFile)
	require.NoError(t, err)
	assert.NotEmpty(t, data, "the server's output goes to the log file")

	// A bare server on a file, as `make run` and the bench keep one: it
	// writes through a write-ahead log (FilePragmas).
	db := filepath.Join(t.TempDir(), "temporal.db")
	bare, err := Start(ctx, Options{CLI: s.CLI, Bare: true, LogLevel: "error", DBFilename: db})
	require.NoError(t, err)
	defer bare.Stop()
	assert.Empty(t, bare.UIAddress)
	assert.FileExists(t, db+"-wal", "the server keeps its SQLite file in WAL mode")
	custom = customAttributes(ctx, t, bare)
	for _, name := range workflows.SearchAttributeNames {
		assert.NotContains(t, custom, name)
	}
}

func customAttributes(ctx context.Context, t *testing.T, s *Server) map[string]enumspb.IndexedValueType {
	t.Helper()
	resp, err := s.Client.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: Namespace})
	require.NoError(t, err)
	names := make([]string, 0, len(resp.CustomAttributes))
	for name := range resp.CustomAttributes {
		names = append(names, name)
	}
	slices.Sort(names)
	t.Logf("custom search attributes on %s: %s", s.Address, strings.Join(names, ", "))
	return resp.CustomAttributes
}
