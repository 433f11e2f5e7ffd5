package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/routepush/routepush/test/kube"
	"github.com/routepush/routepush/test/lab"
)

// kubeLab is a lab whose bastion also runs a real kube-apiserver (over
// etcd), with configs/rbac.yaml applied and a kubeconfig for the user it
// binds.
type kubeLab struct {
	*lab.Lab
	api        *kube.Server
	kubeconfig string // user "routepush": both of configs/rbac.yaml's roles
	// addressOnly is the lab's known_hosts as lab.Up writes it: every
	// node's key under its addresses, none under its name.
	addressOnly string
}

func newKubeLab(t *testing.T, nodes int, dualStack bool) *kubeLab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Nodes: nodes, DualStack: dualStack})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	api, err := kube.Start(ctx, kube.Options{
		Netns:     l.Bastion,
		Advertise: l.BastionAddr,
		Dial:      l.DialBastion,
		Dir:       filepath.Join(l.Dir, "kube"),
		Binary:    kubeAPIServer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Stop)
	if err := api.ApplyRBAC(ctx, "../../configs/rbac.yaml"); err != nil {
		t.Fatal(err)
	}
	k := &kubeLab{Lab: l, api: api, kubeconfig: filepath.Join(l.Dir, "kubeconfig")}
	if err := api.WriteKubeconfig(k.kubeconfig, kube.RoutepushToken, ""); err != nil {
		t.Fatal(err)
	}
	// With the API as the source and no inventory address, a node's
	// InternalIP is only its Node object's word: the operator vouches for
	// it with the node's host key under its name, as the README says.
	k.addressOnly = readFile(t, l.KnownHostsPath())
	writeFile(t, l.KnownHostsPath(), k.addressOnly+k.byName(l.Nodes...))
	return k
}

// byName renders known_hosts lines of nodes' host keys under their names.
func (k *kubeLab) byName(nodes ...*lab.Node) string {
	var b strings.Builder
	for _, n := range nodes {
		b.WriteString(lab.KnownHostsLine(n.Name, n.HostKey) + "\n")
	}
	return b.String()
}

// register creates the Node object of a lab node, as its kubelet and the
// cluster's IPAM would; cidrs nil means the node has no pod CIDR yet.
func (k *kubeLab) register(t *testing.T, n *lab.Node, labels map[string]string, cidrs []string, ips ...netip.Addr) {
	t.Helper()
	if ips == nil {
		ips = []netip.Addr{n.Addr}
	}
	_, err := k.api.CreateNode(testContext(t), kube.Node{Name: n.Name, Labels: labels, InternalIPs: ips, PodCIDRs: cidrs, NetworkUnavailable: true})
	if err != nil {
		t.Fatal(err)
	}
}

// registerAll registers every lab node with its IPv4 pod CIDR.
func (k *kubeLab) registerAll(t *testing.T) {
	t.Helper()
	for _, n := range k.Nodes {
		k.register(t, n, nil, []string{n.PodCIDR.String()})
	}
}

func (k *kubeLab) deleteNode(t *testing.T, name string) {
	t.Helper()
	if err := k.api.Admin.CoreV1().Nodes().Delete(testContext(t), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

var addition = regexp.MustCompile(`(?m)^  \+ (\S+) via (\S+) proto 114`)

// The cluster is the node table: a selector limits the nodes, paging reads
// them all, a node without a pod CIDR receives routes but is no
// destination, a pod CIDR assigned later is seen by the next run, and so is
// a CIDR that changes hands when nodes are removed and re-registered.
func TestKubeNodesConvergeTheLab(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 5, false)
	worker := map[string]string{"node-role.kubernetes.io/worker": ""}
	for i, n := range k.Nodes {
		var cidrs []string
		if i < 4 { // node-4's IPAM has not assigned a CIDR yet
			cidrs = []string{n.PodCIDR.String()}
		}
		labels := worker
		if i >= 3 {
			labels = nil
		}
		k.register(t, n, labels, cidrs)
	}
	before := snapshot(t, k.Lab)

	// The selector limits the set to node-0..2: 3 nodes, 2 routes each.
	res := rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "-l", "node-role.kubernetes.io/worker", "--check")
	if res.Code != 2 {
		t.Fatalf("--check with selector: exit %d, want 2", res.Code)
	}
	if got := addition.FindAllString(res.Stdout, -1); len(got) != 6 {
		t.Errorf("--check with selector lists %d additions, want 6", len(got))
	}
	if strings.Contains(res.Stdout, "node-3") || strings.Contains(res.Stdout, "node-4") || !strings.Contains(res.Stdout, "3 nodes checked") {
		t.Errorf("the selector did not limit the nodes to node-0..2:\n%s", res.Stdout)
	}
	assertUnchanged(t, k.Lab, before)

	// All nodes, two per list request: 5 nodes need 3 pages.
	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--chunk-size", "2", "-v")
	if res.Code != 0 {
		t.Fatalf("apply: exit %d, want 0", res.Code)
	}
	if !strings.Contains(res.Stderr, "nodes=5 pages=3") {
		t.Errorf("stderr does not report 5 nodes in 3 pages:\n%s", res.Stderr)
	}
	if !strings.Contains(res.Stdout, "note: node-4 has no pod CIDR") || !strings.Contains(res.Stdout, "16 routes added") {
		t.Errorf("want node-4 reported without pod CIDR and 4*3+4 routes added:\n%s", res.Stdout)
	}
	if out, err := k.Exec(testContext(t), k.Nodes[4].NS, "ip", "route", "show", "proto", "114"); err != nil || strings.Count(out, " via ") != 4 {
		t.Errorf("node-4 should have a route to each of the 4 other nodes:\n%s%v", out, err)
	}

	// The IPAM assigns node-4 its CIDR (allowed once: from "" to a value).
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, k.Nodes[4].PodCIDR, k.Nodes[4].PodCIDR)
	if _, err := k.api.Admin.CoreV1().Nodes().Patch(testContext(t), "node-4", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--check")
	if got := addition.FindAllStringSubmatch(res.Stdout, -1); res.Code != 2 || len(got) != 4 || got[0][1] != "100.64.4.0/24" || got[0][2] != "198.18.0.14" {
		t.Errorf("--check after node-4 got its CIDR: exit %d, additions %v; want 4 of 100.64.4.0/24 via 198.18.0.14", res.Code, got)
	}
	if res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig); res.Code != 0 {
		t.Fatalf("apply: exit %d, want 0", res.Code)
	}
	if failed := pingMatrix(t, k.Lab); len(failed) > 0 {
		t.Errorf("pod pings failed after converging from the API: %v", failed)
	}
	if res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--check"); res.Code != 0 {
		t.Errorf("--check on the converged lab: exit %d, want 0", res.Code)
	}

	// node-3 leaves the cluster and node-4 is re-registered; the IPAM
	// hands node-4 the CIDR node-3 freed. Pod CIDRs cannot be edited in
	// place, so this is how a node's CIDR changes.
	k.deleteNode(t, "node-3")
	k.deleteNode(t, "node-4")
	k.register(t, k.Nodes[4], nil, []string{k.Nodes[3].PodCIDR.String()})
	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--check")
	change := regexp.MustCompile(`(?m)^  ~ 100\.64\.3\.0/24 via 198\.18\.0\.13 dev eth0 proto 114 -> 100\.64\.3\.0/24 via 198\.18\.0\.14 proto 114$`)
	if res.Code != 2 || len(change.FindAllString(res.Stdout, -1)) != 3 {
		t.Errorf("--check after 100.64.3.0/24 moved to node-4: exit %d; want 2 and the ~ change on node-0..2", res.Code)
	}
}

// --mark-network-available sets NetworkUnavailable=False on the nodes whose
// routes verified and stayed, needs the RBAC for it, leaves a node that
// failed alone, and writes nothing where the condition is already so.
func TestKubeMarkNetworkAvailable(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 5, false)
	k.registerAll(t)
	rejectRouteVia(t, k.Lab, k.Nodes[3], k.Nodes[4].Addr) // node-3's route via node-4 will be refused
	readOnly := filepath.Join(k.Dir, "kubeconfig-readonly")
	if err := k.api.WriteKubeconfig(readOnly, kube.ReadOnlyToken, ""); err != nil {
		t.Fatal(err)
	}
	assertConditions := func(step string, available map[int]bool) {
		t.Helper()
		for i, n := range k.Nodes {
			c := conditionOf(t, k, n.Name)
			switch {
			case c == nil:
				t.Errorf("%s: %s has no NetworkUnavailable condition", step, n.Name)
			case available[i] && (c.Status != corev1.ConditionFalse || c.Reason != "RouteCreated" || !strings.Contains(c.Message, "routepush")):
				t.Errorf("%s: %s NetworkUnavailable = %s/%s %q, want False/RouteCreated", step, n.Name, c.Status, c.Reason, c.Message)
			case !available[i] && (c.Status != corev1.ConditionTrue || c.Reason != "NoRouteCreated"):
				t.Errorf("%s: %s NetworkUnavailable = %s/%s, want it untouched (True/NoRouteCreated)", step, n.Name, c.Status, c.Reason)
			}
		}
	}

	// A user without configs/rbac.yaml's second role: the routes go on,
	// the condition is refused with a pointer to the fix.
	res := rp(t, k.Lab, "--kubeconfig", readOnly, "--rollback", "host", "--mark-network-available")
	if res.Code != 1 || !strings.Contains(res.Stderr, `node "node-0": setting NetworkUnavailable=False`) ||
		!strings.Contains(res.Stderr, "403") || !strings.Contains(res.Stderr, "configs/rbac.yaml") {
		t.Errorf("read-only user: exit %d; want 1 and a 403 naming node-0 and configs/rbac.yaml", res.Code)
	}
	assertConditions("read-only user", nil)

	// With both roles: the four verified nodes, not node-3, which failed.
	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--rollback", "host", "--mark-network-available")
	if res.Code != 1 || !strings.Contains(res.Stdout, "NetworkUnavailable=False: 4 marked, 0 already so") {
		t.Errorf("exit %d; want 1 (node-3 fails) and 4 nodes marked", res.Code)
	}
	assertConditions("node-3 failing", map[int]bool{0: true, 1: true, 2: true, 4: true})
	node0, err := k.api.Admin.CoreV1().Nodes().Get(testContext(t), "node-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// node-3 mended (its sshd without the fault): only node-3 is written.
	if err := k.RestartSSHD(testContext(t), k.Nodes[3]); err != nil {
		t.Fatal(err)
	}
	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--mark-network-available")
	if res.Code != 0 || !strings.Contains(res.Stdout, "NetworkUnavailable=False: 1 marked, 4 already so") {
		t.Errorf("exit %d; want 0, node-3 marked and the other four already so", res.Code)
	}
	assertConditions("all verified", map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true})
	after, err := k.api.Admin.CoreV1().Nodes().Get(testContext(t), "node-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != node0.ResourceVersion {
		t.Errorf("node-0 was written again (resourceVersion %s -> %s) although already marked", node0.ResourceVersion, after.ResourceVersion)
	}
}

// A dual-stack Node (an IPv4 and an IPv6 InternalIP, two pod CIDRs) gets
// routes in both families, paired by family even with IPv6 listed first.
func TestKubeDualStack(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, true)
	for _, n := range k.Nodes {
		k.register(t, n, nil, []string{n.PodCIDR.String(), n.PodCIDR6.String()}, n.Addr6, n.Addr)
	}
	res := rp(t, k.Lab, "--kubeconfig", k.kubeconfig)
	if res.Code != 0 || !strings.Contains(res.Stdout, "12 routes added") {
		t.Fatalf("apply: exit %d, want 0 and 3*2*2 routes added", res.Code)
	}
	out, err := k.Exec(testContext(t), k.Nodes[0].NS, "ip", "-6", "route", "show", "proto", "114")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"2001:db8:64:1::/64 via 2001:db8::101 dev eth0 metric 1024",
		"2001:db8:64:2::/64 via 2001:db8::102 dev eth0 metric 1024",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("node-0 ip -6 route show proto 114:\n%s\nlacks %q", out, want)
		}
	}
	for fam, matrix := range map[string][][]bool{"IPv4": k.PingMatrix(testContext(t)), "IPv6": k.PingMatrix6(testContext(t))} {
		for i, row := range matrix {
			for j, ok := range row {
				if i != j && !ok {
					t.Errorf("%s pod ping %s -> %s failed", fam, k.Nodes[i].Name, k.Nodes[j].Name)
				}
			}
		}
	}
	if res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--check"); res.Code != 0 {
		t.Errorf("--check after apply: exit %d, want 0", res.Code)
	}
}

// Bad credentials, an unreachable or unknown cluster, a malformed pod CIDR
// and an inventory node the cluster does not know are refused before any
// SSH connection, with the cluster or node named.
func TestKubeBadInputConnectsNowhere(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, false)
	k.register(t, k.Nodes[0], nil, []string{k.Nodes[0].PodCIDR.String()})
	// Stored as clusters from before Kubernetes 1.36 could: host bits set.
	k.register(t, k.Nodes[1], nil, []string{"100.64.1.7/24"})
	before := snapshot(t, k.Lab)

	wrongToken := filepath.Join(k.Dir, "kubeconfig-wrong-token")
	if err := k.api.WriteKubeconfig(wrongToken, "not-a-token", "staging"); err != nil {
		t.Fatal(err)
	}
	unreachable := filepath.Join(k.Dir, "kubeconfig-unreachable")
	data, err := os.ReadFile(k.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, unreachable, strings.Replace(string(data), "127.0.0.1:6443", "127.0.0.1:6444", 1))

	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong token", []string{"--kubeconfig", wrongToken},
			[]string{`kubernetes context "staging" (cluster "lab", https://127.0.0.1:6443): listing nodes: Unauthorized`, "401"}},
		{"unreachable", []string{"--kubeconfig", unreachable, "--request-timeout", "5s"},
			[]string{`kubernetes context "lab" (cluster "lab", https://127.0.0.1:6444): listing nodes:`, "connection refused"}},
		{"unknown context", []string{"--kubeconfig", k.kubeconfig, "--context", "prod"},
			[]string{`context "prod" is not in ` + k.kubeconfig + ` (contexts: lab)`}},
		{"malformed pod CIDR", []string{"--kubeconfig", k.kubeconfig},
			[]string{`node "node-1" spec.podCIDRs[0]: "100.64.1.7/24" has host bits set; did you mean 100.64.1.0/24?`}},
	} {
		res := rp(t, k.Lab, append(c.args, "--log-level", "debug")...)
		if res.Code != 1 {
			t.Errorf("%s: exit %d, want 1", c.name, res.Code)
		}
		if strings.Contains(res.Stdout+res.Stderr, "not-a-token") || strings.Contains(res.Stdout+res.Stderr, kube.RoutepushToken) {
			t.Errorf("%s: a bearer token was printed, even at debug level", c.name)
		}
		for _, w := range c.want {
			if !strings.Contains(res.Stderr, w) {
				t.Errorf("%s: stderr does not contain %q", c.name, w)
			}
		}
	}
	assertNoSSH(t, k.Lab)
	assertUnchanged(t, k.Lab, before)
}

// With an inventory beside the API, a node the cluster does not know is an
// error naming it, unless --allow-unknown-nodes routes it from the
// inventory alone.
func TestKubeInventoryUnknownNode(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, false)
	k.register(t, k.Nodes[0], nil, []string{k.Nodes[0].PodCIDR.String()})
	k.register(t, k.Nodes[1], nil, []string{k.Nodes[1].PodCIDR.String()})
	before := snapshot(t, k.Lab)
	res := rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--inventory", k.InventoryPath())
	if res.Code != 1 || !strings.Contains(res.Stderr, `node "node-2" (nodes[2]) name: no node of this name in the cluster`) {
		t.Errorf("exit %d; want 1 and node-2 named as unknown", res.Code)
	}
	assertNoSSH(t, k.Lab)
	assertUnchanged(t, k.Lab, before)

	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--inventory", k.InventoryPath(), "--allow-unknown-nodes")
	if res.Code != 0 || !strings.Contains(res.Stdout, "6 routes added") {
		t.Fatalf("--allow-unknown-nodes: exit %d, want 0 and 3*2 routes added", res.Code)
	}
	if failed := pingMatrix(t, k.Lab); len(failed) > 0 {
		t.Errorf("pod pings failed: %v", failed)
	}
}

// conditionOf returns a node's NetworkUnavailable condition.
func conditionOf(t *testing.T, k *kubeLab, name string) *corev1.NodeCondition {
	t.Helper()
	c, err := k.api.NetworkUnavailable(testContext(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Inside a pod, with no kubeconfig, routepush uses the pod's service
// account, as kubectl does.
func TestKubeInClusterConfig(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 2, false)
	k.registerAll(t)
	sa := filepath.Join(k.Dir, "serviceaccount")
	if err := os.MkdirAll(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sa, "token"), kube.RoutepushToken)
	writeFile(t, filepath.Join(sa, "ca.crt"), string(k.api.CA))
	writeFile(t, filepath.Join(sa, "namespace"), "kube-system")
	res, err := k.RoutepushWith(testContext(t), lab.RunOptions{
		Env: []string{"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=6443",
			"KUBECONFIG=", "HOME=" + t.TempDir()},
		Mounts: map[string]string{sa: "/var/run/secrets/kubernetes.io/serviceaccount"},
	}, routepush, "--check", "-v")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in-cluster routepush --check: %s", res)
	if res.Code != 2 || !strings.Contains(res.Stderr, `cluster="in-cluster (https://127.0.0.1:6443)" nodes=2`) {
		t.Errorf("exit %d; want 2, with the node table read through the service account", res.Code)
	}
	if got := addition.FindAllString(res.Stdout, -1); len(got) != 2 {
		t.Errorf("%d additions, want 2", len(got))
	}
}
