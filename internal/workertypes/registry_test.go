package workertypes

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultsAreTheOldSystems(t *testing.T) {
	r := Defaults()
	want := map[string]struct {
		budget  int64
		timeout time.Duration
	}{
		"scan-worker": {8000, 15 * time.Minute}, "fix-worker": {5000, 20 * time.Minute},
		"analysis-worker": {5000, 15 * time.Minute}, "implementation-worker": {10000, 45 * time.Minute},
		"test-worker": {6000, 20 * time.Minute}, "review-worker": {5000, 15 * time.Minute},
		"pr-worker": {4000, 10 * time.Minute}, "documentation-worker": {6000, 20 * time.Minute},
	}
	require.Len(t, r.Names(), len(want))
	for name, w := range want {
		typ, err := r.Lookup(name)
		require.NoError(t, err)
		require.Equal(t, w.budget, typ.TokenBudget, name)
		require.Equal(t, w.timeout, typ.Timeout(), name)
	}
	short, err := r.Lookup("implementation")
	require.NoError(t, err)
	require.Equal(t, "implementation-worker", short.Name)
	_, err = r.Lookup("astrologer")
	require.ErrorContains(t, err, `unknown worker type "astrologer" (known: analysis-worker, `)
}

func TestFileOverridesAndAdds(t *testing.T) {
	path := writeFile(t, `{"types": {
		"implementation-worker": {"command": ["my-agent", "--task", "$TASK_ID", "--id=${WORKER_ID}", "$HOME"]},
		"lint-worker": {"command": ["golangci-lint", "run"], "token_budget": 2000, "timeout_minutes": 10}}}`)
	r, err := Load(path)
	require.NoError(t, err)
	impl, _ := r.Lookup("implementation-worker")
	require.Equal(t, int64(10000), impl.TokenBudget, "a field left out keeps its default")
	require.Equal(t, []string{"my-agent", "--task", "task-7", "--id=worker-implementation-1", "$HOME"},
		impl.Argv("worker-implementation-1", "task-7"), "only WORKER_ID and TASK_ID are substituted")
	lint, err := r.Lookup("lint-worker")
	require.NoError(t, err)
	require.Equal(t, 10*time.Minute, lint.Timeout())
}

func TestBadFilesNameEveryProblem(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"not json":                          {`{"types": `, "invalid JSON"},
		"unknown field":                     {`{"types": {"x-worker": {"cmd": ["a"]}}}`, "invalid JSON"},
		"empty command":                     {`{"types": {"fix-worker": {"command": []}}}`, "command must be a non-empty argv list"},
		"budget":                            {`{"types": {"fix-worker": {"token_budget": 0}}}`, "token_budget 0 is not in 1..200000"},
		"timeout":                           {`{"types": {"fix-worker": {"timeout_minutes": 181}}}`, "timeout_minutes 181 is not in 1..180"},
		"new needs all":                     {`{"types": {"new-worker": {"command": ["a"]}}}`, "token_budget is required for a new type"},
		"bad name":                          {`{"types": {"Bad Name": {"command": ["a"], "token_budget": 1, "timeout_minutes": 1}}}`, "name must match"},
		"wrong type":                        {`{"types": {"fix-worker": {"command": "rm -rf /"}}}`, "invalid JSON"},
		"negative budget":                   {`{"types": {"fix-worker": {"token_budget": -5}}}`, `type "fix-worker": token_budget -5`},
		"unknown field named with its type": {`{"types": {"fix-worker": {"comand": ["a"]}}}`, `type "fix-worker": invalid JSON: json: unknown field "comand"`},
		"negative restarts":                 {`{"types": {"fix-worker": {"max_restarts": -1}}}`, `type "fix-worker": max_restarts -1 is not in 0..10`},
		"bad heartbeat mode":                {`{"types": {"fix-worker": {"heartbeat": "telepathy"}}}`, `type "fix-worker": heartbeat "telepathy" must be "signal" or "output"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(writeFile(t, tc.body))
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorContains(t, err, "no such file")
}

// The example files shipped with the repository must load.
func TestShippedTypeFilesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		_, err := Load(f)
		require.NoError(t, err, f)
	}
}

func TestRestartAndHeartbeatDefaults(t *testing.T) {
	r, err := Load(writeFile(t, `{"types": {"lint-worker": {"command": ["true"], "token_budget": 10, "timeout_minutes": 1},
		"pr-worker": {"heartbeat": "output"}}}`))
	require.NoError(t, err)
	want := map[string]int{"scan-worker": 3, "fix-worker": 2, "analysis-worker": 3, "implementation-worker": 2,
		"test-worker": 3, "review-worker": 2, "pr-worker": 1, "documentation-worker": 3, "lint-worker": 2}
	for name, restarts := range want {
		typ, err := r.Lookup(name)
		require.NoError(t, err)
		require.Equal(t, restarts, typ.MaxRestarts, name)
	}
	pr, _ := r.Lookup("pr-worker")
	require.Equal(t, HeartbeatOutput, pr.Heartbeat)
	lint, _ := r.Lookup("lint-worker")
	require.Equal(t, HeartbeatSignal, lint.Heartbeat)
}

func TestCheckCommandsNamesFileTypeAndField(t *testing.T) {
	path := writeFile(t, `{"types": {"fix-worker": {"command": ["clade-not-installed", "-p"]},
		"scan-worker": {"command": ["/nonexistent/agent"]}, "test-worker": {"command": ["sh", "-c", "true"]}}}`)
	r, err := Load(path)
	require.NoError(t, err)
	err = r.CheckCommands()
	require.ErrorContains(t, err, "worker types file "+path)
	require.ErrorContains(t, err, `type "fix-worker": command: program "clade-not-installed" not found on PATH`)
	require.NotContains(t, err.Error(), "test-worker")
	// A path may be mounted later: listed, not refused. So are the built-in
	// types' default program, which is not checked.
	require.NotContains(t, err.Error(), "scan-worker")
	require.Contains(t, r.Unrunnable(), "scan-worker")
	require.NoError(t, Defaults().CheckCommands())
}

func TestShortName(t *testing.T) {
	require.Equal(t, "implementation", ShortName("implementation-worker"))
	require.Equal(t, "lintgo", ShortName("lint-go2"))
	require.Equal(t, "worker", ShortName("42"))
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "types.json")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	return path
}
