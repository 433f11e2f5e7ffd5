package route

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadRTProtos(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rt_protos")
	if err := os.WriteFile(path, []byte("# comment\n3\tboot\n0x11 kube-router # hex, as iproute2 allows\n80 calico\nbad line here\n300 toobig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := map[Protocol]string{}
	readRTProtos(path, names)
	want := map[Protocol]string{3: "boot", 17: "kube-router", 80: "calico"}
	if len(names) != len(want) {
		t.Errorf("names = %v, want %v", names, want)
	}
	for p, n := range want {
		if names[p] != n {
			t.Errorf("names[%d] = %q, want %q", p, names[p], n)
		}
	}
	if got := Protocol(114).DisplayName(); got != "114" {
		t.Errorf("DisplayName(114) = %q", got)
	}
}
