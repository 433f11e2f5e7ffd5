package watch

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

func holder() orchestrator.Holder {
	return orchestrator.Holder{RunID: orchestrator.NewRunID(time.Now()), Host: "bastion", PID: 4242, Started: time.Now()}
}

func startEngine(t *testing.T, cfg Config) (*syncBuf, func()) {
	t.Helper()
	logs := &syncBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Debounce == 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	cfg.Plan = orchestrator.PlanOptions{Protocol: orchestrator.DefaultProtocol}
	cfg.NewHolder = holder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(cfg).Run(ctx) }()
	return logs, func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	}
}

// The Node's InternalIP moves while the inventory, as used for apply,
// still names the old one: the table is invalid, and the node is held at
// its last accepted entry; it is not taken for a departure (its pod
// CIDR's routes stay on every node: the node and its pods are there).
func TestEngineHoldsANodeWhoseEntryTurnsInvalid(t *testing.T) {
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	inv := filepath.Join(t.TempDir(), "hosts.yaml")
	var b strings.Builder
	b.WriteString("nodes:\n")
	for i := range 3 {
		n := kubeNode(i)
		b.WriteString("  - name: " + n.Name + "\n    address: " + n.Status.Addresses[0].Address + "\n    internal_ip: " + n.Status.Addresses[0].Address + "\n")
	}
	if err := os.WriteFile(inv, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	net := newFakeNet(3)
	logs, stop := startEngine(t, Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}), Inventory: inv,
		Connect: net.connect,
	})
	defer stop()
	waitUntil(t, "first sync", 10*time.Second, func() bool { return len(net.node("node-00").dsts()) == 2 })
	t.Logf("node-00 before: %v", net.node("node-00").dsts())
	n1 := kubeNode(1)
	n1.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.111"}}
	if _, err := client.CoreV1().Nodes().Update(t.Context(), n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	got := net.node("node-00").dsts()
	t.Logf("node-00 after node-01 InternalIP moved: %v\n%s", got, logs.String())
	if !strings.Contains(strings.Join(got, ","), "100.64.1.0/24") {
		t.Errorf("node-00 lost its route to node-01's pods (100.64.1.0/24), node-01 still in the cluster:\n%s", grepLog(logs.String(), "left out", "nodes changed", "round done"))
	}
}

// A lock left by a run on another host (a watcher killed mid-round): the
// node is pending, retried with backoff, and the log says who holds it.
func TestEngineSaysWhoHoldsALock(t *testing.T) {
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	net := newFakeNet(3)
	dead := orchestrator.Holder{RunID: orchestrator.NewRunID(time.Now().Add(-time.Hour)), Host: "routepush-7c9f-abcde", PID: 1}
	net.node("node-02").lock = []byte(`{"run_id":"` + dead.RunID + `","host":"routepush-7c9f-abcde","pid":1,"started":"2025-01-01T00:00:00Z"}` + "\n")
	rec := &recorder{}
	logs, stop := startEngine(t, Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
		Connect: net.connect, Observer: rec,
	})
	waitUntil(t, "three rounds", 20*time.Second, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.rounds) >= 3 })
	stop()
	rec.mu.Lock()
	for _, r := range rec.rounds {
		for _, n := range r.Nodes {
			if n.Name == "node-02" {
				t.Logf("round %s: node-02 %s err=%v", r.Reason, n.State, n.Err)
			}
		}
	}
	rec.mu.Unlock()
	if !strings.Contains(logs.String(), "locked by") {
		t.Errorf("node-02 locked by a dead run, never converged, and the log never says so:\n%s", grepLog(logs.String(), "round done", "node-02"))
	}
}

func grepLog(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// A new Node registers with an InternalIP already used by a live node (a
// VM given a recycled or clashing address): the newcomer is left out and
// the live node keeps its routes everywhere.
func TestEngineDuplicateIPKeepsTheLiveNode(t *testing.T) {
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	net := newFakeNet(4)
	logs, stop := startEngine(t, Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
		Connect: net.connect,
	})
	defer stop()
	waitUntil(t, "first sync", 10*time.Second, func() bool { return len(net.node("node-00").dsts()) == 2 })
	n3 := kubeNode(3)
	n3.Name = "a-new-node"                                                                            // sorts before node-01
	n3.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}} // node-01's
	if _, err := client.CoreV1().Nodes().Create(t.Context(), n3, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	t.Logf("%v\n%s", net.node("node-00").dsts(), logs.String())
	got := net.node("node-00").dsts()
	if !strings.Contains(strings.Join(got, ","), "100.64.1.0/24") {
		t.Errorf("node-00's route to live node-01's pods deleted after a bad node-03 joined: %v\n%s", got, grepLog(logs.String(), "left out", "nodes changed", "round done"))
	}
}

// A node whose batch is on its way when another node joins must be taken
// again once its round ends: its round's plan did not have the join.
// And its round-mates, done long before, must not wait for it.
func TestEngineNodeDoneBeforeItsRoundMates(t *testing.T) {
	client := apiClient(true)
	for i := range 2 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	net := newFakeNet(3)
	hold := make(chan struct{})
	net.node("node-00").hold = hold
	_, stop := startEngine(t, Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
		Connect: net.connect,
	})
	defer stop()
	waitUntil(t, "node-01 synced", 10*time.Second, func() bool { return len(net.node("node-01").dsts()) == 1 })
	joined := time.Now()
	if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// node-00's batch is held (a node silent mid-apply): node-01, done
	// with the sync round long ago, is not its round-mate's hostage.
	waitUntil(t, "node-01 routes to the join while node-00 is held", 3*time.Second, func() bool { return len(net.node("node-01").dsts()) == 2 })
	t.Logf("node-01 routed to node-02 %s after the join, node-00 held", time.Since(joined).Round(time.Millisecond))
	released := time.Now()
	close(hold)
	waitUntil(t, "node-01 routes to the join", 10*time.Second, func() bool { return len(net.node("node-01").dsts()) == 2 })
	t.Logf("node-01 routed to node-02 %s after the join, %s after node-00's batch was let go", time.Since(joined).Round(time.Millisecond), time.Since(released).Round(time.Millisecond))
	waitUntil(t, "node-00, held during the join, routes to node-02 after", 2*time.Second, func() bool { return len(net.node("node-00").dsts()) == 2 })
}

// A Node whose InternalIP the others cannot reach directly (another
// segment, or its kubelet lying) used to get every other node refused,
// round after round. It is held at its last accepted address (or left
// out, when new) and the others converge without it.
func TestEngineHoldsOutAnUnroutableNode(t *testing.T) {
	t.Parallel()
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	net := newFakeNet(4)
	logs, stop := startEngine(t, Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
		Connect: net.connect,
	})
	defer stop()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	}()
	want := func(name string, dsts ...string) func() bool {
		return func() bool { return slices.Equal(net.node(name).dsts(), dsts) }
	}
	waitUntil(t, "synced", 10*time.Second, want("node-00", "100.64.1.0/24 via 198.18.0.11", "100.64.2.0/24 via 198.18.0.12"))
	// node-02 moves to an address on no segment of the others': held at
	// its last accepted one.
	moved := kubeNode(2)
	moved.Status.Addresses[0].Address = "203.0.113.5"
	if _, err := client.CoreV1().Nodes().Update(t.Context(), moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// node-03 joins on such an address: left out; the others route to
	// each other, node-02 still by its old address.
	joins := kubeNode(3)
	joins.Status.Addresses[0].Address = "203.0.113.6"
	if _, err := client.CoreV1().Nodes().Create(t.Context(), joins, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if !want("node-00", "100.64.1.0/24 via 198.18.0.11", "100.64.2.0/24 via 198.18.0.12")() {
		t.Errorf("node-00: %v, want its routes to node-01 and node-02 (old address) as they were", net.node("node-00").dsts())
	}
	// node-03 fixed: it joins everywhere.
	joins.Status.Addresses[0].Address = "198.18.0.13"
	if _, err := client.CoreV1().Nodes().Update(t.Context(), joins, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node-03 joined once reachable", 10*time.Second, want("node-01", "100.64.0.0/24 via 198.18.0.10", "100.64.2.0/24 via 198.18.0.12", "100.64.3.0/24 via 198.18.0.13"))
}
