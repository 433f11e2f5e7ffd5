package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// Dual-stack nodes, and nodes whose iproute2 has no -json, are read and
// changed by a shell script in one session: ip runs once per family and
// table, and marker lines between its outputs say which parts ran.

// readScript prints the main table of each family, each followed by the
// endOfTable line: every family in one shell session.
func (c *Client) readScript(fams []route.Family) string {
	var parts []string
	for _, fam := range fams {
		for _, t := range c.tables() {
			parts = append(parts, c.ip(c.readArgs(fam, t)), "echo '"+endOfTable+"'")
		}
	}
	return strings.Join(parts, " && ")
}

// readScripted reads the tables in one shell session (dual-stack nodes, and
// text mode).
func (c *Client) readScripted(ctx context.Context, fams []route.Family) (route.Table, error) {
	label := c.ip("route show table main")
	script, limit := c.readScript(fams), c.scriptLimit(fams)
	if c.preflight {
		script, limit = c.scriptPrefix()+script, limit+3*factsLimit
	}
	out, _, err := c.run(ctx, label, script, nil, limit, c.tableWhy())
	if err != nil {
		return route.Table{}, err
	}
	if !c.preflight {
		return c.parseTables(out, fams)
	}
	prefix, out, unlocked, ok := cutPrefix(out, 3*factsLimit)
	if !ok {
		return route.Table{}, fmt.Errorf("%s: %s: output cut short", c.name, label)
	}
	t, err := c.parseTables(out, fams)
	if err == nil {
		c.unlocked = unlocked
		t.Facts = scriptFacts(prefix)
		if c.textMode {
			// An iproute2 without -json printed no settings it could
			// parse: one line says so.
			t.Facts.Netconf, t.Facts.Addresses = nil, nil
			t.Facts.Unread = append([]string{"forwarding settings and addresses: this node's ip has no JSON output"}, slices.DeleteFunc(t.Facts.Unread, func(u string) bool {
				return strings.HasPrefix(u, "forwarding settings:") || strings.HasPrefix(u, "addresses:")
			})...)
		}
	}
	return t, err
}

// scriptLimit bounds what readScript prints: a table per family and
// table read, and the markers.
func (c *Client) scriptLimit(fams []route.Family) int64 {
	return c.tableLimit() * int64(len(fams)*len(c.tables()))
}

// parseTables splits a readScript's output into its families' tables.
func (c *Client) parseTables(out []byte, fams []route.Family) (route.Table, error) {
	parse := route.ParseJSON
	if c.textMode {
		parse = route.ParseText
	}
	return c.parseSections(out, fams, []byte(endOfTable+"\n"), parse)
}

// applyScripted is Apply in one shell session (dual-stack nodes, and text
// mode): `[READ && echo checked &&] A && echo ok; echo next && READ` runs
// the reads after the batch whether or not it failed, and the markers say
// which parts ran. The batch travels on stdin, written only once the
// first read has been compared: without it, ip -batch reads an empty
// input and changes nothing.
func (c *Client) applyScripted(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	apply := c.ip("-batch -")
	if force {
		apply = c.ip("-force -batch -")
	}
	script := apply + " && echo '" + batchOK + "'; echo '" + readNext + "' && " + c.readScript(fams)
	if expect != nil {
		script = c.readScript(fams) + " && echo '" + checked + "' && " + script
	}
	sess, err := c.exec(ctx, apply, script)
	if err != nil {
		return host.ApplyResult{}, &host.NotSentError{Err: err}
	}
	defer sess.Close()
	s := startScript(sess)
	if expect != nil {
		if err := c.checkBefore(ctx, s, apply, fams, expect); err != nil {
			return host.ApplyResult{}, err
		}
	}
	r, err := c.sendScripted(ctx, s, apply, batch, c.scriptLimit(fams))
	if err != nil {
		c.taint()
		err = &host.LostError{Err: err} // the session itself failed: nothing is known
		return host.ApplyResult{}, err
	}
	if r.over != nil {
		return host.ApplyResult{}, r.over // the batch went: verify failed
	}
	var exit *exitStatus
	if r.err != nil && !errors.As(r.err, &exit) {
		c.taint()
		err = &host.LostError{Err: fmt.Errorf("%s: %s: %w", c.name, apply, r.err)}
		return host.ApplyResult{}, err
	}
	out := r.out
	var applyErr error
	if bytes.HasPrefix(out, []byte(batchOK+"\n")) {
		out = out[len(batchOK)+1:]
	} else {
		// ip -batch exits 1 when a line fails; its stderr says which. The
		// script's own exit is the read's after it, by the same ip: 127
		// there (iproute2's ip never exits with it) says the shell found
		// no ip for either, which Apply looks for (ipMissing).
		status := 1
		if exit != nil && exit.code == 127 {
			status = 127
		}
		applyErr = &CommandError{Host: c.name, Command: apply, ExitStatus: status, Stderr: string(r.errOut), Hint: c.hint(string(r.errOut))}
	}
	if !bytes.HasPrefix(out, []byte(readNext+"\n")) {
		return host.ApplyResult{BatchErr: applyErr}, fmt.Errorf("%s: reading the tables after the batch: output cut short", c.name)
	}
	if r.err != nil {
		return host.ApplyResult{BatchErr: applyErr}, fmt.Errorf("%s: reading the tables after the batch: %w", c.name, r.err)
	}
	t, err := c.parseTables(out[len(readNext)+1:], fams)
	return host.ApplyResult{Table: t, BatchErr: applyErr}, err
}

// scriptSession is a running applyScripted session: its stdout is read by
// the caller, its stderr by a goroutine of its own, so that neither waits
// on the other.
type scriptSession struct {
	sess   *execSession
	stdout *bufio.Reader
	// errOut and errOver (stderr was past stderrLimit) are set once
	// errDone is closed. A silent node never ends stderr: it is awaited
	// only once stdout has ended.
	errOut  []byte
	errOver bool
	errDone chan struct{}
}

// startScript starts reading a script's stderr.
func startScript(sess *execSession) *scriptSession {
	s := &scriptSession{sess: sess, stdout: bufio.NewReader(sess.ch), errDone: make(chan struct{})}
	go func() {
		var err error
		s.errOut, err = readAtMost(sess.ch.Stderr(), stderrLimit)
		if s.errOver = errors.Is(err, errOverLimit); s.errOver {
			sess.Close() // stop the flood; stdout ends with it
		}
		close(s.errDone)
	}()
	return s
}

// checkBefore reads the tables the script prints before the batch and
// compares their digest with expect (apply names the script in messages). The batch has not been written
// then: on any error (a *host.ChangedError when the tables changed, else
// a *host.NotSentError) the session is ended and nothing was sent.
func (c *Client) checkBefore(ctx context.Context, s *scriptSession, apply string, fams []route.Family, expect *[32]byte) error {
	label := c.ip("route show")
	limit := c.scriptLimit(fams)
	var before []byte
	err := c.bounded(ctx, apply, s.sess.Close, func() error {
		for {
			line, err := readLineAtMost(s.stdout, limit-int64(len(before)))
			if errors.Is(err, errOverLimit) {
				return c.tooMuch(label+": output", limit, c.tableWhy())
			}
			if err != nil {
				return err
			}
			if string(line) == checked+"\n" {
				return nil
			}
			before = append(before, line...)
		}
	})
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.sess.Close()
			return &host.NotSentError{Err: err}
		}
		// The read failed by itself; its stderr says why, and the
		// script's exit status, the read's (127: no ip to run, for
		// Apply's ipMissing), awaited within the command timeout before
		// the session goes.
		var wait error
		_ = c.bounded(ctx, apply, s.sess.Close, func() error {
			<-s.errDone
			wait = s.sess.wait()
			return nil
		})
		s.sess.Close()
		if s.errOver {
			return &host.NotSentError{Err: c.tooMuch(label+": stderr", stderrLimit, "")}
		}
		status := 1
		var exit *exitStatus
		if errors.As(wait, &exit) && exit.code == 127 {
			status = 127
		}
		err = &CommandError{Host: c.name, Command: label, ExitStatus: status, Stderr: string(s.errOut), Hint: c.hint(string(s.errOut))}
		return &host.NotSentError{Err: err}
	}
	now, err := c.parseTables(before, fams)
	switch {
	case err != nil:
		err = &host.NotSentError{Err: err}
	case now.Digest != *expect:
		err = &host.ChangedError{Host: c.name, Table: now}
	default:
		return nil
	}
	_ = s.sess.ch.CloseWrite() // an empty batch: ip changes nothing
	s.sess.Close()
	return err
}

// sendScripted writes the batch and reads what the script prints after
// it (the markers and the tables) until it exits; limit bounds the
// tables. An error says the session was abandoned: nothing is known.
func (c *Client) sendScripted(ctx context.Context, s *scriptSession, apply string, batch []byte, limit int64) (output, error) {
	var r output
	err := c.bounded(ctx, apply, s.sess.Close, func() error {
		go func() {
			// ip may stop reading at a failing line; its exit says why.
			_, _ = io.CopyBuffer(s.sess.ch, smallReads{bytes.NewReader(batch)}, make([]byte, maxWrite))
			_ = s.sess.ch.CloseWrite()
		}()
		var err error
		if r.out, err = readAtMost(s.stdout, limit+1<<10); errors.Is(err, errOverLimit) {
			s.sess.Close()
			r.over = c.tooMuch(apply+": output", limit, c.tableWhy())
		}
		<-s.errDone
		r.errOut = s.errOut
		if r.over == nil && s.errOver {
			r.over = c.tooMuch(apply+": stderr", stderrLimit, "")
		}
		if r.over == nil {
			r.err = s.sess.wait()
		}
		return nil
	})
	if err != nil {
		return output{}, err
	}
	return r, nil
}
