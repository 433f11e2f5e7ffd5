package inventory

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Regression tests for inventories written to mislead or exhaust
// routepush: each must be read as Ansible reads it, or refused with a
// message that says why, before anything is expanded without bound.

// loadWithin runs LoadFile and fails the test if it does not return in
// time (a read that blocks, a walk that never ends).
func loadWithin(t *testing.T, path string, d time.Duration) (*File, error) {
	t.Helper()
	type result struct {
		f   *File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := LoadFile(path, Options{})
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r.f, r.err
	case <-time.After(d):
		t.Fatalf("LoadFile(%s) still running after %v", path, d)
		return nil, nil
	}
}

// wantErr fails unless err says each of parts.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want an error saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

// A merge key (<<: *anchor) gives n1 the anchor's ansible_host and
// pod_cidr, as Ansible does; it used to be read as a variable named "<<".
func TestAnsibleYAMLMergeKey(t *testing.T) {
	f, err := LoadFile("testdata/ansible/hostile/merge/inventory.yml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Nodes {
		if n.Name == "n1" && (n.Address != "10.0.0.9" || len(n.PodCIDRs) != 1 || n.PodCIDRs[0].String() != "10.244.9.0/24") {
			t.Errorf("n1: address %q pod CIDRs %v; Ansible: 10.0.0.9, 10.244.9.0/24", n.Address, n.PodCIDRs)
		}
	}
}

// A merge list: the earlier mapping wins, a key written beside the merge
// wins over both.
func TestAnsibleYAMLMergeList(t *testing.T) {
	f, data, err := detect("testdata/ansible/merge/inventory.yml")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := readAnsible("testdata/ansible/merge/inventory.yml", f, data)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]map[string]any{
		"n1": {"ansible_host": "10.0.0.9", "ansible_port": 2200, "owner": "platform"},
		"n2": {"ansible_host": "10.0.0.99", "pod_cidr": "10.244.2.0/24", "zone": "z2"},
		"n3": {"ansible_host": "10.0.0.3", "pod_cidr": "10.244.3.0/24", "rack": "r1"},
	} {
		got := inv.hostVars(inv.hosts[host])
		for k, w := range want {
			if g := got[k].v; g != w {
				t.Errorf("%s %s: %v (%T), want %v", host, k, g, g, w)
			}
		}
	}
}

// An alias inside its own anchor (loop: &a [*a]) is refused; it used to
// recurse until the stack overflowed.
func TestAnsibleYAMLAliasCycle(t *testing.T) {
	_, err := loadWithin(t, "testdata/ansible/hostile/cycle/inventory.yml", 10*time.Second)
	wantErr(t, err, "cycle", "*a")
}

// A cycle through a merge key, and through a group's children.
func TestAnsibleYAMLMergeCycle(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"merge.yml":    "all:\n  hosts:\n    n1: &m\n      ansible_host: 10.0.0.1\n      <<: *m\n",
		"children.yml": "all:\n  children:\n    a: &a\n      children:\n        b: *a\n      hosts:\n        n1:\n",
	} {
		p := filepath.Join(dir, name)
		writeTestFile(t, p, text)
		_, err := loadWithin(t, p, 10*time.Second)
		wantErr(t, err, "inventory "+p)
	}
}

// 541 bytes of aliases naming 10^9 strings (a "billion laughs") are
// refused before they are expanded.
func TestAnsibleYAMLAliasBomb(t *testing.T) {
	_, err := loadWithin(t, "testdata/ansible/hostile/laughs/inventory.yml", 20*time.Second)
	wantErr(t, err, "values once its aliases are expanded")
}

// A 40-byte INI line naming 10^8 hosts is refused before aini expands it,
// as are ranges aini cannot expand (a step of 0 divides by zero in it).
func TestAnsibleHostRangeBounded(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct{ text, want string }{
		{"[w]\nn[00000000:99999999] pod_cidr=10.244.1.0/24\n", "more than 10000 hosts"},
		{"[w]\nn[0:99]-[0:99]-[0:99]\n", "more than 10000 hosts"},
		{"[w]\nn[0:5000]\n[v]\nm[0:5000]\n", "10002 hosts, more than the 10000"},
		{strings.Repeat("[w]\nn[0:9999]\n", 11), "lists more than 100000 hosts in its groups"},
		{"[w]\nn[1:3:0]\n", `step "0" is not a positive number`},
		{"[w]\nn[1:99999999999999999999]\n", "not a number below 2^32"},
		{"all:\n  hosts:\n    n[00000000:99999999]:\n", "more than 10000 hosts"},
	} {
		if i == 3 {
			// One host in many groups is one host.
			p := filepath.Join(dir, "many-groups")
			writeTestFile(t, p, "[a]\nn[0:5999]\n[b]\nn[0:5999]\n")
			if _, err := readAnsibleFile(p); err != nil {
				t.Errorf("6,000 hosts in two groups: %v", err)
			}
		}
		ext := ".ini"
		if strings.HasPrefix(c.text, "all:") {
			ext = ".yml"
		}
		p := filepath.Join(dir, "hosts"+string(rune('a'+i))+ext)
		writeTestFile(t, p, c.text)
		_, err := loadWithin(t, p, 10*time.Second)
		wantErr(t, err, c.want)
	}
}

// ansible_host in group_vars/workers.yml gives every worker one SSH
// address: each node's routes would be pushed to that one machine. Both
// nodes and where the address was set are named.
func TestSharedSSHAddressRefused(t *testing.T) {
	_, err := LoadFile("testdata/ansible/hostile/dupaddr/hosts", Options{})
	wantErr(t, err, `node "node2" ansible_host: 10.0.0.1 (port 22) is also where node "node1" is reached`,
		`node "node3" ansible_host`, "set in group_vars/workers.yml")
	_, err = LoadAccessWith("testdata/ansible/hostile/dupaddr/hosts", Options{})
	wantErr(t, err, `node "node2" ansible_host: 10.0.0.1 (port 22) is also where node "node1" is reached`)

	dir := t.TempDir()
	same := filepath.Join(dir, "hosts.yaml")
	writeTestFile(t, same, "nodes:\n  - name: a\n    address: Gw.Example.\n    internal_ip: 10.0.0.1\n  - name: b\n    address: gw.example\n    port: 22\n    internal_ip: 10.0.0.2\n")
	_, err = LoadFile(same, Options{})
	wantErr(t, err, `node "b" (nodes[1]) address: gw.example (port 22) is also where node "a" is reached`)
	_, err = LoadAccess(same)
	wantErr(t, err, `node "b" (nodes[1]) address`)

	// Another port or jump host is another machine; no address is
	// ssh_config's or the internal IP's, both unique.
	other := filepath.Join(dir, "other.yaml")
	writeTestFile(t, other, "nodes:\n  - name: a\n    address: 10.0.0.1\n  - name: b\n    address: 10.0.0.1\n    port: 2222\n    internal_ip: 10.0.0.2\n"+
		"  - name: c\n    address: 10.0.0.1\n    jump: bastion\n    internal_ip: 10.0.0.3\n  - name: d\n    internal_ip: 10.0.0.4\n  - name: e\n    internal_ip: 10.0.0.5\n")
	if _, err := LoadFile(other, Options{}); err != nil {
		t.Errorf("refused nodes at other ports, jumps or no address: %v", err)
	}
}

// A group named ../../outside/evil would read a file outside group_vars/;
// names are checked before any path is built from them.
func TestAnsibleGroupNameTraversal(t *testing.T) {
	_, err := LoadFile("testdata/ansible/hostile/trav/inv/hosts", Options{})
	wantErr(t, err, `group "../../outside/evil"`, "not a name routepush can look up")

	dir := t.TempDir()
	for name, c := range map[string]struct{ text, want string }{
		"slash.yml":   {"all:\n  children:\n    a/b:\n      hosts:\n        n1:\n", `group "a/b" contains a path separator`},
		"control.yml": {"all:\n  children:\n    \"a\\e[31m\":\n      hosts:\n        n1:\n", `group "a\x1b[31m" contains control characters`},
		"host.yml":    {"all:\n  hosts:\n    \"..\":\n", `host ".." is not a name`},
	} {
		p := filepath.Join(dir, name)
		writeTestFile(t, p, c.text)
		_, err := LoadFile(p, Options{})
		wantErr(t, err, c.want)
		if err != nil && strings.ContainsRune(err.Error(), 0x1b) {
			t.Errorf("the error carries a raw escape: %q", err)
		}
	}
}

// group_vars/all as a FIFO, a symlink to /dev/zero, or too large a file:
// each is refused, none blocks or fills the memory.
func TestAnsibleVarsFilesBounded(t *testing.T) {
	for name, create := range map[string]func(p string) error{
		"fifo":  func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"zero":  func(p string) error { return os.Symlink("/dev/zero", p) },
		"large": func(p string) error { return os.WriteFile(p, []byte("x: "+strings.Repeat("a", 2<<20)+"\n"), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestFile(t, filepath.Join(dir, "hosts"), "[w]\nn1 ansible_host=10.0.0.1 pod_cidr=10.244.1.0/24\n")
			if err := os.Mkdir(filepath.Join(dir, "group_vars"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := create(filepath.Join(dir, "group_vars", "all")); err != nil {
				t.Fatal(err)
			}
			_, err := loadWithin(t, filepath.Join(dir, "hosts"), 5*time.Second)
			want := "is not a regular file"
			if name == "large" {
				want = "is larger than 1 MiB"
			}
			wantErr(t, err, "group_vars/all (variables of group all)", want)
		})
	}
}

// group_vars/all/ holding two symlinks to itself is refused at once; the
// walk used to follow both at every level (2^40 paths).
func TestAnsibleVarsSymlinkLoop(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "hosts"), "[w]\nn1 ansible_host=10.0.0.1 pod_cidr=10.244.1.0/24\n")
	all := filepath.Join(dir, "group_vars", "all")
	if err := os.MkdirAll(all, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"a", "b"} {
		if err := os.Symlink(".", filepath.Join(all, l)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := loadWithin(t, filepath.Join(dir, "hosts"), 5*time.Second)
	wantErr(t, err, "a symlink loop")
}

// The --inventory file itself is read to a cap too.
func TestInventoryFileBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	writeTestFile(t, p, "[w]\n"+strings.Repeat("# padding\n", (16<<20)/10+1))
	_, err := loadWithin(t, p, 10*time.Second)
	wantErr(t, err, "is larger than 16 MiB")
}

// hosts.yaml is parsed from the bytes detect read, not read again: from a
// pipe (-i <(cat hosts.yaml)) the second read found nothing.
func TestInventoryFromPipe(t *testing.T) {
	data, err := os.ReadFile("testdata/valid-basic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		defer w.Close()
		_, _ = w.Write(data)
	}()
	f, err := loadWithin(t, fmt.Sprintf("/dev/fd/%d", r.Fd()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want, err := LoadFile("testdata/valid-basic.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Nodes) != len(want.Nodes) || f.Nodes[0].Name != want.Nodes[0].Name {
		t.Errorf("from a pipe: %+v, from the file: %+v", f.Nodes, want.Nodes)
	}
}

// A host listed under all: hosts: (or INI [all]) is in ungrouped, as in
// Ansible: group_vars/ungrouped.yml gives it its pod CIDR and --limit
// '!ungrouped' spares it.
func TestAnsibleAllHostsUngrouped(t *testing.T) {
	f, err := LoadFile("testdata/ansible/hostile/ungrouped/inventory.yml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Nodes {
		if n.Name == "n1" && (len(n.PodCIDRs) != 1 || n.PodCIDRs[0].String() != "10.244.1.0/24") {
			t.Errorf("n1: pod CIDRs %v; Ansible gives it 10.244.1.0/24 from group_vars/ungrouped.yml", n.PodCIDRs)
		}
	}
	sel, err := MatchPattern("!ungrouped", f.Groups["all"], f.Groups)
	if err != nil || strings.Join(sel, " ") != "n2" {
		t.Errorf("--limit '!ungrouped': %v (%v); Ansible: n2", sel, err)
	}
	ini, err := LoadFile("testdata/ansible/hostile/iniall.ini", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Join(ini.Groups["ungrouped"], " "); g != "n1" {
		t.Errorf("INI [all] n1: ungrouped is %q, want n1", g)
	}
}

// "n1:22" as a YAML host key sets port 22 over all's ansible_port 2222, as
// in Ansible; aini's port alone cannot tell it from no port.
func TestAnsibleYAMLExplicitPort22(t *testing.T) {
	f, err := LoadFile("testdata/ansible/hostile/port22.yml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"n1": 22, "n2": 22, "n3": 2222}
	for _, n := range f.Nodes {
		if n.SSH.Port != want[n.Name] {
			t.Errorf("%s: port %d, Ansible %d", n.Name, n.SSH.Port, want[n.Name])
		}
	}
}

// A refused ssh option is named, never printed whole: a ProxyCommand with
// sshpass -p carries the password.
func TestAnsibleRefusedSSHOptionHidesValue(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	writeTestFile(t, p, "[w]\nn1 ansible_host=10.0.0.1 pod_cidr=10.244.1.0/24\n"+
		"n2 ansible_host=10.0.0.2 ansible_ssh_extra_args='-i /root/Hunter2Key -o \"User Hunter2User\" sshpass Hunter2Word'\n"+
		"n3 ansible_host=10.0.0.3 ansible_ssh_extra_args='-o \"ProxyCommand=unbalanced Hunter2Quote'\n"+
		"[w:vars]\nansible_ssh_common_args='-o ProxyCommand=\"sshpass -p Hunter2Secret ssh -W %h:%p jump\"'\n")
	_, err := LoadFile(p, Options{})
	wantErr(t, err, `node "n1" ansible_ssh_common_args: -o "ProxyCommand" changes how or where`, `"-i" changes how`, `-o "User" changes`, "an argument that is no ssh option", "does not split into arguments")
	if err != nil && strings.Contains(err.Error(), "Hunter2") {
		t.Errorf("a secret is in the error: %v", err)
	}
}

// ansible_ssh_args is read as the other ssh argument variables are;
// paramiko's and sudo's own names are refused, warned about or honoured
// as their become/ansible_host twins are.
func TestAnsibleConnectionVarTwins(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	writeTestFile(t, p, "[w]\n"+
		"n1 ansible_host=10.0.0.1 ansible_ssh_args='-C -o ControlMaster=auto -o ControlPersist=60s -J bastion'\n"+
		"n2 ansible_host=10.0.0.2 ansible_paramiko_pass=x ansible_paramiko_host=10.9.9.9\n"+
		"n3 ansible_host=10.0.0.3 ansible_become=yes ansible_sudo_user=postgres\n"+
		"n4 ansible_host=10.0.0.4 ansible_paramiko_user=admin ansible_paramiko_password=y\n"+
		"n5 ansible_host=10.0.0.5 ansible_ssh_args='-o ProxyCommand=x'\n")
	_, err := LoadFile(p, Options{})
	wantErr(t, err,
		`node "n2" ansible_paramiko_pass: is a login password`,
		`node "n2" ansible_paramiko_host: is read by Ansible's paramiko connection only`, "set ansible_host instead",
		`node "n3" ansible_sudo_user: "postgres": routepush becomes root`,
		`node "n4" ansible_paramiko_user`, `node "n4" ansible_paramiko_password`,
		`node "n5" ansible_ssh_args: -o "ProxyCommand"`)
	if strings.Contains(err.Error(), `"n1"`) {
		t.Errorf("n1 refused: %v", err)
	}

	ok := filepath.Join(t.TempDir(), "hosts")
	writeTestFile(t, ok, "[w]\nn1 ansible_host=10.0.0.1 ansible_ssh_args='-C -o ControlMaster=auto -J bastion' ansible_sudo_exe=/bin/sudo ansible_sudo_flags=-H ansible_sudo_user=root\n")
	f, err := LoadFile(ok, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Nodes[0].SSH.Jump != "bastion" {
		t.Errorf("ansible_ssh_args -J: jump %q", f.Nodes[0].SSH.Jump)
	}
	w := strings.Join(f.Warnings, "\n")
	for _, s := range []string{"ansible_sudo_exe ignored", "ansible_sudo_flags ignored", `ansible_ssh_args: -o "ControlMaster" ignored`} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings %q lack %q", w, s)
		}
	}
}

// [a:children] naming an undefined group, and [g:vars] for a group no
// section defines, are refused, as ansible-inventory refuses them; the
// same groups defined later (in any order) are read, as it reads them.
func TestAnsibleINIUndefinedGroups(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct{ text, want string }{
		{"[a:children]\nb\n[c]\nn1\n", "[a:children] names the group b, which no section defines"},
		{"[w]\nn1\n[x:vars]\nk=1\n", "[x:vars] is for a group no [x] or [x:children] section defines"},
		{"[a:children]\nb\n[b:children]\nc\n[c]\nn1\n", ""},
		{"[x:vars]\nk=1\n[a:children]\nx\n[x]\nn1\n", ""},
		{"[a:children]\nb\n[b:vars]\nk=1\n[w]\nn1\n", "[a:children] names the group b"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("hosts%d", i))
		writeTestFile(t, p, c.text)
		_, err := readAnsibleFile(p)
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.text, err)
			}
		} else {
			wantErr(t, err, c.want)
		}
		if ansibleFails := ansibleRefuses(t, p); ansibleFails != (c.want != "") {
			t.Errorf("%q: ansible-inventory refuses it: %v; routepush: %v", c.text, ansibleFails, err)
		}
	}
}

func readAnsibleFile(path string) (*ansibleInventory, error) {
	f, data, err := detect(path)
	if err != nil {
		return nil, err
	}
	return readAnsible(path, f, data)
}

// ansibleRefuses reports whether ansible-inventory fails to parse path.
func ansibleRefuses(t *testing.T, path string) bool {
	t.Helper()
	bin, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatalf("ansible-inventory is needed to compare with: %v", err)
	}
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "ansible.cfg")
	writeTestFile(t, cfg, "")
	cmd := exec.Command(bin, "-i", path, "--list")
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "LC_ALL=C.UTF-8", "ANSIBLE_CONFIG=" + cfg,
		"ANSIBLE_LOCAL_TEMP=" + tmp, "ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_NOCOLOR=1"}
	return cmd.Run() != nil
}
