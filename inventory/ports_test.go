package inventory

import (
	"path/filepath"
	"strings"
	"testing"
)

// A range in the middle of a name (node[01:02].k8s.example) is no
// host:port: the port is [all:vars]'s, as ansible-inventory says.
func TestAnsibleRangeWithSuffixKeepsGroupPort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.ini")
	writeTestFile(t, path, "[all:vars]\nansible_port=2222\n[workers]\nnode[01:02].k8s.example\nweb[a:b].example\ndb-[1:2]:2200\n")
	f, err := LoadAccessWith(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"node01.k8s.example": 2222, "node02.k8s.example": 2222, "weba.example": 2222, "webb.example": 2222, "db-1": 2200, "db-2": 2200}
	if len(f.Nodes) != len(want) {
		t.Fatalf("%d nodes, want %d", len(f.Nodes), len(want))
	}
	for _, n := range f.Nodes {
		if n.SSH.Port != want[n.Name] {
			t.Errorf("%s: port %d, ansible-inventory says %d", n.Name, n.SSH.Port, want[n.Name])
		}
	}
}

// Ansible keeps the port of the line (or YAML key) that first names a
// host; later ones change nothing, and a host first named without a port
// has none from its names.
func TestAnsibleFirstPortWins(t *testing.T) {
	for _, c := range []struct {
		name, data string
		want       int
	}{
		{"inventory.ini", "[a]\nn1:2200 ansible_host=10.0.0.1\n[b]\nn1:2300\n", 2200},
		{"inventory.ini", "[a]\nn1 ansible_host=10.0.0.1\n[b]\nn1:2300\n", 0},
		{"inventory.yml", "all:\n  children:\n    a:\n      hosts:\n        n1: {ansible_host: 10.0.0.1}\n    b:\n      hosts:\n        n1:2300:\n", 0},
		{"inventory.yml", "all:\n  children:\n    a:\n      hosts:\n        n1:2200: {ansible_host: 10.0.0.1}\n    b:\n      hosts:\n        n1:2300:\n", 2200},
	} {
		path := filepath.Join(t.TempDir(), c.name)
		writeTestFile(t, path, c.data)
		f, err := LoadFile(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if p := f.Nodes[0].SSH.Port; p != c.want {
			t.Errorf("%s:\n%s: port %d, ansible-inventory says %d", c.name, c.data, p, c.want)
		}
	}
}

// An IPv6 address for a host name is refused, naming the host, in both
// formats: aini mangles it (fe80::1 becomes host "fe80:" port 1).
func TestAnsibleIPv6HostNameRefused(t *testing.T) {
	for _, c := range []struct{ name, data, host string }{
		{"inventory.ini", "[g]\nfe80::1\n", "fe80::1"},
		{"inventory.ini", "[g]\n[2001:db8::7]:2200 pod_cidr=10.1.0.0/24\n", "2001:db8::7"},
		{"inventory.ini", "[g]\n2001:db8:0:0:0:0:0:7\n", "2001:db8:0:0:0:0:0:7"},
		{"inventory.ini", "[g]\nfe80::1%eth0\n", "fe80::1%eth0"},
		{"inventory.yml", "all:\n  hosts:\n    fe80::1:\n", "fe80::1"},
		{"inventory.yml", "all:\n  hosts:\n    '[2001:db8::7]:2200': {pod_cidr: 10.1.0.0/24}\n", "2001:db8::7"},
	} {
		path := filepath.Join(t.TempDir(), c.name)
		writeTestFile(t, path, c.data)
		_, err := LoadFile(path, Options{})
		if err == nil || !strings.Contains(err.Error(), "IPv6") || !strings.Contains(err.Error(), "ansible_host") || !strings.Contains(err.Error(), c.host) {
			t.Errorf("%s:\n%s: %v; want it refused naming %s and ansible_host", c.name, c.data, err, c.host)
		}
	}
	// Ranges with steps and ports stay host names.
	if _, err := readINI("inventory.ini", []byte("[g]\nx[1:7:3]\ny[1:2]:2200\n[2:3]z\n")); err != nil {
		t.Errorf("ranges: %v", err)
	}
}

// On an INI host line, Ansible's shlex starts a comment at any '#' outside
// quotes, in a word too: the pod CIDR is 10.1.0.0/24, and ansible_port
// after it is comment.
func TestAnsibleINIHashInHostLine(t *testing.T) {
	f := chaosLoad(t, "inventory.ini", "[g]\nn1 ansible_host=10.0.0.1 pod_cidr=10.1.0.0/24#x ansible_port=2200\n")
	n := f.Nodes[0]
	if len(n.PodCIDRs) != 1 || n.PodCIDRs[0].String() != "10.1.0.0/24" || n.SSH.Port != 0 {
		t.Errorf("n1: pod CIDRs %v, port %d; ansible-inventory: pod_cidr 10.1.0.0/24, no port", n.PodCIDRs, n.SSH.Port)
	}
}

func chaosLoad(t *testing.T, name, data string) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	writeTestFile(t, path, data)
	f, err := LoadFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A string tagged !unsafe is one Ansible never renders: routepush takes
// it as written, Jinja markers and all, as ansible-inventory shows it
// ({"__ansible_unsafe": "..."}), in the variables it reads too.
func TestAnsibleUnsafeIsPlainString(t *testing.T) {
	f := chaosLoad(t, "inventory.yml", `all:
  hosts:
    n1:
      ansible_host: !unsafe 10.0.0.1
      ansible_user: !unsafe ops
      ansible_ssh_private_key_file: !unsafe "~/.ssh/{{id}}"
      ansible_port: !unsafe "2222"
      ansible_become: !unsafe "yes"
      pod_cidr: !unsafe 10.1.0.0/24
      internal_ips: [!unsafe 10.0.0.1]
      motd: !unsafe "{% raw %}"
`)
	n := f.Nodes[0]
	if n.Address != "10.0.0.1" || n.SSH.User != "ops" || n.SSH.IdentityFile != "~/.ssh/{{id}}" || n.SSH.Port != 2222 || !n.SSH.Become ||
		len(n.PodCIDRs) != 1 || n.PodCIDRs[0].String() != "10.1.0.0/24" || len(n.InternalIPs) != 1 {
		t.Errorf("n1: %+v; want the !unsafe strings as written", n)
	}
}
