package remote

import (
	"context"
	"errors"
)

// Every wait on a node is bounded. What routepush waits on there (a
// channel open, a request's reply, a read from a channel, an SFTP call, the
// SFTP handshake) is not context-aware in x/crypto/ssh or pkg/sftp, and a
// silent or hostile node may never answer. bounded is the one way such a
// call is made: it runs in a goroutine of its own while the caller waits
// for it or for the bound, and when the bound comes first the caller closes
// what the call blocks on, which ends the call, and goes on without it.
//
// What is closed decides what is lost. A command's reads and writes end
// when its session's channel is closed, so its bound ends that command
// only. A channel open, a request's reply and SFTP calls (pkg/sftp's Close
// waits for a reader only the node can end) are abandoned by closing the
// connection, and with it everything waiting on the node. Keepalives
// (keepalive.go) close the connection of a node that stops answering
// altogether, whatever waits on it.
//
// The TCP connect and SSH handshake (handshake, in client.go) are bounded
// otherwise, by context.AfterFunc closing the net.Conn: closing a net.Conn
// ends its reads and writes at once, so the handshake's own error can be
// awaited and no goroutine is needed.
//
// Which bound applies is the caller's choice of ctx: a command waits while
// the ctx it is given lasts, and at most the command timeout; session opens
// and SFTP calls are given context.WithoutCancel, so that only the timeout
// abandons them (exec and withFiles say why).

// bounded runs fn, which blocks on the node, for at most the command
// timeout and while ctx lasts. When fn returns first, its error is
// returned. When the bound comes first, abandon is called to close what fn
// blocks on (so that fn's goroutine ends too), and an *abandonedError
// naming the node and what is returned; fn may still be running then, and
// nothing it sets may be used.
func (c *Client) bounded(ctx context.Context, what string, abandon func() error, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	done := make(chan error, 1) // fn's goroutine never waits for a reader
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.taint() // what was abandoned may have left the connection mid-packet: not kept
		_ = abandon()
		return &abandonedError{host: c.name, what: what, cause: context.Cause(ctx)}
	}
}

// abandonedError is a call bounded gave up on: its cause is the context's
// (context.DeadlineExceeded for the command timeout, or what ended the
// run).
type abandonedError struct {
	host, what string
	cause      error
}

func (e *abandonedError) Error() string { return e.host + ": " + e.what + ": " + e.cause.Error() }

func (e *abandonedError) Unwrap() error { return e.cause }

// abandoned reports whether err says bounded gave up on the call.
func abandoned(err error) bool {
	var a *abandonedError
	return errors.As(err, &a)
}
