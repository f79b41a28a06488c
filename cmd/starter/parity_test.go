package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/fleet"
)

// TestEveryCommandIsAFleetCall keeps the CLI on the public client: the
// table of docs/API.md ("The Go client") names, for every command of the
// CLI, the fleet methods it calls; each must exist on the package and be
// called by the CLI, so that a master can do all that an operator can.
func TestEveryCommandIsAFleetCall(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "API.md"))
	require.NoError(t, err)
	section := string(doc)[strings.Index(string(doc), "## The Go client"):]
	row := regexp.MustCompile("(?m)^\\| `([a-z ]+)` \\| (.+) \\|$")
	method := regexp.MustCompile("`(Client|Budget)\\.([A-Za-z]+)`")
	types := map[string]reflect.Type{"Client": reflect.TypeOf(&fleet.Client{}), "Budget": reflect.TypeOf(&fleet.Budget{})}

	called := selectorsCalled(t)
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
		calls := method.FindAllStringSubmatch(m[2], -1)
		require.NotEmpty(t, calls, "docs/API.md: `%s` names no fleet method", m[1])
		for _, c := range calls {
			_, ok := types[c[1]].MethodByName(c[2])
			require.True(t, ok, "docs/API.md: `%s` names %s.%s, which package fleet does not have", m[1], c[1], c[2])
		}
		// The first method named is the one the command calls.
		require.True(t, called[calls[0][2]], "docs/API.md: `%s` is said to call %s.%s, which cmd/starter never calls", m[1], calls[0][1], calls[0][2])
	}

	var commands []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if !sub.HasSubCommands() {
				commands = append(commands, strings.TrimPrefix(sub.CommandPath(), "starter "))
			}
			walk(sub)
		}
	}
	walk((&app{}).rootCommand())
	sort.Strings(commands)
	var listed []string
	for c := range documented {
		listed = append(listed, c)
	}
	sort.Strings(listed)
	require.Equal(t, commands, listed, "the commands of the CLI and the rows of docs/API.md's table")
}

// selectorsCalled are the names the CLI's sources call as x.Name(...).
func selectorsCalled(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	called := map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					called[sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	return called
}
