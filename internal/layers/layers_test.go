// Package layers holds only tests: they check that the module's packages
// import each other downwards only, in the order of the layer table below,
// and that the public client (fleet) uses the activities package for data
// types only.
package layers

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/commit-relay/worker-lifecycle"

// layerTable lists the module's packages (paths relative to the module
// root), lowest layer first. A package may import packages of lower layers
// only: not of its own layer (unless sameLayerOK says so) and never of a
// higher one. A new package must be added here.
var layerTable = [][]string{
	// Leaves: no package of this module below them. internal/schemacheck
	// is used by tests only, of any layer above.
	{"internal/health", "internal/workertypes", "internal/connection", "internal/procfs", "internal/schemacheck",
		"internal/atomicfile", "internal/cgroup", "internal/metrics"},
	// The monitor each worker process runs under (the worker binary's own
	// monitor command), on the host's files and cgroups.
	{"internal/monitor"},
	// The work on processes, behind interfaces.
	{"activities"},
	// The durable state machines and the declaration of the Temporal surface.
	{"workflows"},
	// What builds on the workflows' declarations without being a program:
	// the public client of masters and operators (fleet), the coordination files, and the dev server
	// starter of the benchmark and the integration tests (it registers the
	// lifecycles' search attributes from workflows, so it cannot be a leaf).
	{"fleet", "internal/coordination", "internal/devserver", "internal/notify"},
	// The worker program's implementations of the activities' interfaces
	// over Temporal, built on the public client (fleet), and its heartbeat
	// socket, which hands agents' heartbeats to the watches.
	{"internal/adapters", "internal/hostbeat"},
	// Programs and tests: nothing imports them.
	{"worker", "cmd/starter", "cmd/bench", "cmd/demo-agent", "internal/integration", "internal/integration/testagent", "deploy", "internal/layers"},
}

// sameLayerOK lists the imports allowed within a layer, importer -> imported.
// The leaves are independent of each other, and fleet and coordination stay
// apart (the mirror reads through coordination.Source, which
// internal/adapters implements with fleet). fleet's tests import devserver
// to run its examples against a dev server; devserver imports only
// workflows, so no cycle can follow. The programs of the top layer are main
// packages or tests, which nothing can import.
var sameLayerOK = map[[2]string]bool{
	{"fleet", "internal/devserver"}: true,
}

// TestLayers runs go list over the module and checks every import of every
// package, its tests' imports included, against the table.
func TestLayers(t *testing.T) {
	root := moduleRoot(t)
	cmd := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./... in %s: %v\n%s", root, err, stderr.String())
	}
	graph := parseGoList(string(out))
	if len(graph) == 0 {
		t.Fatal("go list listed no package of the module")
	}
	for _, v := range violations(graph, layerTable, sameLayerOK) {
		t.Error(v)
	}
}

// TestFleetUsesActivitiesDataTypesOnly: the public client may name
// the activities' data types an operator call returns or sends, nothing
// else; the activities' interfaces are implemented in internal/adapters.
func TestFleetUsesActivitiesDataTypesOnly(t *testing.T) {
	// WatchDetails and HostHeartbeat: what a watch shows of the latest
	// heartbeat its host took, which Status reads.
	allowed := map[string]bool{"LogChunk": true, "LogRequest": true, "WatchDetails": true, "HostHeartbeat": true}
	dir := filepath.Join(moduleRoot(t), "fleet")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (%v)", dir, err)
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range selectorsOf(f, module+"/activities") {
			if !allowed[name.Sel.Name] {
				t.Errorf("%s: fleet uses activities.%s; it may use only the data types %v of the activities package (adapters belong in internal/adapters)",
					fset.Position(name.Pos()), name.Sel.Name, keys(allowed))
			}
		}
	}
}

// TestViolations checks the checker on a made-up graph.
func TestViolations(t *testing.T) {
	table := [][]string{{"leaf", "leaf2"}, {"activities"}, {"workflows"}, {"fleet", "internal/coordination"}, {"internal/adapters"}, {"worker"}}
	full := func(rel string) string { return module + "/" + rel }
	for name, c := range map[string]struct {
		graph map[string][]string
		ok    map[[2]string]bool
		want  []string // substrings, one per violation, in order
	}{
		"downwards only": {graph: map[string][]string{
			"workflows":         {full("activities"), full("leaf"), "fmt", "go.temporal.io/sdk/workflow"},
			"internal/adapters": {full("fleet"), full("activities")},
			"worker":            {full("internal/adapters"), full("fleet")},
		}},
		"workflows importing fleet": {graph: map[string][]string{
			"workflows": {full("activities"), full("fleet")},
		}, want: []string{"workflows imports fleet: workflows is on layer 2 (workflows), fleet on the higher layer 3"}},
		"fleet importing the adapters": {graph: map[string][]string{
			"fleet": {full("internal/adapters")},
		}, want: []string{"fleet imports internal/adapters"}},
		"same layer": {graph: map[string][]string{
			"internal/coordination": {full("fleet")},
		}, want: []string{"internal/coordination imports fleet: both are on layer 3"}},
		"same layer, allowed": {graph: map[string][]string{
			"leaf2": {full("leaf")},
		}, ok: map[[2]string]bool{{"leaf2", "leaf"}: true}},
		"a package's external test imports the package": {graph: map[string][]string{
			"activities": {full("activities"), full("leaf")},
		}},
		"packages missing from the table": {graph: map[string][]string{
			"internal/newthing": {full("activities")},
			"workflows":         {full("internal/other")},
		}, want: []string{"internal/newthing is on no layer", "workflows imports internal/other, which is on no layer"}},
	} {
		t.Run(name, func(t *testing.T) {
			got := violations(c.graph, table, c.ok)
			if len(got) != len(c.want) {
				t.Fatalf("got %d violations, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

func TestParseGoList(t *testing.T) {
	g := parseGoList(module + "/workflows " + module + "/activities fmt  \n" + module + "/internal/health \n")
	if len(g) != 2 || len(g["workflows"]) != 2 || g["workflows"][0] != module+"/activities" || len(g["internal/health"]) != 0 {
		t.Fatalf("parsed %v", g)
	}
}

// violations says, sorted, which packages of graph (module-relative path ->
// imported paths) import against the table.
func violations(graph map[string][]string, table [][]string, ok map[[2]string]bool) []string {
	rank := map[string]int{}
	for i, layer := range table {
		for _, p := range layer {
			rank[p] = i
		}
	}
	describe := func(i int) string { return fmt.Sprintf("layer %d (%s)", i, strings.Join(table[i], ", ")) }
	var out []string
	for pkg, imports := range graph {
		r, known := rank[pkg]
		if !known {
			out = append(out, fmt.Sprintf("%s is on no layer of the table in internal/layers: add it", pkg))
			continue
		}
		seen := map[string]bool{}
		for _, full := range imports {
			imp, ours := relative(full)
			if !ours || imp == pkg || seen[imp] {
				continue
			}
			seen[imp] = true
			ir, known := rank[imp]
			switch {
			case !known:
				out = append(out, fmt.Sprintf("%s imports %s, which is on no layer of the table in internal/layers: add it", pkg, imp))
			case ir > r:
				out = append(out, fmt.Sprintf("%s imports %s: %s is on %s, %s on the higher %s; a package may import only from lower layers",
					pkg, imp, pkg, describe(r), imp, describe(ir)))
			case ir == r && !ok[[2]string{pkg, imp}]:
				out = append(out, fmt.Sprintf("%s imports %s: both are on %s, and packages of one layer do not import each other (unless sameLayerOK says so)",
					pkg, imp, describe(r)))
			}
		}
	}
	sort.Strings(out)
	return out
}

// parseGoList reads lines of "importpath import...", keeping the module's
// packages under their module-relative paths.
func parseGoList(out string) map[string][]string {
	graph := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if pkg, ours := relative(fields[0]); ours {
			graph[pkg] = append([]string{}, fields[1:]...)
		}
	}
	return graph
}

// relative is a module package's path relative to the module root.
func relative(importPath string) (string, bool) {
	if importPath == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == "/dev/null" {
		t.Fatalf("finding the module root: go env GOMOD = %q (%v)", gomod, err)
	}
	return filepath.Dir(gomod)
}

// selectorsOf lists the selectors f uses on the package importPath.
func selectorsOf(f *ast.File, importPath string) []*ast.SelectorExpr {
	name := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == importPath {
			name = filepath.Base(importPath)
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	if name == "" {
		return nil
	}
	var out []*ast.SelectorExpr
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name {
				out = append(out, sel)
			}
		}
		return true
	})
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
