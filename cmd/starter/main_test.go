package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
