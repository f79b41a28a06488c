// Package workertypes is the registry of worker types: what command each type
// runs, its default token budget and its time limit. Commands come only from
// here, never from a signal or a CLI argument, so nobody can make a host run
// an arbitrary program by spawning a worker.
package workertypes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
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
	// MaxRestarts is how often a crashed worker of this type is restarted.
	MaxRestarts int `json:"max_restarts"`
	// Heartbeat is "signal" (the worker heartbeats itself) or "output"
	// (its log growing counts as a heartbeat).
	Heartbeat string `json:"heartbeat"`
	// ExitRules say what an end of the process means (ExitAction); the
	// first that matches decides.
	ExitRules []ExitRule `json:"exit_rules,omitempty"`
	// Resources limit each worker's memory, processes and CPU, through
	// its cgroup.
	Resources Resources `json:"resources,omitzero"`
}

// Heartbeat modes.
const (
	HeartbeatSignal = "signal"
	HeartbeatOutput = "output"
)

// MaxRestartsLimit bounds max_restarts.
const MaxRestartsLimit = 10

// defaultMaxRestarts is the old system's limit for a type it did not know.
const defaultMaxRestarts = 2

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
	// file is the types file loaded, and configured the types it named.
	file       string
	configured map[string]bool
}

var typeNamePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// defaultCommand runs Claude Code headless on the task, as the old system did.
var defaultCommand = []string{"claude", "-p", "You are a $WORKER_ID. Work on task $TASK_ID."}

// Defaults returns the eight types of the old system with its budgets and
// timeouts.
func Defaults() *Registry {
	r := &Registry{types: map[string]Type{}}
	for _, d := range []struct {
		name     string
		budget   int64
		minutes  int
		restarts int
	}{
		{"scan-worker", 8000, 15, 3},
		{"fix-worker", 5000, 20, 2},
		{"analysis-worker", 5000, 15, 3},
		{"implementation-worker", 10000, 45, 2},
		{"test-worker", 6000, 20, 3},
		{"review-worker", 5000, 15, 2},
		{"pr-worker", 4000, 10, 1},
		{"documentation-worker", 6000, 20, 3},
	} {
		r.types[d.name] = Type{Name: d.name, Command: append([]string(nil), defaultCommand...), TokenBudget: d.budget,
			TimeoutMinutes: d.minutes, MaxRestarts: d.restarts, Heartbeat: HeartbeatSignal}
	}
	return r
}

// Load returns the defaults overlaid with the types of the JSON file at path,
// shaped {"types": {"NAME": {"command": [...], "token_budget": N,
// "timeout_minutes": N, "max_restarts": N, "heartbeat": "signal"|"output"}}}.
// A type in the file that exists already is replaced field by field: a field
// the file leaves out keeps its default. An empty path returns the defaults.
// Every problem of the file is reported at once, each naming the type and
// the field, so that a bad deploy is fixed in one round.
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
	r.file = path
	return r, nil
}

// typeFields is one type in a types file; pointers tell a field left out
// from a zero.
type typeFields struct {
	Command        []string   `json:"command"`
	TokenBudget    *int64     `json:"token_budget"`
	TimeoutMinutes *int       `json:"timeout_minutes"`
	MaxRestarts    *int       `json:"max_restarts"`
	Heartbeat      *string    `json:"heartbeat"`
	ExitRules      []ExitRule `json:"exit_rules"`
	Resources      *Resources `json:"resources"`
}

func (r *Registry) merge(data []byte) error {
	var file struct {
		Types map[string]json.RawMessage `json:"types"`
	}
	if err := strictDecode(data, &file); err != nil {
		return err
	}
	names := make([]string, 0, len(file.Types))
	for name := range file.Types {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		t, problems := r.mergeType(name, file.Types[name])
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("type %q: %w", name, p))
		}
		if len(problems) > 0 {
			continue
		}
		r.types[name] = t
		if r.configured == nil {
			r.configured = map[string]bool{}
		}
		r.configured[name] = true
	}
	return joinLine(errs)
}

// mergeType overlays the file's fields of one type on its defaults.
func (r *Registry) mergeType(name string, raw json.RawMessage) (Type, []error) {
	if !typeNamePattern.MatchString(name) {
		return Type{}, []error{fmt.Errorf("name must match %s", typeNamePattern)}
	}
	var in typeFields
	if err := strictDecode(raw, &in); err != nil {
		return Type{}, []error{err}
	}
	t, exists := r.types[name]
	t.Name = name
	if !exists {
		t.MaxRestarts, t.Heartbeat = defaultMaxRestarts, HeartbeatSignal
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
	if in.MaxRestarts != nil {
		t.MaxRestarts = *in.MaxRestarts
	}
	if in.Heartbeat != nil {
		t.Heartbeat = *in.Heartbeat
	}
	if in.ExitRules != nil {
		t.ExitRules = in.ExitRules
	}
	if in.Resources != nil {
		t.Resources = *in.Resources
	}
	// A missing field is reported as missing, not as a zero out of range.
	missing := map[string]bool{}
	var problems []error
	if !exists && in.TokenBudget == nil {
		missing["token_budget"] = true
		problems = append(problems, errors.New("token_budget is required for a new type"))
	}
	if !exists && in.TimeoutMinutes == nil {
		missing["timeout_minutes"] = true
		problems = append(problems, errors.New("timeout_minutes is required for a new type"))
	}
	for _, p := range t.validate() {
		if !missing[p.field] {
			problems = append(problems, p)
		}
	}
	return t, problems
}

// strictDecode refuses unknown fields, which are most often typos.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// The decoder names a mistyped field after this package's Go
		// struct ("typeFields.command"); the file's author knows "command".
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("%s: invalid JSON: got %s, want %s", te.Field, te.Value, jsonKind(te.Type))
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	// A second object after the first would otherwise be ignored unseen.
	if dec.More() {
		return errors.New("invalid JSON: more data after the first value")
	}
	return nil
}

// jsonKind describes a Go type in JSON's terms.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "an "), "a ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	}
	return t.String()
}

// fieldError is a bad value of one field of a type.
type fieldError struct {
	field string
	msg   string
}

func (e fieldError) Error() string { return e.field + " " + e.msg }

// validate lists every field whose value is out of bounds.
func (t Type) validate() []fieldError {
	var errs []fieldError
	if len(t.Command) == 0 || strings.TrimSpace(t.Command[0]) == "" {
		errs = append(errs, fieldError{"command", "must be a non-empty argv list"})
	}
	if t.TokenBudget < MinBudget || t.TokenBudget > MaxBudget {
		errs = append(errs, fieldError{"token_budget", fmt.Sprintf("%d is not in %d..%d", t.TokenBudget, MinBudget, MaxBudget)})
	}
	if t.TimeoutMinutes < MinTimeoutMinutes || t.TimeoutMinutes > MaxTimeoutMinutes {
		errs = append(errs, fieldError{"timeout_minutes", fmt.Sprintf("%d is not in %d..%d", t.TimeoutMinutes, MinTimeoutMinutes, MaxTimeoutMinutes)})
	}
	if t.MaxRestarts < 0 || t.MaxRestarts > MaxRestartsLimit {
		errs = append(errs, fieldError{"max_restarts", fmt.Sprintf("%d is not in 0..%d", t.MaxRestarts, MaxRestartsLimit)})
	}
	if t.Heartbeat != HeartbeatSignal && t.Heartbeat != HeartbeatOutput {
		errs = append(errs, fieldError{"heartbeat", fmt.Sprintf("%q must be %q or %q", t.Heartbeat, HeartbeatSignal, HeartbeatOutput)})
	}
	for i, r := range t.ExitRules {
		errs = append(errs, r.validate(fmt.Sprintf("exit_rules[%d]", i))...)
	}
	errs = append(errs, t.Resources.validate()...)
	return errs
}

// lineErrors joins errors on one line: the CLI and the worker program print
// an error as one line, and errors.Join would break it into several.
type lineErrors []error

func (e lineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e lineErrors) Unwrap() []error { return e }

func joinLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return lineErrors(errs)
}

// CheckCommands refuses a types file that names a bare program that is not
// on PATH: most often a typo or a missing install, which should fail when
// the worker program starts, not at the first spawn. A program given by path
// may be installed later (a mounted volume), so it is only listed by
// Unrunnable; spawning it while it is missing fails that lifecycle.
func (r *Registry) CheckCommands() error {
	var errs []error
	for _, name := range r.Names() {
		program := r.types[name].Command[0]
		if !r.configured[name] || strings.Contains(program, "/") {
			continue
		}
		if err := checkProgram(program); err != nil {
			errs = append(errs, fmt.Errorf("type %q: command: %w", name, err))
		}
	}
	if err := joinLine(errs); err != nil {
		return fmt.Errorf("worker types file %s: %w", r.file, err)
	}
	return nil
}

// Unrunnable lists the types whose program cannot be run here now.
func (r *Registry) Unrunnable() []string {
	var names []string
	for _, name := range r.Names() {
		if checkProgram(r.types[name].Command[0]) != nil {
			names = append(names, name)
		}
	}
	return names
}

func checkProgram(program string) error {
	if !strings.Contains(program, "/") {
		if _, err := exec.LookPath(program); err != nil {
			return fmt.Errorf("program %q not found on PATH", program)
		}
		return nil
	}
	st, err := os.Stat(program)
	switch {
	case err != nil:
		return fmt.Errorf("program %q: %w", program, err)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return fmt.Errorf("program %q is not an executable file", program)
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
