package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sshdLog is what a node's sshd logged so far.
func sshdLog(t *testing.T, dir string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
	return string(b)
}

// A Node object's InternalIP, which its own kubelet writes, does not alone
// decide where routepush logs in as root: node-1's points at node-2, a lab
// host outside the cluster whose key known_hosts holds by its address.
// routepush does not connect there unless known_hosts knows node-1 by name
// (and then refuses node-2's key for it), or --trust-node-addresses says
// so; an honest node known by name works.
func TestKubeNodeAddressNotVouched(t *testing.T) {
	t.Parallel()
	faultCase(t, "15-node-address (a Node's InternalIP points at another known host)")
	k := newKubeLab(t, 3, false)
	n0, n1, other := k.Nodes[0], k.Nodes[1], k.Nodes[2]
	k.register(t, n0, nil, []string{n0.PodCIDR.String()})
	k.register(t, n1, nil, []string{n1.PodCIDR.String()}, other.Addr) // the kubelet lies
	before := snapshot(t, k.Lab)
	addressOnly := filepath.Join(k.Dir, "known_hosts.by-address")
	writeFile(t, addressOnly, k.addressOnly)

	// node-1 known by address only (node-0 by name too): refused before
	// connecting, naming the node.
	n0Named := filepath.Join(k.Dir, "known_hosts.node-0-by-name")
	writeFile(t, n0Named, k.addressOnly+k.byName(n0))
	res := rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--known-hosts", n0Named)
	want := "node-1: not connecting to " + other.Addr.String() + ":22: that address is only the InternalIP of the node's Node object"
	if res.Code != 1 || !strings.Contains(res.Stderr, want) || !strings.Contains(res.Stderr, "--trust-node-addresses") {
		t.Errorf("known by address only: exit %d, want 1 and %q; stderr:\n%s", res.Code, want, res.Stderr)
	}
	if log := sshdLog(t, other.Dir); strings.Contains(log, "Connection from") || strings.Contains(log, "Accepted") {
		t.Errorf("%s was connected to:\n%s", other.Name, log)
	}

	// node-1 known by name (the lab's known_hosts): the host at its
	// InternalIP offers another key, refused; nobody logs in there.
	res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-1: HOST KEY FOR "+other.Addr.String()+":22 HAS CHANGED") ||
		!strings.Contains(res.Stderr, "under the name node-1") {
		t.Errorf("known by name, lying InternalIP: exit %d, want 1 and node-1's key refused; stderr:\n%s", res.Code, res.Stderr)
	}
	if log := sshdLog(t, other.Dir); strings.Contains(log, "Accepted") {
		t.Errorf("%s was logged into:\n%s", other.Name, log)
	}
	assertUnchanged(t, k.Lab, before)

	// The Node object fixed: known by name, it works.
	k.deleteNode(t, n1.Name)
	k.register(t, n1, nil, []string{n1.PodCIDR.String()})
	if res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--check"); res.Code != 2 {
		t.Errorf("known by name: exit %d, want 2 (changes to make)", res.Code)
	}
	// Known by address only, --trust-node-addresses connects to the
	// InternalIPs as before.
	if res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--known-hosts", addressOnly, "--trust-node-addresses"); res.Code != 0 || !strings.Contains(res.Stdout, "2 changed") {
		t.Errorf("--trust-node-addresses: exit %d, want 0 and both nodes changed", res.Code)
	}
	if log := sshdLog(t, other.Dir); strings.Contains(log, "Accepted") {
		t.Errorf("%s was logged into:\n%s", other.Name, log)
	}
	applied := regexp.MustCompile(`(?m)^run (\S+)$`).FindStringSubmatch(res.Stdout)
	if applied == nil {
		t.Fatalf("no run id in the report:\n%s", res.Stdout)
	}

	// routepush rollback follows the same policy: node-1's Node object
	// lies again, and its address is known by address only.
	converged := snapshot(t, k.Lab)
	k.deleteNode(t, n1.Name)
	k.register(t, n1, nil, []string{n1.PodCIDR.String()}, other.Addr)
	res = rp(t, k.Lab, "rollback", "--run", applied[1], "--kubeconfig", k.kubeconfig, "--known-hosts", addressOnly)
	if res.Code != 1 || !strings.Contains(res.Stderr, want) {
		t.Errorf("rollback with a lying InternalIP: exit %d, want 1 and %q; stderr:\n%s", res.Code, want, res.Stderr)
	}
	if log := sshdLog(t, other.Dir); strings.Contains(log, "Accepted") {
		t.Errorf("%s was logged into by rollback:\n%s", other.Name, log)
	}
	if now := snapshot(t, k.Lab); now[n1.Name] != converged[n1.Name] {
		t.Errorf("node-1 changed by a rollback that could not reach it:\n%s", now[n1.Name])
	}
	k.deleteNode(t, n1.Name)
	k.register(t, n1, nil, []string{n1.PodCIDR.String()})
	// An inventory entry with the node's address vouches for it.
	inv := filepath.Join(k.Dir, "names.yaml")
	writeFile(t, inv, "nodes:\n  - name: node-0\n    address: "+n0.Addr.String()+"\n  - name: node-1\n    address: "+n1.Addr.String()+"\n")
	if res = rp(t, k.Lab, "--kubeconfig", k.kubeconfig, "--inventory", inv, "--known-hosts", addressOnly, "--check"); res.Code != 0 {
		t.Errorf("inventory addresses: exit %d, want 0 (in sync)", res.Code)
	}
}
