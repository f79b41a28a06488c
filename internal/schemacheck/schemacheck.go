// Package schemacheck validates JSON payloads against the JSON Schemas of
// docs/schemas with a real JSON Schema validator, so that the tests check
// what other languages' validators would check, not what the Go decoder
// happens to accept.
package schemacheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// The module's folders the schemas and the payloads recorded from real runs
// live in, relative to the module root.
const (
	SchemaDir  = "docs/schemas"
	PayloadDir = "testdata/payloads"
)

// draftURL is the $schema the generator (workflows/schema_test.go) writes
// and docs/API.md promises; draft is how the validator reports it.
const (
	draftURL = "https://json-schema.org/draft/2020-12/schema"
	draft    = 2020
)

// Validate checks the JSON document doc against
// docs/schemas/<schema>.schema.json of the module at root. A violation
// comes back as one line per failing keyword, each naming the place in the
// document and the keyword of the schema.
func Validate(root, schema string, doc []byte) error {
	path := filepath.Join(root, SchemaDir, schema+".schema.json")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Without $schema the validator would pick its own default draft, and
	// a file that says another draft is read by other rules: either way
	// the check would not be the one other languages' validators make.
	if m, _ := schemaDoc.(map[string]any); m["$schema"] != draftURL {
		return fmt.Errorf("%s declares $schema %v, not %s", path, m["$schema"], draftURL)
	}
	c := jsonschema.NewCompiler()
	// Format is only an annotation in draft 2020-12 unless asserted. The Go
	// readers refuse a time that is not RFC 3339, so a "date-time" string
	// that is not one is a broken payload, and the check must say so.
	c.AssertFormat()
	if err := c.AddResource(path, schemaDoc); err != nil {
		return err
	}
	sch, err := c.Compile(path)
	if err != nil {
		return fmt.Errorf("compiling %s: %w", path, err)
	}
	if sch.DraftVersion != draft {
		return fmt.Errorf("the validator reads %s as draft %d, not %d", path, sch.DraftVersion, draft)
	}
	// UnmarshalJSON keeps numbers as json.Number: nanosecond durations are
	// beyond float64's exact integers, and "integer" must see them whole.
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	err = sch.Validate(inst)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	var lines []string
	leaves(verr, &lines)
	return fmt.Errorf("%s: %s", schema, strings.Join(lines, "\n"))
}

// leaves lists the errors at the bottom of the validator's tree, the
// keywords that failed; the nodes above them only say that a $ref or a
// group of keywords failed because of them.
func leaves(e *jsonschema.ValidationError, lines *[]string) {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			leaves(c, lines)
		}
		return
	}
	// The fragment of the schema URL is the failing subschema within the
	// file, e.g. #/$defs/SpawnRequest/properties/priority.
	_, fragment, _ := strings.Cut(e.SchemaURL, "#")
	keyword := "#" + fragment
	for _, k := range e.ErrorKind.KeywordPath() {
		keyword += "/" + k
	}
	at := "/" + strings.Join(e.InstanceLocation, "/")
	*lines = append(*lines, fmt.Sprintf("at %s: keyword %s: %s", at, keyword, e.ErrorKind.LocalizedString(printer)))
}
