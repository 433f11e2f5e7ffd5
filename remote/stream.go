package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/routepush/routepush/route"
)

// pendingIP is the `ip -json -batch -` a snapshot read left running,
// waiting on stdin for the batch that Apply sends.
type pendingIP struct {
	sess   *execSession
	stdout *bufio.Reader
	// stderr is read only once ip has finished: a goroutine copying it
	// per waiting node would cost a thousand goroutine stacks, and ip says
	// little there (it stops at the first failing line).
	stderr io.Reader
}

// readStderr returns what ip wrote to stderr; call it once ip is done.
func (p *pendingIP) readStderr() string {
	b, _ := io.ReadAll(p.stderr)
	return string(b)
}

// readJSON reads a family's table through `ip -json -batch -`: left
// running for Apply the first time when the run will apply, else in one go.
func (c *Client) readJSON(ctx context.Context, fam route.Family) (route.Table, error) {
	if c.stream && c.pending == nil && !c.streamed {
		return c.startPending(ctx, fam)
	}
	out, _, err := c.run(ctx, c.ip("route show table main"), c.ip(batchArgs[fam]), strings.NewReader(c.showLines()))
	if err != nil {
		return route.Table{}, err
	}
	return c.parseJSONTable(out, fam)
}

// startPending starts the ip that will also apply, sends it the show line
// and reads the table it prints, leaving it waiting for the batch.
func (c *Client) startPending(ctx context.Context, fam route.Family) (route.Table, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	label := c.ip("route show table main")
	sess, err := startExec(c.conn, c.ip(batchArgs[fam]))
	if err != nil {
		return route.Table{}, fmt.Errorf("%s: %s: %w", c.name, label, err)
	}
	// A waiting ip per node is kept until apply: its buffer is per-node
	// memory, so keep it small (ReadBytes grows a line).
	p := &pendingIP{sess: sess, stdout: bufio.NewReaderSize(sess.ch, 512), stderr: sess.ch.Stderr()}
	c.streamed = true
	// The writes and reads below block on the network: run them aside so
	// the context can stop them by closing the session.
	type result struct {
		line []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if _, r.err = io.WriteString(sess.ch, c.showLines()); r.err == nil {
			// One JSON line per table shown.
			for range c.tables() {
				var line []byte
				if line, r.err = p.stdout.ReadBytes('\n'); r.err != nil {
					break
				}
				r.line = append(r.line, line...)
			}
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		sess.Close()
		return route.Table{}, fmt.Errorf("%s: %s: %w", c.name, label, context.Cause(ctx))
	}
	if r.err != nil {
		// ip ended before printing the tables: its exit status and stderr
		// say why (an iproute2 without -json, sudo wanting a password).
		_ = sess.ch.CloseWrite()
		stderr := p.readStderr()
		err := c.exitError(label, sess.wait(), stderr)
		sess.Close()
		if err == nil {
			err = fmt.Errorf("%s: %s: output cut short", c.name, label)
		}
		return route.Table{}, err
	}
	c.pending = p
	return c.parseJSONTable(r.line, fam)
}

// applyJSON sends the batch and the show lines to the ip the read left
// waiting, or without one (a rollback, which needs -force) to a new ip.
func (c *Client) applyJSON(ctx context.Context, batch []byte, force bool, fam route.Family) (route.Table, error, error) {
	label := c.ip("-batch -")
	// The batch, then the show line that verifies it; read, not copied: a
	// 1,000-node batch is 55 kB per node in flight.
	input := io.MultiReader(bytes.NewReader(batch), strings.NewReader(c.showLines()))
	var out []byte
	var stderr string
	var runErr error
	offset := 0
	if p := c.pending; p != nil && !force {
		c.pending = nil
		offset = len(c.tables()) // the show lines of the read
		out, stderr, runErr = c.finishPending(ctx, p, label, input)
	} else {
		args := batchArgs[fam]
		if force {
			args = "-force " + args
		}
		var errOut []byte
		out, errOut, runErr = c.run(ctx, label, c.ip(args), input)
		stderr = string(errOut)
	}
	var ce *CommandError
	if runErr != nil && !errors.As(runErr, &ce) {
		runErr = &LostError{runErr} // the session itself failed: nothing is known
		return route.Table{}, runErr, runErr
	}
	var applyErr error
	if ce != nil {
		// ip numbers failing lines from the start of its input; the batch
		// started after the show lines of the read.
		ce.Stderr = shiftBatchLines(stderr, offset)
		ce.Hint = c.hint(ce.Stderr)
		applyErr = ce
	}
	if !bytes.HasSuffix(out, []byte("\n")) {
		// Without -force ip stops at the first failing line: no table.
		return route.Table{}, applyErr, fmt.Errorf("%s: reading the table after the batch: output cut short", c.name)
	}
	t, err := c.parseJSONTable(out, fam)
	return t, applyErr, err
}

// finishPending writes the rest of the input to a waiting ip, closes its
// stdin and collects what it prints until it exits.
func (c *Client) finishPending(ctx context.Context, p *pendingIP, label string, input io.Reader) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	defer p.sess.Close()
	type result struct {
		out    []byte
		stderr string
		wait   error
	}
	done := make(chan result, 1)
	go func() {
		// ip may stop reading at a failing line; the write error that
		// causes is not the news, its exit status is.
		go func() {
			_, _ = io.CopyBuffer(p.sess.ch, smallReads{input}, make([]byte, maxWrite))
			_ = p.sess.ch.CloseWrite()
		}()
		out, _ := io.ReadAll(p.stdout)
		stderr := p.readStderr()
		done <- result{out, stderr, p.sess.wait()}
	}()
	select {
	case r := <-done:
		return r.out, r.stderr, c.exitError(label, r.wait, r.stderr)
	case <-ctx.Done():
		return nil, "", fmt.Errorf("%s: %s: %w", c.name, label, context.Cause(ctx))
	}
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
	return fmt.Errorf("%s: %s: %w", c.name, label, err)
}

var batchLineRE = regexp.MustCompile(`Command failed -:(\d+)`)

func shiftBatchLines(stderr string, offset int) string {
	if offset == 0 {
		return stderr
	}
	return batchLineRE.ReplaceAllStringFunc(stderr, func(m string) string {
		n, _ := strconv.Atoi(batchLineRE.FindStringSubmatch(m)[1])
		return "Command failed -:" + strconv.Itoa(n-offset)
	})
}

// parseJSONTable parses the line `route show` prints in a JSON batch. The
// digest covers exactly those bytes.
func (c *Client) parseJSONTable(out []byte, fam route.Family) (route.Table, error) {
	return c.parseSections(out, []route.Family{fam}, []byte("\n"), route.ParseJSON)
}

// closePending ends a waiting ip: with its stdin closed and no batch sent,
// it changes nothing and exits.
func (c *Client) closePending() {
	if p := c.pending; p != nil {
		c.pending = nil
		_ = p.sess.ch.CloseWrite() // EOF: ip ends without changing anything
		p.sess.Close()
	}
}
