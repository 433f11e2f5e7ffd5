package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// Client is one authenticated SSH connection to a node. Every command of a
// run on that node goes over it as a separate session.
type Client struct {
	name     string
	conn     *ssh.Client
	timeout  time.Duration
	textMode bool // the node's iproute2 has no -json: parse its text output
}

// Dial connects to a target and authenticates. A host key that is unknown or
// does not match known_hosts is refused with a *HostKeyError.
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	if t.Port == 0 {
		t.Port = 22
	}
	if t.User == "" {
		return nil, fmt.Errorf("%s: no SSH user", t.Name)
	}
	auth, err := d.authFor(t)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	var keyErr *HostKeyError
	check := d.hostKeys.HostKeyCallback()
	config := &ssh.ClientConfig{
		User: t.User,
		Auth: auth,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := check(hostname, remote, key)
			var ke *xknownhosts.KeyError
			if errors.As(err, &ke) {
				keyErr = &HostKeyError{Host: t.Name, Addr: addr, Offered: key, Known: ke.Want, File: d.cfg.KnownHostsFile}
				return keyErr
			}
			return err
		},
		// Ask for the key types known_hosts holds for this host, so a node
		// with several host keys is not refused for offering another type.
		HostKeyAlgorithms: d.hostKeys.HostKeyAlgorithms(addr),
		Timeout:           d.cfg.ConnectTimeout,
	}
	dialer := net.Dialer{Timeout: d.cfg.ConnectTimeout}
	tcp, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	// The handshake is not context-aware: bound it by a deadline, and by
	// the context through closing the socket.
	_ = tcp.SetDeadline(time.Now().Add(d.cfg.ConnectTimeout))
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	c, chans, reqs, err := ssh.NewClientConn(tcp, addr, config)
	stop()
	if err != nil {
		tcp.Close()
		if keyErr != nil {
			return nil, keyErr
		}
		return nil, fmt.Errorf("%s: ssh %s@%s: %w", t.Name, t.User, addr, err)
	}
	_ = tcp.SetDeadline(time.Time{})
	return &Client{name: t.Name, conn: ssh.NewClient(c, chans, reqs), timeout: d.cfg.CommandTimeout}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// run executes a fixed command in a new session, feeding it stdin, and
// returns its stdout. A command that exits non-zero returns *CommandError.
func (c *Client) run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	sess, err := c.conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("%s: open session: %w", c.name, err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Close()
		return nil, fmt.Errorf("%s: %s: %w", c.name, cmd, context.Cause(ctx))
	}
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.Bytes(), &CommandError{Host: c.name, Command: cmd, ExitStatus: exit.ExitStatus(), Stderr: stderr.String()}
	case err != nil:
		return nil, fmt.Errorf("%s: %s: %w", c.name, cmd, err)
	}
	return stdout.Bytes(), nil
}
