package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// fakeSSHD is an in-process SSH server for one connection. Like an
// OpenSSH sshd with ClientAliveInterval set, it sends keepalive@openssh.com
// requests on a channel that is open (OpenSSH picks the first open one,
// here the SFTP session) before it serves SFTP on it. replies counts the
// answers it got.
type fakeSSHD struct {
	probes  int
	replies atomic.Int32
}

// dial starts the server on a loopback listener and returns a Client
// connected to it.
func (s *fakeSSHD) dial(t *testing.T, timeout time.Duration) *Client {
	t.Helper()
	addr := serveOneConn(t, "", func(ch ssh.Channel, chReqs <-chan *ssh.Request) {
		for req := range chReqs {
			if req.Type != "subsystem" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			// sshd does not wait for an answer before its next
			// probe; x/crypto/ssh's SendRequest does when it wants
			// one: the probes but the last want none here.
			for range s.probes - 1 {
				_, _ = ch.SendRequest("keepalive@openssh.com", false, nil)
			}
			go func() {
				if ok, err := ch.SendRequest("keepalive@openssh.com", true, nil); !ok && err == nil {
					s.replies.Add(1) // a failure is the usual answer
				}
			}()
			time.Sleep(50 * time.Millisecond) // the probes go first
			go func() {
				srv, err := sftp.NewServer(ch)
				if err == nil {
					_ = srv.Serve()
				}
				ch.Close()
			}()
		}
	})
	return &Client{name: "node-7", user: "root", conn: dialSSH(t, addr, "node-7"), timeout: timeout}
}

// serveOneConn is an in-process SSH server on a loopback listener for
// one connection: no client authentication, a host key of its own, version
// as its identification string (x/crypto/ssh's when empty). Each session
// channel goes to session, in a goroutine of its own, with its requests.
// It returns the listener's address.
func serveOneConn(t *testing.T, version string, session func(ch ssh.Channel, reqs <-chan *ssh.Request)) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: version}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for newCh := range chans {
			ch, chReqs, err := newCh.Accept()
			if err != nil {
				return
			}
			go session(ch, chReqs)
		}
	}()
	return ln.Addr().String()
}

// dialSSH connects to the SSH server at addr as root, the node name,
// whatever its host key; the connection is closed when the test ends.
func dialSSH(t *testing.T, addr, node string) ssh.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, node, &ssh.ClientConfig{User: "root", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	go serve(chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c
}

// A healthy node whose sshd probes the SFTP session (ClientAliveInterval
// shorter than routepush's keepalive, and a session held open from the
// lock to the settle): its probes are answered, and more of them than
// x/crypto/ssh queues per channel (16) do not stall the connection, which
// keepalives would then take for a silent node.
func TestSFTPChannelRequestsAnswered(t *testing.T) {
	s := &fakeSSHD{probes: 40}
	c := s.dial(t, 3*time.Second)
	start := time.Now()
	err := c.withFiles(context.Background(), "stat /", func(fsys sftpFS) error {
		_, err := fsys.Lstat("/")
		return err
	})
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.replies.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.replies.Load() == 0 {
		t.Errorf("a probe wanting an answer got none: sshd counts it against ClientAliveCountMax")
	}
	c.Close()
}
