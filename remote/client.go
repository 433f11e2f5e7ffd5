package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Client is one authenticated SSH connection to a node. Every command of a
// run on that node goes over it as a separate session.
type Client struct {
	name     string
	user     string
	conn     ssh.Conn // answered by serve; commands run through startExec
	timeout  time.Duration
	sudo     bool         // run ip through sudo -n (become)
	textMode bool         // the node's iproute2 has no -json: parse its text output
	table    string       // the managed table when not main (a number)
	sftp     *sftp.Client // the node's lock and run records, opened when first needed
	sftpCh   ssh.Channel  // the channel sftp runs on
	meter    *meter       // counts what the SFTP server sends
	planned  int          // Config.PlannedRoutes: sizes the read limits
	dialer   *Dialer
	// stream: the first read leaves its ip running for Apply (a run that
	// will apply); streamed: that has been tried; pending: the ip waiting.
	stream, streamed bool
	pending          *pendingIP
	// source is the address the node sees the session come from: this
	// host's end of the TCP connection, or the jump host's address.
	source netip.Addr
}

// Dial connects to a target, through its jump hosts if it has any, and
// authenticates. A host key that is unknown (unless accepted as new), changed
// or revoked is refused with a *HostKeyError. Every error names the node.
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	e, err := d.endpoint(ctx, t, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	if e.keyName != "" {
		// The address is only the Node object's word: refuse before any
		// connection unless known_hosts knows the node by its name.
		known, err := d.knownHosts(e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		if len(known.algorithms(e.keyAddr())) == 0 {
			return nil, &UnvouchedAddressError{Host: t.Name, Addr: e.addr(), KnownHosts: known.write}
		}
	}
	var via *ssh.Client
	if len(e.jump) > 0 {
		j, err := d.jump(ctx, e.jump)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		via = j.last()
	}
	c, chans, reqs, err := d.handshake(ctx, via, e, t.Name)
	if err != nil {
		return nil, err
	}
	go serve(chans, reqs)
	source := addrOf(c.LocalAddr())
	if via != nil {
		source = addrOf(via.RemoteAddr())
	}
	return &Client{name: t.Name, user: e.user, conn: c, timeout: d.cfg.CommandTimeout, sudo: t.Become, stream: !d.cfg.ReadOnly,
		textMode: d.textNode(t.Name), dialer: d, table: d.cfg.Table, source: source, planned: d.cfg.PlannedRoutes}, nil
}

// SessionSource is the address the node sees this connection come from,
// as far as routepush can tell: its own end of the TCP connection, or with
// jump hosts the address it reaches the last one at. Invalid if unknown.
func (c *Client) SessionSource() netip.Addr { return c.source }

// addrOf returns a network address's IP, or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil || ap.Addr().IsUnspecified() {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// handshake opens a TCP connection to the endpoint (through via, if not
// nil) and logs in. label names the host in errors.
func (d *Dialer) handshake(ctx context.Context, via *ssh.Client, e *endpoint, label string) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	auth, err := d.authFor(e)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", label, err)
	}
	known, err := d.knownHosts(e)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", label, err)
	}
	addr := e.addr()
	var refused *HostKeyError
	config := &ssh.ClientConfig{
		User:              e.user,
		Auth:              auth,
		HostKeyCallback:   known.callback(d, e, label, &refused),
		HostKeyAlgorithms: known.algorithms(e.keyAddr()),
		Timeout:           e.timeout,
	}
	// TCP connect and handshake are bounded together by the connect
	// timeout; the handshake is not context-aware, so closing the
	// connection is how the context and the timeout stop it.
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	conn, err := dialVia(ctx, via, addr)
	switch {
	case err != nil && via == nil:
		return nil, nil, nil, &UnreachableError{fmt.Errorf("%s: %w", label, err)} // names the address
	case err != nil:
		return nil, nil, nil, &UnreachableError{fmt.Errorf("%s: %s through the jump host: %w", label, addr, err)}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, config)
	if !stop() {
		err = errors.Join(err, context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		if refused != nil {
			return nil, nil, nil, refused
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, nil, nil, fmt.Errorf("%s: ssh %s: %w (%s)", label, e, err, d.offered(e))
		}
		return nil, nil, nil, fmt.Errorf("%s: ssh %s: %w", label, e, err)
	}
	// From here on a silent peer is detected by keepalives: the one
	// goroutine per connection besides the transport's and serve.
	go keepalive(c, e.aliveInterval, e.aliveCount)
	return c, chans, reqs, nil
}

// Close ends a waiting ip (it changes nothing) and closes the connection.
// The connection goes first: pkg/sftp's Close waits for its reader, which
// only ends when the channel does, and a silent node never ends it.
func (c *Client) Close() error {
	c.closePending()
	err := c.conn.Close()
	c.closeFiles()
	return err
}

// exec starts a command in a new session, bounded like a command: opening
// a channel waits on the node, and a silent node never answers, so then
// the connection is closed under it. An interrupt does not cut the opening
// short (a live node answers at once, and a connection closed under an
// interrupt would leave the node's lock behind): the session is closed
// once open instead.
func (c *Client) exec(ctx context.Context, label, cmd string) (*execSession, error) {
	var sess *execSession
	err := c.bounded(context.WithoutCancel(ctx), label, c.conn.Close, func() error {
		var err error
		sess, err = startExec(c.conn, cmd)
		return err
	})
	if err == nil && ctx.Err() != nil {
		sess.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.name, label, err)
	}
	return sess, nil
}

// run executes a fixed command in a new session, feeding it stdin, and
// returns what it printed. A command that exits non-zero returns
// *CommandError; label is how messages name the command (the script itself
// is long and full of markers). At most limit bytes of stdout (why says
// what the limit is for) and stderrLimit of stderr are read: beyond them
// the session is closed and a *LimitError returned.
func (c *Client) run(ctx context.Context, label, cmd string, stdin io.Reader, limit int64, why string) (stdout, stderr []byte, err error) {
	sess, err := c.exec(ctx, label, cmd)
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type result struct {
		out, errOut []byte
		err         error
		over        error
	}
	done := make(chan result, 1)
	go func() {
		go func() {
			// A command may stop reading early; its exit status says why.
			if stdin != nil {
				_, _ = io.CopyBuffer(sess.ch, smallReads{stdin}, make([]byte, maxWrite))
			}
			_ = sess.ch.CloseWrite()
		}()
		type read struct {
			b   []byte
			err error
		}
		errOut := make(chan read, 1)
		go func() {
			b, err := readAtMost(sess.ch.Stderr(), stderrLimit)
			if errors.Is(err, errOverLimit) {
				sess.Close() // stop the flood; stdout ends with it
			}
			errOut <- read{b, err}
		}()
		var r result
		var outErr error
		r.out, outErr = readAtMost(sess.ch, limit)
		if errors.Is(outErr, errOverLimit) {
			sess.Close()
			r.over = c.tooMuch(label+": output", limit, why)
		}
		e := <-errOut
		r.errOut = e.b
		if r.over == nil && errors.Is(e.err, errOverLimit) {
			r.over = c.tooMuch(label+": stderr", stderrLimit, "")
		}
		if r.over == nil {
			r.err = sess.wait()
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		sess.Close()
		return nil, nil, fmt.Errorf("%s: %s: %w", c.name, label, context.Cause(ctx))
	}
	var exit *exitStatus
	switch {
	case r.over != nil:
		return nil, nil, r.over
	case errors.As(r.err, &exit):
		ce := &CommandError{Host: c.name, Command: label, ExitStatus: exit.code, Stderr: string(r.errOut)}
		ce.Hint = c.hint(ce.Stderr)
		return r.out, r.errOut, ce
	case r.err != nil:
		return nil, nil, fmt.Errorf("%s: %s: %w", c.name, label, r.err)
	}
	return r.out, r.errOut, nil
}

// maxWrite bounds the SSH packets routepush sends. x/crypto/ssh keeps, per
// connection, an encryption buffer as large as the largest packet sent: a
// batch written at once would leave every node's connection holding 32 KiB.
const maxWrite = 4 << 10

// smallReads hands out at most maxWrite bytes per Read, so whatever copies
// from it writes packets no larger (it also hides WriterTo, which would
// write everything at once).
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) {
	return s.r.Read(p[:min(len(p), maxWrite)])
}

// hint explains the failures of a login that cannot change routes.
func (c *Client) hint(stderr string) string {
	switch {
	case c.sudo && strings.Contains(stderr, "a password is required"):
		return fmt.Sprintf("sudo wants a password for %s; %s", c.user, c.sudoersHint())
	case c.sudo && strings.Contains(stderr, "is not allowed to execute"):
		return fmt.Sprintf("sudo does not let %s run it; %s", c.user, c.sudoersHint())
	case c.sudo && (strings.Contains(stderr, "sudo: not found") || strings.Contains(stderr, "sudo: command not found")):
		return "become needs sudo on the node"
	case !c.sudo && c.user != "root" && strings.Contains(stderr, "permission denied"):
		return fmt.Sprintf("%s may not write routepush's lock and run records in %s: log in as root, or use --become (become: true) to work through sudo", c.user, stateDir)
	case !c.sudo && c.user != "root" && strings.Contains(stderr, "Operation not permitted"):
		return fmt.Sprintf("%s may not change routes: log in as root, or use --become (become: true) to run ip through sudo", c.user)
	}
	return ""
}

// ipPath is where sudo finds ip (its secure_path starts with /usr/sbin);
// sudoers matches the command by path and file, and its arguments exactly.
const ipPath = "/usr/sbin/ip"

// BecomeCommands are every command line routepush runs through sudo -n
// with become, for the tables it reads (main, and --table's when it names
// another): the reads (JSON, and text on an iproute2 without -json), the
// one-family ip that reads, applies and verifies, the dual-stack and
// rollback batches, sftp-server with no arguments ("" in sudoers) and,
// for --persist on systemd, enabling the boot unit.
func BecomeCommands(tables ...string) []string {
	all := []string{"main"}
	for _, t := range tables {
		if !slices.Contains(all, t) {
			all = append(all, t)
		}
	}
	var cmds []string
	for _, fam := range []int{4, 6} {
		cmds = append(cmds, fmt.Sprintf("%s -%d -d -N -json -batch -", ipPath, fam))
	}
	cmds = append(cmds, ipPath+" -batch -", ipPath+" -force -batch -")
	for _, t := range all {
		for _, fam := range []int{4, 6} {
			cmds = append(cmds, fmt.Sprintf("%s -d -N -json -%d route show table %s", ipPath, fam, t),
				fmt.Sprintf("%s -d -%d route show table %s", ipPath, fam, t))
		}
	}
	return append(cmds, sftpServerPath+` ""`, "/usr/bin/systemctl enable "+unitName)
}

// SudoersLine is the sudoers line become needs for user: exactly the
// commands of BecomeCommands, with these arguments and no others. It is
// still root-equivalent (README, "Security model"): `ip -batch -` reads
// any ip command from stdin, `netns exec` included, and sftp-server
// reads and writes any file as root.
func SudoersLine(user string, tables ...string) string {
	return fmt.Sprintf("%s ALL=(root) NOPASSWD: %s", user, strings.Join(BecomeCommands(tables...), ", "))
}

// sudoersHint names what become runs through sudo.
func (c *Client) sudoersHint() string {
	var tables []string
	if c.table != "" && c.table != "main" {
		tables = append(tables, c.table)
	}
	return fmt.Sprintf("become needs passwordless sudo for exactly these commands, e.g. the sudoers line '%s'", SudoersLine(c.user, tables...))
}

// offered says which keys a failed login offered, as ssh -v would: the
// usual cause is the wrong key, user or agent.
func (d *Dialer) offered(e *endpoint) string {
	var keys []string
	if d.agent != nil {
		if signers, err := d.agent.Signers(); err == nil {
			keys = append(keys, fmt.Sprintf("%d from ssh-agent", len(signers)))
		}
	}
	for _, ref := range e.identities {
		if id, _ := d.identity(ref.path, ref.explicit); id != nil && !slices.Contains(keys, ref.path) {
			keys = append(keys, ref.path)
		}
	}
	if len(keys) == 0 {
		return "no keys to offer: no ssh-agent and no identity file"
	}
	return "keys offered: " + strings.Join(keys, ", ")
}
