package remote

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/routepush/routepush/host"
	"golang.org/x/crypto/ssh"
)

// Regression tests from the chaos review of nodes without SFTP (review
// branch review-chaos3): kept connections, become's sftp-server, and the
// lock a node found without SFTP may still have.

// dropbearWithoutSFTP answers the sftp subsystem as Dropbear without
// /usr/lib/sftp-server does (its shell says "not found", exit 127) while
// missing is set; otherwise it leaves the request to SFTP.
func dropbearWithoutSFTP(missing *atomic.Bool) func(*ssh.Request, ssh.Channel) bool {
	return func(req *ssh.Request, ch ssh.Channel) bool {
		if !missing.Load() {
			return false
		}
		_ = req.Reply(true, nil)
		_, _ = ch.Stderr().Write([]byte("sh: 1: /usr/lib/sftp-server: not found\n"))
		_ = ch.CloseWrite()
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(&struct{ Status uint32 }{127}))
		_ = ch.Close()
		return true
	}
}

// statOverFiles is a file operation, as a lock is: one SFTP call.
func statOverFiles(c *Client) error {
	return c.withFiles(context.Background(), "lock", func(fsys sftpFS) error {
		_, err := fsys.Lstat("/")
		return err
	})
}

// A kept connection passes on what it found: a node without SFTP is
// asked for the subsystem, and for its lock, once for all its rounds on
// that connection, not once a round (each round's Client is new).
func TestKeptConnectionRemembersNoSFTP(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	var missing atomic.Bool
	missing.Store(true)
	s.subsystem = dropbearWithoutSFTP(&missing)
	d := keptDialer(t, cfg)
	for i := range 3 {
		c, err := d.Dial(context.Background(), s.target())
		if err != nil {
			t.Fatal(err)
		}
		if err := statOverFiles(c); !errors.As(err, new(*host.NoSFTPError)) {
			t.Fatalf("round %d: %v, want a *host.NoSFTPError", i, err)
		}
		c.Close()
	}
	if n, p, l := s.subsysReqs.Load(), s.probes.Load(), s.conns.Load(); n != 1 || p != 1 || l != 1 {
		t.Errorf("3 rounds: %d subsystem requests, %d lock checks, %d logins; want 1, 1 and 1", n, p, l)
	}
}

// With become, Debian's sftp-server missing and RHEL's found by the
// node's own look, a kept connection whose sftp-server ended at rest
// (killed, out of memory) opens RHEL's again at the next round: the node
// is not taken for one without SFTP, which would drop its lock.
func TestBecomeKeptSFTPServerEndedAtRestReopened(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	var mu sync.Mutex
	var cmds []string
	var sessions []ssh.Channel
	s.exec = func(cmd string, ch ssh.Channel) bool {
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		switch cmd {
		case "sudo -n /usr/libexec/openssh/sftp-server":
			mu.Lock()
			sessions = append(sessions, ch)
			mu.Unlock()
			go func() {
				_ = sftp.NewRequestServer(ch, sftp.InMemHandler()).Serve()
				ch.Close()
			}()
		case discoverCommand:
			go func() {
				_, _ = io.ReadAll(ch)
				_, _ = ch.Write([]byte("path /usr/local/bin:/usr/bin\nip iproute2 /usr/bin/ip\nsbin iproute2\nsftp /usr/libexec/openssh/sftp-server\nend\n"))
				exitWith(ch, 0)
			}()
		case lockProbeCommand:
			return false
		default:
			go answerSudoNotFound(ch, cmd)
		}
		return true
	}
	d := keptDialer(t, cfg)
	tg := s.target()
	tg.Become = true
	for i := range 3 {
		c, err := d.Dial(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		if err := statOverFiles(c); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		c.Close()
		// sftp-server ends at rest: its channel closes.
		mu.Lock()
		for _, ch := range sessions {
			ch.Close()
		}
		sessions = nil
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	if s.conns.Load() != 1 {
		t.Errorf("%d logins, want 1 (kept)", s.conns.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(strings.Join(cmds, "|"), "sudo -n /usr/libexec/openssh/sftp-server"); n != 3 {
		t.Errorf("RHEL's sftp-server started %d times for 3 rounds, want 3\ncommands: %s", n, strings.Join(cmds, " | "))
	}
}

// With become, a node found with no sftp-server anywhere, on which the
// operator then installs one (at RHEL's path, as the note says), is found
// with it on the next connection: the first look's "none" is not kept
// for the Dialer's life.
func TestBecomeSFTPServerInstalledLaterIsFound(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	var installed atomic.Bool
	s.exec = func(cmd string, ch ssh.Channel) bool {
		switch {
		case cmd == "sudo -n /usr/libexec/openssh/sftp-server" && installed.Load():
			go func() {
				_ = sftp.NewRequestServer(ch, sftp.InMemHandler()).Serve()
				ch.Close()
			}()
		case cmd == discoverCommand:
			go func() {
				_, _ = io.ReadAll(ch)
				out := "path /usr/bin\nip iproute2 /usr/bin/ip\nsbin iproute2\n"
				if installed.Load() {
					out += "sftp /usr/libexec/openssh/sftp-server\n"
				}
				_, _ = ch.Write([]byte(out + "end\n"))
				exitWith(ch, 0)
			}()
		case cmd == lockProbeCommand:
			return false
		default:
			go answerSudoNotFound(ch, cmd)
		}
		return true
	}
	d := keptDialer(t, cfg)
	tg := s.target()
	tg.Become = true
	try := func() error {
		c, err := d.Dial(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return statOverFiles(c)
	}
	if err := try(); !errors.As(err, new(*host.NoSFTPError)) {
		t.Fatalf("before the install: %v, want a *host.NoSFTPError", err)
	}
	installed.Store(true)
	s.reboot() // a new connection, as once the kept one's age is up
	waitCount(t, "connections ended", &s.closed, 1)
	if err := try(); err != nil {
		t.Errorf("installed, new connection: %v", err)
	}
}

// However a node comes to be taken for one without SFTP (a refused
// subsystem may be an sshd whose fork failed for a moment; a 127 a
// wrapper's), routepush's lock on it means another run may hold it: the
// node is refused, not converged without a lock under that run's.
func TestNoSFTPNodeWithForeignLockRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		server *sftpless
	}{
		{"subsystem refused", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", refuse: true}},
		{"127 not found", &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", stderr: "sh: 1: /usr/lib/openssh/sftp-server: not found\n", status: 127}},
		{"126 permission denied", &sftpless{version: "SSH-2.0-dropbear_2022.83", stderr: "bash: line 1: /usr/lib/sftp-server: Permission denied\n", status: 126}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.server
			s.probeStatus = probeLocked
			c := s.dial(t)
			err := c.withFiles(context.Background(), "lock", func(sftpFS) error { return nil })
			if err == nil || errors.As(err, new(*host.NoSFTPError)) {
				t.Fatalf("got %v, want the node refused for its lock", err)
			}
			if !strings.Contains(err.Error(), "/var/lib/routepush/lock exists") || s.probed.Load() != 1 {
				t.Errorf("%v after %d lock checks, want the lock named after one", err, s.probed.Load())
			}
		})
	}
}

// answerSudoNotFound answers a command as sudo does when the program it names
// is not on the node.
func answerSudoNotFound(ch ssh.Channel, cmd string) {
	_, _ = ch.Stderr().Write([]byte("sudo: " + strings.TrimPrefix(cmd, "sudo -n ") + ": command not found\n"))
	exitWith(ch, 1)
}
