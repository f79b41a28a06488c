// Package workertypes is the registry of worker types: what command each type
// runs, its default token budget and its time limit. Commands come only from
// here, never from a signal or a CLI argument, so nobody can make a host run
// an arbitrary program by spawning a worker.
package workertypes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Bounds of the old system's worker-spec schema, kept so that its users'
// specs stay valid.
const (
	MinBudget         = 1
	MaxBudget         = 200000
	MinTimeoutMinutes = 1
	MaxTimeoutMinutes = 180
)

// Type is one kind of worker.
type Type struct {
	Name string `json:"-"`
	// Command is the argv of the worker process, run without a shell. The
	// words $WORKER_ID and $TASK_ID (or ${...}) are replaced in each
	// argument; nothing else is expanded.
	Command        []string `json:"command"`
	TokenBudget    int64    `json:"token_budget"`
	TimeoutMinutes int      `json:"timeout_minutes"`
}

// Timeout is the longest a worker of this type may run.
func (t Type) Timeout() time.Duration { return time.Duration(t.TimeoutMinutes) * time.Minute }

// Argv is the command with the worker's identifiers substituted.
func (t Type) Argv(workerID, taskID string) []string {
	vars := map[string]string{"WORKER_ID": workerID, "TASK_ID": taskID}
	argv := make([]string, len(t.Command))
	for i, arg := range t.Command {
		argv[i] = os.Expand(arg, func(name string) string {
			if v, ok := vars[name]; ok {
				return v
			}
			return "$" + name
		})
	}
	return argv
}

// Registry maps type names to types.
type Registry struct {
	types map[string]Type
}

var typeNamePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// defaultCommand runs Claude Code headless on the task, as the old system did.
var defaultCommand = []string{"claude", "-p", "You are a $WORKER_ID. Work on task $TASK_ID."}

// Defaults returns the eight types of the old system with its budgets and
// timeouts.
func Defaults() *Registry {
	r := &Registry{types: map[string]Type{}}
	for _, d := range []struct {
		name    string
		budget  int64
		minutes int
	}{
		{"scan-worker", 8000, 15},
		{"fix-worker", 5000, 20},
		{"analysis-worker", 5000, 15},
		{"implementation-worker", 10000, 45},
		{"test-worker", 6000, 20},
		{"review-worker", 5000, 15},
		{"pr-worker", 4000, 10},
		{"documentation-worker", 6000, 20},
	} {
		r.types[d.name] = Type{Name: d.name, Command: append([]string(nil), defaultCommand...), TokenBudget: d.budget, TimeoutMinutes: d.minutes}
	}
	return r
}

// Load returns the defaults overlaid with the types of the JSON file at path,
// shaped {"types": {"NAME": {"command": [...], "token_budget": N,
// "timeout_minutes": N}}}. A type in the file that exists already is replaced
// field by field: a field the file leaves out keeps its default. An empty path
// returns the defaults.
func Load(path string) (*Registry, error) {
	r := Defaults()
	if path == "" {
		return r, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("worker types file: %w", err)
	}
	if err := r.merge(data); err != nil {
		return nil, fmt.Errorf("worker types file %s: %w", path, err)
	}
	return r, nil
}

func (r *Registry) merge(data []byte) error {
	var file struct {
		Types map[string]struct {
			Command        []string `json:"command"`
			TokenBudget    *int64   `json:"token_budget"`
			TimeoutMinutes *int     `json:"timeout_minutes"`
		} `json:"types"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	names := make([]string, 0, len(file.Types))
	for name := range file.Types {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		in := file.Types[name]
		t, exists := r.types[name]
		t.Name = name
		if !typeNamePattern.MatchString(name) {
			errs = append(errs, fmt.Errorf("type %q: name must match %s", name, typeNamePattern))
			continue
		}
		if in.Command != nil {
			t.Command = in.Command
		}
		if in.TokenBudget != nil {
			t.TokenBudget = *in.TokenBudget
		}
		if in.TimeoutMinutes != nil {
			t.TimeoutMinutes = *in.TimeoutMinutes
		}
		if !exists && in.TokenBudget == nil {
			errs = append(errs, fmt.Errorf("type %q: token_budget is required for a new type", name))
		}
		if !exists && in.TimeoutMinutes == nil {
			errs = append(errs, fmt.Errorf("type %q: timeout_minutes is required for a new type", name))
		}
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Errorf("type %q: %w", name, err))
			continue
		}
		r.types[name] = t
	}
	return errors.Join(errs...)
}

func (t Type) validate() error {
	if len(t.Command) == 0 || strings.TrimSpace(t.Command[0]) == "" {
		return errors.New("command must be a non-empty argv list")
	}
	if t.TokenBudget < MinBudget || t.TokenBudget > MaxBudget {
		return fmt.Errorf("token_budget %d is not in %d..%d", t.TokenBudget, MinBudget, MaxBudget)
	}
	if t.TimeoutMinutes < MinTimeoutMinutes || t.TimeoutMinutes > MaxTimeoutMinutes {
		return fmt.Errorf("timeout_minutes %d is not in %d..%d", t.TimeoutMinutes, MinTimeoutMinutes, MaxTimeoutMinutes)
	}
	return nil
}

// Lookup finds a type by its name; the short form without "-worker"
// ("implementation" for "implementation-worker") is accepted too.
func (r *Registry) Lookup(name string) (Type, error) {
	if t, ok := r.types[name]; ok {
		return t, nil
	}
	if t, ok := r.types[name+"-worker"]; ok {
		return t, nil
	}
	return Type{}, fmt.Errorf("unknown worker type %q (known: %s)", name, strings.Join(r.Names(), ", "))
}

// Names lists the type names in order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.types))
	for name := range r.types {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// ShortName is the type's name as it appears in worker ids: its letters
// before "-worker" ("implementation" for "implementation-worker").
func ShortName(typeName string) string {
	base := strings.TrimSuffix(typeName, "-worker")
	var b strings.Builder
	for _, c := range base {
		if c >= 'a' && c <= 'z' {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "worker"
	}
	return b.String()
}
