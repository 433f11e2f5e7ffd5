package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A host_vars file routepush cannot look at (here a symlink loop; as
// root, permissions deny nothing) is an error naming it, not "no
// variables": it may set the host's pod CIDR.
func TestVarsFileThatCannotBeStatIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "inventory.ini"), "[k8s]\nn1 ansible_host=10.0.0.1\n")
	loop := filepath.Join(dir, "host_vars", "n1.yml")
	if err := os.MkdirAll(filepath.Dir(loop), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(filepath.Join(dir, "inventory.ini"), Options{})
	if err == nil || !strings.Contains(err.Error(), loop) {
		t.Fatalf("err %v; want an error naming %s", err, loop)
	}
	t.Log(err)
}

// Sources names the file and, for an Ansible inventory, the vars
// folders beside it (there or not); for hosts.yaml the file alone.
func TestSources(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "inventory.ini")
	writeTestFile(t, ini, "[k8s]\nn1\n")
	if got := Sources(ini); len(got) != 3 || got[1] != filepath.Join(dir, "group_vars") || got[2] != filepath.Join(dir, "host_vars") {
		t.Errorf("INI: %v", got)
	}
	hosts := filepath.Join(dir, "hosts.yaml")
	writeTestFile(t, hosts, "nodes:\n  - name: n1\n")
	if got := Sources(hosts); len(got) != 1 || got[0] != hosts {
		t.Errorf("hosts.yaml: %v", got)
	}
}
