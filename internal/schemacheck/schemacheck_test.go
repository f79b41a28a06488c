package schemacheck

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// root is the module root, seen from this package's folder.
const root = "../.."

// recorded lists the payloads under testdata/payloads by schema name, each
// by file path. The payloads are recorded from real runs by
// internal/integration (RECORD_PAYLOADS=1): the start inputs, heartbeats,
// update requests and results, and query results the starter and the
// TypeScript master exchanged with a real server.
func recorded(t *testing.T) map[string][]string {
	t.Helper()
	dir := filepath.Join(root, PayloadDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", PayloadDir, err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("%s/%s: only folders named after a schema belong there", PayloadDir, e.Name())
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") {
				// A file the test would pass over could hold a payload that
				// nobody checks.
				t.Errorf("%s/%s/%s is not a .json payload", PayloadDir, e.Name(), f.Name())
				continue
			}
			out[e.Name()] = append(out[e.Name()], filepath.Join(dir, e.Name(), f.Name()))
		}
	}
	return out
}

// schemaNames are the schemas of docs/schemas, by name.
func schemaNames(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, SchemaDir, "*.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no schema in %s", SchemaDir)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".schema.json"))
	}
	return names
}

// TestRecordedPayloadsValidate validates every recorded payload against
// its schema, and requires a recorded payload for every schema: a schema
// nothing real was checked against proves nothing.
func TestRecordedPayloadsValidate(t *testing.T) {
	byName := recorded(t)
	total := 0
	for _, files := range byName {
		total += len(files)
	}
	if total == 0 {
		t.Fatalf("no payload recorded under %s: run the integration tests TestPayloadsOfARealRunValidate and TestTypeScriptMasterDrivesALifecycle with RECORD_PAYLOADS=1", PayloadDir)
	}
	known := map[string]bool{}
	for _, name := range schemaNames(t) {
		known[name] = true
		if len(byName[name]) == 0 {
			t.Errorf("%s/%s.schema.json has no payload recorded under %s/%s", SchemaDir, name, PayloadDir, name)
		}
	}
	for name, files := range byName {
		if !known[name] {
			t.Errorf("%s/%s: there is no %s/%s.schema.json", PayloadDir, name, SchemaDir, name)
			continue
		}
		for _, path := range files {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(root, name, raw); err != nil {
				t.Errorf("%s does not validate:\n%v", path, err)
			}
		}
	}
}

// mutations break recorded payloads in ways the schemas must refuse. Each
// is applied to every recorded payload of its schema, so none of them can
// pass because of what one file happens to hold.
var mutations = []struct {
	schema, what string
	path         []string // the field to set, under its parents
	value        any
	keyword      string // the failing keyword the error must name
}{
	{"LifecycleState", "an unknown field in the closed request", []string{"request", "colour"}, "blue", "keyword #/$defs/SpawnRequest/additionalProperties"},
	{"LifecycleState", "a continuation's state in a start", []string{"spec"}, map[string]any{"status": "running"}, "keyword #/additionalProperties"},
	{"LifecycleState", "priority urgent", []string{"request", "priority"}, "urgent", "keyword #/$defs/SpawnRequest/properties/priority/enum"},
	{"SpawnRequest", "priority urgent", []string{"priority"}, "urgent", "keyword #/properties/priority/enum"},
	{"SpawnRequest", "a worker_id that breaks the pattern", []string{"worker_id"}, "worker_sleeper_1", "keyword #/properties/worker_id/pattern"},
	{"SpawnRequest", "a duration as Go prints it", []string{"limits", "zombie_after"}, "5m0s", "keyword #/$defs/Limits/properties/zombie_after/type"},
	{"SpawnRequest", "a budget over the maximum", []string{"budget"}, 200001, "keyword #/properties/budget/maximum"},
	{"Heartbeat", "tokens as a string", []string{"tokens_used"}, "120", "keyword #/properties/tokens_used/type"},
	{"Heartbeat", "a misspelt field", []string{"tokens"}, 120, "keyword #/additionalProperties"},
	{"Heartbeat", "a status that is neither busy nor idle", []string{"status"}, "working", "keyword #/properties/status/enum"},
	{"Heartbeat", "a time that is not RFC 3339", []string{"sent_at"}, "30/11/2026 20:00", "keyword #/properties/sent_at/format"},
	{"ShutdownRequest", "a grace as Go prints it", []string{"grace"}, "2s", "keyword #/properties/grace/type"},
	{"KillRequest", "an unknown field", []string{"force"}, true, "keyword #/additionalProperties"},
	{"WorkerSpec", "a status that is no status", []string{"status"}, "exploded", "keyword #/properties/status/enum"},
	{"BudgetView", "a fractional total", []string{"total"}, 1.5, "keyword #/properties/total/type"},
}

// TestMutatedPayloadsAreRejected proves the validation above is not
// vacuous: a recorded payload with one field broken is refused, by the
// keyword that field breaks.
func TestMutatedPayloadsAreRejected(t *testing.T) {
	byName := recorded(t)
	for _, m := range mutations {
		if len(byName[m.schema]) == 0 {
			t.Errorf("%s: no recorded %s payload to break", m.what, m.schema)
		}
		for _, path := range byName[m.schema] {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(root, m.schema, raw); err != nil {
				// Refused already: TestRecordedPayloadsValidate says why,
				// and a refusal here would prove nothing of the mutation.
				continue
			}
			broken := mutate(t, raw, m.path, m.value)
			err = Validate(root, m.schema, broken)
			if err == nil {
				t.Errorf("%s with %s is accepted:\n%s", path, m.what, broken)
				continue
			}
			if !strings.Contains(err.Error(), m.keyword) {
				t.Errorf("%s with %s is refused, but not by %s:\n%v", path, m.what, m.keyword, err)
			}
		}
	}
}

// mutate sets the field at path of the JSON object raw to value. The
// parents must exist: a mutation that lands nowhere would test nothing.
func mutate(t *testing.T, raw []byte, path []string, value any) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // nanoseconds beyond float64's exact integers stay whole
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	obj := doc
	for _, parent := range path[:len(path)-1] {
		next, ok := obj[parent].(map[string]any)
		if !ok {
			t.Fatalf("mutating %s: no object at %q in %s", strings.Join(path, "."), parent, raw)
		}
		obj = next
	}
	obj[path[len(path)-1]] = value
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestErrorNamesPathAndKeyword: the error of a payload that breaks several
// keywords names each, with the place in the document.
func TestErrorNamesPathAndKeyword(t *testing.T) {
	err := Validate(root, "LifecycleState", []byte(`{"request": {"worker_id": "w1", "worker_type": "sleeper-worker",
		"priority": "urgent", "master": "m", "budget": 5, "limits": {"zombie_after": "5m"}}, "runs": 2}`))
	if err == nil {
		t.Fatal("a start with four bad fields is accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	sort.Strings(lines[1:]) // the validator's order is not stable
	for _, want := range []string{
		"at /: keyword #/additionalProperties: additional properties 'runs' not allowed",
		"at /request/limits/zombie_after: keyword #/$defs/Limits/properties/zombie_after/type: got string, want integer",
		"at /request/priority: keyword #/$defs/SpawnRequest/properties/priority/enum: ",
		"at /request/worker_id: keyword #/$defs/SpawnRequest/properties/worker_id/pattern: ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	if !strings.HasPrefix(err.Error(), "LifecycleState: ") {
		t.Errorf("the error does not name the schema: %v", err)
	}
}

// TestOnlyDraft2020 refuses a schema file that declares another draft or
// none, since the validator would then check it by other rules.
func TestOnlyDraft2020(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join(root, SchemaDir, "KillRequest.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, replacement := range map[string]string{
		"draft-07":   `"$schema": "http://json-schema.org/draft-07/schema#",`,
		"no $schema": ``,
	} {
		t.Run(name, func(t *testing.T) {
			line := `"$schema": "` + draftURL + `",`
			if !bytes.Contains(orig, []byte(line)) {
				t.Fatalf("KillRequest.schema.json does not declare %s", draftURL)
			}
			other := t.TempDir()
			dir := filepath.Join(other, SchemaDir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			changed := bytes.Replace(orig, []byte(line), []byte(replacement), 1)
			if err := os.WriteFile(filepath.Join(dir, "KillRequest.schema.json"), changed, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Validate(root, "KillRequest", []byte(`{}`)); err != nil {
				t.Fatalf("the committed schema refuses {}: %v", err)
			}
			err := Validate(other, "KillRequest", []byte(`{}`))
			if err == nil || !strings.Contains(err.Error(), "not "+draftURL) {
				t.Errorf("a schema of %s is used: %v", name, err)
			}
		})
	}
}
