package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/schemacheck"
)

// The JSON Schemas of the wire payloads (docs/API.md) are generated here from
// the Go types by reflection. TestSchemas fails when a committed file differs
// from what the types give today; UPDATE_SCHEMAS=1 rewrites them.

const schemaDir = "../docs/schemas"

// schemaRoots are the payloads that get a schema file, by file name.
var schemaRoots = []struct {
	name string
	v    any
	// input payloads are closed (additionalProperties false): Go ignores an
	// unknown field, so a misspelt one would be dropped without a word.
	// Results stay open, so that a reader tolerates fields added later.
	input       bool
	description string
}{
	{"LifecycleState", LifecycleState{}, true, "The input of a lifecycle's start (workflow type " + WorkflowTypeLifecycle + "): the spawn request under \"request\". The Go type holds more (the state one run hands to the next); a start sends only \"request\"."},
	{"SpawnRequest", SpawnRequest{}, true, "What a master asks for. Zero limits take the defaults."},
	{"Heartbeat", Heartbeat{}, true, "The payload of the \"" + SignalHeartbeat + "\" signal, sent by the worker process."},
	{"ShutdownRequest", ShutdownRequest{}, true, "The argument of the \"" + UpdateShutdown + "\" update."},
	{"KillRequest", KillRequest{}, true, "The argument of the \"" + UpdateKill + "\" update."},
	{"WorkerSpec", WorkerSpec{}, false, "A worker as the \"" + QueryStatus + "\" query and the shutdown, kill and cleanup updates return it."},
	{"BudgetView", BudgetView{}, false, "The budget ledger as the \"" + QueryBudget + "\" query returns it."},
	{"ReserveRequest", ReserveRequest{}, true, "The payload of the ledger's \"" + SignalReserve + "\" signal (and, without priority and wait, of its \"" + UpdateReserve + "\" update)."},
	{"BudgetAnswer", BudgetAnswer{}, false, "The payload of the \"" + SignalBudgetAnswer + "\" signal the ledger sends a lifecycle in answer to its reservation."},
}

// onlyFields keeps these JSON fields of a type and drops the rest.
var onlyFields = map[string][]string{
	"LifecycleState": {"request"},
}

const nanosecondsNote = "A duration in nanoseconds (Go time.Duration), as a JSON integer: 30000000000 is 30 s."

// fieldKeywords add validation bounds to fields, by "Type.json_name"; each
// comes from the constant the Go validation uses.
func fieldKeywords() map[string]obj {
	idMax := obj{{"maxLength", MaxIDLength}}
	limit := obj{{"minimum", 0}, {"maximum", int64(maxLimitDuration)}}
	statuses := []any{}
	for _, s := range []Status{StatusPending, StatusRunning, StatusIdle, StatusShuttingDown, StatusCompleted, StatusFailed, StatusZombie, StatusCleanedUp} {
		statuses = append(statuses, string(s))
	}
	k := map[string]obj{
		"SpawnRequest.worker_id":      append(obj{{"pattern", WorkerIDPattern.String()}}, idMax...),
		"SpawnRequest.worker_type":    obj{{"minLength", 1}, {"maxLength", MaxIDLength}},
		"SpawnRequest.task_id":        append(obj{{"pattern", TaskIDPattern.String()}}, idMax...),
		"SpawnRequest.priority":       obj{{"enum", Priorities}},
		"SpawnRequest.master":         append(obj{{"pattern", MasterPattern.String()}}, idMax...),
		"SpawnRequest.repo":           obj{{"pattern", RepoPattern.String()}, {"maxLength", 2 * MaxIDLength}},
		"SpawnRequest.budget":         obj{{"minimum", MinBudget}, {"maximum", MaxBudget}},
		"SpawnRequest.timeout":        limit,
		"SpawnRequest.queue_timeout":  limit,
		"ReserveRequest.priority":     obj{{"enum", append([]string{""}, Priorities...)}},
		"ReserveRequest.amount":       obj{{"minimum", MinBudget}, {"maximum", MaxBudget}},
		"SpawnRequest.host":           obj{{"pattern", HostPattern.String()}},
		"SpawnRequest.max_restarts":   obj{{"minimum", 0}, {"maximum", MaxRestartsLimit}},
		"SpawnRequest.heartbeat_mode": obj{{"enum", []string{"", HeartbeatModeSignal, HeartbeatModeOutput}}},
		"Heartbeat.tokens_used":       obj{{"minimum", 0}},
		"Heartbeat.health_score":      obj{{"minimum", MinHealthScore}, {"maximum", MaxHealthScore}},
		"Heartbeat.status":            obj{{"enum", []string{"", HeartbeatBusy, HeartbeatIdle, HeartbeatBlocked, HeartbeatAwaitingInput}}},
		"Heartbeat.process":           obj{{"pattern", processTagPattern.String()}},
		"WorkerSpec.status":           obj{{"enum", statuses}},
		"Transition.status":           obj{{"enum", statuses}},
		"HeartbeatInfo.alert":         obj{{"enum", []string{"", AlertWarning, AlertCritical}}},
		"CleanupInfo.process":         obj{{"enum", []string{"", ProcessStopped, ProcessAlreadyGone, ProcessLost}}},
	}
	for _, f := range []string{"heartbeat_warning", "heartbeat_critical", "zombie_after", "idle_after", "shutdown_grace",
		"watch_heartbeat", "host_loss_after", "sample_every", "restart_delay", "restart_max_delay", "healthy_run"} {
		k["Limits."+f] = limit
	}
	return k
}

// obj is a JSON object that keeps its keys in the order written.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(e.k)
		val, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type schemaGen struct {
	keywords map[string]obj
	used     map[string]bool
	defs     map[string]obj
	input    bool
	errs     []string
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(time.Duration(0))
)

// schema is the schema of a value of type t.
func (g *schemaGen) schema(t reflect.Type) obj {
	switch {
	case t == timeType:
		return obj{{"type", "string"}, {"format", "date-time"}}
	case t == durationType:
		return obj{{"type", "integer"}, {"description", nanosecondsNote}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return nullable(g.schema(t.Elem()))
	case reflect.Struct:
		if _, ok := g.defs[t.Name()]; !ok {
			g.defs[t.Name()] = nil // taken, against recursion
			g.defs[t.Name()] = g.object(t, t.Name())
		}
		return obj{{"$ref", "#/$defs/" + t.Name()}}
	case reflect.Slice:
		return obj{{"type", "array"}, {"items", g.schema(t.Elem())}}
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return obj{{"type", "object"}, {"additionalProperties", g.schema(t.Elem())}}
		}
	case reflect.String:
		return obj{{"type", "string"}}
	case reflect.Bool:
		return obj{{"type", "boolean"}}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return obj{{"type", "integer"}}
	case reflect.Float64:
		return obj{{"type", "number"}}
	}
	g.errs = append(g.errs, fmt.Sprintf("no schema for type %s", t))
	return obj{}
}

// nullable lets s be null too, as a nil pointer encodes.
func nullable(s obj) obj {
	if len(s) > 0 && s[0].k == "type" {
		if typ, ok := s[0].v.(string); ok {
			out := append(obj{{"type", []string{typ, "null"}}}, s[1:]...)
			return out
		}
	}
	return obj{{"anyOf", []obj{s, {{"type", "null"}}}}}
}

// object is the schema of a struct: its JSON fields as properties, those
// without omitempty required.
func (g *schemaGen) object(t reflect.Type, name string) obj {
	var props obj
	var required []string
	keep := map[string]bool{}
	for _, f := range onlyFields[name] {
		keep[f] = true
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous {
			g.errs = append(g.errs, fmt.Sprintf("%s.%s: embedded fields are not supported", name, f.Name))
			continue
		}
		tag := f.Tag.Get("json")
		jname, opts, _ := strings.Cut(tag, ",")
		if jname == "-" {
			continue
		}
		if jname == "" {
			g.errs = append(g.errs, fmt.Sprintf("%s.%s has no json name", name, f.Name))
			continue
		}
		if len(keep) > 0 && !keep[jname] {
			continue
		}
		omitempty := strings.Contains(","+opts+",", ",omitempty,")
		s := g.schema(f.Type)
		if f.Type.Kind() == reflect.Slice && !omitempty {
			s = nullable(s) // a nil slice encodes as null
		}
		key := name + "." + jname
		if extra, ok := g.keywords[key]; ok {
			g.used[key] = true
			if s[0].k == "$ref" {
				g.errs = append(g.errs, key+": bounds on a struct field")
			}
			s = append(append(obj{}, s...), extra...)
		}
		props = append(props, kv{jname, s})
		if !omitempty {
			required = append(required, jname)
		}
	}
	out := obj{{"type", "object"}, {"properties", props}}
	if len(required) > 0 {
		out = append(out, kv{"required", required})
	}
	if g.input {
		out = append(out, kv{"additionalProperties", false})
	}
	return out
}

// generateSchemas returns each schema file's content by file name.
func generateSchemas() (map[string][]byte, error) {
	keywords := fieldKeywords()
	used := map[string]bool{}
	files := map[string][]byte{}
	for _, root := range schemaRoots {
		g := &schemaGen{keywords: keywords, used: used, defs: map[string]obj{}, input: root.input}
		t := reflect.TypeOf(root.v)
		body := g.object(t, t.Name())
		if len(g.errs) > 0 {
			return nil, fmt.Errorf("%s: %s", root.name, strings.Join(g.errs, "; "))
		}
		s := obj{
			{"$schema", "https://json-schema.org/draft/2020-12/schema"},
			{"$id", "https://github.com/commit-relay/worker-lifecycle/docs/schemas/" + root.name + ".schema.json"},
			{"title", root.name},
			{"description", root.description},
		}
		s = append(s, body...)
		if len(g.defs) > 0 {
			names := make([]string, 0, len(g.defs))
			for n := range g.defs {
				names = append(names, n)
			}
			sort.Strings(names)
			var defs obj
			for _, n := range names {
				defs = append(defs, kv{n, g.defs[n]})
			}
			s = append(s, kv{"$defs", defs})
		}
		raw, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return nil, err
		}
		files[root.name+".schema.json"] = append(raw, '\n')
	}
	for key := range keywords {
		if !used[key] {
			return nil, fmt.Errorf("bounds for %s name no field of a schema: was it renamed?", key)
		}
	}
	return files, nil
}

func TestSchemas(t *testing.T) {
	files, err := generateSchemas()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("UPDATE_SCHEMAS") != "" {
		if err := os.MkdirAll(schemaDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(schemaDir, name), content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Regenerated into a temporary directory and compared file by file, so
	// a failure leaves both versions for a diff.
	tmp := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(schemaDir, name))
		if err != nil {
			t.Errorf("docs/schemas/%s is missing: run UPDATE_SCHEMAS=1 go test -run TestSchemas ./workflows", name)
			continue
		}
		if !bytes.Equal(committed, content) {
			t.Errorf("docs/schemas/%s drifted from the Go types: run UPDATE_SCHEMAS=1 go test -run TestSchemas ./workflows", name)
		}
	}
	committed, err := filepath.Glob(filepath.Join(schemaDir, "*.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range committed {
		if _, ok := files[filepath.Base(path)]; !ok {
			t.Errorf("docs/schemas/%s is generated from no Go type: remove it", filepath.Base(path))
		}
	}
}

// TestSchemasAreJSON checks each schema is JSON whose nested references
// all resolve within the file.
func TestSchemasAreJSON(t *testing.T) {
	files, err := generateSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		var doc map[string]any
		if err := json.Unmarshal(content, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defs, _ := doc["$defs"].(map[string]any)
		for _, ref := range regexpRefs(string(content)) {
			if _, ok := defs[strings.TrimPrefix(ref, "#/$defs/")]; !ok {
				t.Errorf("%s: %s does not resolve", name, ref)
			}
		}
	}
}

func regexpRefs(s string) []string {
	var refs []string
	for _, part := range strings.Split(s, `"$ref": "`)[1:] {
		ref, _, _ := strings.Cut(part, `"`)
		refs = append(refs, ref)
	}
	return refs
}

// TestAPIExample checks the examples of docs/API.md against the code: the
// start input decodes with no unknown field and validates, the CLI example
// sends the same input, and the error shown is what a bad start gets.
func TestAPIExample(t *testing.T) {
	raw, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	_, after, ok := strings.Cut(doc, "<!-- example: start input")
	if !ok {
		t.Fatal("docs/API.md lost its start input example marker")
	}
	_, after, _ = strings.Cut(after, "```json\n")
	example, _, _ := strings.Cut(after, "```")
	st := decodeStrict(t, "the start input", example)
	if st.Spec.Status != "" || st.Limits != nil {
		t.Error("the start input sets more than the request")
	}
	if err := st.Request.Validate(); err != nil {
		t.Errorf("the start input does not validate: %v", err)
	}

	_, after, ok = strings.Cut(doc, "--input '{\"request\"")
	if !ok {
		t.Fatal("docs/API.md lost its CLI start example")
	}
	cli, _, _ := strings.Cut(`{"request"`+after, "'")
	if got := decodeStrict(t, "the CLI example's input", cli); !reflect.DeepEqual(got, st) {
		t.Errorf("the CLI example starts %+v, the JSON example %+v", got, st)
	}
	if !strings.Contains(doc, "--workflow-id "+WorkflowID(st.Request.WorkerID)) {
		t.Errorf("the CLI example does not use the workflow ID %s", WorkflowID(st.Request.WorkerID))
	}

	bad := st.Request
	bad.WorkerID, bad.Priority, bad.Budget = "w1", "urgent", -5
	msg := "invalid spawn request: " + bad.Validate().Error()
	var flat []string
	for _, line := range strings.Split(doc, "\n") {
		flat = append(flat, strings.TrimSpace(line))
	}
	if !strings.Contains(strings.Join(flat, "\n"), msg) {
		t.Errorf("docs/API.md does not show the error a bad start gets:\n%s", msg)
	}
}

func decodeStrict(t *testing.T, what, s string) LifecycleState {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var st LifecycleState
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("%s does not decode: %v\n%s", what, err, s)
	}
	return st
}

// TestStartInputValidates: the start input a Go master sends is what
// NewLifecycleState encodes to, and the schema allows "request" alone, so
// the run-to-run state of LifecycleState must stay out of it.
func TestStartInputValidates(t *testing.T) {
	raw, err := json.Marshal(NewLifecycleState(testRequest()))
	if err != nil {
		t.Fatal(err)
	}
	if err := schemacheck.Validate("..", "LifecycleState", raw); err != nil {
		t.Errorf("the start input NewLifecycleState makes does not validate:\n%v\n%s", err, raw)
	}
}
