package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"

	"github.com/routepush/routepush/test/lab"
)

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
		got, want := ipv4Table(t, n), expectedTable(l, i)
		tally(t, strings.Count(want, "\n"), got != want)
		if got != want {
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

// mkdir makes a folder (and its parents) and returns its path.
func mkdir(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
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

	// Two hops (the jump host, then the jump host again by its inner
	// address): one login on each, and the second key checked too.
	twoHops := "root@198.19.0.2,root@198.18.0.2"
	res = rp(t, l, "--inventory", l.InventoryPath(), "--check", "--jump", twoHops)
	if res.Code != 1 || !strings.Contains(res.Stderr, "jump host root@198.18.0.2:22: host key for 198.18.0.2:22 is not in") {
		t.Errorf("second hop's unknown key: exit %d, stderr %q", res.Code, res.Stderr)
	}
	writeFile(t, l.KnownHostsPath(), string(kh)+lab.KnownHostsLine("198.18.0.2", l.Jump.HostKey)+"\n")
	log := func() string { return readFile(t, filepath.Join(l.Jump.Dir, "sshd.log")) }
	outer, inner := strings.Count(log(), "Connection from 198.19.0.1 "), strings.Count(log(), "Connection from 198.18.0.2 ")
	if res := rp(t, l, "--inventory", l.InventoryPath(), "--check", "--jump", twoHops); res.Code != 0 {
		t.Errorf("--check through two hops: exit %d, want 0", res.Code)
	}
	if o, i := strings.Count(log(), "Connection from 198.19.0.1 ")-outer, strings.Count(log(), "Connection from 198.18.0.2 ")-inner; o != 1 || i != 1 {
		t.Errorf("two hops: %d logins from the bastion and %d from the first hop, want 1 and 1", o, i)
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
	mkdir(t, filepath.Join(dir, "ssh_config.d"))
	// Nodes listen on 2222 and take a key only ssh_config names.
	workerKey, workerPub := newKey(t, dir, "worker_key", "")
	if err := l.AuthorizeKey(workerPub); err != nil {
		t.Fatal(err)
	}
	var inv, hosts, known strings.Builder
	known.WriteString(lab.KnownHostsLine(l.Jump.Addr.String(), l.Jump.HostKey) + "\n")
	inv.WriteString("nodes:\n")
	for i, n := range l.Nodes {
		if err := l.RestartSSHD(ctx, n, "-p", "2222"); err != nil {
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

// Keys the way operators hold them: in ssh-agent, encrypted on disk (one
// passphrase prompt on the terminal for every node), or with an OpenSSH
// certificate beside them.
func TestAgentEncryptedKeysAndCertificates(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	ctx := testContext(t)
	dir := mkdir(t, filepath.Join(l.Dir, "keys"))
	agentKey, agentPub := newKey(t, dir, "agent_key", "")
	encKey, encPub := newKey(t, dir, "enc_key", "correct horse")
	// From now on only these two keys log in: not the lab's own.
	writeFile(t, filepath.Join(l.Dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(agentPub))+string(ssh.MarshalAuthorizedKey(encPub)))
	inv := filepath.Join(dir, "hosts.yaml")
	data, err := os.ReadFile(l.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, inv, strings.Replace(string(data), "  identity_file: "+l.IdentityPath()+"\n", "", 1))
	cfg := filepath.Join(dir, "routepush.yaml")
	writeFile(t, cfg, fmt.Sprintf("inventory: %s\nknown-hosts: %s\nssh-config: %s\n", inv, l.KnownHostsPath(), l.SSHConfigPath()))
	before := snapshot(t, l)

	// Agent only: no identity file anywhere.
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	if err := lab.WaitFile(ctx, sock, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	add := exec.Command("ssh-add", agentKey)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	res, err := l.RoutepushWith(ctx, lab.RunOptions{Env: []string{"SSH_AUTH_SOCK=" + sock}}, routepush, "--config", cfg, "--check")
	if err != nil || res.Code != 2 || additions(res) != 20 {
		t.Errorf("agent only: %v %s", err, res)
	}

	// An encrypted key and no terminal to ask on: a clear error, no change.
	res, err = l.RoutepushWith(ctx, lab.RunOptions{Cmd: func(c *exec.Cmd) {
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal
	}}, routepush, "--config", cfg, "--identity", encKey)
	if err != nil || res.Code != 1 || !strings.Contains(res.Stderr, "identity file "+encKey+" is encrypted: no terminal to ask for its passphrase on") {
		t.Errorf("encrypted key without a terminal: %v %s", err, res)
	}
	assertUnchanged(t, l, before)

	// On a terminal: asked once, used for all five nodes.
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	seen := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 1024)
		answered := false
		for {
			n, err := ptmx.Read(buf)
			b.Write(buf[:n])
			if !answered && strings.Contains(b.String(), "Enter passphrase for key '"+encKey+"': ") {
				_, _ = ptmx.Write([]byte("correct horse\n"))
				answered = true
			}
			if err != nil {
				break
			}
		}
		seen <- b.String()
	}()
	res, err = l.RoutepushWith(ctx, lab.RunOptions{Cmd: func(c *exec.Cmd) {
		c.Stdin = tty
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}}, routepush, "--config", cfg, "--identity", encKey, "--log-level", "debug")
	tty.Close()
	terminal := <-seen
	if err != nil || res.Code != 0 {
		t.Fatalf("encrypted key on a terminal: %v %s\nterminal: %q", err, res, terminal)
	}
	if strings.Contains(terminal+res.Stdout+res.Stderr, "correct horse") {
		t.Errorf("the passphrase was echoed or logged, even at debug level: %q", terminal)
	}
	if n := strings.Count(terminal, "Enter passphrase"); n != 1 {
		t.Errorf("asked for the passphrase %d times, want once: %q", n, terminal)
	}
	assertConverged(t, l)

	// A certificate beside the key: nodes that trust only the user CA let
	// it in; without the certificate the same key is refused.
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "user CA", "-f", filepath.Join(dir, "user_ca"))
	certKey, _ := newKey(t, dir, "cert_key", "")
	run(t, "ssh-keygen", "-q", "-s", filepath.Join(dir, "user_ca"), "-I", "routepush-e2e", "-n", "root", "-V", "-5m:+1h", certKey+".pub")
	for _, n := range l.Nodes {
		if err := l.RestartSSHD(ctx, n, "-o", "TrustedUserCAKeys="+filepath.Join(dir, "user_ca.pub"), "-o", "AuthorizedKeysFile=none"); err != nil {
			t.Fatal(err)
		}
	}
	if res := rp(t, l, "--config", cfg, "--identity", certKey, "--check"); res.Code != 0 {
		t.Errorf("certificate: exit %d, want 0", res.Code)
	}
	if err := os.Rename(certKey+"-cert.pub", certKey+"-cert.pub.away"); err != nil {
		t.Fatal(err)
	}
	if res := rp(t, l, "--config", cfg, "--identity", certKey, "--check"); res.Code != 1 || !strings.Contains(res.Stderr, "unable to authenticate") {
		t.Errorf("key without its certificate: exit %d, want 1 and an authentication error", res.Code)
	}
}

// --accept-new-host-keys is ssh's StrictHostKeyChecking=accept-new: the
// missing lines are added (hashed when HashKnownHosts says so), a changed
// key is still refused and nothing changes anywhere.
func TestAcceptNewHostKeys(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	inv := l.InventoryPath()
	kh, err := os.ReadFile(l.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(kh), "\n")
	partial := lines[0] + lines[2] + lines[4]
	writeFile(t, l.KnownHostsPath(), partial)

	if res := rp(t, l, "--inventory", inv, "--check"); res.Code != 1 || !strings.Contains(res.Stderr, "node-1: host key for 198.18.0.11:22 is not in") {
		t.Errorf("strict by default: exit %d", res.Code)
	}
	res := rp(t, l, "--inventory", inv, "--check", "--accept-new-host-keys")
	if res.Code != 2 || additions(res) != 20 {
		t.Errorf("accept-new: exit %d, want 2 and 20 additions", res.Code)
	}
	got := readFile(t, l.KnownHostsPath())
	added := strings.SplitAfter(strings.TrimPrefix(got, partial), "\n")
	slices.Sort(added)
	if want := []string{"", lines[1], lines[3]}; !strings.HasPrefix(got, partial) || !slices.Equal(added, want) {
		t.Errorf("known_hosts after accept-new:\n%s\nwant the old lines and exactly\n%s%s", got, lines[1], lines[3])
	}
	if res := rp(t, l, "--inventory", inv, "--check", "--accept-new-host-keys"); res.Code != 2 || readFile(t, l.KnownHostsPath()) != got {
		t.Errorf("second run: exit %d, or known_hosts changed", res.Code)
	}

	// HashKnownHosts yes in ssh_config: the added line is hashed.
	writeFile(t, l.SSHConfigPath(), "Host *\n  HashKnownHosts yes\n")
	writeFile(t, l.KnownHostsPath(), lines[0]+lines[1]+lines[2]+lines[3])
	if res := rp(t, l, "--inventory", inv, "--check", "--accept-new-host-keys"); res.Code != 2 {
		t.Errorf("hashed accept-new: exit %d", res.Code)
	}
	last := strings.TrimPrefix(readFile(t, l.KnownHostsPath()), lines[0]+lines[1]+lines[2]+lines[3])
	check, err := xknownhosts.New(l.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	n4 := l.Nodes[4]
	if !strings.HasPrefix(last, "|1|") || strings.Count(last, "\n") != 1 ||
		check("198.18.0.14:22", &net.TCPAddr{IP: n4.Addr.AsSlice(), Port: 22}, n4.HostKey) != nil {
		t.Errorf("added line %q: want one hashed line for node-4's key", last)
	}

	// A changed key is refused even with accept-new.
	before := snapshot(t, l)
	lines[2] = lab.KnownHostsLine(l.Nodes[2].Addr.String(), l.Nodes[0].HostKey) + "\n"
	writeFile(t, l.KnownHostsPath(), strings.Join(lines, ""))
	res = rp(t, l, "--inventory", inv, "--accept-new-host-keys")
	if res.Code != 1 {
		t.Fatalf("changed key with accept-new: exit %d, want 1", res.Code)
	}
	for _, want := range []string{"node-2: HOST KEY FOR 198.18.0.12:22 HAS CHANGED", fingerprint(l.Nodes[2]), l.KnownHostsPath() + ":3"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not contain %q", want)
		}
	}
	if readFile(t, l.KnownHostsPath()) != strings.Join(lines, "") {
		t.Errorf("known_hosts changed by a refused run")
	}
	assertUnchanged(t, l, before)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// known_hosts as operators have it: hashed names, [host]:port, a host CA,
// a node with two key types of which only one is on file, and @revoked.
func TestHostKeyForms(t *testing.T) {
	t.Parallel()
	l := newLab(t, 5)
	ctx := testContext(t)
	dir := mkdir(t, filepath.Join(l.Dir, "hostkeys"))
	n := l.Nodes
	restart := func(node *lab.Node, args ...string) {
		t.Helper()
		if err := l.RestartSSHD(ctx, node, args...); err != nil {
			t.Fatal(err)
		}
	}
	var kh strings.Builder
	// node-0: a hashed entry, as ssh writes with HashKnownHosts yes.
	kh.WriteString(lab.KnownHostsLine(xknownhosts.HashHostname(n[0].Addr.String()), n[0].HostKey) + "\n")
	// node-1: sshd on 2222, known as [addr]:2222.
	restart(n[1], "-p", "2222")
	kh.WriteString(lab.KnownHostsLine(fmt.Sprintf("[%s]:2222", n[1].Addr), n[1].HostKey) + "\n")
	// node-2: a host certificate; known_hosts trusts the CA, not the key.
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host CA", "-f", filepath.Join(dir, "host_ca"))
	hostKey := filepath.Join(n[2].Dir, "ssh_host_ed25519_key")
	writeFile(t, hostKey+".pub", string(ssh.MarshalAuthorizedKey(n[2].HostKey)))
	run(t, "ssh-keygen", "-q", "-s", filepath.Join(dir, "host_ca"), "-h", "-I", "node-2", "-n", n[2].Addr.String(), hostKey+".pub")
	restart(n[2], "-o", "HostCertificate="+hostKey+"-cert.pub")
	kh.WriteString("@cert-authority 198.18.0.* " + readFile(t, filepath.Join(dir, "host_ca.pub")))
	// node-3: an ed25519 and an RSA host key; only the RSA one is on file
	// (golang/go#28870: the client must ask for RSA).
	rsaKey := filepath.Join(n[3].Dir, "ssh_host_rsa_key")
	run(t, "ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaKey)
	restart(n[3], "-h", filepath.Join(n[3].Dir, "ssh_host_ed25519_key"), "-h", rsaKey)
	kh.WriteString(n[3].Addr.String() + " " + readFile(t, rsaKey+".pub"))
	// node-4: on file, and revoked.
	kh.WriteString(lab.KnownHostsLine(n[4].Addr.String(), n[4].HostKey) + "\n")
	kh.WriteString(lab.KnownHostsLine("@revoked *", n[4].HostKey) + "\n")
	writeFile(t, l.KnownHostsPath(), kh.String())
	inv := filepath.Join(dir, "hosts.yaml")
	data := strings.Replace(readFile(t, l.InventoryPath()), "address: 198.18.0.11\n", "address: 198.18.0.11\n    port: 2222\n", 1)
	writeFile(t, inv, data)
	before := snapshot(t, l)

	res := rp(t, l, "--inventory", inv)
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-4: host key for 198.18.0.14:22 is REVOKED") {
		t.Errorf("revoked key: exit %d, want 1 and node-4 refused as revoked", res.Code)
	}
	for _, other := range n[:4] {
		if strings.Contains(res.Stderr, other.Name+":") {
			t.Errorf("%s refused: %s", other.Name, res.Stderr)
		}
	}
	assertUnchanged(t, l, before)

	// Without node-4, the other four forms connect.
	writeFile(t, inv, data[:strings.Index(data, "  - name: node-4")])
	if res := rp(t, l, "--inventory", inv, "--check"); res.Code != 2 || additions(res) != 12 {
		t.Errorf("hashed, [host]:port, @cert-authority and two key types: exit %d, want 2 and 12 additions", res.Code)
	}
}

// A non-root login becomes root through sudo -n for ip, and a sudo that
// wants a password fails fast, naming the node, with every node unchanged.
func TestBecome(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 5, SudoUser: "rpuser"})
	inv := l.InventoryPath()
	before := snapshot(t, l)
	if res := rp(t, l, "--inventory", inv, "--user", "root", "--check"); res.Code != 1 || !strings.Contains(res.Stderr, "unable to authenticate") {
		t.Errorf("root login: exit %d, want 1: nodes accept only rpuser", res.Code)
	}
	res := rp(t, l, "--inventory", inv)
	if res.Code != 1 || !strings.Contains(res.Stderr, "permission denied") || !strings.Contains(res.Stderr, "use --become") {
		t.Errorf("without become: exit %d, want 1 and a hint to use --become", res.Code)
	}
	assertUnchanged(t, l, before)
	if res := rp(t, l, "--inventory", inv, "--become"); res.Code != 0 {
		t.Fatalf("--become: exit %d", res.Code)
	}
	assertConverged(t, l)

	// node-2's sudo wants a password; node-0 has lost its routes, so a run
	// that went ahead would change it.
	if err := l.SetSudoers(l.Nodes[2], false); err != nil {
		t.Fatal(err)
	}
	ipRun(t, l.Nodes[0], "route", "flush", "proto", "114")
	before = snapshot(t, l)
	start := time.Now()
	res = rp(t, l, "--inventory", inv, "--become")
	if res.Code != 1 || !strings.Contains(res.Stderr, "node-2: sudo -n ") || !strings.Contains(res.Stderr, "sudo wants a password for rpuser") {
		t.Errorf("password-wanting sudo: exit %d, want 1 naming node-2 and the password", res.Code)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s: sudo must fail, not wait", d)
	}
	assertUnchanged(t, l, before)

	// become: true in the inventory's defaults does what --become does.
	if err := l.SetSudoers(l.Nodes[2], true); err != nil {
		t.Fatal(err)
	}
	becomeInv := filepath.Join(l.Dir, "become.yaml")
	writeFile(t, becomeInv, strings.Replace(readFile(t, inv), "defaults:\n", "defaults:\n  become: true\n", 1))
	if res := rp(t, l, "--inventory", becomeInv); res.Code != 0 || !strings.Contains(res.Stdout, "4 routes added") {
		t.Errorf("become: true: exit %d, want 0 and node-0's 4 routes back", res.Code)
	}
	assertConverged(t, l)

	// --persist through become: /etc/routepush is root's, and sftp-server
	// runs as root through sudo -n.
	if res := rp(t, l, "--inventory", becomeInv, "--persist"); res.Code != 0 || !strings.Contains(res.Stdout, "5 changed") {
		t.Errorf("become --persist: exit %d, want 0 and every node's routes file written", res.Code)
	}
	for _, n := range l.Nodes {
		fi, err := os.Stat(routesFile(n))
		if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 || !strings.Contains(readFile(t, routesFile(n)), "route replace ") {
			t.Errorf("%s: routes file written through become: %v", n.Name, err)
		}
	}
}

// Inventory values that would do something in a shell are refused by
// validation, before any connection, and nothing runs anywhere.
func TestShellMetacharactersRejected(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	marker := filepath.Join(l.Dir, "pwned")
	good := readFile(t, l.InventoryPath())
	for _, c := range []struct{ old, new, want string }{
		{"name: node-1", `name: "$(touch ` + marker + `)"`, `nodes[1] name: "$(touch ` + marker + `)" is not a valid node name`},
		{"name: node-1", `name: "node-1;touch ` + marker + `"`, `nodes[1] name: "node-1;touch`},
		{"pod_cidr: 100.64.1.0/24", `pod_cidr: "100.64.1.0/24;touch ` + marker + `"`, `node "node-1" (nodes[1]) pod_cidr: "100.64.1.0/24;touch`},
		{"pod_cidr: 100.64.1.0/24", "pod_cidr: \"`touch " + marker + "`\"", "node \"node-1\" (nodes[1]) pod_cidr: \"`touch"},
		{"address: 198.18.0.11", `address: "$(touch ` + marker + `)"`, `node "node-1" (nodes[1]) address: "$(touch`},
		{"pod_cidr: 100.64.1.0/24", "pod_cidr: 100.64.1.0/24\n    user: \"root;touch " + marker + "\"", `node "node-1" (nodes[1]) user: "root;touch`},
		{"pod_cidr: 100.64.1.0/24", "pod_cidr: 100.64.1.0/24\n    jump: \"root@$(touch " + marker + ")\"", `node "node-1" (nodes[1]) jump: jump host "root@$(touch`},
	} {
		inv := filepath.Join(l.Dir, "evil.yaml")
		writeFile(t, inv, strings.Replace(good, c.old, c.new, 1))
		res := rp(t, l, "--inventory", inv)
		if res.Code != 1 || !strings.Contains(res.Stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", c.new, res.Code, res.Stderr, c.want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("%s exists: a shell ran inventory text", marker)
	}
	assertNoSSH(t, l)
}

// Issue 15, item 7: Ctrl-C while the passphrase prompt is open closes the
// prompt at once, as ssh's does (it does not wait for Enter), and routepush
// exits 130 with the terminal's echo back on, every node as before.
func TestPassphrasePromptInterruptRestoresEcho(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	dir := mkdir(t, filepath.Join(l.Dir, "keys"))
	encKey, encPub := newKey(t, dir, "enc_key", "correct horse")
	writeFile(t, filepath.Join(l.Dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(encPub)))
	before := snapshot(t, l)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	echo := func() bool {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Lflag&unix.ECHO != 0
	}
	if !echo() {
		t.Fatal("a new pty has echo off")
	}
	seen := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 1024)
		interrupted := false
		for {
			n, err := ptmx.Read(buf)
			b.Write(buf[:n])
			if !interrupted && strings.Contains(b.String(), "Enter passphrase for key '"+encKey+"': ") {
				interrupted = true
				if echo() {
					t.Errorf("echo on while the prompt is open")
				}
				_, _ = ptmx.Write([]byte{3}) // one Ctrl-C
			}
			if err != nil {
				break
			}
		}
		seen <- b.String()
	}()
	// Within a minute: an open prompt would wait for Enter forever.
	ctx, cancel := context.WithTimeout(testContext(t), time.Minute)
	defer cancel()
	res, err := l.RoutepushWith(ctx, lab.RunOptions{Cmd: func(c *exec.Cmd) {
		c.Stdin = tty
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}}, routepush, "--inventory", l.InventoryPath(), "--identity", encKey)
	if err != nil || res.Code != 130 || strings.Contains(res.Stderr, "interrupted again") ||
		!strings.Contains(res.Stderr, "reading the passphrase: interrupted") {
		t.Errorf("Ctrl-C at the prompt: %v %s; want exit 130 with the prompt interrupted", err, res)
	}
	if !echo() {
		t.Error("the terminal's echo is still off after routepush exited")
	}
	tty.Close() // the reader then gets EIO: closing ptmx would not end its Read
	if terminal := <-seen; !strings.Contains(terminal, "Enter passphrase") {
		t.Errorf("never prompted: %q", terminal)
	}
	assertUnchanged(t, l, before)
}

// The inventory alone names the key (its defaults' identity_file); no
// agent, --identity or ssh_config does. The jump host, which nothing
// names a key for, is offered the nodes' key too (OpenSSH's -J would not
// offer it, and fail): the lab converges over one connection to the jump
// host, and -v says which key the jump host was offered.
func TestJumpHostOfferedTheInventorysKey(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, lab.Options{Nodes: 3, Jump: true})
	dir := filepath.Join(l.Dir, "inventory-key")
	mkdir(t, dir)
	cfg := filepath.Join(dir, "routepush.yaml")
	writeFile(t, cfg, fmt.Sprintf("known-hosts: %s\nuser: root\nssh-config: %s\njump: root@%s\n", l.KnownHostsPath(), l.SSHConfigPath(), l.Jump.Addr))
	jumpBefore := connections(t, l.Jump)
	res := rp(t, l, "--config", cfg, "--inventory", l.InventoryPath(), "-v")
	if res.Code != 0 {
		t.Fatalf("apply with the key in the inventory alone: exit %d", res.Code)
	}
	assertConverged(t, l)
	if !strings.Contains(res.Stderr, "offering the node's key to its jump host") || !strings.Contains(res.Stderr, l.IdentityPath()) {
		t.Errorf("-v does not say the jump host was offered the nodes' key:\n%s", res.Stderr)
	}
	if got := connections(t, l.Jump) - jumpBefore; got != 1 {
		t.Errorf("the jump host's sshd saw %d connections from the run, want 1", got)
	}

	// node-2 logs in with a key of its own. Offered to the jump host too,
	// it makes a second connection there; where --identity names the jump
	// host's key, the nodes' keys are not offered to it, and one
	// connection serves both.
	otherKey, otherPub := newKey(t, dir, "node2_key", "")
	if err := l.AuthorizeKey(otherPub); err != nil {
		t.Fatal(err)
	}
	inv := readFile(t, l.InventoryPath())
	inv = strings.Replace(inv, "    pod_cidr: "+l.Nodes[2].PodCIDR.String()+"\n", "    pod_cidr: "+l.Nodes[2].PodCIDR.String()+"\n    identity_file: "+otherKey+"\n", 1)
	mixed := filepath.Join(dir, "hosts.yaml")
	writeFile(t, mixed, inv)
	for _, c := range []struct {
		args  []string
		conns int
	}{
		{[]string{"--config", cfg}, 2},
		{[]string{"--config", cfg, "--identity", l.IdentityPath()}, 1},
	} {
		jumpBefore = connections(t, l.Jump)
		if res := rp(t, l, append(c.args, "--inventory", mixed, "--check")...); res.Code != 0 {
			t.Errorf("%v: --check with node-2's own key: exit %d", c.args, res.Code)
		}
		if got := connections(t, l.Jump) - jumpBefore; got != c.conns {
			t.Errorf("%v: the jump host saw %d connections, want %d", c.args, got, c.conns)
		}
	}
}
