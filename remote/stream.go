package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// readJSON reads a family's table through `ip -json -batch -`: left
// running for Apply the first time when the run will apply, else in one go.
func (c *Client) readJSON(ctx context.Context, fam route.Family) (route.Table, error) {
	if c.wait.wantNext() {
		return c.startPending(ctx, fam)
	}
	out, _, err := c.run(ctx, c.ip("route show table main"), c.ip(batchArgs[fam]), strings.NewReader(c.showLines()),
		c.tableLimit()*int64(len(c.tables())), c.tableWhy())
	if err != nil {
		return route.Table{}, err
	}
	return c.parseJSONTable(out, fam)
}

// startIP starts an `ip -json -batch -` with args, waiting on stdin.
func (c *Client) startIP(ctx context.Context, label, args string) (*pendingIP, error) {
	sess, err := c.exec(ctx, label, c.ip(args))
	if err != nil {
		return nil, err
	}
	// A waiting ip per node is kept until apply: its buffer is per-node
	// memory, so keep it small (ReadBytes grows a line).
	return &pendingIP{sess: sess, stdout: bufio.NewReaderSize(sess.ch, 512), stderr: sess.ch.Stderr()}, nil
}

// startPending starts the ip that will also apply, sends it the show line
// and reads the table it prints, leaving it waiting for the batch.
func (c *Client) startPending(ctx context.Context, fam route.Family) (route.Table, error) {
	label := c.ip("route show table main")
	p, err := c.startIP(ctx, label, batchArgs[fam])
	if err != nil {
		return route.Table{}, err
	}
	c.wait.started()
	line, err := c.show(ctx, p, label)
	if err != nil {
		return route.Table{}, err
	}
	c.wait.hold(p)
	return c.parseJSONTable(line, fam)
}

// show sends a waiting ip the show lines and reads the tables it prints,
// one JSON line each. On failure the ip is gone: its exit status and
// stderr say why when it ended by itself.
func (c *Client) show(ctx context.Context, p *pendingIP, label string) ([]byte, error) {
	var out []byte
	err := c.bounded(ctx, label, p.sess.Close, func() error {
		if _, err := io.WriteString(p.sess.ch, c.showLines()); err != nil {
			return err
		}
		for range c.tables() {
			line, err := readLineAtMost(p.stdout, c.tableLimit())
			if errors.Is(err, errOverLimit) {
				return c.tooMuch(label+": output", c.tableLimit(), c.tableWhy())
			}
			if err != nil {
				return err
			}
			out = append(out, line...)
		}
		return nil
	})
	if err == nil {
		p.shown += len(c.tables())
		return out, nil
	}
	var tooMuch *LimitError
	if errors.As(err, &tooMuch) {
		p.sess.Close() // stop reading: ip is ended with its session
		return nil, err
	}
	if !errors.Is(err, io.EOF) {
		c.taint()
		p.sess.Close()
		return nil, err // cut short by the context or the timeout, or the session failed
	}
	// ip ended before printing the tables: its exit status and stderr say
	// why (an iproute2 without -json, sudo wanting a password).
	var stderr string
	var wait error
	err = c.bounded(ctx, label, p.sess.Close, func() error {
		_ = p.sess.ch.CloseWrite()
		stderr = p.readStderr()
		wait = p.sess.wait()
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = c.exitError(label, wait, stderr)
	p.sess.Close()
	if err == nil {
		err = fmt.Errorf("%s: %s: output cut short", c.name, label)
	}
	return nil, err
}

// applyJSON sends the batch and the show lines to the ip the read left
// waiting, or to a new one (a rollback, which needs -force). With expect,
// the tables are shown first, in the same ip, and the batch goes only if
// they are still as expected.
func (c *Client) applyJSON(ctx context.Context, batch []byte, force bool, fam route.Family, expect *[32]byte) (host.ApplyResult, error) {
	label := c.ip("-batch -")
	p := c.wait.take()
	if p != nil && force {
		p.abandon()
		p = nil
	}
	if p == nil {
		args := batchArgs[fam]
		if force {
			args = "-force " + args
		}
		var err error
		if p, err = c.startIP(ctx, label, args); err != nil {
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
	}
	if expect != nil {
		// Everything up to the batch's first byte sends nothing: a
		// failure here leaves the node as it was.
		line, err := c.show(ctx, p, label)
		if err != nil {
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
		now, err := c.parseJSONTable(line, fam)
		if err != nil {
			p.abandon()
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
		if now.Digest != *expect {
			p.abandon()
			return host.ApplyResult{}, &host.ChangedError{Host: c.name, Table: now}
		}
	}
	// The batch, then the show line that verifies it; read, not copied: a
	// 1,000-node batch is 55 kB per node in flight.
	input := io.MultiReader(bytes.NewReader(batch), strings.NewReader(c.showLines()))
	out, stderr, runErr := c.finishPending(ctx, p, label, input)
	var ce *CommandError
	var tooMuch *LimitError
	if errors.As(runErr, &tooMuch) {
		// The batch went; what ip printed after it is not believed.
		return host.ApplyResult{}, runErr
	}
	if runErr != nil && !errors.As(runErr, &ce) {
		c.taint()
		runErr = &host.LostError{Err: runErr} // the session itself failed: nothing is known
		return host.ApplyResult{}, runErr
	}
	var applyErr error
	if ce != nil {
		// ip numbers failing lines from the start of its input; the batch
		// started after the show lines.
		ce.Stderr = route.ShiftBatchLines(stderr, p.shown)
		ce.Hint = c.hint(ce.Stderr)
		applyErr = ce
	}
	if !bytes.HasSuffix(out, []byte("\n")) {
		// Without -force ip stops at the first failing line: no table.
		return host.ApplyResult{BatchErr: applyErr}, fmt.Errorf("%s: reading the table after the batch: output cut short", c.name)
	}
	t, err := c.parseJSONTable(out, fam)
	return host.ApplyResult{Table: t, BatchErr: applyErr}, err
}

// finishPending writes the rest of the input to a waiting ip, closes its
// stdin and collects what it prints until it exits.
func (c *Client) finishPending(ctx context.Context, p *pendingIP, label string, input io.Reader) ([]byte, string, error) {
	defer p.sess.Close()
	var out []byte
	var stderr string
	var wait, over error
	err := c.bounded(ctx, label, p.sess.Close, func() error {
		// ip may stop reading at a failing line; the write error that
		// causes is not the news, its exit status is.
		go func() {
			_, _ = io.CopyBuffer(p.sess.ch, smallReads{input}, make([]byte, maxWrite))
			_ = p.sess.ch.CloseWrite()
		}()
		limit := c.tableLimit() * int64(len(c.tables()))
		var err error
		if out, err = readAtMost(p.stdout, limit); errors.Is(err, errOverLimit) {
			p.sess.Close()
			over = c.tooMuch(label+": output", limit, c.tableWhy())
			return nil
		}
		stderr = p.readStderr()
		wait = p.sess.wait()
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if over != nil {
		return nil, "", over
	}
	return out, stderr, c.exitError(label, wait, stderr)
}

// parseJSONTable parses the line `route show` prints in a JSON batch. The
// digest covers exactly those bytes.
func (c *Client) parseJSONTable(out []byte, fam route.Family) (route.Table, error) {
	return c.parseSections(out, []route.Family{fam}, []byte("\n"), route.ParseJSON)
}
