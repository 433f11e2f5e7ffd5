package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/routepush/routepush/test/lab"
)

// newLabWith is newLab with options.
func newLabWith(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// connections counts the SSH connections a host's sshd has accepted so far.
func connections(t *testing.T, n *lab.Node) int {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(n.Dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(log), "Connection from ")
}

func assertConverged(t *testing.T, l *lab.Lab) {
	t.Helper()
	for i, n := range l.Nodes {
		if got, want := ipv4Table(t, n), expectedTable(l, i); got != want {
			t.Errorf("%s: table\n%s\nwant\n%s", n.Name, got, want)
		}
	}
	if failed := pingMatrix(t, l); len(failed) > 0 {
		t.Errorf("pod pings failed: %v", failed)
	}
}

// newKey writes an ed25519 key pair (the private half encrypted when
// passphrase is not empty) and returns the private key's path.
func newKey(t *testing.T, dir, name, passphrase string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, name)
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, name, []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path+".pub", string(ssh.MarshalAuthorizedKey(sshPub)))
	return path, sshPub
}

// additions counts the routes a --check run would add.
func additions(res lab.Result) int { return strings.Count(res.Stdout, "\n  + ") }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The bastion has no route to the nodes: every node is reached through
// one authenticated connection to the jump host, whose key is checked too.
func TestJumpHostOnly(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 10, Jump: true})
	ctx := testContext(t)
	if out, err := l.Exec(ctx, l.Bastion, "ip", "route", "get", l.Nodes[0].Addr.String()); err == nil {
		t.Fatalf("the bastion has a route to the nodes: %s", out)
	}
	before := snapshot(t, l)

	// The jump host's key is checked like any node's: unknown, refused.
	kh, err := os.ReadFile(l.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(kh), "\n")
	noJump := filepath.Join(l.Dir, "known_hosts.nojump")
	writeFile(t, noJump, strings.Join(lines[1:], ""))
	res := rp(t, l, "--inventory", l.InventoryPath(), "--known-hosts", noJump)
	if res.Code != 1 || !strings.Contains(res.Stderr, "jump host root@198.19.0.2:22: host key for 198.19.0.2:22 is not in") {
		t.Errorf("unknown jump host key: exit %d, stderr %q", res.Code, res.Stderr)
	}
	assertUnchanged(t, l, before)
	assertNoSSH(t, l)

	jumpBefore := connections(t, l.Jump)
	res = rp(t, l, "--inventory", l.InventoryPath())
	if res.Code != 0 || !strings.Contains(res.Stdout, "10 nodes done") {
		t.Fatalf("apply through the jump host: exit %d", res.Code)
	}
	if got := connections(t, l.Jump) - jumpBefore; got != 1 {
		t.Errorf("the jump host's sshd saw %d connections from the run, want 1", got)
	}
	for _, n := range l.Nodes {
		if log, _ := os.ReadFile(filepath.Join(n.Dir, "sshd.log")); !strings.Contains(string(log), "Connection from 198.18.0.2 ") {
			t.Errorf("%s was not reached from the jump host:\n%s", n.Name, log)
		}
	}
	assertConverged(t, l)
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--check"); res.Code != 0 {
		t.Errorf("--check after apply: exit %d", res.Code)
	}
}

// An operator's ssh_config, with Host worker-* blocks and an Include,
// says how to reach nodes the inventory names only; the same file with a
// Match criterion the parser lacks is resolved by OpenSSH's ssh -G.
func TestSSHConfigHostBlocks(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 5, Jump: true})
	ctx := testContext(t)
	dir := filepath.Join(l.Dir, "operator")
	if err := os.MkdirAll(filepath.Join(dir, "ssh_config.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Nodes listen on 2222 and take a key only ssh_config names.
	workerKey, workerPub := newKey(t, dir, "worker_key", "")
	if err := l.AuthorizeKey(workerPub); err != nil {
		t.Fatal(err)
	}
	var inv, hosts, known strings.Builder
	known.WriteString(lab.KnownHostsLine(l.Jump.Addr.String(), l.Jump.HostKey) + "\n")
	inv.WriteString("nodes:\n")
	for i, n := range l.Nodes {
		if err := l.StopSSHD(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := l.StartSSHD(ctx, n, "-p", "2222"); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&inv, "  - name: worker-%d\n    internal_ip: %s\n    pod_cidr: %s\n", i, n.Addr, n.PodCIDR)
		fmt.Fprintf(&hosts, "Host worker-%d\n  HostName %s\n", i, n.Addr)
		known.WriteString(lab.KnownHostsLine(fmt.Sprintf("[%s]:2222", n.Addr), n.HostKey) + "\n")
	}
	writeFile(t, filepath.Join(dir, "ssh_config.d", "workers.conf"), hosts.String())
	writeFile(t, filepath.Join(dir, "known_hosts"), known.String())
	writeFile(t, filepath.Join(dir, "hosts.yaml"), inv.String())
	sshConfig := fmt.Sprintf(`Include %[1]s/ssh_config.d/*.conf
Host labjump
  HostName %[2]s
  User root
  IdentityFile %[3]s
Host worker-*
  User root
  Port 2222
  IdentityFile %[4]s
  ProxyJump labjump
Host *
  UserKnownHostsFile %[1]s/known_hosts
`, dir, l.Jump.Addr, l.IdentityPath(), workerKey)
	plain := filepath.Join(dir, "config")
	writeFile(t, plain, sshConfig)
	withMatch := filepath.Join(dir, "config.match")
	writeFile(t, withMatch, sshConfig+"Match final\n  ServerAliveInterval 30\n")
	// routepush's own config says nothing about users, keys, jump hosts or
	// known_hosts: all of it comes from ssh_config.
	cfg := filepath.Join(dir, "routepush.yaml")
	writeFile(t, cfg, "inventory: "+filepath.Join(dir, "hosts.yaml")+"\n")

	jumpBefore := connections(t, l.Jump)
	res := rp(t, l, "--config", cfg, "--ssh-config", withMatch, "--check", "-v")
	if res.Code != 2 || additions(res) != 20 {
		t.Errorf("--check through ssh -G: exit %d, want 2 and 20 additions", res.Code)
	}
	if !strings.Contains(res.Stderr, "ssh -G") || !strings.Contains(res.Stderr, "final") {
		t.Errorf("stderr does not say ssh -G resolves the unparsable config: %q", res.Stderr)
	}
	res = rp(t, l, "--config", cfg, "--ssh-config", plain)
	if res.Code != 0 {
		t.Fatalf("apply with ssh_config: exit %d", res.Code)
	}
	assertConverged(t, l)
	res = rp(t, l, "--config", cfg, "--ssh-config", withMatch, "--check")
	if res.Code != 0 {
		t.Errorf("--check after apply, through ssh -G: exit %d", res.Code)
	}
	if got := connections(t, l.Jump) - jumpBefore; got != 3 {
		t.Errorf("the jump host saw %d connections in 3 runs, want 3", got)
	}
}
