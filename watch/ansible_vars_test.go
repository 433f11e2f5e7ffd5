package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/routepush/routepush/inventory"
)

// ansibleLab writes an INI inventory of the fakeNet's nodes with their pod
// CIDRs in host_vars/, and starts a watcher on it alone.
func ansibleLab(t *testing.T) (dir string, net *fakeNet, logs *syncBuf, stop func()) {
	t.Helper()
	dir = t.TempDir()
	var ini strings.Builder
	ini.WriteString("[k8s]\n")
	for i := range 3 {
		fmt.Fprintf(&ini, "node-%02d ansible_host=198.18.0.%d\n", i, 10+i)
		writeVars(t, dir, i, fmt.Sprintf("pod_cidr: 100.64.%d.0/24\n", i))
	}
	if err := os.WriteFile(filepath.Join(dir, "inventory.ini"), []byte(ini.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	net = newFakeNet(3)
	logs, stop = startEngine(t, Config{Inventory: filepath.Join(dir, "inventory.ini"), FilePoll: 200 * time.Millisecond, Connect: net.connect})
	waitUntil(t, "first sync", 10*time.Second, func() bool { return len(net.node("node-00").dsts()) == 2 })
	return dir, net, logs, stop
}

func writeVars(t *testing.T, dir string, i int, data string) {
	t.Helper()
	p := filepath.Join(dir, "host_vars", fmt.Sprintf("node-%02d.yml", i))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A change in host_vars/ alone (a node's new pod CIDR) is a change of the
// inventory: it converges without a restart.
func TestEngineReadsHostVarsChanges(t *testing.T) {
	dir, net, logs, stop := ansibleLab(t)
	defer stop()
	writeVars(t, dir, 2, "pod_cidr: 100.64.12.0/24\n")
	waitUntil(t, "node-02's new pod CIDR routed on node-00", 10*time.Second, func() bool {
		d := strings.Join(net.node("node-00").dsts(), ",")
		return strings.Contains(d, "100.64.12.0/24 via 198.18.0.12") && !strings.Contains(d, "100.64.2.0/24")
	})
	t.Logf("%s", grepLog(logs.String(), "inventory changed", "round done"))
}

// A host_vars file read while it is empty (a git pull or an editor half
// way through; here with the inventory file touched too, so that even a
// watcher of the file alone reads the table) takes no route away: the
// node that seems to have lost its pod CIDR is held as it was until a
// read later confirms it. When the file comes back, nothing was deleted;
// a loss that stands deletes the routes, once confirmed.
func TestEngineHoldsANodeThatLostItsPodCIDRUntilConfirmed(t *testing.T) {
	dir, net, logs, stop := ansibleLab(t)
	defer stop()
	var lost atomic.Bool
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, n := range []string{"node-00", "node-02"} {
				if !strings.Contains(strings.Join(net.node(n).dsts(), ","), "100.64.1.0/24") {
					lost.Store(true)
				}
			}
		}
	}()
	inv := filepath.Join(dir, "inventory.ini")
	writeVars(t, dir, 1, "")
	now := time.Now()
	if err := os.Chtimes(inv, now, now); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the change read", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "inventory changed")
	})
	time.Sleep(500 * time.Millisecond) // a round on what was read
	writeVars(t, dir, 1, "pod_cidr: 100.64.1.0/24\n")
	time.Sleep(2 * time.Second)
	if lost.Load() {
		t.Fatalf("a route to node-01's pods was deleted for a host_vars file read empty for a moment:\n%s", grepLog(logs.String(), "inventory changed", "lost", "round done"))
	}
	for _, want := range []string{"lost pod CIDRs: kept as it was", "pod CIDRs again; nothing deleted"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
	// A loss that stands is confirmed, and the routes go.
	writeVars(t, dir, 1, "# pod_cidr moved out\n")
	waitUntil(t, "the loss confirmed and the routes deleted", 15*time.Second, func() bool {
		return !strings.Contains(strings.Join(net.node("node-00").dsts(), ","), "100.64.1.0/24")
	})
	if !strings.Contains(logs.String(), "read again to confirm: deleting") {
		t.Errorf("the confirmed loss is not logged:\n%s", logs.String())
	}
}

// Beside the API, a Node event does not read the inventory again (it
// would read a git pull half done, at random): only a change of the
// inventory or its host_vars/ that stood still for a poll does.
func TestSourceReadsTheInventoryOnlyWhenItChanged(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := apiClient(true)
	dir := t.TempDir()
	var ini strings.Builder
	ini.WriteString("[k8s]\n")
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(ctx, kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&ini, "node-%02d ansible_host=198.18.0.%d\n", i, 10+i)
	}
	inv := filepath.Join(dir, "inventory.ini")
	if err := os.WriteFile(inv, []byte(ini.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSource(&Config{Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}), Inventory: inv, FilePoll: 50 * time.Millisecond})
	if err := s.start(ctx); err != nil {
		t.Fatal(err)
	}
	port := func() int {
		t.Helper()
		nodes, _, err := s.table(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Name == "node-01" {
				return n.SSH.Port
			}
		}
		t.Fatal("node-01 not in the table")
		return 0
	}
	if p := port(); p != 0 {
		t.Fatalf("node-01's port %d before host_vars says any", p)
	}
	writeVars(t, dir, 1, "ansible_port: 2222\n")
	if p := port(); p != 0 {
		t.Errorf("a table built at once (a Node event) read the inventory again: port %d", p)
	}
	waitUntil(t, "host_vars/node-01.yml read once it stood still", 10*time.Second, func() bool { return port() == 2222 })
}

// The stamp changes with a vars file edited, added or removed, not with
// an editor's swap file or backup beside it.
func TestStampOfVarsFolders(t *testing.T) {
	dir := t.TempDir()
	writeVars(t, dir, 0, "pod_cidr: 100.64.0.0/24\n")
	paths := []string{filepath.Join(dir, "inventory.ini"), filepath.Join(dir, "group_vars"), filepath.Join(dir, "host_vars")}
	s0 := stampOf(paths)
	for _, junk := range []string{".node-00.yml.swp", "node-00.yml~"} {
		if err := os.WriteFile(filepath.Join(dir, "host_vars", junk), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if s := stampOf(paths); s != s0 {
		t.Errorf("a swap file or backup changed the stamp:\n%s\n%s", s0, s)
	}
	writeVars(t, dir, 1, "pod_cidr: 100.64.1.0/24\n")
	s1 := stampOf(paths)
	if s1 == s0 {
		t.Error("a new host_vars file left the stamp as it was")
	}
	writeVars(t, dir, 1, "pod_cidr: 100.64.9.0/24\n")
	if s := stampOf(paths); s == s1 {
		t.Error("an edited host_vars file left the stamp as it was")
	}
	if err := os.MkdirAll(filepath.Join(dir, "group_vars", "k8s"), 0o755); err != nil {
		t.Fatal(err)
	}
	if s := stampOf(paths); s == s1 {
		t.Error("a group_vars folder created left the stamp as it was")
	}
}
