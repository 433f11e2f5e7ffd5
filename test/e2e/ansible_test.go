package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// ansibleConfig is a config without the lab's user and key: with it, only
// the inventory's ansible_user and ansible_ssh_private_key_file can log
// routepush in.
func ansibleConfig(t *testing.T, l *lab.Lab) string {
	t.Helper()
	path := filepath.Join(l.Dir, "ansible-routepush.yaml")
	writeFile(t, path, fmt.Sprintf("known-hosts: %s\nssh-config: %s\n", l.KnownHostsPath(), l.SSHConfigPath()))
	return path
}

// assertNodesConverged checks the nodes' tables are those of a converged
// lab.
func assertNodesConverged(t *testing.T, l *lab.Lab, nodes ...int) {
	t.Helper()
	for _, i := range nodes {
		if got, want := ipv4Table(t, l.Nodes[i]), expectedTable(l, i); got != want {
			t.Errorf("%s: ip route show =\n%s\nwant\n%s", l.Nodes[i].Name, got, want)
		}
	}
}

// assertNodesUnchanged checks the named nodes' tables are still as in want.
func assertNodesUnchanged(t *testing.T, l *lab.Lab, want map[string]string, nodes ...int) {
	t.Helper()
	for _, i := range nodes {
		n := l.Nodes[i]
		if got := detailed(t, l, n); got != want[n.Name] {
			t.Errorf("%s is outside --limit but its table changed:\n--- want\n%s--- have\n%s", n.Name, want[n.Name], got)
		}
	}
}

// hostsYAMLIsNoOp checks that the lab's hosts.yaml, the same cluster in
// routepush's own format, finds nothing to change after an Ansible
// inventory's run, and changes nothing.
func hostsYAMLIsNoOp(t *testing.T, l *lab.Lab) {
	t.Helper()
	converged := snapshot(t, l)
	if err := l.WriteInventory(l.InventoryPath(), l.Nodes); err != nil {
		t.Fatal(err)
	}
	if res := rp(t, l, "check", "-i", l.InventoryPath()); res.Code != 0 {
		t.Errorf("hosts.yaml check after the Ansible inventory's run: exit %d, want 0 (in sync)", res.Code)
	}
	res := rp(t, l, "-i", l.InventoryPath())
	if want := fmt.Sprintf("%d in sync", len(l.Nodes)); res.Code != 0 || !strings.Contains(res.Stdout, want) {
		t.Errorf("hosts.yaml apply after the Ansible inventory's run: exit %d, want 0 and %q", res.Code, want)
	}
	assertUnchanged(t, l, converged)
}

// An INI inventory with groups, :vars, :children, a range, host_vars/ (a
// file, a folder of files, a file without extension) and ansible_*
// variables: refused when it asks for a password (nothing changes), then
// --limit 'workers:!node-3' acts on node-1 and node-2 alone, then the
// whole lab converges exactly as with the equivalent hosts.yaml.
func TestAnsibleINIInventory(t *testing.T) {
	t.Parallel()
	l := newLab(t, 4)
	cfg := ansibleConfig(t, l)
	dir := filepath.Join(l.Dir, "playbook")
	n := l.Nodes
	mkdir(t, filepath.Join(dir, "host_vars", "node-2"))
	mkdir(t, filepath.Join(dir, "group_vars"))
	ini := filepath.Join(dir, "inventory.ini")
	writeFile(t, ini, fmt.Sprintf(`# the lab as an Ansible playbook's inventory
[control]
node-0 ansible_host=%s pod_cidr=%s

[workers]
node-[1:3]

[rack1]
node-1
node-2

[workers:vars]
ansible_ssh_common_args='-o StrictHostKeyChecking=yes'

[k8s:children]
control
workers

[k8s:vars]
ansible_user=root
ansible_port=22
ansible_become=false

[all:vars]
ansible_ssh_private_key_file=%s
`, n[0].Addr, n[0].PodCIDR, l.IdentityPath()))
	writeFile(t, filepath.Join(dir, "group_vars", "workers.yml"), "ansible_python_interpreter: /usr/bin/python3\n")
	writeFile(t, filepath.Join(dir, "host_vars", "node-1.yml"), fmt.Sprintf("ansible_host: %s\npod_cidr: %s\n", n[1].Addr, n[1].PodCIDR))
	writeFile(t, filepath.Join(dir, "host_vars", "node-2", "main.yml"), fmt.Sprintf("ansible_host: %s\ninternal_ip: %s\n", n[2].Addr, n[2].Addr))
	writeFile(t, filepath.Join(dir, "host_vars", "node-2", "routes.yaml"), fmt.Sprintf("pod_cidrs: [%s]\n", n[2].PodCIDR))
	writeFile(t, filepath.Join(dir, "host_vars", "node-3"), fmt.Sprintf("ansible_host: %s\npod_cidr: %s\n", n[3].Addr, n[3].PodCIDR))
	before := snapshot(t, l)

	bad := filepath.Join(dir, "bad.ini")
	writeFile(t, bad, strings.Replace(mustRead(t, ini), "ansible_become=false", "ansible_become=false\nansible_become_password=hunter2", 1))
	res := rp(t, l, "--config", cfg, "-i", bad)
	if res.Code != 1 || !strings.Contains(res.Stderr, `node "node-0" ansible_become_password: is a sudo password`) {
		t.Errorf("an inventory with a become password: exit %d, want 1 naming node-0 and the variable", res.Code)
	}
	assertUnchanged(t, l, before)

	res = rp(t, l, "--config", cfg, "-i", ini, "--limit", "workers:!node-3")
	if res.Code != 0 || !strings.Contains(res.Stdout, "2 changed, 2 excluded") {
		t.Fatalf("--limit 'workers:!node-3': exit %d, want 0, 2 changed and 2 excluded", res.Code)
	}
	assertNodesConverged(t, l, 1, 2)
	assertNodesUnchanged(t, l, before, 0, 3)

	res = rp(t, l, "--config", cfg, "-i", ini)
	if res.Code != 0 || !strings.Contains(res.Stdout, "2 in sync") {
		t.Fatalf("apply with the INI inventory: exit %d, want 0, node-1 and node-2 in sync", res.Code)
	}
	assertConverged(t, l)
	hostsYAMLIsNoOp(t, l)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A YAML inventory: --limit 'k8s:&workers:!node-2' acts on node-1 alone,
// then the lab converges as with hosts.yaml.
func TestAnsibleYAMLInventory(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	cfg := ansibleConfig(t, l)
	dir := filepath.Join(l.Dir, "playbook")
	mkdir(t, filepath.Join(dir, "group_vars"))
	n := l.Nodes
	inv := filepath.Join(dir, "inventory.yml")
	writeFile(t, inv, fmt.Sprintf(`all:
  vars:
    ansible_ssh_private_key_file: %s
  children:
    k8s:
      vars: {ansible_user: root}
      children:
        control:
          hosts:
            node-0: {ansible_host: %s, pod_cidr: %s}
        workers:
          hosts:
            node-1: {ansible_host: %s, internal_ips: [%s], pod_cidrs: [%s]}
            node-2: {ansible_host: %s, pod_cidr: %s}
`, l.IdentityPath(), n[0].Addr, n[0].PodCIDR, n[1].Addr, n[1].Addr, n[1].PodCIDR, n[2].Addr, n[2].PodCIDR))
	writeFile(t, filepath.Join(dir, "group_vars", "k8s.yml"), "ansible_port: 22\n")
	before := snapshot(t, l)

	res := rp(t, l, "--config", cfg, "-i", inv, "--limit", "k8s:&workers:!node-2")
	if res.Code != 0 || !strings.Contains(res.Stdout, "1 changed, 2 excluded") {
		t.Fatalf("--limit 'k8s:&workers:!node-2': exit %d, want 0, 1 changed and 2 excluded", res.Code)
	}
	assertNodesConverged(t, l, 1)
	assertNodesUnchanged(t, l, before, 0, 2)

	if res := rp(t, l, "--config", cfg, "-i", inv, "--limit", "workers:!node-9"); res.Code != 1 || !strings.Contains(res.Stderr, `"node-9" matches no node and no group`) {
		t.Errorf("a limit excluding a node that is not there: exit %d, want 1", res.Code)
	}
	res = rp(t, l, "--config", cfg, "-i", inv)
	if res.Code != 0 {
		t.Fatalf("apply with the YAML inventory: exit %d", res.Code)
	}
	assertConverged(t, l)
	hostsYAMLIsNoOp(t, l)
}

// Beside the Kubernetes API an Ansible inventory says how to reach each
// node (ansible_host, ansible_user, the key) and its groups work in
// --limit; the API says where the pods are. A pod CIDR the inventory
// writes must agree with the API's.
func TestKubeAnsibleInventory(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, false)
	k.registerAll(t)
	cfg := ansibleConfig(t, k.Lab)
	n := k.Nodes
	inv := filepath.Join(mkdir(t, filepath.Join(k.Dir, "playbook", "group_vars")), "..", "hosts")
	writeFile(t, filepath.Join(k.Dir, "playbook", "group_vars", "all.yml"), fmt.Sprintf("ansible_user: root\nansible_ssh_private_key_file: %s\n", k.IdentityPath()))
	writeFile(t, inv, fmt.Sprintf("[control]\nnode-0 ansible_host=%s\n\n[workers]\nnode-1 ansible_host=%s\nnode-2 ansible_host=%s pod_cidr=%s\n",
		n[0].Addr, n[1].Addr, n[2].Addr, n[2].PodCIDR))
	before := snapshot(t, k.Lab)

	res := rp(t, k.Lab, "--config", cfg, "--kubeconfig", k.kubeconfig, "-i", inv, "--limit", "workers")
	if res.Code != 0 || !strings.Contains(res.Stdout, "2 changed, 1 excluded") {
		t.Fatalf("--limit workers beside the API: exit %d, want 0, 2 changed and 1 excluded", res.Code)
	}
	assertNodesConverged(t, k.Lab, 1, 2)
	assertNodesUnchanged(t, k.Lab, before, 0)

	res = rp(t, k.Lab, "--config", cfg, "--kubeconfig", k.kubeconfig, "-i", inv)
	if res.Code != 0 {
		t.Fatalf("apply beside the API: exit %d", res.Code)
	}
	assertConverged(t, k.Lab)

	converged := snapshot(t, k.Lab)
	writeFile(t, inv, strings.Replace(readFile(t, inv), n[2].PodCIDR.String(), n[1].PodCIDR.String(), 1))
	res = rp(t, k.Lab, "--config", cfg, "--kubeconfig", k.kubeconfig, "-i", inv)
	if res.Code != 1 || !strings.Contains(res.Stderr, "but the Kubernetes API says "+n[2].PodCIDR.String()) {
		t.Errorf("a pod_cidr the API contradicts: exit %d, want 1", res.Code)
	}
	assertUnchanged(t, k.Lab, converged)
}
