package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
	"github.com/commit-relay/worker-lifecycle/workflows"
)

// masters are the old system's masters, offered as choices.
var masters = []string{"coordinator-master", "development-master", "security-master", "inventory-master", "cicd-master"}

// wizard asks for what a spawn is missing, one question at a time, with a
// default and a check at each step: the runbook's create-worker wizard.
type wizard struct {
	in  *bufio.Reader
	out io.Writer
}

// ask prompts until check accepts the answer (or the default, on an empty
// line). It fails when the input ends.
func (wz *wizard) ask(question, def string, check func(string) error) (string, error) {
	for {
		if def != "" {
			fmt.Fprintf(wz.out, "%s [%s]: ", question, def)
		} else {
			fmt.Fprintf(wz.out, "%s: ", question)
		}
		line, err := wz.in.ReadString('\n')
		answer := strings.TrimSpace(line)
		if answer == "" {
			answer = def
		}
		if err != nil && line == "" {
			return "", fmt.Errorf("input ended at %q", question)
		}
		if cerr := check(answer); cerr != nil {
			fmt.Fprintf(wz.out, "  %v\n", cerr)
			continue
		}
		return answer, nil
	}
}

// fill asks for every field of req the flags did not give.
func (wz *wizard) fill(req *workflows.SpawnRequest, given func(string) bool, registry *workertypes.Registry) error {
	var err error
	if !given("type") {
		fmt.Fprintln(wz.out, "Worker types (default token budget):")
		for i, name := range registry.Names() {
			t, _ := registry.Lookup(name)
			fmt.Fprintf(wz.out, "  %d) %-24s %6d\n", i+1, name, t.TokenBudget)
		}
		names := registry.Names()
		pick := func(s string) (string, error) {
			if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= len(names) {
				return names[n-1], nil
			}
			t, err := registry.Lookup(s)
			return t.Name, err
		}
		answer, err := wz.ask("Type (name or number)", "implementation-worker", func(s string) error { _, err := pick(s); return err })
		if err != nil {
			return err
		}
		req.WorkerType, _ = pick(answer)
	}
	if !given("task-id") {
		if req.TaskID, err = wz.ask("Task id (task-...)", "", func(s string) error {
			if !workflows.TaskIDPattern.MatchString(s) {
				return fmt.Errorf("a task id must match %s", workflows.TaskIDPattern)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if !given("master") {
		fmt.Fprintf(wz.out, "Masters: %s\n", strings.Join(masters, ", "))
		if req.Master, err = wz.ask("Master", "development-master", func(s string) error {
			if !workflows.MasterPattern.MatchString(s) {
				return fmt.Errorf("a master must match %s", workflows.MasterPattern)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if !given("priority") {
		if req.Priority, err = wz.ask("Priority (low, medium, high, critical)", workflows.DefaultPriority, func(s string) error {
			if !workflows.ValidPriority(s) {
				return fmt.Errorf("priority must be one of low, medium, high, critical")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if !given("repo") {
		if req.Repo, err = wz.ask("Repository (owner/name, empty for none)", "", func(s string) error {
			if s != "" && !workflows.RepoPattern.MatchString(s) {
				return fmt.Errorf("a repository is owner/name")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if !given("budget") {
		t, _ := registry.Lookup(req.WorkerType)
		answer, err := wz.ask("Token budget", strconv.FormatInt(t.TokenBudget, 10), func(s string) error {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < workflows.MinBudget || n > workflows.MaxBudget {
				return fmt.Errorf("a budget is a number in %d..%d", workflows.MinBudget, workflows.MaxBudget)
			}
			return nil
		})
		if err != nil {
			return err
		}
		req.Budget, _ = strconv.ParseInt(answer, 10, 64)
	}
	return nil
}
