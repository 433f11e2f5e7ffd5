package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// keepSSHD is an in-process SSH server that logs in one key and counts
// what routepush costs it: connections and SFTP sessions. A command
// "true" exits 0, "hang" never ends, "ip ... -batch -" is a fakeIP,
// lockProbeCommand finds no lock; SFTP serves an in-memory filesystem.
// silent stops it answering global requests (keepalives).
type keepSSHD struct {
	port   int
	conns  atomic.Int32 // logins
	sftps  atomic.Int32 // SFTP sessions started
	closed atomic.Int32 // connections ended
	silent atomic.Bool
	ip     fakeIP // what "ip ... -batch -" runs
	// files, when set before the first login, serves SFTP instead of a
	// plain in-memory filesystem.
	files func() sftp.Handlers
	// exec, when set before the first login, runs a command first: it
	// returns false to leave it to the defaults below.
	exec func(cmd string, ch ssh.Channel) bool
	// subsystem, when set before the first login, answers the sftp
	// subsystem request first: it returns false to leave it to SFTP.
	subsystem  func(req *ssh.Request, ch ssh.Channel) bool
	subsysReqs atomic.Int32 // sftp subsystem requests, however answered
	probes     atomic.Int32 // lockProbeCommand runs
	mu         sync.Mutex
	serverCs   []*ssh.ServerConn
}

// lockLookOnly is a read's command line before its ip, without preflight.
const lockLookOnly = "sh -c '" + prefixEnd + `exec "$@"' sh `

// startKeepSSHD starts the server and returns a Config that reaches it,
// keeping keep connections.
func startKeepSSHD(t *testing.T, keep int) (*keepSSHD, Config) {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	clientPub, clientKey, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if !bytes.Equal(k.Marshal(), allowed.Marshal()) {
			return nil, errors.New("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &keepSSHD{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveConn(nc, cfg)
		}
	}()
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(clientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(dir, "id_ed25519")
	known := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{"[127.0.0.1]:" + strconv.Itoa(s.port)}, hostSigner.PublicKey())
	if os.WriteFile(identity, pem.EncodeToMemory(block), 0o600) != nil || os.WriteFile(known, []byte(line+"\n"), 0o600) != nil {
		t.Fatal("writing the keys")
	}
	return s, Config{KnownHostsFile: known, IdentityFiles: []string{identity}, User: "root",
		ConnectTimeout: 300 * time.Millisecond, CommandTimeout: 300 * time.Millisecond, KeepConnections: keep}
}

func (s *keepSSHD) serveConn(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	s.conns.Add(1)
	defer s.closed.Add(1)
	s.mu.Lock()
	s.serverCs = append(s.serverCs, sc)
	s.mu.Unlock()
	go func() {
		for r := range reqs {
			if !s.silent.Load() && r.WantReply {
				_ = r.Reply(false, nil) // as OpenSSH answers keepalive@openssh.com
			}
		}
	}()
	for nch := range chans {
		ch, chReqs, err := nch.Accept()
		if err != nil {
			return
		}
		go func() {
			for req := range chReqs {
				switch req.Type {
				case "exec":
					var m struct{ Command string }
					_ = ssh.Unmarshal(req.Payload, &m)
					_ = req.Reply(true, nil)
					if rest, ok := strings.CutPrefix(m.Command, lockLookOnly); ok {
						// A read's prefix without preflight: the
						// server says it has a lock, or could not
						// look, and runs the ip that follows.
						_, _ = io.WriteString(ch, "\n"+lockedEnd+"\n")
						m.Command = rest
					}
					switch {
					case s.exec != nil && s.exec(m.Command, ch):
					case m.Command == lockProbeCommand:
						s.probes.Add(1)
						_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
						ch.Close()
					case m.Command == "true":
						_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
						ch.Close()
					case strings.HasPrefix(m.Command, "ip ") && strings.HasSuffix(m.Command, "-batch -"):
						go s.ip.serve(ch, strings.Contains(m.Command, "-force "))
					}
				case "subsystem":
					s.subsysReqs.Add(1)
					if s.subsystem != nil && s.subsystem(req, ch) {
						continue
					}
					_ = req.Reply(true, nil)
					s.sftps.Add(1)
					s.mu.Lock()
					h := sftp.InMemHandler()
					if s.files != nil {
						h = s.files()
					}
					s.mu.Unlock()
					go func() {
						_ = sftp.NewRequestServer(ch, h).Serve()
						ch.Close()
					}()
				default:
					_ = req.Reply(false, nil)
				}
			}
		}()
	}
}

// reboot ends every connection from the server's side, as a node that
// rebooted has.
func (s *keepSSHD) reboot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.serverCs {
		c.Close()
	}
	s.serverCs = nil
}

func (s *keepSSHD) target() Target {
	return Target{Name: "n1", Address: "127.0.0.1", Port: s.port, User: "root"}
}

// round is what a round does on a node's Client: an SFTP operation and a
// command; it returns the Client, still open.
func round(t *testing.T, d *Dialer, tg Target) *Client {
	t.Helper()
	c, err := d.Dial(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.withFiles(context.Background(), "stat /", func(fsys sftpFS) error {
		_, err := fsys.Lstat("/")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.run(context.Background(), "true", "true", nil, 1<<10, ""); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCount waits for a counter to reach want.
func waitCount(t *testing.T, what string, v *atomic.Int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); v.Load() != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, v.Load(), want)
		}
	}
}

// Kept, a node's connection and SFTP session serve its next rounds: one
// login and one sftp-server for three rounds, each round's Client new.
// Without KeepConnections (one-shot runs) every Dial logs in and Close
// closes, as before.
func TestKeptConnectionServesNextRounds(t *testing.T) {
	for _, keep := range []int{0, 10} {
		s, cfg := startKeepSSHD(t, keep)
		d, err := NewDialer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var clients []*Client
		for range 3 {
			c := round(t, d, s.target())
			clients = append(clients, c)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		want, ended := int32(3), int32(3)
		if keep > 0 {
			want, ended = 1, 0
			if clients[0] == clients[1] || clients[1].conn != clients[0].conn {
				t.Errorf("keep %d: the second round got the same Client, or another connection", keep)
			}
		}
		waitCount(t, "logins", &s.conns, want)
		waitCount(t, "sftp sessions", &s.sftps, want)
		waitCount(t, "connections ended", &s.closed, ended)
		d.Close()
		waitCount(t, "connections ended after Dialer.Close", &s.closed, want)
	}
}

// A kept connection that ended at rest (the node rebooted) is not reused:
// the next round logs in again and works.
func TestKeptConnectionEndedIsDialedAnew(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d, _ := NewDialer(cfg)
	defer d.Close()
	round(t, d, s.target()).Close()
	s.reboot()
	waitCount(t, "connections ended", &s.closed, 1)
	c := round(t, d, s.target())
	c.Close()
	waitCount(t, "logins", &s.conns, 2)
}

// A Client that gave up on a command (the command timeout) leaves a
// connection that is not kept: Close closes it and the next round logs in
// again.
func TestAbandonedCallDropsKeptConnection(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d, _ := NewDialer(cfg)
	defer d.Close()
	c := round(t, d, s.target())
	_, _, err := c.run(context.Background(), "hang", "hang", nil, 1<<10, "")
	if !abandoned(err) {
		t.Fatalf("a command that never ends: %v, want it abandoned at the command timeout", err)
	}
	c.Close()
	waitCount(t, "connections ended", &s.closed, 1)
	round(t, d, s.target()).Close()
	waitCount(t, "logins", &s.conns, 2)
}

// A kept connection that stopped answering (a middlebox forgot it, the
// node itself is fine) fails the short check before reuse: it is closed
// and the node dialed anew, not reported unreachable.
func TestSilentKeptConnectionIsDialedAnew(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d, _ := NewDialer(cfg)
	defer d.Close()
	round(t, d, s.target()).Close()
	s.silent.Store(true)
	start := time.Now()
	c, err := d.Dial(context.Background(), s.target())
	if err != nil {
		t.Fatalf("a node whose kept connection went silent: %v, want a new connection", err)
	}
	c.Close()
	if took := time.Since(start); took > cfg.ConnectTimeout+2*time.Second {
		t.Errorf("the check and the new dial took %v", took)
	}
	waitCount(t, "logins", &s.conns, 2)
	waitCount(t, "connections ended", &s.closed, 1)
}

// A node reached otherwise (here another user) is dialed anew, and
// Forget closes a node's kept connection at once.
func TestKeptConnectionTargetChangeAndForget(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d, _ := NewDialer(cfg)
	defer d.Close()
	round(t, d, s.target()).Close()
	other := s.target()
	other.Become = true // a Target field that changes how the node is used
	c, err := d.Dial(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitCount(t, "logins", &s.conns, 2)
	waitCount(t, "connections ended", &s.closed, 1)
	d.Forget("n1")
	waitCount(t, "connections ended after Forget", &s.closed, 2)
}

// A connection kept longer than KeepMaxAge is not reused, however often it
// is: the next round logs in again (a revoked key takes effect).
func TestKeptConnectionMaxAge(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	cfg.KeepMaxAge = 200 * time.Millisecond
	d, _ := NewDialer(cfg)
	defer d.Close()
	round(t, d, s.target()).Close()
	round(t, d, s.target()).Close() // young: reused
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("%d logins for two rounds within the max age, want 1", n)
	}
	time.Sleep(300 * time.Millisecond)
	round(t, d, s.target()).Close()
	waitCount(t, "logins", &s.conns, 2)
	waitCount(t, "connections ended", &s.closed, 1)
}
