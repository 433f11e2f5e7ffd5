package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
)

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
		c.taint()
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
	var r output
	if err := c.bounded(ctx, label, sess.Close, func() error {
		r = c.collect(sess, label, stdin, limit, why)
		return nil
	}); err != nil {
		return nil, nil, err
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
		c.taint() // the session failed, not the command
		return nil, nil, fmt.Errorf("%s: %s: %w", c.name, label, r.err)
	}
	return r.out, r.errOut, nil
}

// output is what a command printed and how it ended: err is the session's
// end (nil, *exitStatus or a failure), over a *LimitError when it printed
// too much (and err is then not known).
type output struct {
	out, errOut []byte
	err, over   error
}

// collect writes stdin to a running command, reads its stdout and stderr
// to their ends (bounded by limit and stderrLimit) and waits for its exit.
// It blocks on the node: run bounds it.
func (c *Client) collect(sess *execSession, label string, stdin io.Reader, limit int64, why string) output {
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
	var r output
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
	return r
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

// exitError turns a session's end into nil or *CommandError.
func (c *Client) exitError(label string, err error, stderr string) error {
	var exit *exitStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return &CommandError{Host: c.name, Command: label, ExitStatus: exit.code, Stderr: stderr, Hint: c.hint(stderr)}
	}
	c.taint() // the session failed, not the command
	return fmt.Errorf("%s: %s: %w", c.name, label, err)
}
