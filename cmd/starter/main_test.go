package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every command an operator can run shows an example drawn from the
// runbook's tasks in its --help.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := (&app{}).rootCommand()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if sub.Runnable() {
				require.NotEmpty(t, sub.Example, "%s has no example", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
}

func TestShellCompletion(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"completion", "bash"}, &out, &errOut)
	require.Zero(t, code, errOut.String())
	require.Contains(t, out.String(), "__start_starter")
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"nonsense"},
		{"status"},
		{"list", "--bogus"},
		{"status", "worker-a-1", "-o", "yaml"},
		{"budget"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		require.Equal(t, exitUsage, code, "%v: %s", args, errOut.String())
		require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one line: %q", errOut.String())
	}
}

// TestBadInputNeverWaitsOnTheNetwork: with no server to reach, bad input
// still gets its own error and exit 2, and good input the connection error
// and exit 1.
func TestBadInputNeverWaitsOnTheNetwork(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"spawn", "--type", "astrologer-worker", "--master", "m"}, exitUsage, `unknown worker type "astrologer-worker"`},
		{[]string{"spawn", "--type", "fix-worker", "--master", "m", "--task-id", "job 7"}, exitUsage, `task id "job 7" must match`},
		{[]string{"spawn", "--from-spec", "/nonexistent/spec.json"}, exitUsage, "spec /nonexistent/spec.json"},
		{[]string{"spawn", "--type", "fix-worker", "--master", "m", "--max-restarts", "-5"}, exitUsage, "max restarts -5 is not in 0..10"},
		{[]string{"status", "worker-x-../../etc"}, exitUsage, "worker id"},
		{[]string{"heartbeat", "worker-x-1", "--tokens-used", "-3"}, exitUsage, "tokens_used -3 is negative"},
		{[]string{"heartbeat", "worker-x-1", "--message", strings.Repeat("m", 70<<10)}, exitUsage, "message must be valid UTF-8 of at most 4096 bytes"},
		{[]string{"shutdown", "worker-x-1", "--grace", "2h"}, exitUsage, "grace 2h0m0s is not in 0..1h"},
		{[]string{"kill", "worker x 1"}, exitUsage, "worker id"},
		{[]string{"kill", "worker-x-1", "--reason", strings.Repeat("r", 2000)}, exitUsage, "reason is longer than 1024 bytes"},
		{[]string{"cleanup", "worker-x-1;reboot"}, exitUsage, "worker id"},
		{[]string{"logs", "worker-x-1", "-n", "0"}, exitUsage, "-n 0 is not in 1..10000"},
		{[]string{"logs", "$(id)"}, exitUsage, "worker id"},
		{[]string{"status", "worker-x-1"}, exitFailure, "connecting to Temporal at 127.0.0.1:1"},
		{[]string{"spawn", "--type", "fix-worker", "--master", "m", "--task-id", "task-1"}, exitFailure, "connecting to Temporal at 127.0.0.1:1"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args[:2], errOut.String())
		assert.Contains(t, errOut.String(), tc.want, "%v", tc.args[:2])
		assert.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one line: %.300q", errOut.String())
		assert.Empty(t, out.String())
	}
}
