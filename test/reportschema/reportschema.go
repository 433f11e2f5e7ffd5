// Package reportschema checks a document against docs/report.schema.json,
// the schema of routepush --output json, for the tests that print one.
package reportschema

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Path is the schema file, from this package's place in the repository.
func Path() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "report.schema.json")
}

// Validate checks that doc is one JSON value that matches the schema.
func Validate(doc []byte) error {
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(Path())
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not one JSON document: %w", err)
	}
	return sch.Validate(v)
}

// ReadSchema returns the schema file's bytes.
func ReadSchema() ([]byte, error) { return os.ReadFile(Path()) }
