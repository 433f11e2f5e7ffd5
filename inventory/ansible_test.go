package inventory

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// ansibleFixtures are the Ansible inventories routepush must read exactly
// as ansible-inventory does.
var ansibleFixtures = []string{
	"testdata/ansible/cluster/inventory.ini",
	"testdata/ansible/cluster/inventory.yml",
	"testdata/ansible/precedence/hosts",
	"testdata/ansible/merge/inventory.yml",
	"testdata/ansible/hostile/ungrouped/inventory.yml",
	"testdata/ansible/hostile/iniall.ini",
	"testdata/ansible/hostile/port22.yml",
	"testdata/ansible/ports/rangeport.ini",
	"testdata/ansible/ports/ranges.ini",
	"testdata/ansible/ports/first.ini",
	"testdata/ansible/ports/first.yml",
	"testdata/ansible/hostile/nodes-group.yml",
	"testdata/ansible/hostile/hash.ini",
	"testdata/ansible/hostile/values.ini",
	"testdata/ansible/hostile/values2.ini",
	"testdata/ansible/hostile/escapes.ini",
	"testdata/ansible/depth/inventory.ini",
	"testdata/ansible/allvars/inventory.ini",
	"testdata/ansible/review/values3.ini",
}

// runAnsibleInventory runs the real `ansible-inventory --list` on an
// inventory, reading no configuration of the user's or the host's. A
// missing ansible-inventory fails the test: make test installs it.
func runAnsibleInventory(t *testing.T, path string) map[string]any {
	t.Helper()
	out := ansibleInventoryOutput(t, path, "--list")
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("ansible-inventory's output: %v\n%s", err, out)
	}
	return m
}

// ansibleInventoryOutput runs ansible-inventory -i path with args.
func ansibleInventoryOutput(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatalf("ansible-inventory is needed to compare with (scripts/install-deps.sh installs Debian's ansible): %v", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "ansible.cfg")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-i", abs}, args...)...)
	cmd.Dir = tmp // no group_vars/ of the working directory's
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "LC_ALL=C.UTF-8",
		"ANSIBLE_CONFIG=" + cfg, "ANSIBLE_LOCAL_TEMP=" + tmp, "ANSIBLE_REMOTE_TEMP=" + tmp,
		"ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_NOCOLOR=1",
	}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("ansible-inventory -i %s %v: %v\n%s", path, args, err, stderr)
	}
	return out
}

// ansibleMembers turns --list's groups (direct hosts and children) into
// each group's hosts, those of its children included.
func ansibleMembers(list map[string]any) map[string][]string {
	direct := map[string]map[string]any{}
	for g, v := range list {
		if g != "_meta" {
			direct[g] = v.(map[string]any)
		}
	}
	out := map[string][]string{}
	var hostsOf func(g string, seen map[string]bool) []string
	hostsOf = func(g string, seen map[string]bool) []string {
		var hs []string
		if seen[g] {
			return nil
		}
		seen[g] = true
		for _, h := range asStrings(direct[g]["hosts"]) {
			hs = addTo(hs, h)
		}
		for _, c := range asStrings(direct[g]["children"]) {
			for _, h := range hostsOf(c, seen) {
				hs = addTo(hs, h)
			}
		}
		return hs
	}
	for g := range direct {
		hs := hostsOf(g, map[string]bool{})
		slices.Sort(hs)
		out[g] = hs
	}
	return out
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, e.(string))
	}
	return out
}

// plain turns routepush's variables into what json.Unmarshal makes of
// ansible-inventory's: numbers as float64, maps as map[string]any.
func plain(t *testing.T, v vars) map[string]any {
	t.Helper()
	m := map[string]any{}
	for k, x := range v {
		m[k] = x.v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReadsAsAnsibleInventory compares what routepush reads from each
// fixture (hosts, every group's members, every host's variables after
// Ansible's precedence) with what the real ansible-inventory prints.
func TestReadsAsAnsibleInventory(t *testing.T) {
	t.Parallel()
	for _, path := range ansibleFixtures {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			want := runAnsibleInventory(t, path)
			f, data, err := detect(path)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := readAnsible(path, f, data)
			if err != nil {
				t.Fatal(err)
			}
			groups, hosts := inv.groupsOf()
			members := ansibleMembers(want)
			if !slices.Equal(hosts, members["all"]) {
				t.Errorf("hosts: routepush %v, ansible-inventory %v", hosts, members["all"])
			}
			for g, hs := range members {
				if got := slices.Sorted(slices.Values(groups[g])); !slices.Equal(got, hs) {
					t.Errorf("group %s: routepush %v, ansible-inventory %v", g, got, hs)
				}
			}
			for g, hs := range groups {
				if _, ok := members[g]; !ok && len(hs) > 0 {
					t.Errorf("group %s: routepush has %v, ansible-inventory has no such group", g, hs)
				}
			}
			hostvars := want["_meta"].(map[string]any)["hostvars"].(map[string]any)
			for _, h := range hosts {
				got := plain(t, inv.hostVars(inv.hosts[h]))
				w, _ := hostvars[h].(map[string]any)
				if w == nil {
					w = map[string]any{}
				}
				if !reflect.DeepEqual(got, w) {
					gb, _ := json.MarshalIndent(got, "", "  ")
					wb, _ := json.MarshalIndent(w, "", "  ")
					t.Errorf("host %s variables:\nroutepush %s\nansible-inventory %s", h, gb, wb)
				}
			}
			t.Logf("%d hosts, %d groups, variables of every host compared", len(hosts), len(members))
		})
	}
}

// TestAnsibleNodes checks the node table the cluster fixture gives, the
// same from its INI and its YAML form.
func TestAnsibleNodes(t *testing.T) {
	t.Parallel()
	want := []Node{
		{Name: "ctl-1", Address: "10.240.0.10", InternalIPs: ips("10.240.0.10"),
			SSH: SSH{User: "root", Port: 2222, IdentityFile: "~/.ssh/cluster_ed25519"}},
		{Name: "node1", Address: "10.240.0.21", InternalIPs: ips("10.240.0.21"), PodCIDRs: cidrs("10.200.1.0/24"),
			SSH: SSH{User: "admin", IdentityFile: "~/.ssh/cluster_ed25519", Jump: "admin@jump.example:2222", Become: true}},
		{Name: "node2", Address: "10.240.0.22", InternalIPs: ips("10.240.0.22"), PodCIDRs: cidrs("10.200.2.0/24"),
			SSH: SSH{User: "admin", IdentityFile: "~/.ssh/cluster_ed25519", Jump: "admin@jump.example:2222", Become: true}},
		{Name: "node3", Address: "10.240.0.23", InternalIPs: ips("10.240.0.23"), PodCIDRs: cidrs("10.200.3.0/24"),
			SSH: SSH{User: "ops", IdentityFile: "~/.ssh/cluster_ed25519", Become: true}},
		{Name: "node4", Address: "10.240.0.24", InternalIPs: ips("10.240.0.24", "fd00:240::24"), PodCIDRs: cidrs("10.200.4.0/24", "fd00:200:4::/64"),
			SSH: SSH{User: "ops", Port: 2200, IdentityFile: "~/.ssh/cluster_ed25519"}},
	}
	for _, path := range []string{"testdata/ansible/cluster/inventory.ini", "testdata/ansible/cluster/inventory.yml"} {
		f, err := LoadFile(path, Options{})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !reflect.DeepEqual(f.Nodes, want) {
			t.Errorf("%s: nodes\n%+v\nwant\n%+v", path, f.Nodes, want)
		}
		if w := strings.Join(f.Warnings, "\n"); !strings.Contains(w, "ansible_ssh_common_args: -o \"StrictHostKeyChecking\" ignored (routepush's own setting applies) (hosts node1, node2)") {
			t.Errorf("%s: warnings %q", path, w)
		}
		if got := f.Groups["k8s"]; !slices.Equal(got, []string{"ctl-1", "node1", "node2", "node3", "node4"}) {
			t.Errorf("%s: group k8s: %v", path, got)
		}
	}
}

// TestAnsibleAccess: beside the Kubernetes API an Ansible inventory says
// how to reach each node; internal IPs it writes must then agree with the
// API, those taken from ansible_host need not.
func TestAnsibleAccess(t *testing.T) {
	t.Parallel()
	f, err := LoadAccessWith("testdata/ansible/cluster/inventory.yml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Nodes) != 5 || f.Nodes[1].SSH.Jump != "admin@jump.example:2222" || f.Nodes[4].SSH.Port != 2200 {
		t.Errorf("nodes: %+v", f.Nodes)
	}
	if want := []bool{false, false, false, false, true}; !slices.Equal(f.ipsWritten, want) {
		t.Errorf("internal IPs written: %v, want %v", f.ipsWritten, want)
	}
	if !slices.Equal(f.Groups["rack1"], []string{"node1", "node2"}) {
		t.Errorf("group rack1: %v", f.Groups["rack1"])
	}
}

// TestAnsibleExportedInventory: what a refused dynamic inventory is told
// to do (ansible-inventory --list --yaml into a file) gives a file
// routepush reads as the source itself.
func TestAnsibleExportedInventory(t *testing.T) {
	t.Parallel()
	src := "testdata/ansible/cluster/inventory.ini"
	exported := filepath.Join(t.TempDir(), "inventory.yml")
	writeTestFile(t, exported, string(ansibleInventoryOutput(t, src, "--list", "--yaml")))
	want, err := LoadFile(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(exported, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Nodes, want.Nodes) || !reflect.DeepEqual(got.Groups, want.Groups) {
		t.Errorf("exported inventory:\n%+v\n%v\nwant\n%+v\n%v", got.Nodes, got.Groups, want.Nodes, want.Groups)
	}
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func cidrs(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

// TestAnsibleVarNames: the variables holding pod CIDRs and internal IPs
// are the operator's to name.
func TestAnsibleVarNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.ini")
	writeTestFile(t, path, "[k8s]\nw1 ansible_host=w1.example node_ip=10.0.0.1 pod_subnet=10.1.1.0/24\nw2 ansible_host=10.0.0.2 pod_subnet=10.1.2.0/24\n")
	f, err := LoadFile(path, Options{PodCIDRVars: []string{"pod_subnet"}, InternalIPVars: []string{"node_ip"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Nodes[0]; got.Address != "w1.example" || got.InternalIPs[0].String() != "10.0.0.1" || got.PodCIDRs[0].String() != "10.1.1.0/24" {
		t.Errorf("w1: %+v", got)
	}
	if got := f.Nodes[1]; got.InternalIPs[0].String() != "10.0.0.2" {
		t.Errorf("w2: the address is the next hop without node_ip: %+v", got)
	}
	// With the default names the same file has no pod CIDRs, and w1 no
	// next hop: said under the variable's name.
	_, err = LoadFile(path, Options{})
	if err == nil || !strings.Contains(err.Error(), `node "w1" internal_ip: missing`) {
		t.Errorf("default names: %v", err)
	}
	writeTestFile(t, path, "[k8s]\nw1 ansible_host=10.0.0.1 pod_subnet=10.1.1.0/24\n")
	f, err = LoadFile(path, Options{})
	if err != nil || !slices.ContainsFunc(f.Warnings, func(w string) bool { return strings.Contains(w, "no host sets pod_cidr or pod_cidrs") }) {
		t.Errorf("no pod CIDRs under the default names: %v, warnings %q", err, f.Warnings)
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAnsibleRefusals: what routepush cannot honour is refused before any
// connection, each message naming the host and the variable.
func TestAnsibleRefusals(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		path string
		want []string
	}{
		{"testdata/ansible/refuse/vault/inventory.yml", []string{
			`node "n1" ansible_user: is encrypted with ansible-vault (!vault)`,
			`node "n2" pod_cidr: is encrypted with ansible-vault, which routepush cannot read`, "(set in host_vars/n2.yml)"}},
		{"testdata/ansible/refuse/vault-file/inventory.ini", []string{"group_vars/workers.yml (variables of group workers) is encrypted with ansible-vault"}},
		{"testdata/ansible/refuse/script/inventory.py", []string{"is a script or program, which Ansible would run as a dynamic inventory", "--list --yaml > inventory.yml"}},
		{"testdata/ansible/refuse/plugin.yml", []string{`configures the inventory plugin "amazon.aws.aws_ec2"`}},
		{"testdata/ansible/refuse/passwords.ini", []string{
			`node "n1" ansible_password: is a login password`,
			`node "n2" ansible_ssh_pass: is a login password`,
			`node "n1" ansible_become_password: is a sudo password; routepush logs in with keys`, "(set in [all:vars])",
			`node "n2" ansible_become_password`}},
		{"testdata/ansible/refuse/jinja.ini", []string{
			`node "n1" ansible_host: "{{ lookup('env', 'N1_ADDR') }}" is a Jinja template, which routepush does not render`,
			`node "n2" pod_cidr: "10.1.{{ rack }}.0/24" is a Jinja template`}},
		{"testdata/ansible/refuse/become.ini", []string{
			`node "n1" ansible_become_pass: is a sudo password; routepush logs in with keys`,
			`node "n2" ansible_become_method: "su": routepush becomes root with sudo only`,
			`node "n3" pod_cidr: "{% if true %}10.1.3.0/24{% endif %}" is a Jinja template, which routepush does not render`,
			`node "n4" ansible_user: "{# note #}ops" is a Jinja template`,
			`node "n5" ansible_become_method: "community.general.doas": routepush becomes root with sudo only`,
			`node "n5" ansible_sudo_pass: is a sudo password`, "(set in [all:vars])"}},
		{"testdata/ansible/refuse/connection.ini", []string{
			`node "n1" ansible_become_user: "postgres": routepush becomes root`,
			`node "n2" ansible_connection: "local": routepush reaches every node over SSH`,
			`node "n3" ansible_ssh_common_args: -o "ProxyCommand" changes how or where routepush would connect and cannot be honoured here (its value is not shown)`,
			`node "n4" ansible_ssh_extra_args: "-F" changes how or where`,
			`node "n5" ansible_port: "ssh" is not a port`}},
	} {
		t.Run(c.path, func(t *testing.T) {
			t.Parallel()
			_, err := LoadFile(c.path, Options{})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// Beside the API the same is refused.
			if _, err := LoadAccessWith(c.path, Options{}); err == nil {
				t.Error("LoadAccessWith accepted it")
			}
		})
	}
}

// TestAnsibleIgnoredVaultAndJinja: vaulted and templated variables that
// routepush does not read are none of its business.
func TestAnsibleIgnoredVaultAndJinja(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "inventory.yml")
	writeTestFile(t, path, "all:\n  vars:\n    db_password: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n    motd: \"{{ inventory_hostname }}\"\n  hosts:\n    n1: {ansible_host: 10.0.0.1, pod_cidr: 10.1.1.0/24}\n")
	if _, err := LoadFile(path, Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestValidatesAnsibleNodes: the table of an Ansible inventory passes the
// same checks as hosts.yaml's, named by host and variable.
func TestValidatesAnsibleNodes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hosts")
	writeTestFile(t, path, "[k8s]\nn1 ansible_host=10.0.0.1 pod_cidr=10.1.1.0/24\nn2 ansible_host=10.0.0.1 pod_cidr=10.1.1.7/24\nn3 ansible_host=10.0.0.3 pod_cidr=10.1.0.0/16\nn4 ansible_host='a;b'\n")
	_, err := LoadFile(path, Options{})
	for _, w := range []string{
		`node "n2" internal_ip: 10.0.0.1 is also the internal IP of node "n1"`,
		`node "n2" pod_cidr: "10.1.1.7/24" has host bits set; did you mean 10.1.1.0/24?`,
		`node "n1" pod_cidr: 10.1.1.0/24 overlaps 10.1.0.0/16 of node "n3"`,
		`node "n4" ansible_host: "a;b" is neither an IP address nor a host name`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

// TestDetect: hosts.yaml stays routepush's; Ansible's formats are told by
// content, whatever the file is called.
func TestDetect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		name, data string
		want       format
	}{
		{"hosts.yaml", "nodes:\n  - {name: a, address: 10.0.0.1}\n", formatRoutepush},
		{"hosts.yaml", "defaults: {user: root}\n", formatRoutepush},
		{"bad.yaml", "nodez: []\n", formatRoutepush},
		{"hosts", "nodes:\n  - {name: a, address: 10.0.0.1}\n", formatRoutepush},
		{"inventory.yml", "all:\n  hosts:\n    a:\n", formatAnsibleYAML},
		{"inventory.yaml", "workers:\n  hosts:\n    a:\n", formatAnsibleYAML},
		{"inventory.ini", "[workers]\na\n", formatAnsibleINI},
		{"hosts", "a ansible_host=10.0.0.1\n", formatAnsibleINI},
		{"hosts", "[workers]\na\n", formatAnsibleINI},
		{"hosts", "all:\n  hosts:\n    a:\n", formatAnsibleYAML},
		// Ansible groups called nodes or defaults.
		{"inventory.yml", "nodes:\n  hosts:\n    a:\n", formatAnsibleYAML},
		{"inventory.yml", "defaults:\n  vars: {user: root}\n  hosts:\n    a:\n", formatAnsibleYAML},
		{"inventory.yml", "all:\n  children:\n    w:\n      hosts: {a: }\nnodes:\n", formatAnsibleYAML},
		{"inventory.yml", "defaults:\n  children:\n    w:\n      hosts: {a: }\nnodes:\n  hosts: {b: }\n", formatAnsibleYAML},
		{"hosts.yaml", "defaults: {user: root}\nnodes:\n", formatRoutepush},
		{"hosts.yaml", "nodes: {}\n", formatRoutepush},
		{"hosts.yaml", "nodes: []\ndefaults: {hosts: 1}\n", formatRoutepush},
	} {
		path := filepath.Join(dir, c.name)
		writeTestFile(t, path, c.data)
		got, _, err := detect(path)
		if err != nil || got != c.want {
			t.Errorf("%s %q: format %d, %v; want %d", c.name, c.data, got, err, c.want)
		}
	}
	// Executable but no script: Ansible reads it when running it fails.
	exe := filepath.Join(dir, "inventory")
	writeTestFile(t, exe, "[workers]\na\n")
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, _, err := detect(exe); err != nil || got != formatAnsibleINI {
		t.Errorf("an executable INI file: format %d, %v", got, err)
	}
	bin := filepath.Join(dir, "inventory-bin")
	writeTestFile(t, bin, "\x7fELF\x02\x01\x01\x00")
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := detect(bin); err == nil || !strings.Contains(err.Error(), "is a script or program") {
		t.Errorf("an executable program: %v", err)
	}
	if _, _, err := detect(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory: %v", err)
	}
}

func TestParseLiteral(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]any{
		"10.0.0.0/24":                 "10.0.0.0/24",
		"1.2.3.4":                     "1.2.3.4",
		"22":                          int64(22),
		"0755":                        "0755",
		"-3":                          int64(-3),
		"1.5":                         1.5,
		"True":                        true,
		"true":                        "true",
		"None":                        nil,
		`"a b"`:                       "a b",
		`'it\'s'`:                     "it's",
		"['a', 'b']":                  []any{"a", "b"},
		"('a',)":                      []any{"a"},
		"{'k': [1, 2]}":               map[string]any{"k": []any{int64(1), int64(2)}},
		"[unquoted]":                  "[unquoted]",
		"-o ProxyJump=a@b":            "-o ProxyJump=a@b",
		"{{ lookup('env', 'HOME') }}": "{{ lookup('env', 'HOME') }}",
	} {
		if got := parseLiteral(in); !reflect.DeepEqual(got, want) {
			t.Errorf("parseLiteral(%q) = %#v, want %#v", in, got, want)
		}
	}
}
