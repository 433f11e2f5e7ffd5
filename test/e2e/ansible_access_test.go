package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// The connection variables of an Ansible inventory are what logs
// routepush in: the nodes accept only rpuser (not root, the user the
// tests run as), who needs sudo for ip, and node-1's sshd listens on
// 2222 alone. Each variable taken out in turn makes the run fail with
// nothing changed; all of them converge the lab.
func TestAnsibleUserBecomePort(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 2, SudoUser: "rpuser"})
	// -p, unlike -o Port=, replaces sshd_config's Port 22.
	if err := l.RestartSSHD(testContext(t), l.Nodes[1], "-p", "2222"); err != nil {
		t.Fatal(err)
	}
	kh, err := os.OpenFile(l.KnownHostsPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kh.WriteString(lab.KnownHostsLine(fmt.Sprintf("[%s]:2222", l.Nodes[1].Addr), l.Nodes[1].HostKey) + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := kh.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := ansibleConfig(t, l)
	dir := mkdir(t, filepath.Join(l.Dir, "playbook"))
	n := l.Nodes
	inventory := func(name string, drop string) string {
		t.Helper()
		vars := map[string]string{"port": " ansible_port=2222", "user": "ansible_user=rpuser\n", "become": "ansible_become=true\n"}
		vars[drop] = ""
		path := filepath.Join(dir, name)
		writeFile(t, path, fmt.Sprintf(`[k8s]
node-0 ansible_host=%s pod_cidr=%s
node-1 ansible_host=%s pod_cidr=%s%s

[k8s:vars]
%s%sansible_ssh_private_key_file=%s
`, n[0].Addr, n[0].PodCIDR, n[1].Addr, n[1].PodCIDR, vars["port"], vars["user"], vars["become"], l.IdentityPath()))
		return path
	}
	before := snapshot(t, l)
	for _, c := range []struct{ drop, want string }{
		{"port", fmt.Sprintf("node-1: dial tcp %s:22: connect: connection refused", n[1].Addr)},
		{"user", "unable to authenticate"},
		{"become", "use --become"},
	} {
		res := rp(t, l, "--config", cfg, "-i", inventory("no-"+c.drop+".ini", c.drop))
		if res.Code != 1 || !strings.Contains(res.Stderr, c.want) {
			t.Errorf("without ansible_%s: exit %d, want 1 and %q", c.drop, res.Code, c.want)
		}
		assertUnchanged(t, l, before)
	}
	if res := rp(t, l, "--config", cfg, "-i", inventory("inventory.ini", "")); res.Code != 0 {
		t.Fatalf("with ansible_user, ansible_become and ansible_port: exit %d", res.Code)
	}
	assertConverged(t, l)
}
