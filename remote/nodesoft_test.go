package remote

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// Regression tests for issue 18 items 3-4 as two reviews found them:
// what discovery finds, what is kept of it, and what runs as root.

// changingNode is a node whose software changes between rounds, as a
// watcher's nodes do: the bare `ip` on the PATH (busybox: prints
// BusyBox's usage, exit 1; missing: the shell's not-found, or sudo's with
// become), the iproute2 ip at ipAt (a fakeIP, by its path; any other path
// is missing), and what discovery prints (found). Commands through
// `sudo -n ` are served as the same commands.
type changingNode struct {
	s    *keepSSHD
	cfg  Config
	d    *Dialer
	mu   sync.Mutex
	bare string // "busybox", "missing", "zsh"
	ipAt string
	// found is what discovery prints; disc, when set, serves the
	// discovery session instead (a node that goes silent or never ends).
	found string
	disc  func(ch ssh.Channel)
	cmds  []string
}

func (n *changingNode) set(bare, ipAt, found string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bare, n.ipAt, n.found = bare, ipAt, found
}

func (n *changingNode) got() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.cmds, " | ")
}

func (n *changingNode) count(cmd string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, c := range n.cmds {
		if c == cmd {
			k++
		}
	}
	return k
}

func exitWith(ch ssh.Channel, code uint32) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
	ch.Close()
}

func newChangingNode(t *testing.T, keep int, bare, ipAt, found string) *changingNode {
	t.Helper()
	s, cfg := startKeepSSHD(t, keep)
	n := &changingNode{s: s, cfg: cfg, bare: bare, ipAt: ipAt, found: found}
	s.exec = func(cmd string, ch ssh.Channel) bool {
		n.mu.Lock()
		n.cmds = append(n.cmds, cmd)
		bare, ipAt, found, disc := n.bare, n.ipAt, n.found, n.disc
		n.mu.Unlock()
		run, sudo := strings.CutPrefix(cmd, "sudo -n ")
		prog, _, _ := strings.Cut(run, " ")
		switch {
		case cmd == discoverCommand && disc != nil:
			go disc(ch)
		case cmd == discoverCommand:
			go func() {
				_, _ = io.ReadAll(ch)
				_, _ = ch.Write([]byte(found))
				exitWith(ch, 0)
			}()
		case prog == ipAt && strings.HasSuffix(cmd, "-batch -"):
			go s.ip.serve(ch, strings.Contains(cmd, "-force "))
		case prog == "ip" && bare == "busybox":
			go func() {
				_, _ = ch.Stderr().Write([]byte("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n\nUsage: ip [OPTIONS] address|route|link|tunnel|neigh|rule [ARGS]\n"))
				exitWith(ch, 1)
			}()
		case sudo:
			go func() {
				_, _ = ch.Stderr().Write([]byte("sudo: " + prog + ": command not found\n"))
				exitWith(ch, 1)
			}()
		case bare == "zsh":
			go func() {
				_, _ = ch.Stderr().Write([]byte("zsh:1: command not found: " + prog + "\n"))
				exitWith(ch, 127)
			}()
		default:
			go func() {
				_, _ = ch.Stderr().Write([]byte("sh: 1: " + prog + ": not found\n"))
				exitWith(ch, 127)
			}()
		}
		return true
	}
	n.d = keptDialer(t, cfg)
	return n
}

const (
	bbFirstFound = "path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip iproute2 /usr/sbin/ip\nsbin iproute2\nend\n"
	bbOnlyFound  = "path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip busybox /usr/sbin/ip\nend\n"
	noIPFound    = "path /usr/local/bin:/usr/bin:/bin\nend\n"
)

const undoLine = "route add 100.64.9.0/24 via 198.18.0.2 proto 114\n"

// `routepush rollback` sends the undo batch as a new process's first ip
// command on the node (undoNode: Apply with -force, compared first with
// the tables the run left): with BusyBox's ip first on the PATH, or none
// (any shell, or sudo, saying so), Apply looks for iproute2's, as a read
// does, and the batch goes through it. Nothing else ran before it.
func TestApplyFirstFindsIproute2(t *testing.T) {
	for _, tc := range []struct {
		name, bare, found string
		become            bool
	}{
		{"busybox first", "busybox", bbFirstFound, false},
		{"no ip on the PATH", "missing", "path /usr/bin\nip iproute2 /usr/sbin/ip\nsbin iproute2\nend\n", false},
		{"zsh login shell, no ip", "zsh", "path /usr/bin\nip iproute2 /usr/sbin/ip\nsbin iproute2\nend\n", false},
		{"become, busybox first", "busybox", bbFirstFound, true},
		{"become, not on secure_path", "missing", "path /usr/bin\nip iproute2 /usr/sbin/ip\nsbin iproute2\nend\n", true},
	} {
		for _, compared := range []bool{false, true} {
			t.Run(tc.name, func(t *testing.T) {
				n := newChangingNode(t, 0, tc.bare, "/usr/sbin/ip", tc.found)
				ctx := context.Background()
				tg := n.s.target()
				tg.Become = tc.become
				var expect *[32]byte
				if compared {
					// The tables the run left, as another process read them.
					other := keptDialer(t, n.cfg)
					c, err := other.Dial(ctx, tg)
					if err != nil {
						t.Fatal(err)
					}
					table, err := c.ReadRoutes(ctx, v4)
					c.Close()
					if err != nil {
						t.Fatal(err)
					}
					expect = &table.Digest
					n.mu.Lock()
					n.cmds = nil
					n.mu.Unlock()
				}
				c, err := n.d.Dial(ctx, tg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				res, err := c.Apply(ctx, []byte(undoLine), true, v4, expect)
				if err != nil || res.BatchErr != nil || len(res.Table.Routes) != 1 {
					t.Fatalf("compared %v: err=%v batchErr=%v table=%+v\ncommands: %s", compared, err, res.BatchErr, res.Table, n.got())
				}
				want := "ip -force -4 -d -N -json -batch - | sh -s | /usr/sbin/ip -force -4 -d -N -json -batch -"
				if tc.become {
					want = "sudo -n ip -force -4 -d -N -json -batch - | sh -s | sudo -n /usr/sbin/ip -force -4 -d -N -json -batch -"
				}
				if got := n.got(); got != want {
					t.Errorf("compared %v: commands run:\n%s\nwant\n%s", compared, got, want)
				}
			})
		}
	}
}

// With no iproute2 anywhere, an Apply that is the first ip command is
// refused naming the node, as nothing sent (the undo batch never reached
// an ip), and the look is not repeated.
func TestApplyFirstRefusedWithoutIproute2(t *testing.T) {
	n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", bbOnlyFound)
	ctx := context.Background()
	c, err := n.d.Dial(ctx, n.s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Apply(ctx, []byte(undoLine), true, v4, nil)
	var notSent *host.NotSentError
	var nse *NodeSoftwareError
	if !errors.As(err, &notSent) || !errors.As(err, &nse) || !strings.Contains(err.Error(), "n1: ip on the PATH is BusyBox's") {
		t.Fatalf("apply: %v, want nothing sent, naming the node's BusyBox ip", err)
	}
	if got := n.got(); got != "ip -force -4 -d -N -json -batch - | sh -s" {
		t.Errorf("commands run: %s", got)
	}
}

// A look that found nothing usable is not the node's last word: a
// watcher's next round, once iproute2 is installed, looks again (once a
// round, and only for a node it still cannot serve) and serves the node.
func TestNothingUsableIsLookedForAgain(t *testing.T) {
	n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", bbOnlyFound)
	ctx := context.Background()
	read := func() error {
		c, err := n.d.Dial(ctx, n.s.target())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.ReadRoutes(ctx, v4)
		return err
	}
	if err := read(); err == nil {
		t.Fatal("round 1 should be refused")
	}
	if err := read(); err == nil {
		t.Fatal("round 2 should be refused")
	}
	if got := n.count(discoverCommand); got != 2 {
		t.Errorf("%d looks in two refused rounds, want one a round", got)
	}
	n.set("busybox", "/usr/sbin/ip", bbFirstFound) // iproute2 installed at /usr/sbin
	if err := read(); err != nil {
		t.Fatalf("round after iproute2 was installed: %v\ncommands: %s", err, n.got())
	}
	looks := n.count(discoverCommand)
	if err := read(); err != nil {
		t.Fatal(err)
	}
	if n.count(discoverCommand) != looks {
		t.Errorf("a round on a served node looked again: %s", n.got())
	}
}

// The ip found earlier by its path is gone (a watcher's node reinstalled):
// the first command by that path fails as a missing ip, the cached
// finding names that same path, so the node is looked at again, once,
// and the iproute2 ip it has now is used. With become sudo says so
// naming the path.
func TestStaleIPPathIsLookedForAgain(t *testing.T) {
	for _, become := range []bool{false, true} {
		n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", bbFirstFound)
		tg := n.s.target()
		tg.Become = become
		if _, err := ipRound(t, n.d, tg, ""); err != nil {
			t.Fatal(err)
		}
		if n.d.nodeIP("n1") != "/usr/sbin/ip" {
			t.Fatalf("not kept: %q", n.d.nodeIP("n1"))
		}
		n.set("busybox", "/opt/iproute2/bin/ip", "path /usr/local/sbin:/opt/iproute2/bin\nip busybox /usr/local/sbin/ip\nip iproute2 /opt/iproute2/bin/ip\nend\n")
		res, err := ipRound(t, n.d, tg, undoLine)
		if err != nil || res.BatchErr != nil {
			t.Fatalf("become %v: %v %v\ncommands: %s", become, err, res.BatchErr, n.got())
		}
		if n.d.nodeIP("n1") != "/opt/iproute2/bin/ip" || n.count(discoverCommand) != 2 {
			t.Errorf("become %v: ip %q after %d looks\ncommands: %s", become, n.d.nodeIP("n1"), n.count(discoverCommand), n.got())
		}
	}
}

// Discovery that never ends (a hostile node writing forever, no exit) is
// cut at its size bound, naming the node, well within the command
// timeout; nothing is kept of it.
func TestEndlessDiscoveryIsCut(t *testing.T) {
	n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", "")
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	n.disc = func(ch ssh.Channel) {
		go func() { _, _ = io.Copy(io.Discard, ch) }()
		line := []byte("path /usr/bin\n" + strings.Repeat("ip other /usr/bin/ip\n", 100))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := ch.Write(line); err != nil {
				return // routepush closed the session
			}
		}
	}
	ctx := context.Background()
	c, err := n.d.Dial(ctx, n.s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.timeout = 5 * time.Second
	t0 := time.Now()
	_, err = c.ReadRoutes(ctx, v4)
	var tooMuch *LimitError
	if !errors.As(err, &tooMuch) || !strings.Contains(err.Error(), "n1: discover ip and sftp-server: output: exceeds 32 KiB") {
		t.Fatalf("read: %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("cut after %v: the size bound, not the timeout, should end it", d)
	}
	if _, ok := n.d.discoveredOf("n1"); ok {
		t.Error("an endless discovery was kept")
	}
}

// A node that prints part of discovery then goes silent (no exit, no
// RST) is abandoned after the command timeout, and nothing is kept: the
// next connection looks again.
func TestSilentMidDiscovery(t *testing.T) {
	n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", bbFirstFound)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	n.disc = func(ch ssh.Channel) {
		_, _ = ch.Write([]byte("path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\n"))
		<-block
	}
	ctx := context.Background()
	c, err := n.d.Dial(ctx, n.s.target())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = c.ReadRoutes(ctx, v4)
	if err == nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("silent discovery: %v after %v", err, time.Since(t0))
	}
	c.Close()
	if _, ok := n.d.discoveredOf("n1"); ok {
		t.Error("a timed-out discovery was kept")
	}
	n.mu.Lock()
	n.disc = nil
	n.mu.Unlock()
	c, err = n.d.Dial(ctx, n.s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ReadRoutes(ctx, v4); err != nil {
		t.Errorf("after the node answered again: %v", err)
	}
}

// Ctrl-C during discovery returns at once (well before the command
// timeout would) and keeps nothing.
func TestCancelMidDiscovery(t *testing.T) {
	n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", bbFirstFound)
	started := make(chan struct{})
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	n.disc = func(ch ssh.Channel) { close(started); <-block }
	ctx, cancel := context.WithCancel(context.Background())
	c, err := n.d.Dial(ctx, n.s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.timeout = 10 * time.Second
	go func() { <-started; cancel() }()
	t0 := time.Now()
	_, err = c.ReadRoutes(ctx, v4)
	if err == nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("cancelled discovery: %v after %v", err, time.Since(t0))
	}
	if _, ok := n.d.discoveredOf("n1"); ok || n.d.nodeIP("n1") != "" {
		t.Error("a cancelled discovery left something kept")
	}
}

// Discovery and what is kept of it, on one Dialer, for two nodes and two
// connections to each at once (run with -race).
func TestConcurrentDiscovery(t *testing.T) {
	n := newChangingNode(t, 0, "busybox", "/usr/sbin/ip", bbFirstFound)
	// Eight handshakes at once under -race: more than the test
	// server's 300ms.
	cfg := n.cfg
	cfg.ConnectTimeout, cfg.CommandTimeout = 5*time.Second, 5*time.Second
	n.d = keptDialer(t, cfg)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tg := n.s.target()
			tg.Name = []string{"n1", "n2"}[i%2]
			c, err := n.d.Dial(context.Background(), tg)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if _, err := c.ReadRoutes(context.Background(), v4); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if n.d.nodeIP("n1") != "/usr/sbin/ip" || n.d.nodeIP("n2") != "/usr/sbin/ip" {
		t.Error("not kept")
	}
}

// A watcher (kept connections, ip kept waiting between rounds) on a
// BusyBox-first node: rounds after the first run only /usr/sbin/ip.
func TestKeptRoundsPastBusyBox(t *testing.T) {
	n := newChangingNode(t, 1, "busybox", "/usr/sbin/ip", bbFirstFound)
	tg := n.s.target()
	for i := 0; i < 3; i++ {
		if _, err := ipRound(t, n.d, tg, ""); err != nil {
			t.Fatalf("round %d: %v\n%s", i, err, n.got())
		}
	}
	if got := n.got(); strings.Count(got, "sh -s") != 1 || strings.Count(got, "| ip ") != 0 {
		t.Errorf("commands: %s", got)
	}
}

// --persist on a node whose /sbin/ip is BusyBox's: the unit written names
// the iproute2 ip discovery found (a unit forced to /sbin/ip would replay
// nothing at boot), and reads back as current.
func TestBootUnitNamesTheIproute2Found(t *testing.T) {
	s, _, d := rootDialer(t)
	var mu sync.Mutex
	var cmds []string
	s.exec = func(cmd string, ch ssh.Channel) bool {
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		if cmd != discoverCommand {
			return false
		}
		go func() {
			_, _ = io.ReadAll(ch)
			_, _ = ch.Write([]byte("path /usr/local/sbin:/usr/sbin\nip iproute2 /usr/local/sbin/ip\nsbin busybox\nend\n"))
			exitWith(ch, 0)
		}()
		return true
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	found, err := c.ReadPersisted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if found.UnitCurrent {
		t.Fatal("no unit yet, yet current")
	}
	if err := c.WritePersisted(ctx, []byte(undoLine), found); err != nil {
		t.Fatal(err)
	}
	var unit []byte
	if err := c.withFiles(ctx, "read the unit", func(fsys sftpFS) error {
		unit, err = c.readFile(fsys, unitPath, smallFileLimit, "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/local/sbin/ip -force -batch /etc/routepush/routes\n") {
		t.Errorf("unit:\n%s", unit)
	}
	again, err := c.ReadPersisted(ctx)
	if err != nil || !again.UnitCurrent {
		t.Errorf("read back: current %v, %v", again.UnitCurrent, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(strings.Join(cmds, "|"), discoverCommand); n != 1 {
		t.Errorf("%d looks on one connection, want 1", n)
	}
}

// sftpNode is a become node whose sftp-server (the one path sudo runs it
// at, while sudoers allows it) and what discovery prints change between
// rounds; any other command gets sudo's refusal (refusal).
type sftpNode struct {
	mu      sync.Mutex
	at      string // the sftp-server sudo runs; "" none
	found   string // discovery's sftp and subsystem lines
	refusal string
	cmds    []string
}

func (n *sftpNode) set(at, found string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.at, n.found = at, found
}

func (n *sftpNode) got() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.cmds, " | ")
}

func newSFTPNode(t *testing.T, at, found, refusal string) (*sftpNode, func() error) {
	t.Helper()
	s, cfg := startKeepSSHD(t, 0)
	n := &sftpNode{at: at, found: found, refusal: refusal}
	s.exec = func(cmd string, ch ssh.Channel) bool {
		n.mu.Lock()
		n.cmds = append(n.cmds, cmd)
		at, found := n.at, n.found
		n.mu.Unlock()
		switch {
		case at != "" && cmd == "sudo -n "+at:
			go func() { _ = sftp.NewRequestServer(ch, sftp.InMemHandler()).Serve(); ch.Close() }()
		case cmd == discoverCommand:
			go func() {
				_, _ = io.ReadAll(ch)
				_, _ = ch.Write([]byte("path /usr/bin\nip iproute2 /usr/bin/ip\nsbin iproute2\n" + found + "end\n"))
				exitWith(ch, 0)
			}()
		default:
			go func() {
				msg := n.refusal
				if msg == "" {
					msg = "sudo: " + strings.TrimPrefix(cmd, "sudo -n ") + ": command not found"
				}
				_, _ = ch.Stderr().Write([]byte(msg + "\n"))
				exitWith(ch, 1)
			}()
		}
		return true
	}
	d := keptDialer(t, cfg)
	tg := s.target()
	tg.Become = true
	return n, func() error {
		c, err := d.Dial(context.Background(), tg)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.withFiles(context.Background(), "stat /", func(fsys sftpFS) error { _, err := fsys.Lstat("/"); return err })
	}
}

// An sftp-server found earlier and kept for the node's later connections
// no longer works (the node reinstalled: moved, or sudoers now names
// another): the node is looked at again, once, and served by the one it
// has now.
func TestStaleSFTPServerIsLookedForAgain(t *testing.T) {
	for _, tc := range []struct{ name, refusal, later string }{
		{"sudo wants a password for it", "sudo: a password is required", defaultSFTPServer},
		{"sudo does not find it", "", "/usr/lib/ssh/sftp-server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, stat := newSFTPNode(t, "/usr/libexec/openssh/sftp-server", "sftp /usr/libexec/openssh/sftp-server\n", tc.refusal)
			if err := stat(); err != nil {
				t.Fatal(err)
			}
			n.set(tc.later, "sftp "+tc.later+"\n")
			if err := stat(); err != nil {
				t.Errorf("after the node's sftp-server moved: %v\ncommands: %s", err, n.got())
			}
		})
	}
}

// An sftp-server discovery chose is kept for the node only once a session
// opened with it: sudoers broken for a moment (a password asked for every
// command) fails the default and the one sshd_config names alike; once
// fixed, the next connection runs Debian's again, and works.
func TestSFTPServerKeptOnlyOnceItWorked(t *testing.T) {
	n, stat := newSFTPNode(t, "", "sftp /usr/lib/openssh/sftp-server\nsubsystem /opt/openssh/sftp-server\n", "sudo: a password is required")
	if err := stat(); err == nil {
		t.Fatal("sudoers broken: want an error")
	}
	n.set(defaultSFTPServer, "sftp /usr/lib/openssh/sftp-server\nsubsystem /opt/openssh/sftp-server\n")
	if err := stat(); err != nil {
		t.Errorf("sudoers fixed for Debian's sftp-server, the node still fails: %v\ncommands: %s", err, n.got())
	}
}

// sftp_server (inventory, --sftp-server, config, environment) that names
// another program than an sftp-server is refused by Dial, naming the
// node, before anything runs on it: routepush would run it as root.
func TestDialRefusesAnotherProgramAsSFTPServer(t *testing.T) {
	s, cfg := startKeepSSHD(t, 0)
	var mu sync.Mutex
	var cmds []string
	s.exec = func(cmd string, ch ssh.Channel) bool {
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		go exitWith(ch, 0)
		return true
	}
	d := keptDialer(t, cfg)
	for _, p := range []string{"/sbin/reboot", "/bin/sh", "/tmp/sftp-server-x"} {
		tg := s.target()
		tg.Become, tg.SFTPServer = true, p
		c, err := d.Dial(context.Background(), tg)
		if err == nil {
			c.Close()
		}
		if err == nil || !strings.HasPrefix(err.Error(), "n1: sftp_server") || !strings.Contains(err.Error(), "not sftp-server") {
			t.Errorf("Dial with sftp_server %s: %v", p, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(cmds) > 0 || s.conns.Load() != 0 {
		t.Errorf("the node was reached: %d logins, commands %q", s.conns.Load(), cmds)
	}
}

// A dual-stack node's rollback goes through one shell script (apply
// and reads by the same ip): with a missing or BusyBox ip first, the
// script's failure is told as an ip that never read the batch, whether
// it failed at the reads compared first (expect) or at the batch, and the
// script runs again with iproute2's ip by its path. A shell that finds no
// ip exits 127 for the last one it tried: that status reaches ipMissing.
func TestScriptedApplyFirstFindsIproute2(t *testing.T) {
	dual := []route.Family{route.IPv4, route.IPv6}
	tables := "[]\n" + endOfTable + "\n[]\n" + endOfTable + "\n"
	for _, bare := range []string{"busybox", "missing"} {
		s, cfg := startKeepSSHD(t, 0)
		var mu sync.Mutex
		var cmds []string
		s.exec = func(cmd string, ch ssh.Channel) bool {
			mu.Lock()
			cmds = append(cmds, cmd)
			mu.Unlock()
			switch {
			case cmd == discoverCommand:
				go func() {
					_, _ = io.ReadAll(ch)
					_, _ = ch.Write([]byte(bbFirstFound))
					exitWith(ch, 0)
				}()
			case strings.HasPrefix(cmd, "/usr/sbin/ip "):
				// iproute2's, as the script prints through it.
				go func() {
					if strings.Contains(cmd, checked) {
						_, _ = ch.Write([]byte(tables + checked + "\n"))
					}
					_, _ = io.ReadAll(ch)
					_, _ = ch.Write([]byte(batchOK + "\n" + readNext + "\n" + tables))
					exitWith(ch, 0)
				}()
			case bare == "busybox":
				go func() {
					if !strings.Contains(cmd, checked) {
						_, _ = ch.Write([]byte(readNext + "\n"))
					}
					_, _ = ch.Stderr().Write([]byte("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n\nUsage: ip [OPTIONS] address|route|link|tunnel|neigh|rule [ARGS]\n"))
					exitWith(ch, 1)
				}()
			default:
				go func() {
					if !strings.Contains(cmd, checked) {
						_, _ = ch.Write([]byte(readNext + "\n"))
					}
					_, _ = ch.Stderr().Write([]byte("sh: 1: ip: not found\n"))
					exitWith(ch, 127)
				}()
			}
			return true
		}
		var expect *[32]byte
		for _, compared := range []bool{false, true} {
			d := keptDialer(t, cfg)
			c, err := d.Dial(context.Background(), s.target())
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Apply(context.Background(), []byte(undoLine), true, dual, expect)
			c.Close()
			if err != nil || res.BatchErr != nil {
				t.Fatalf("%s, compared %v: %v %v\ncommands: %q", bare, compared, err, res.BatchErr, cmds)
			}
			expect = &res.Table.Digest // the tables as the batch left them
		}
		mu.Lock()
		if len(cmds) != 6 || !strings.HasPrefix(cmds[0], "ip -force -batch -") || cmds[1] != discoverCommand || !strings.HasPrefix(cmds[2], "/usr/sbin/ip -force -batch -") ||
			!strings.HasPrefix(cmds[3], "ip -d -N -json -4") || !strings.HasPrefix(cmds[5], "/usr/sbin/ip -d -N -json -4") {
			t.Errorf("%s: commands run: %q", bare, cmds)
		}
		mu.Unlock()
	}
}
