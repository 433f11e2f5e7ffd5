package remote

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"golang.org/x/crypto/ssh"
)

// sftpless is an in-process SSH server that answers the sftp subsystem as
// a node without an SFTP server does: Dropbear (and sshd with a Subsystem
// line naming a missing program) accepts the request, its shell writes
// stderr and exits; sshd without a Subsystem line refuses it.
type sftpless struct {
	version string // the server's identification string
	refuse  bool   // refuse the subsystem request
	sudo    bool   // the Client runs sftp-server through sudo -n (become)
	stderr  string
	status  uint32
	// opened counts the session channels opened: a node found without
	// SFTP is not asked again on the same connection.
	opened atomic.Int32
	// probeStatus is the exit status of lockProbeCommand (3: the lock
	// exists); probed counts its runs.
	probeStatus uint32
	probed      atomic.Int32
	// statusAfter delays the exit status after the end of output, as a
	// loaded node's shell may: a client that closes the channel at the
	// end of output never gets it.
	statusAfter time.Duration
}

func (s *sftpless) dial(t *testing.T) *Client {
	t.Helper()
	addr := serveOneConn(t, s.version, func(ch ssh.Channel, chReqs <-chan *ssh.Request) {
		s.opened.Add(1)
		for req := range chReqs {
			if (req.Type != "subsystem" && req.Type != "exec") || (s.refuse && req.Type == "subsystem") {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			var cmd struct{ Command string }
			if req.Type == "exec" && ssh.Unmarshal(req.Payload, &cmd) == nil && cmd.Command == lockProbeCommand {
				s.probed.Add(1)
				_ = ch.CloseWrite()
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(&struct{ Status uint32 }{s.probeStatus}))
				_ = ch.Close()
				continue
			}
			// As Dropbear's child: stderr, end of output, then
			// the exit status and the close.
			_, _ = ch.Stderr().Write([]byte(s.stderr))
			_ = ch.CloseWrite()
			time.Sleep(s.statusAfter)
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(&struct{ Status uint32 }{s.status}))
			_ = ch.Close()
		}
	})
	return &Client{name: "node-4", user: "root", conn: dialSSH(t, addr, "node-4"), timeout: 5 * time.Second, sudo: s.sudo}
}

// A node without an SFTP server is told apart from an SFTP server that
// failed: the first is a *host.NoSFTPError naming what to install, found
// within milliseconds and once per connection; the second stays an error
// that fails the node.
func TestNoSFTPServerClassified(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		server *sftpless
		want   []string // in the NoSFTPError's text; nil: not a NoSFTPError
	}{
		{"dropbear without /usr/lib/sftp-server", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "bash: line 1: /usr/lib/sftp-server: No such file or directory\n", status: 127},
			[]string{"node-4: no SFTP server (Dropbear runs /usr/lib/sftp-server: \"bash: line 1: /usr/lib/sftp-server: No such file or directory\", exit status 127)", "install openssh-sftp-server and link /usr/lib/sftp-server to /usr/lib/openssh/sftp-server"}},
		{"dropbear with it hidden", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "bash: line 1: /usr/lib/sftp-server: Permission denied\n", status: 126},
			[]string{`Permission denied", exit status 126`, "ln -s openssh/sftp-server /usr/lib/sftp-server"}},
		{"sshd naming a missing program", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", stderr: "sh: 1: /usr/lib/openssh/sftp-server: not found\n", status: 127},
			[]string{`: not found", exit status 127`, "install openssh-sftp-server, or correct the sftp Subsystem line"}},
		{"sshd without a Subsystem line", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", refuse: true},
			[]string{"the SSH server refused the sftp subsystem", "add `Subsystem sftp /usr/lib/openssh/sftp-server` to sshd_config"}},
		{"an escape sequence in the shell's message", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "\x1b[2J/usr/lib/sftp-server: not found\n", status: 127},
			[]string{`"\x1b[2J/usr/lib/sftp-server: not found", exit status 127`}},
		{"BusyBox sh", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "sh: /usr/lib/sftp-server: not found\n", status: 127},
			[]string{`"sh: /usr/lib/sftp-server: not found", exit status 127`}},
		{"zsh", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "zsh:1: no such file or directory: /usr/lib/sftp-server\n", status: 127},
			[]string{`"zsh:1: no such file or directory: /usr/lib/sftp-server", exit status 127`}},
		{"become, root's state directory unseen", &sftpless{version: "SSH-2.0-dropbear_2022.83", sudo: true, stderr: "sudo: /usr/lib/openssh/sftp-server: command not found\n", status: 1, probeStatus: probeCannotSee},
			[]string{"no SFTP server (sudo: /usr/lib/openssh/sftp-server not found)"}},
		// The exit status alone is not enough: each of these is an SFTP
		// server that is there, failing, and may hold another run's lock.
		{"a busy binary (126 without Permission denied)", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "bash: line 1: /usr/lib/sftp-server: Text file busy\n", status: 126}, nil},
		{"127 saying nothing", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", status: 127}, nil},
		{"127 from the server itself", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", stderr: "sftp-server: fatal: out of memory\n", status: 127}, nil},
		{"become, without openssh-sftp-server", &sftpless{version: "SSH-2.0-dropbear_2022.83", sudo: true, stderr: "sudo: /usr/lib/openssh/sftp-server: command not found\n", status: 1},
			[]string{"no SFTP server (sudo: /usr/lib/openssh/sftp-server not found)", "install openssh-sftp-server, or name its path with sftp_server or --sftp-server (with become, routepush runs /usr/lib/openssh/sftp-server through sudo)"}},
		{"dropbear without /usr/lib/sftp-server, its exit status late", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "bash: line 1: /usr/lib/sftp-server: No such file or directory\n", status: 127, statusAfter: 100 * time.Millisecond},
			[]string{"no SFTP server (Dropbear runs /usr/lib/sftp-server:"}},
		// No sudo at all: the shell's "command not found" names sudo, and an
		// sftp-server would not mend it.
		{"become, without sudo", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", sudo: true, stderr: "bash: line 1: sudo: command not found\n", status: 127}, nil},
		{"become, sudo wanting a password", &sftpless{version: "SSH-2.0-dropbear_2022.83", sudo: true, stderr: "sudo: a password is required\n", status: 1}, nil},
		{"an SFTP server that failed", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "sftp-server: out of memory\n", status: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.server
			c := s.dial(t)
			start := time.Now()
			_, err := c.files(context.Background())
			took := time.Since(start)
			// With become, the node was also searched for another
			// sftp-server: one session more, once.
			sessions := s.opened.Load()
			var none *host.NoSFTPError
			if tc.want == nil {
				if err == nil || errors.As(err, &none) {
					t.Fatalf("got %v, want an error that is no *host.NoSFTPError", err)
				}
				if !strings.HasPrefix(err.Error(), "node-4: ") {
					t.Errorf("%v does not name the node", err)
				}
				return
			}
			if !errors.As(err, &none) {
				t.Fatalf("got %v (%T), want a *host.NoSFTPError", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q\ndoes not say %q", err, w)
				}
			}
			if took > time.Second {
				t.Errorf("found after %v: the end of the session says it at once", took)
			}
			if c.tainted.Load() {
				t.Errorf("the connection is tainted: it is sound, and worth keeping")
			}
			// Every file operation fails with it, without asking again.
			err2 := c.withFiles(context.Background(), "lock", func(sftpFS) error { return nil })
			if !errors.As(err2, &none) || s.opened.Load() != sessions {
				t.Errorf("second operation: %v after %d sessions, want the same NoSFTPError and no new session", err2, s.opened.Load())
			}
		})
	}
}

// A node found without SFTP is asked, once per connection, over an exec
// session with a fixed command, whether it has routepush's lock: one may
// be there from an SFTP server the node had then (a run holding it while
// the server went, or one that died). With it, the node is refused
// naming the lock and what to do, not converged without one; and the
// connection does not remember it as merely without SFTP.
func TestNoSFTPNodeWithLockRefused(t *testing.T) {
	t.Parallel()
	dropbear := "bash: line 1: /usr/lib/sftp-server: No such file or directory\n"
	s := &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: dropbear, status: 127, probeStatus: probeLocked}
	c := s.dial(t)
	_, err := c.files(context.Background())
	if none, ok := errors.AsType[*host.NoSFTPError](err); ok {
		t.Fatalf("a node without SFTP holding routepush's lock goes on as one without SFTP: %v", none)
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"node-4: no SFTP server", "/var/lib/routepush/lock exists", "routepush rollback", "remove /var/lib/routepush/lock"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q\ndoes not say %q", err, w)
		}
	}
	if !strings.Contains(err.Error(), "another routepush run holds the node") {
		t.Errorf("%q\ndoes not say another run may hold the lock", err)
	}
	_, err = c.files(context.Background())
	if _, ok := errors.AsType[*host.NoSFTPError](err); ok || s.probed.Load() != 2 {
		t.Errorf("second call: %v after %d lock checks, want the lock found again", err, s.probed.Load())
	}

	// The lock is this run's, taken through an SFTP session since closed
	// (the node waited for others without it): the error says so.
	s = &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: dropbear, status: 127, probeStatus: probeLocked}
	c = s.dial(t)
	c.lockedDirs = true
	if _, err := c.files(context.Background()); err == nil || !strings.Contains(err.Error(), "this run took it through an SFTP server that no longer starts") || strings.Contains(err.Error(), "another routepush run") {
		t.Errorf("this run's own lock, SFTP gone: %v", err)
	}

	// Without a lock, the check runs once per connection.
	s = &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: dropbear, status: 127}
	c = s.dial(t)
	for range 2 {
		if _, err := c.files(context.Background()); !errors.As(err, new(*host.NoSFTPError)) {
			t.Fatalf("got %v, want a *host.NoSFTPError", err)
		}
	}
	if n := s.probed.Load(); n != 1 {
		t.Errorf("%d lock checks on one connection, want 1", n)
	}
}

// What the node wrote on stderr goes into a note every run prints: at
// most about 200 bytes of it, quoted and escaped, so 4 KiB of a hostile
// node's text neither floods the report nor passes for routepush's own
// words (an unquoted "): ..." could forge the rest of the message).
func TestNoSFTPStderrCutAndQuoted(t *testing.T) {
	t.Parallel()
	flood := "sh: 1: /usr/lib/sftp-server: not found\n\x1b[31m\"): forged; " + strings.Repeat("A", 4000)
	none := noSFTP("node-4", "SSH-2.0-OpenSSH_9.2p1", false, false, defaultSFTPServer, sftpEnd{status: 127, stderr: flood})
	if none == nil {
		t.Fatal("not a node without SFTP")
	}
	if len(none.Why) > 300 {
		t.Errorf("Why is %d bytes, want the node's text cut to about 200: %q", len(none.Why), none.Why)
	}
	want := `"sh: 1: /usr/lib/sftp-server: not found \x1b[31m\"): forged; AAA`
	if !strings.HasPrefix(none.Why, want) || !strings.Contains(none.Why, `A...", exit status 127`) {
		t.Errorf("Why = %q\nwant it to start %q and end with the cut marked, inside the quotes", none.Why, want)
	}
}
