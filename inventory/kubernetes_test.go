package inventory

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// These tests use client-go's fake clientset for the logic; test/e2e runs
// the same code against a real kube-apiserver.

func apiNode(name string, labels map[string]string, cidrs []string, addrs ...corev1.NodeAddress) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, ResourceVersion: "7"}}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	n.Status.Addresses = addrs
	return n
}

func internal(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

func fakeCluster(o KubeOptions, nodes ...*corev1.Node) (*Cluster, *fake.Clientset) {
	objs := make([]runtime.Object, len(nodes))
	for i, n := range nodes {
		objs[i] = n
	}
	client := fake.NewClientset(objs...)
	return NewClusterForClient(`context "test"`, client, o), client
}

func TestClusterNodesPairsByFamily(t *testing.T) {
	t.Parallel()
	legacy := apiNode("legacy", nil, nil, internal("198.18.0.12"))
	legacy.Spec.PodCIDR = "100.64.2.0/24" // only the singular field, as before dual-stack
	c, _ := fakeCluster(KubeOptions{},
		// IPv6 listed first, other address types around: pairing is by
		// family, never by position.
		apiNode("dual", nil, []string{"100.64.0.0/24", "2001:db8:64::/64"},
			corev1.NodeAddress{Type: corev1.NodeHostName, Address: "dual"},
			internal("2001:db8::10"),
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.19.0.10"},
			internal("198.18.0.10"),
			internal("198.18.0.99")), // a second IPv4: the first one is the node's
		apiNode("new", nil, nil, internal("198.18.0.11")),
		legacy,
	)
	tab, err := c.Nodes(context.Background(), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{
		{Name: "dual",
			InternalIPs: []netip.Addr{netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("198.18.0.10")},
			PodCIDRs:    []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24"), netip.MustParsePrefix("2001:db8:64::/64")}, AddressFromAPI: true},
		{Name: "legacy",
			InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.12")},
			PodCIDRs:    []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24")}, AddressFromAPI: true},
		{Name: "new", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.11")}, AddressFromAPI: true},
	}
	if !reflect.DeepEqual(tab.Nodes, want) {
		t.Errorf("Nodes =\n%+v\nwant\n%+v", tab.Nodes, want)
	}
}

func TestClusterNodesReportsBadNodes(t *testing.T) {
	t.Parallel()
	c, _ := fakeCluster(KubeOptions{},
		apiNode("a", nil, []string{"100.64.0.5/24"}, internal("198.18.0.10")),
		apiNode("b", nil, []string{"100.64.1.0/24"}),
		apiNode("c", nil, []string{"2001:db8:64::/64"}, internal("198.18.0.12")),
		apiNode("d", nil, []string{"100.64.0.0/16"}, internal("198.18.0.13")),
		apiNode("e", nil, nil, internal("198.18.0.300")),
	)
	_, err := c.Nodes(context.Background(), nil, false)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	for _, want := range []string{
		`kubernetes context "test": 3 problems`,
		`node "a" spec.podCIDRs[0]: "100.64.0.5/24" has host bits set; did you mean 100.64.0.0/24?`,
		`node "b" status.addresses: no InternalIP`,
		`node "e" status.addresses[0]: InternalIP "198.18.0.300" is not an IP address`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not contain %q", err, want)
		}
	}
	// Once each node parses, the table is checked as a whole.
	c, _ = fakeCluster(KubeOptions{},
		apiNode("c", nil, []string{"2001:db8:64::/64"}, internal("198.18.0.12")),
		apiNode("d", nil, []string{"100.64.0.0/16"}, internal("198.18.0.13")),
		apiNode("f", nil, []string{"100.64.1.0/24"}, internal("198.18.0.14")),
	)
	_, err = c.Nodes(context.Background(), nil, false)
	for _, want := range []string{
		`node "c" spec.podCIDRs: 2001:db8:64::/64 is IPv6 but the node has no IPv6 status.addresses[InternalIP]`,
		`node "f" spec.podCIDRs: 100.64.1.0/24 overlaps 100.64.0.0/16 of node "d"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\ndoes not contain %q", err, want)
		}
	}
}

func writeInventory(t *testing.T, body string) *File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hosts.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadAccess(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestClusterNodesTakesAccessFromInventory(t *testing.T) {
	t.Parallel()
	c, _ := fakeCluster(KubeOptions{Selector: "role=worker"},
		apiNode("w0", map[string]string{"role": "worker"}, []string{"100.64.0.0/24"}, internal("198.18.0.10")),
		apiNode("w1", map[string]string{"role": "worker"}, []string{"100.64.1.0/24"}, internal("198.18.0.11")),
		apiNode("cp", map[string]string{"role": "control-plane"}, []string{"100.64.9.0/24"}, internal("198.18.0.19")),
	)
	inv := writeInventory(t, `
defaults: {user: admin, port: 2222}
nodes:
  - {name: w0, address: w0.mgmt.example, user: root}
  - {name: cp, address: 198.18.1.19}
  - {name: lb, address: 198.18.1.50, pod_cidr: 100.64.50.0/24}
`)
	if _, err := c.Nodes(context.Background(), inv, false); err == nil ||
		!strings.Contains(err.Error(), `node "lb" (nodes[2]) name: no node of this name in the cluster`) {
		t.Fatalf("err = %v, want lb reported as unknown", err)
	}
	tab, err := c.Nodes(context.Background(), inv, true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Node{}
	for _, n := range tab.Nodes {
		got[n.Name] = n
	}
	if n := got["w0"]; n.Address != "w0.mgmt.example" || n.SSH != (SSH{User: "root", Port: 2222}) || n.AddressFromAPI {
		t.Errorf("w0 = %+v, want the inventory's address and user", n)
	}
	if n := got["w1"]; n.Address != "" || n.SSH != (SSH{User: "admin", Port: 2222}) || !n.AddressFromAPI {
		t.Errorf("w1 = %+v, want no address (SSH goes to its InternalIP) and the inventory's defaults", n)
	}
	if _, ok := got["cp"]; ok || !reflect.DeepEqual(tab.Unselected, []string{"cp"}) {
		t.Errorf("cp taken, or Unselected = %v; the selector leaves it out", tab.Unselected)
	}
	if n := got["lb"]; n.Address != "198.18.1.50" || len(n.PodCIDRs) != 1 || n.AddressFromAPI || !reflect.DeepEqual(tab.Unknown, []string{"lb"}) {
		t.Errorf("lb = %+v, Unknown = %v; want it from the inventory", n, tab.Unknown)
	}
}

func TestClusterNodesRefusesInventoryThatDisagrees(t *testing.T) {
	t.Parallel()
	c, _ := fakeCluster(KubeOptions{},
		apiNode("w0", nil, []string{"100.64.0.0/24"}, internal("198.18.0.10")),
		apiNode("w1", nil, []string{"100.64.1.0/24"}, internal("198.18.0.11")),
	)
	inv := writeInventory(t, `
nodes:
  - {name: w0, address: 198.18.1.10, pod_cidr: 100.64.7.0/24}
  - {name: w1, internal_ip: 198.18.0.21}
`)
	_, err := c.Nodes(context.Background(), inv, false)
	for _, want := range []string{
		`node "w0" (nodes[0]) pod_cidr: 100.64.7.0/24 in ` + inv.Path + `, but the Kubernetes API says 100.64.0.0/24`,
		`node "w1" (nodes[1]) internal_ip: 198.18.0.21 in ` + inv.Path + `, but the Kubernetes API says 198.18.0.11`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\ndoes not contain %q", err, want)
		}
	}
}

func TestClusterNodesNamesClusterOnAPIError(t *testing.T) {
	t.Parallel()
	c, client := fakeCluster(KubeOptions{})
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New(`User "bob" cannot list resource "nodes"`))
	})
	_, err := c.Nodes(context.Background(), nil, false)
	if err == nil || !strings.Contains(err.Error(), `kubernetes context "test": listing nodes: `) || !strings.Contains(err.Error(), "configs/rbac.yaml") {
		t.Errorf("err = %v, want it to name the cluster and the RBAC fix", err)
	}
}

func networkUnavailable(t *testing.T, client *fake.Clientset, name string) *corev1.NodeCondition {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeNetworkUnavailable {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func TestMarkNetworkAvailable(t *testing.T) {
	t.Parallel()
	n := apiNode("w0", nil, []string{"100.64.0.0/24"}, internal("198.18.0.10"))
	n.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Reason: "NoRouteCreated"},
	}
	c, client := fakeCluster(KubeOptions{}, n)
	// The first write loses a race with another writer: it must be retried.
	conflicts := 1
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			t.Errorf("patched subresource %q, want status", a.GetSubresource())
		}
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "w0", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	changed, err := c.MarkNetworkAvailable(context.Background(), "w0")
	if err != nil || !changed {
		t.Fatalf("MarkNetworkAvailable = %v, %v; want true, nil", changed, err)
	}
	cond := networkUnavailable(t, client, "w0")
	if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != ReasonRouteCreated || cond.Message != MessageNetworkAvailable {
		t.Errorf("condition = %+v, want False/RouteCreated", cond)
	}
	got, _ := client.CoreV1().Nodes().Get(context.Background(), "w0", metav1.GetOptions{})
	if len(got.Status.Conditions) != 2 {
		t.Errorf("conditions = %+v, want Ready kept beside NetworkUnavailable", got.Status.Conditions)
	}

	// Already so: nothing is written.
	before := len(client.Actions())
	changed, err = c.MarkNetworkAvailable(context.Background(), "w0")
	if err != nil || changed {
		t.Fatalf("second MarkNetworkAvailable = %v, %v; want false, nil", changed, err)
	}
	for _, a := range client.Actions()[before:] {
		if a.GetVerb() != "get" {
			t.Errorf("wrote %s although the condition was already False/RouteCreated", a.GetVerb())
		}
	}
}

// After Nodes, marking a node costs one request: the listed node is what
// the first write is decided on; only a conflict makes it read the node.
func TestMarkNetworkAvailableUsesTheList(t *testing.T) {
	t.Parallel()
	marked := apiNode("done", nil, []string{"100.64.1.0/24"}, internal("198.18.0.11"))
	marked.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: ReasonRouteCreated}}
	c, client := fakeCluster(KubeOptions{}, apiNode("w0", nil, []string{"100.64.0.0/24"}, internal("198.18.0.10")), marked)
	if _, err := c.Nodes(context.Background(), nil, false); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if changed, err := c.MarkNetworkAvailable(context.Background(), "w0"); err != nil || !changed {
		t.Fatalf("MarkNetworkAvailable(w0) = %v, %v", changed, err)
	}
	if changed, err := c.MarkNetworkAvailable(context.Background(), "done"); err != nil || changed {
		t.Fatalf("MarkNetworkAvailable(done) = %v, %v; want no write", changed, err)
	}
	var verbs []string
	for _, a := range client.Actions() {
		verbs = append(verbs, a.GetVerb())
	}
	if !reflect.DeepEqual(verbs, []string{"patch"}) {
		t.Errorf("requests = %v, want one patch", verbs)
	}
	if cond := networkUnavailable(t, client, "w0"); cond == nil || cond.Reason != ReasonRouteCreated {
		t.Errorf("w0 condition = %+v", cond)
	}
}

// Like kubectl: the files in $KUBECONFIG are merged, --context picks any
// context of any of them, and the cluster is named after the kubeconfig.
func TestNewClusterMergesKUBECONFIG(t *testing.T) {
	dir := t.TempDir()
	write := func(name, cluster, server string) string {
		p := filepath.Join(dir, name)
		body := "apiVersion: v1\nkind: Config\nclusters:\n- name: " + cluster + "\n  cluster: {server: \"" + server + "\"}\n" +
			"users:\n- name: u-" + cluster + "\n  user: {token: t}\ncontexts:\n- name: ctx-" + cluster + "\n  context: {cluster: " + cluster + ", user: u-" + cluster + "}\n" +
			"current-context: ctx-" + cluster + "\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first, second := write("a", "dev", "https://198.18.0.1:6443"), write("b", "prod", "https://198.18.0.2:6443/")
	t.Setenv("KUBECONFIG", first+string(os.PathListSeparator)+second)
	for _, tt := range []struct {
		context, want string
	}{
		{"", `context "ctx-dev" (cluster "dev", https://198.18.0.1:6443)`},
		{"ctx-prod", `context "ctx-prod" (cluster "prod", https://198.18.0.2:6443)`},
	} {
		c, err := NewCluster(KubeOptions{Context: tt.context})
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != tt.want {
			t.Errorf("--context %q: cluster %s, want %s", tt.context, c.Name, tt.want)
		}
	}
	if _, err := NewCluster(KubeOptions{Context: "staging"}); err == nil || !strings.Contains(err.Error(), `context "staging" is not in `+first+", "+second+" (contexts: ctx-dev, ctx-prod)") {
		t.Errorf("unknown context: err = %v", err)
	}
	// --kubeconfig names one file and ignores $KUBECONFIG.
	if _, err := NewCluster(KubeOptions{Kubeconfig: first, Context: "ctx-prod"}); err == nil || !strings.Contains(err.Error(), `is not in `+first+" (contexts: ctx-dev)") {
		t.Errorf("--kubeconfig with another file's context: err = %v", err)
	}
}

// TestClusterNodesRefusesZonedInternalIP: an IPv6 zone is any text the
// node's kubelet writes ("fe80::1%x\nERROR: ..."); netip accepts it, and a
// validation message printing the address would put the kubelet's
// newlines and escapes on the operator's terminal. It is refused at parse,
// quoted.
func TestClusterNodesRefusesZonedInternalIP(t *testing.T) {
	t.Parallel()
	c, _ := fakeCluster(KubeOptions{},
		apiNode("a", nil, []string{"2001:db8:64::/64"}, internal("fe80::1%x\nERROR: forged line\x1b[2J")),
	)
	_, err := c.Nodes(context.Background(), nil, false)
	if err == nil {
		t.Fatal("a zoned InternalIP was accepted")
	}
	if strings.ContainsAny(err.Error(), "\x1b") || strings.Contains(err.Error(), "\nERROR: forged") {
		t.Errorf("the kubelet's text reaches the message raw: %q", err)
	}
	if !strings.Contains(err.Error(), `InternalIP "fe80::1%x\nERROR: forged line\x1b[2J" is not an IP address`) {
		t.Errorf("error %q", err)
	}
}

// A node whose routes failed is marked True/NoRouteCreated, and back to
// False/RouteCreated when they converge; each decision uses what the last
// write returned, so marking a node again as it is sends nothing.
func TestMarkNetworkUnavailableAndBack(t *testing.T) {
	t.Parallel()
	n := apiNode("w0", nil, []string{"100.64.0.0/24"}, internal("198.18.0.10"))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: ReasonRouteCreated}}
	c, client := fakeCluster(KubeOptions{}, n)
	if _, err := c.Nodes(context.Background(), nil, false); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	verbs := func() []string {
		var v []string
		for _, a := range client.Actions() {
			v = append(v, a.GetVerb())
		}
		client.ClearActions()
		return v
	}
	for _, step := range []struct {
		mark        func(context.Context, string) (bool, error)
		wantChanged bool
		status      corev1.ConditionStatus
		reason      string
		verbs       []string
	}{
		{c.MarkNetworkUnavailable, true, corev1.ConditionTrue, ReasonNoRouteCreated, []string{"patch"}},
		{c.MarkNetworkUnavailable, false, corev1.ConditionTrue, ReasonNoRouteCreated, nil},
		{c.MarkNetworkAvailable, true, corev1.ConditionFalse, ReasonRouteCreated, []string{"patch"}},
		{c.MarkNetworkAvailable, false, corev1.ConditionFalse, ReasonRouteCreated, nil},
	} {
		changed, err := step.mark(context.Background(), "w0")
		if err != nil || changed != step.wantChanged {
			t.Fatalf("mark %s: %v, %v; want changed %v", step.status, changed, err, step.wantChanged)
		}
		if got := verbs(); !reflect.DeepEqual(got, step.verbs) {
			t.Errorf("mark %s: requests %v, want %v", step.status, got, step.verbs)
		}
		cond := networkUnavailable(t, client, "w0")
		client.ClearActions()
		if cond == nil || cond.Status != step.status || cond.Reason != step.reason || cond.Message == "" {
			t.Errorf("after marking %s: condition %+v", step.status, cond)
		}
	}
}

// The table a watcher builds again and again forgets the nodes that left:
// marking one of them reads it first (and finds it gone).
func TestTableOfForgetsNodesThatLeft(t *testing.T) {
	t.Parallel()
	a := apiNode("a", nil, []string{"100.64.0.0/24"}, internal("198.18.0.10"))
	b := apiNode("b", nil, []string{"100.64.1.0/24"}, internal("198.18.0.11"))
	c, client := fakeCluster(KubeOptions{}, a)
	if _, err := c.TableOf(context.Background(), []*corev1.Node{a, b}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.lastSeen("b"); !ok {
		t.Fatal("b not remembered after the first table")
	}
	if _, err := c.TableOf(context.Background(), []*corev1.Node{a}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.lastSeen("b"); ok {
		t.Error("b still remembered after it left the table")
	}
	client.ClearActions()
	if _, err := c.MarkNetworkAvailable(context.Background(), "b"); err == nil || !strings.Contains(err.Error(), `node "b": setting NetworkUnavailable=False`) {
		t.Errorf("marking a node that left: %v", err)
	}
}
