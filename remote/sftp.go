package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/pkg/sftp"
	"github.com/routepush/routepush/host"
	"golang.org/x/crypto/ssh"
)

// defaultSFTPServer is OpenSSH's sftp-server on Debian and Ubuntu. With
// become it runs through sudo -n, as ip does, because the login user's own
// SFTP subsystem could not write /var/lib/routepush; sudoers names it
// exactly, so that become never needs a shell as root. Elsewhere
// (/usr/libexec/openssh on the Red Hat family, /usr/lib/ssh on Arch) it
// is found once that path is not there (discover.go), or named by the
// inventory's sftp_server or --sftp-server.
const defaultSFTPServer = "/usr/lib/openssh/sftp-server"

// files opens the node's SFTP session (openFiles). With become, when
// `sudo -n` fails to start the sftp-server at Debian's path (or the one an
// earlier connection found) and neither the inventory nor the command
// line named one, the node's own is looked for (discover.go): if it is
// elsewhere, the session is opened with it. Only a failure costs that
// look. The path found is kept for the node's later connections only once
// a session has opened with it: a path that has not worked (sudoers broken
// for a moment) must not replace Debian's for the Dialer's life.
//
// A node found without SFTP on this connection is then asked whether it
// has routepush's lock (checkNoSFTPLock) before that counts.
func (c *Client) files(ctx context.Context) (*sftp.Client, error) {
	known := c.noSFTP != nil
	s, err := c.findFiles(ctx)
	if !known {
		err = c.checkNoSFTPLock(ctx, err)
	}
	return s, err
}

// checkNoSFTPLock returns err, unless it says the node has no SFTP server
// and the node has routepush's lock all the same (lockProbeCommand): then
// the node is refused, and the connection forgets that it has no SFTP, so
// that nothing goes on there without asking again.
func (c *Client) checkNoSFTPLock(ctx context.Context, err error) error {
	none, ok := errors.AsType[*host.NoSFTPError](err)
	if !ok {
		return err
	}
	_, _, perr := c.run(ctx, "look for routepush's lock", lockProbeCommand, nil, 4096, "a lock check's output (it prints nothing)")
	var ce *CommandError
	switch {
	case perr == nil:
		return err
	case errors.As(perr, &ce) && ce.ExitStatus == probeCannotSee:
		// The login user (become) cannot look into root's state
		// directory, and sudo runs nothing but ip and sftp-server: a
		// lock there is not seen. Said at -v; the node goes on as one
		// without SFTP.
		c.dialer.logger().Info("cannot tell whether a node without SFTP has routepush's lock: its state directory is root's", "node", c.name, "dir", stateDir)
		return err
	}
	c.noSFTP = nil
	if c.kept != nil {
		c.kept.noSFTP = nil
	}
	if errors.As(perr, &ce) && ce.ExitStatus == probeLocked {
		return &noSFTPLockError{none: none, ours: c.lockedDirs}
	}
	return fmt.Errorf("%s: no SFTP server, and could not tell whether the node has routepush's lock: %w", c.name, perr)
}

// findFiles is files without the lock check.
func (c *Client) findFiles(ctx context.Context) (*sftp.Client, error) {
	s, err := c.openFiles(ctx)
	var ce *CommandError
	var none *host.NoSFTPError
	if err == nil || !c.sudo || c.sftpSet || c.sftpLooked || !(errors.As(err, &ce) || errors.As(err, &none)) {
		return s, err
	}
	c.sftpLooked = true // once per connection, like the failure it answers
	failed := c.sftpPath()
	if c.dialer != nil && c.dialer.nodeSFTPServer(c.name) == failed {
		// Kept from an earlier connection, and it no longer works: the
		// next connection starts from Debian's path again.
		c.dialer.setNodeSFTPServer(c.name, "")
	}
	// sudo says "command not found" only where sudoers allows the path;
	// elsewhere it asks for a password or says the user may not run it.
	// Either way, another sftp-server on the node is worth one look.
	_, p, derr := c.lookFor(ctx, func(d discovered) (string, error) { return d.sftpServer(c.name) }, func(p string) bool { return p == failed })
	if derr != nil {
		return nil, errors.Join(err, derr)
	}
	if p == failed {
		return nil, err
	}
	c.dialer.logger().Info("become runs the node's own sftp-server", "node", c.name, "sftp-server", p)
	c.sftpServer = p
	// What the first path's failure said of SFTP on this connection is
	// asked again with the path found.
	c.noSFTP = nil
	if c.kept != nil {
		c.kept.noSFTP = nil
	}
	s, err = c.openFiles(ctx)
	if err != nil {
		c.sftpServer = failed
		return nil, err
	}
	if c.dialer != nil {
		c.dialer.setNodeSFTPServer(c.name, p)
	}
	return s, nil
}

// sftpPath is the sftp-server become runs.
func (c *Client) sftpPath() string {
	if c.sftpServer == "" {
		return defaultSFTPServer
	}
	return c.sftpServer
}

// openFiles opens, once per connection, the SFTP session that reads and writes
// the node's lock and run records: the "sftp" subsystem, or sftp-server
// through sudo -n with become. Opening it waits on the node three times
// (the channel, the request, pkg/sftp's handshake), all within one command
// timeout; none can be cancelled, so a node that does not answer has its
// connection closed under them.
func (c *Client) openFiles(ctx context.Context) (*sftp.Client, error) {
	if c.sftp != nil {
		select {
		case <-c.sftpEnded:
			// It ended under the run, which keeps it open from the lock
			// to the settle (sshd's ChannelTimeout, sftp-server killed):
			// what is left goes through a new one.
			c.closeFiles()
		default:
			return c.sftp, nil
		}
	}
	if c.noSFTP != nil {
		return nil, c.noSFTP // known for this connection: asked once
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := c.openSFTPChannel(ctx)
	if errors.Is(err, errSubsystemRefused) {
		if none := c.sftpMissing(sftpEnd{refused: true, status: -1}); none != nil {
			return nil, none
		}
	}
	if err != nil {
		c.taint()
		return nil, err
	}
	ch := s.ch
	// Everything the server sends is counted: see meter.
	m := &meter{r: ch, limit: sftpSlack}
	var fsys *sftp.Client
	err = c.bounded(ctx, "sftp", c.conn.Close, func() error {
		// Small packets, like batches (maxWrite): a connection keeps
		// buffers the size of the largest packet it sent, and a run
		// record is a few hundred kB on a large cluster.
		var err error
		fsys, err = sftp.NewClientPipe(m, endWrites{ch}, sftp.MaxPacket(maxWrite))
		return err
	})
	if abandoned(err) {
		return nil, err // the connection is closed
	}
	if err != nil {
		// The server ended the session before its handshake: why is in
		// its exit status and stderr, which follow at once. The channel
		// is closed only after them: a server that gets our close first
		// may never send its exit status (sshd and Dropbear send it
		// before their own close, not after ours).
		end, ok := s.end(time.Second)
		ch.Close()
		if !ok {
			// The node neither ended the session nor finished its
			// stderr: it is not answering the channel's close. The
			// connection goes, and with it the goroutines reading that
			// channel; nothing else waits on it.
			c.taint()
			_ = c.conn.Close()
			return nil, fmt.Errorf("%s: sftp: %w; the SSH server did not close the session within %v: connection closed", c.name, err, time.Second)
		}
		if none := c.sftpMissing(end); none != nil {
			return nil, none
		}
		c.taint()
		if c.sudo {
			// sudo said why on stderr, as it does for ip.
			hint := c.hint(end.stderr)
			if c.sftpSet && sudoNotFound(end.stderr, c.sftpPath()) {
				hint = namedSFTPMissing
			}
			return nil, &CommandError{Host: c.name, Command: "sudo -n " + c.sftpPath(), ExitStatus: 1, Stderr: end.stderr, Hint: hint}
		}
		return nil, fmt.Errorf("%s: sftp: %w", c.name, err)
	}
	c.sftp, c.sftpCh, c.meter, c.sftpEnded = fsys, ch, m, s.ended
	return fsys, nil
}

// endWrites is the SFTP session's channel as pkg/sftp writes to it: its
// Close ends our side only. pkg/sftp closes its writer when its handshake
// fails, and a whole channel closed then could reach the node before its
// exit status left it: the status that says why would be lost. The
// channel itself is closed by openFiles and closeFiles.
type endWrites struct{ ssh.Channel }

func (w endWrites) Close() error { return w.CloseWrite() }

// sftpMissing returns, and remembers for the connection, the node's
// *host.NoSFTPError when end says it has no SFTP server; nil otherwise.
// The connection itself is sound: it is kept.
func (c *Client) sftpMissing(end sftpEnd) *host.NoSFTPError {
	none := noSFTP(c.name, string(c.conn.ServerVersion()), c.sudo, c.sftpSet, c.sftpPath(), end)
	if none != nil {
		c.noSFTP = none
		if c.kept != nil {
			c.kept.noSFTP = none
		}
	}
	return none
}

// sftpSession is a session channel opened for SFTP, with what its end
// tells: its stderr and exit status.
type sftpSession struct {
	ch     ssh.Channel
	ended  <-chan struct{} // closed once the channel has ended
	said   <-chan string   // at most 4 KiB of stderr, once the channel ends
	status *int            // the exit status, -1 if none came; read once ended
}

// end waits at most wait, in all, for the session's end, and says what
// it was; ok is false when it did not come in time. One deadline bounds
// both waits: a time.After value is received once, so a second select on
// it would wait for the node's stderr alone, for ever if the node never
// answers the channel's close.
func (s *sftpSession) end(wait time.Duration) (e sftpEnd, ok bool) {
	e = sftpEnd{status: -1}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	select {
	case <-s.ended:
		e.status = *s.status
	case <-ctx.Done():
		return e, false
	}
	select {
	case e.stderr = <-s.said:
	case <-ctx.Done():
		return e, false
	}
	return e, true
}

// openSFTPChannel opens the session channel SFTP runs on and starts the
// SFTP server at its other end. What the session writes on stderr (at
// most 4 KiB: sudo's or a shell's message) and its exit status are kept
// for when it ends before the handshake. A refused subsystem is
// errSubsystemRefused.
func (c *Client) openSFTPChannel(ctx context.Context) (*sftpSession, error) {
	var ch ssh.Channel
	var reqs <-chan *ssh.Request
	err := c.bounded(ctx, "sftp", c.conn.Close, func() error {
		var err error
		ch, reqs, err = c.conn.OpenChannel("session", nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: sftp: %w", c.name, err)
	}
	// Requests on the session are answered as they come: besides the
	// exit-status at its end, an sshd with ClientAliveInterval probes the
	// first open channel (keepalive@openssh.com, wanting an answer), and
	// this one stays open from the lock to the settle. Unanswered, sshd
	// counts them against ClientAliveCountMax and hangs up; past the 16
	// x/crypto/ssh queues per channel, the connection's reader blocks and
	// keepalives then cut off a healthy node. It ends with the channel,
	// and says so: a session kept for the next round is not reused once
	// its channel is gone (keep.go).
	done := make(chan struct{})
	status := -1
	go func() {
		for r := range reqs {
			if r.Type == "exit-status" && len(r.Payload) >= 4 {
				status = int(binary.BigEndian.Uint32(r.Payload))
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		close(done)
	}()
	said := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(ch.Stderr(), 4096))
		said <- string(b)
	}()
	var ok bool
	err = c.bounded(ctx, "sftp", c.conn.Close, func() error {
		var err error
		if c.sudo {
			ok, err = ch.SendRequest("exec", true, ssh.Marshal(&struct{ Command string }{"sudo -n " + c.sftpPath()}))
		} else {
			ok, err = ch.SendRequest("subsystem", true, ssh.Marshal(&struct{ Name string }{"sftp"}))
		}
		return err
	})
	if err == nil && !ok {
		err = errSubsystemRefused
	}
	if err != nil {
		ch.Close()
		return nil, fmt.Errorf("%s: sftp: %w", c.name, err)
	}
	return &sftpSession{ch: ch, ended: done, said: said, status: &status}, nil
}

// withFiles runs fn on the node's SFTP session, bounded by the command
// timeout: SFTP calls cannot be cancelled.
//
// An interrupt does not cut them short: a lock, record or routes file
// half-written is worse than a run that ends a moment later, and an SFTP
// call on a live node takes milliseconds. Only the timeout abandons one,
// and with it the connection (the node has gone silent).
func (c *Client) withFiles(ctx context.Context, what string, fn func(sftpFS) error) error {
	ctx = context.WithoutCancel(ctx)
	fsys, err := c.files(ctx)
	if err != nil {
		return err
	}
	// The files an operation reads are each bounded (readFile); this
	// bounds the operation as a whole, directory listings included.
	m := c.meter // fn keeps its own: closeFiles may run while it waits
	m.budget(c.opBudget())
	err = c.bounded(ctx, what, func() error {
		// pkg/sftp's Close waits for a reader only the node can end: the
		// connection goes, and with it everything waiting on this node.
		c.conn.Close()
		c.closeFiles()
		return nil
	}, func() error { return fn(sftpFS{fsys, m}) })
	if errors.Is(err, sftp.ErrSSHFxConnectionLost) {
		c.taint() // the session ended under the call: not kept for the next round
	}
	if abandoned(err) || !m.tripped() {
		return err
	}
	// The session is broken mid-packet: a new one is opened when needed.
	c.taint()
	c.closeFiles()
	var tooMuch *LimitError
	if !errors.As(err, &tooMuch) {
		err = c.fileTooBig(what, c.opBudget(), "one SFTP operation")
	}
	return err
}

// opBudget is the most one SFTP operation may receive: a run record (the
// largest file routepush reads) and the framing.
func (c *Client) opBudget() int64 { return c.recordLimit() + sftpSlack }

// closeFiles ends the SFTP session. The channel goes first: pkg/sftp's
// Close waits for its reader, which only the channel's end stops; and a
// silent node has the connection closed under it after the command
// timeout (if keepalives have not closed it first): the error then says
// so, and the connection is closed.
func (c *Client) closeFiles() error {
	c.record = nil // closed with the session
	if s, ch := c.sftp, c.sftpCh; s != nil {
		c.sftp, c.sftpCh, c.meter, c.sftpEnded = nil, nil, nil, nil
		_ = ch.Close()
		if err := c.bounded(context.Background(), "close sftp", c.conn.Close, s.Close); abandoned(err) {
			return err
		}
	}
	return nil
}

// sftpFS is the node's SFTP session as an operation sees it: the client
// and the meter that counts what it receives.
type sftpFS struct {
	*sftp.Client
	m *meter
}

// CloseFilesUntilNeeded closes the node's SFTP session, and with it
// sftp-server on the node, until the next lock or record operation opens
// another. On a kept connection (keep.go) it does nothing: the session
// stays open for the node's next round anyway, so closing it saves no
// memory, and it would cost the node an sftp-server start. An error says
// the node did not answer the close in time: its connection is closed.
func (c *Client) CloseFilesUntilNeeded() error {
	if c.kept != nil {
		return nil
	}
	return c.closeFiles()
}

// syncFile asks for fsync@openssh.com: a record is on disk before it
// counts. A server without the extension still gets the write. (pkg/sftp
// says so with a *StatusError, which errors.Is does not match with
// sftp.ErrSSHFxOpUnsupported: its code does.)
func syncFile(f *sftp.File) error {
	err := f.Sync()
	var status *sftp.StatusError
	if errors.As(err, &status) && status.FxCode() == sftp.ErrSSHFxOpUnsupported {
		return nil
	}
	return err
}

// readFile reads a node's file, at most limit bytes (why says what the
// limit is for): a larger one is refused, by its size before reading it
// when the node says it, else once limit+1 bytes have come.
func (c *Client) readFile(fsys sftpFS, name string, limit int64, why string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, c.fileTooBig(name, limit, why)
	}
	b, err := readAtMost(f, limit)
	if errors.Is(err, errOverLimit) {
		return nil, c.fileTooBig(name, limit, why)
	}
	return b, err
}

// readDir lists a directory, at most listLimit bytes of it (about 10,000
// entries): pkg/sftp keeps a whole listing in memory, so the session's
// meter bounds it; over it the session is closed (withFiles).
func (c *Client) readDir(fsys sftpFS, dir string) ([]fs.FileInfo, error) {
	fsys.m.budget(listLimit)
	defer fsys.m.budget(c.opBudget())
	entries, err := fsys.ReadDir(dir)
	if fsys.m.tripped() {
		return nil, c.fileTooBig("list "+dir, listLimit, "a directory listing")
	}
	return entries, err
}

// failureHint explains OpenSSH's sftp-server's "Failure": it says only
// that for errors it has no SFTP code for, such as EROFS and ENOSPC.
func failureHint(err error) string {
	var st *sftp.StatusError
	if errors.As(err, &st) && st.FxCode() == sftp.ErrSSHFxFailure {
		return " (the node's SFTP server gives no reason: is the filesystem read-only or full?)"
	}
	return ""
}
