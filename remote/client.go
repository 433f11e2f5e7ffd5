package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/nodepath"
	"github.com/routepush/routepush/internal/safetext"
	"golang.org/x/crypto/ssh"
)

// Client is one authenticated SSH connection to a node. Every command of a
// run on that node goes over it as a separate session.
type Client struct {
	name     string
	user     string
	conn     ssh.Conn // answered by serve; commands run through startExec
	timeout  time.Duration
	sudo     bool // run ip through sudo -n (become)
	textMode bool // the node's iproute2 has no -json: parse its text output
	// ipCmd is the ip the node runs: "" for `ip` on the PATH (sudo's
	// secure_path with become), else an iproute2 ip's path (discover.go).
	ipCmd string
	// sftpServer is the sftp-server become runs; sftpSet says the
	// inventory or the command line chose it (never discovered).
	sftpServer string
	sftpSet    bool
	// sftpLooked: the node was already searched for another sftp-server
	// on this connection.
	sftpLooked bool
	boot       string       // the ip the boot unit runs, once found (persist.go)
	table      string       // the managed table when not main (a number)
	sftp       *sftp.Client // the node's lock and run records, opened when first needed
	sftpCh     ssh.Channel  // the channel sftp runs on
	// sftpEnded is closed when that channel has ended.
	sftpEnded <-chan struct{}
	meter     *meter // counts what the SFTP server sends
	// noSFTP: the node has no SFTP server, as found on this connection
	// (nosftp.go); every file operation fails with it, without asking.
	noSFTP *host.NoSFTPError
	// lockedDirs: this Client's Lock found the state directories safe
	// (root's, written by no one else) and holds the node's lock; until
	// Unlock only root can change them, so a record written meanwhile
	// need not check them again.
	lockedDirs bool
	// record is the run record WriteRun left open through a kept
	// connection: the states appended to it are written through it,
	// and it is closed when the run ends on the node (Unlock, Close).
	record    *openRecord
	bootID    string // the node's boot id, once read (boot.go)
	bootKnown bool
	planned   int  // Config.PlannedRoutes: sizes the read limits
	preflight bool // Config.Preflight: read what preflight checks beside the tables
	unlocked  bool // the last read looked for routepush's lock and found none (Unlocked)
	dialer    *Dialer
	wait      ipWait // the ip a read may leave waiting for Apply
	// source is the address the node sees the session come from: this
	// host's end of the TCP connection, or the jump host's address.
	source netip.Addr
	// kept is the connection's place among the Dialer's kept ones, nil if
	// Close closes it (keep.go); tainted says a call was given up on or
	// the connection failed: it is closed, not kept.
	kept    *keptConn
	tainted atomic.Bool
}

// Dial connects to a target, through its jump hosts if it has any, and
// authenticates. A host key that is unknown (unless accepted as new), changed
// or revoked is refused with a *HostKeyError. Every error names the node.
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	if t.SFTPServer != "" {
		// Checked where it is read (inventory, flags) too: a Target
		// built elsewhere must not choose what sudo -n runs as root.
		if err := nodepath.CheckProgram(t.SFTPServer, "sftp-server"); err != nil {
			return nil, fmt.Errorf("%s: sftp_server %s: %v", t.Name, safetext.Quote(t.SFTPServer), err)
		}
	}
	if c, err := d.reuse(ctx, t); c != nil || err != nil {
		return c, err
	}
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
		j, err := d.jump(ctx, e.jump, t.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		via = j.last()
	}
	k := &keptConn{target: t, user: e.user, timeout: e.timeout, ended: make(chan struct{})}
	c, chans, reqs, err := d.handshake(ctx, via, e, t.Name, &k.resting)
	if err != nil {
		return nil, err
	}
	k.conn, k.source = c, addrOf(c.LocalAddr())
	go func() {
		serve(chans, reqs) // returns when the connection has ended
		close(k.ended)
	}()
	if via != nil {
		k.source = addrOf(via.RemoteAddr())
	}
	client := d.client(t, k)
	if !d.kept.add(k) {
		client.kept = nil
	}
	return client, nil
}

// client is a new Client on a connection, with the SFTP session the
// last one left on it if any.
func (d *Dialer) client(t Target, k *keptConn) *Client {
	c := &Client{name: t.Name, user: k.user, conn: k.conn, timeout: d.cfg.CommandTimeout, sudo: t.Become, wait: newIPWait(d.cfg.ReadOnly),
		textMode: d.textNode(t.Name), dialer: d, table: d.cfg.Table, source: k.source, planned: d.cfg.PlannedRoutes, preflight: d.cfg.Preflight, kept: k,
		sftp: k.files.sftp, sftpCh: k.files.ch, meter: k.files.meter, sftpEnded: k.files.ended, noSFTP: k.noSFTP}
	c.ipCmd = d.nodeIP(t.Name)
	c.sftpServer, c.sftpSet = t.SFTPServer, t.SFTPServer != ""
	if !c.sftpSet {
		c.sftpServer = defaultSFTPServer
		if p := d.nodeSFTPServer(t.Name); p != "" {
			c.sftpServer = p
		}
	}
	c.wait.rest = k.ip // none on a read-only Dialer's: its reads leave no ip waiting
	k.files, k.ip = keptFiles{}, nil
	return c
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
// nil) and logs in. label names the host in errors. While resting (if not
// nil) is set, keepalives are sparse (keepalive).
func (d *Dialer) handshake(ctx context.Context, via *ssh.Client, e *endpoint, label string, resting *atomic.Bool) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
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
		return nil, nil, nil, &host.UnreachableError{Err: fmt.Errorf("%s: %w", label, err)} // names the address
	case err != nil:
		return nil, nil, nil, &host.UnreachableError{Err: fmt.Errorf("%s: %s through the jump host: %w", label, addr, err)}
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
	go keepalive(c, e.aliveInterval, e.aliveCount, resting)
	return c, chans, reqs, nil
}

// Close ends a waiting ip (it changes nothing) and closes the connection.
// The connection goes first: pkg/sftp's Close waits for its reader, which
// only ends when the channel does, and a silent node never ends it. A
// connection the Dialer keeps (Config.KeepConnections) stays open, with
// its SFTP session and its waiting ip, for the node's next Dial, unless
// this Client gave up on a call or saw a session or the connection fail
// (keep.go).
func (c *Client) Close() error {
	if c.record != nil {
		// Left open without an Unlock: the connection goes, and the
		// handle with it, rather than wait on the node for its close.
		c.record = nil
		c.taint()
	}
	ip := c.wait.keepable()
	if ip != nil && (ip.retire || c.kept == nil || c.tainted.Load() || !c.settleKept(ip)) {
		ip.abandon()
		ip = nil
	}
	if c.release(ip) {
		return nil
	}
	if ip != nil {
		ip.abandon()
	}
	err := c.conn.Close()
	c.closeFiles()
	return err
}

// taint marks the connection as not to be kept: a call on it was given up
// on, or it failed.
func (c *Client) taint() { c.tainted.Store(true) }
