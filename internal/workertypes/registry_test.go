package workertypes

import (
	"os"
	"path/filepath"
	"strconv"
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

func TestBadFilesNameFileTypeAndField(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"not json":                          {`{"types": `, "invalid JSON"},
		"unknown top-level field":           {`{"typez": {}}`, `invalid JSON: json: unknown field "typez"`},
		"unknown field":                     {`{"types": {"x-worker": {"cmd": ["a"]}}}`, `type "x-worker": invalid JSON: json: unknown field "cmd"`},
		"unknown field named with its type": {`{"types": {"fix-worker": {"comand": ["a"]}}}`, `type "fix-worker": invalid JSON: json: unknown field "comand"`},
		"empty command":                     {`{"types": {"fix-worker": {"command": []}}}`, `type "fix-worker": command must be a non-empty argv list`},
		"blank program":                     {`{"types": {"fix-worker": {"command": [" ", "x"]}}}`, `type "fix-worker": command must be a non-empty argv list`},
		"budget":                            {`{"types": {"fix-worker": {"token_budget": 0}}}`, `type "fix-worker": token_budget 0 is not in 1..200000`},
		"budget too high":                   {`{"types": {"fix-worker": {"token_budget": 200001}}}`, `type "fix-worker": token_budget 200001 is not in 1..200000`},
		"negative budget":                   {`{"types": {"fix-worker": {"token_budget": -5}}}`, `type "fix-worker": token_budget -5 is not in 1..200000`},
		"timeout":                           {`{"types": {"fix-worker": {"timeout_minutes": 181}}}`, `type "fix-worker": timeout_minutes 181 is not in 1..180`},
		"negative timeout":                  {`{"types": {"fix-worker": {"timeout_minutes": -1}}}`, `type "fix-worker": timeout_minutes -1 is not in 1..180`},
		"negative restarts":                 {`{"types": {"fix-worker": {"max_restarts": -1}}}`, `type "fix-worker": max_restarts -1 is not in 0..10`},
		"too many restarts":                 {`{"types": {"fix-worker": {"max_restarts": 11}}}`, `type "fix-worker": max_restarts 11 is not in 0..10`},
		"bad heartbeat mode":                {`{"types": {"fix-worker": {"heartbeat": "telepathy"}}}`, `type "fix-worker": heartbeat "telepathy" must be "signal" or "output"`},
		"new needs all":                     {`{"types": {"new-worker": {"command": ["a"]}}}`, `type "new-worker": token_budget is required for a new type`},
		"bad name":                          {`{"types": {"Bad Name": {"command": ["a"], "token_budget": 1, "timeout_minutes": 1}}}`, `type "Bad Name": name must match`},
		"command not a list":                {`{"types": {"fix-worker": {"command": "rm -rf /"}}}`, `type "fix-worker": command: invalid JSON: got string, want an array of strings`},
		"fractional restarts":               {`{"types": {"fix-worker": {"max_restarts": 1.5}}}`, `type "fix-worker": max_restarts: invalid JSON: got number 1.5, want an integer`},
		"types not an object":               {`{"types": ["fix-worker"]}`, `types: invalid JSON: got array, want an object`},
		"two documents":                     {`{"types": {}} {"types": {"fix-worker": {"token_budget": 0}}}`, "invalid JSON: more data after the first value"},
		"exit rule unknown action":          {`{"types": {"fix-worker": {"exit_rules": [{"exit_codes": [3], "action": "explode"}]}}}`, `type "fix-worker": exit_rules[0].action "explode" must be one of fail, restart, ignore`},
		"exit code above 255":               {`{"types": {"fix-worker": {"exit_rules": [{"exit_codes": [3, 256], "action": "fail"}]}}}`, `type "fix-worker": exit_rules[0].exit_codes[1] 256 is not in 0..255`},
		"negative exit code":                {`{"types": {"fix-worker": {"exit_rules": [{"exit_codes": [-1], "action": "fail"}]}}}`, `type "fix-worker": exit_rules[0].exit_codes[0] -1 is not in 0..255`},
		"exit rule unknown cause":           {`{"types": {"fix-worker": {"exit_rules": [{"cause": "gremlins", "action": "fail"}]}}}`, `type "fix-worker": exit_rules[0].cause "gremlins" must be one of fenced, lost, oom`},
		"exit rule matching nothing":        {`{"types": {"fix-worker": {"exit_rules": [{"action": "fail"}]}}}`, `type "fix-worker": exit_rules[0] names neither exit_codes nor a cause`},
		"exit rule both":                    {`{"types": {"fix-worker": {"exit_rules": [{"exit_codes": [1], "cause": "oom", "action": "fail"}]}}}`, `type "fix-worker": exit_rules[0] names both exit_codes and a cause`},
		"memory not a size":                 {`{"types": {"fix-worker": {"resources": {"memory": "lots"}}}}`, `type "fix-worker": resources.memory "lots" is not a size`},
		"memory a number":                   {`{"types": {"fix-worker": {"resources": {"memory": 512}}}}`, `type "fix-worker": resources.memory: invalid JSON: got number, want a string`},
		"memory below the floor":            {`{"types": {"fix-worker": {"resources": {"memory": "8M"}}}}`, `type "fix-worker": resources.memory 8M is below the floor of 32 MiB`},
		"processes below the floor":         {`{"types": {"fix-worker": {"resources": {"processes": 3}}}}`, `type "fix-worker": resources.processes 3 is below the floor of 16 (threads count too)`},
		"negative processes":                {`{"types": {"fix-worker": {"resources": {"processes": -1}}}}`, `type "fix-worker": resources.processes -1 is below the floor of 16`},
		"cpus below the floor":              {`{"types": {"fix-worker": {"resources": {"cpus": 0.01}}}}`, `type "fix-worker": resources.cpus 0.01 is below the floor of 0.05`},
		"cpus not a number":                 {`{"types": {"fix-worker": {"resources": {"cpus": "two"}}}}`, `type "fix-worker": resources.cpus: invalid JSON: got string, want a number`},
		"unknown resource":                  {`{"types": {"fix-worker": {"resources": {"disk": "1G"}}}}`, `type "fix-worker": invalid JSON: json: unknown field "disk"`},
		"exit rule unknown field":           {`{"types": {"fix-worker": {"exit_rules": [{"codes": [1], "action": "fail"}]}}}`, `type "fix-worker": invalid JSON: json: unknown field "codes"`},
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, tc.body)
			_, err := Load(path)
			require.ErrorContains(t, err, "worker types file "+path+": ")
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "typeFields", "Go names mean nothing to the file's author")
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorContains(t, err, "no such file")
}

func TestBadFileReportsEveryProblemOnOneLine(t *testing.T) {
	path := writeFile(t, `{"types": {
		"fix-worker": {"token_budget": -1, "timeout_minutes": 0, "heartbeat": "x"},
		"new-worker": {"command": []},
		"scan-worker": {"max_restarts": 2}}}`)
	_, err := Load(path)
	require.Error(t, err)
	require.Equal(t, "worker types file "+path+": "+
		`type "fix-worker": token_budget -1 is not in 1..200000; `+
		`type "fix-worker": timeout_minutes 0 is not in 1..180; `+
		`type "fix-worker": heartbeat "x" must be "signal" or "output"; `+
		`type "new-worker": token_budget is required for a new type; `+
		`type "new-worker": timeout_minutes is required for a new type; `+
		`type "new-worker": command must be a non-empty argv list`, err.Error(),
		"a missing field is not also reported as out of range, and a good type is not mentioned")
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
	notExec := filepath.Join(t.TempDir(), "agent")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	path := writeFile(t, `{"types": {"fix-worker": {"command": ["clade-not-installed", "-p"]},
		"pr-worker": {"command": ["another-missing-agent"]},
		"scan-worker": {"command": ["/nonexistent/agent"]},
		"review-worker": {"command": [`+strconv.Quote(notExec)+`]},
		"analysis-worker": {"command": [`+strconv.Quote(t.TempDir())+`]},
		"test-worker": {"command": ["sh", "-c", "true"]}}}`)
	r, err := Load(path)
	require.NoError(t, err)
	err = r.CheckCommands()
	require.ErrorContains(t, err, "worker types file "+path+": ")
	require.ErrorContains(t, err, `type "fix-worker": command: program "clade-not-installed" not found on PATH`)
	require.ErrorContains(t, err, `type "pr-worker": command: program "another-missing-agent" not found on PATH`)
	require.NotContains(t, err.Error(), "\n")
	require.NotContains(t, err.Error(), "test-worker")
	// A program given by path may be mounted after the worker program
	// starts, and a spawn of it fails its own lifecycle cleanly: listed, not
	// refused. The built-in types' default program is not checked either.
	for _, name := range []string{"scan-worker", "review-worker", "analysis-worker"} {
		require.NotContains(t, err.Error(), name)
	}
	require.Subset(t, r.Unrunnable(), []string{"scan-worker", "review-worker", "analysis-worker", "fix-worker", "pr-worker"})
	require.NotContains(t, r.Unrunnable(), "test-worker")
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

// TestArgvNeverGoesThroughAShell: identifiers are substituted into argv
// elements as they are; shell syntax in them stays text in one argument,
// and other variables are not expanded from the environment.
func TestArgvNeverGoesThroughAShell(t *testing.T) {
	t.Setenv("HOME", "/root")
	typ := Type{Name: "x-worker", Command: []string{"agent", "--task", "$TASK_ID", "--id=${WORKER_ID}", "$HOME"}}
	argv := typ.Argv("worker-x-1", "task-1; rm -rf / $(reboot)")
	require.Equal(t, []string{"agent", "--task", "task-1; rm -rf / $(reboot)", "--id=worker-x-1", "$HOME"}, argv)
}

func TestExitAction(t *testing.T) {
	rules := Type{ExitRules: []ExitRule{
		{ExitCodes: []int{3, 4}, Action: ActionFail},
		{ExitCodes: []int{75}, Action: ActionIgnore},
		{Cause: CauseOOM, Action: ActionFail},
		{ExitCodes: []int{0}, Action: ActionRestart},
		{ExitCodes: []int{3}, Action: ActionRestart},
	}}
	for _, tc := range []struct {
		name   string
		typ    Type
		end    End
		action string
		rule   string
	}{
		{"exit 0 completes by default", Type{}, End{ExitCode: 0}, ActionComplete, ""},
		{"a crash restarts by default", Type{}, End{ExitCode: 1}, ActionRestart, ""},
		{"a signal restarts by default", Type{}, End{ExitCode: 143}, ActionRestart, ""},
		{"oom restarts by default", Type{}, End{ExitCode: 137, OOM: true}, ActionRestart, ""},
		{"lost fails by default", Type{}, End{ExitCode: -1, Lost: true}, ActionFail, ""},
		{"a listed code", rules, End{ExitCode: 4}, ActionFail, "exit_rules[0] (exit code 4)"},
		{"the first matching rule wins", rules, End{ExitCode: 3}, ActionFail, "exit_rules[0] (exit code 3)"},
		{"ignore", rules, End{ExitCode: 75}, ActionIgnore, "exit_rules[1] (exit code 75)"},
		{"the oom rule before the code 137", Type{ExitRules: []ExitRule{{ExitCodes: []int{137}, Action: ActionIgnore}, {Cause: CauseOOM, Action: ActionFail}}},
			End{ExitCode: 137, OOM: true}, ActionFail, "exit_rules[1] (oom)"},
		{"a SIGKILL that is no oom", Type{ExitRules: []ExitRule{{ExitCodes: []int{137}, Action: ActionIgnore}, {Cause: CauseOOM, Action: ActionFail}}},
			End{ExitCode: 137}, ActionIgnore, "exit_rules[0] (exit code 137)"},
		{"oom without its rule falls to the codes", Type{ExitRules: []ExitRule{{ExitCodes: []int{137}, Action: ActionFail}}},
			End{ExitCode: 137, OOM: true}, ActionFail, "exit_rules[0] (exit code 137)"},
		{"a rule can restart exit 0", rules, End{ExitCode: 0}, ActionRestart, "exit_rules[3] (exit code 0)"},
		{"a rule can restart a lost end", Type{ExitRules: []ExitRule{{Cause: CauseLost, Action: ActionRestart}}}, End{ExitCode: -1, Lost: true}, ActionRestart, "exit_rules[0] (lost)"},
		{"a lost end is never matched by codes", Type{ExitRules: []ExitRule{{ExitCodes: []int{255}, Action: ActionRestart}}}, End{ExitCode: -1, Lost: true}, ActionFail, ""},
		{"an unlisted code", rules, End{ExitCode: 9}, ActionRestart, ""},
		{"fenced fails by default", Type{}, End{ExitCode: 143, Fenced: true}, ActionFail, ""},
		{"fenced is not matched by the code of its stop", Type{ExitRules: []ExitRule{{ExitCodes: []int{143}, Action: ActionRestart}}},
			End{ExitCode: 143, Fenced: true}, ActionFail, ""},
		{"fenced is not lost", Type{ExitRules: []ExitRule{{Cause: CauseLost, Action: ActionRestart}}}, End{ExitCode: 143, Fenced: true}, ActionFail, ""},
		{"a rule can restart a fenced end", Type{ExitRules: []ExitRule{{Cause: CauseLost, Action: ActionIgnore}, {Cause: CauseFenced, Action: ActionRestart}}},
			End{ExitCode: 137, Fenced: true}, ActionRestart, "exit_rules[1] (fenced)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action, rule := tc.typ.ExitAction(tc.end)
			require.Equal(t, tc.action, action)
			require.Equal(t, tc.rule, rule)
		})
	}
}

func TestExitRulesLoad(t *testing.T) {
	r, err := Load(writeFile(t, `{"types": {"fix-worker": {"exit_rules": [{"exit_codes": [3], "action": "fail"}, {"cause": "lost", "action": "restart"}]}}}`))
	require.NoError(t, err)
	typ, err := r.Lookup("fix-worker")
	require.NoError(t, err)
	require.Equal(t, []ExitRule{{ExitCodes: []int{3}, Action: ActionFail}, {Cause: CauseLost, Action: ActionRestart}}, typ.ExitRules)
	require.Equal(t, 2, typ.MaxRestarts, "the other fields keep their defaults")
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"536870912": 512 << 20, "512M": 512 << 20, "512MiB": 512 << 20, "512mib": 512 << 20,
		"1.5G": 3 << 29, "64K": 64 << 10, "2T": 2 << 40, " 100 M ": 100 << 20, "4096B": 4096} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "M", "lots", "-5M", "0", "1e400", "NaN", "12X"} {
		_, err := ParseSize(bad)
		require.Error(t, err, bad)
	}
}

func TestResourcesLoad(t *testing.T) {
	r, err := Load(writeFile(t, `{"types": {"fix-worker": {"resources": {"memory": "1GiB", "processes": 200, "cpus": 1.5}}}}`))
	require.NoError(t, err)
	typ, err := r.Lookup("fix-worker")
	require.NoError(t, err)
	require.Equal(t, Limits{MemoryBytes: 1 << 30, Processes: 200, CPUs: 1.5}, typ.Resources.Limits())
	require.True(t, typ.Resources.Limits().Any())
	scan, _ := r.Lookup("scan-worker")
	require.False(t, scan.Resources.Limits().Any(), "no limits unless asked")
}
