package watch

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/routepush/routepush/inventory"
)

// A Node that takes another's address or pod CIDR (its kubelet writes its
// own status; a CIDR may be wrong from the start) cannot get the other
// left out of the table, and so pruned everywhere as if it had left: the
// node that changed is held at its last accepted entry, a new one is left
// out, and the victim stays as it was.
func TestSourceHoldsTheNodeThatChangedNotItsVictim(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(ctx, kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &Config{Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{})}
	s := newSource(cfg)
	if err := s.start(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, held, err := s.table(ctx)
	if err != nil || len(nodes) != 3 || len(held) != 0 {
		t.Fatalf("first table: %d nodes, held %v, %v", len(nodes), held, err)
	}
	// settle waits until the informer's store has what fn expects.
	settle := func(what string, ok func(ns []*corev1.Node) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			ns, _ := s.lister.List(labels.Everything())
			if ok(ns) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the informer never saw %s", what)
			}
		}
	}
	entry := func(nodes []inventory.Node, name string) *inventory.Node {
		for i := range nodes {
			if nodes[i].Name == name {
				return &nodes[i]
			}
		}
		return nil
	}
	update := func(n *corev1.Node) {
		t.Helper()
		if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		settle(n.Name+"'s update", func(ns []*corev1.Node) bool {
			for _, x := range ns {
				if x.Name == n.Name {
					return routing(x) == routing(n)
				}
			}
			return false
		})
	}
	for _, c := range []struct {
		name   string
		change func(n *corev1.Node)
	}{
		{"the victim's InternalIP", func(n *corev1.Node) { n.Status.Addresses[0].Address = "198.18.0.12" }},
		{"the victim's pod CIDR", func(n *corev1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = "100.64.2.0/24", []string{"100.64.2.0/24"} }},
		{"an address in the victim's pod CIDR", func(n *corev1.Node) { n.Status.Addresses[0].Address = "100.64.2.7" }},
	} {
		attacker := kubeNode(1)
		c.change(attacker)
		update(attacker)
		nodes, held, err := s.table(ctx)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		v, a := entry(nodes, "node-02"), entry(nodes, "node-01")
		switch {
		case v == nil || v.InternalIPs[0] != netip.MustParseAddr("198.18.0.12") || v.PodCIDRs[0] != netip.MustParsePrefix("100.64.2.0/24"):
			t.Errorf("%s: the victim node-02 is %+v, want it as it was", c.name, v)
		case a == nil || a.InternalIPs[0] != netip.MustParseAddr("198.18.0.11") || a.PodCIDRs[0] != netip.MustParsePrefix("100.64.1.0/24"):
			t.Errorf("%s: node-01 is %+v, want it held at its last accepted entry", c.name, a)
		case !held["node-01"] || len(held) != 1:
			t.Errorf("%s: held %v, want node-01", c.name, held)
		}
		update(kubeNode(1)) // fixed: accepted again
		if nodes, held, err := s.table(ctx); err != nil || len(held) != 0 || entry(nodes, "node-01") == nil {
			t.Fatalf("%s, fixed: held %v, %v", c.name, held, err)
		}
	}
	// A new node with a pod CIDR wide enough to cover every other's is
	// left out; nobody else is.
	wide := kubeNode(9)
	wide.Spec.PodCIDR, wide.Spec.PodCIDRs = "100.64.0.0/16", []string{"100.64.0.0/16"}
	if _, err := client.CoreV1().Nodes().Create(ctx, wide, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	settle("node-09", func(ns []*corev1.Node) bool { return len(ns) == 4 })
	nodes, held, err = s.table(ctx)
	if err != nil || len(nodes) != 3 || !held["node-09"] || len(held) != 1 {
		t.Errorf("wide join: %d nodes, held %v, %v; want the 3 as they were and node-09 held out", len(nodes), held, err)
	}
}

// A Node whose address keeps changing (a kubelet flapping, or one made
// to) is held at its last accepted entry past flapLimit changes in a
// minute: it cannot keep every node in rounds.
func TestSourceHoldsAFlappingNode(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(ctx, kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := newSource(&Config{Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{})})
	if err := s.start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.table(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range flapLimit + 2 {
		n := kubeNode(1)
		n.Status.Addresses[0].Address = fmt.Sprintf("198.18.1.%d", 100+i)
		if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if kn, err := s.lister.Get("node-01"); err == nil && kn.Status.Addresses[0].Address == n.Status.Addresses[0].Address {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the informer never saw the change")
			}
		}
		nodes, held, err := s.table(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got netip.Addr
		for _, x := range nodes {
			if x.Name == "node-01" {
				got = x.InternalIPs[0]
			}
		}
		flapping := i+1 > flapLimit
		if flapping && (!held["node-01"] || got != netip.MustParseAddr("198.18.1.104")) {
			t.Errorf("change %d: node-01 at %s, held %v; want it held at its last accepted address", i+1, got, held)
		}
		if !flapping && (held["node-01"] || got.String() != n.Status.Addresses[0].Address) {
			t.Errorf("change %d: node-01 at %s, held %v; want the change taken", i+1, got, held)
		}
	}
}
