package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A value of nested one-element tuples, ((((1,),),),), is read by paren
// once: it used to be read again from the "(" at every depth (2^depth).
// Python reads it in linear time, and so must the INI reader.
func TestParenNestingIsLinear(t *testing.T) {
	for _, depth := range []int{16, 20, 22} {
		v := strings.Repeat("(", depth) + "1" + strings.Repeat(",)", depth)
		start := time.Now()
		_ = parseLiteral(v)
		d := time.Since(start)
		t.Logf("depth %d (%d bytes): %v", depth, len(v), d)
		if d > 200*time.Millisecond {
			t.Fatalf("depth %d (%d bytes) took %v: exponential", depth, len(v), d)
		}
	}
}

// The same through Load of an INI inventory, on a variable routepush
// does not even read.
func TestININestedTuplesLoadQuickly(t *testing.T) {
	dir := t.TempDir()
	v := strings.Repeat("(", 24) + "1" + strings.Repeat(",)", 24)
	p := filepath.Join(dir, "hosts.ini")
	if err := os.WriteFile(p, []byte("[k8s]\nn1 ansible_host=10.0.0.1 pod_cidr=10.1.0.0/24 junk="+v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _, _ = readINI(p, mustRead(t, p)); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("readINI of a %d-byte value still running after 2s", len(v))
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
