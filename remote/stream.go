package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// readJSON reads a family's table through `ip -json -batch -`: left
// running for Apply the first time when the run will apply, else in one go.
func (c *Client) readJSON(ctx context.Context, fam route.Family) (route.Table, error) {
	if p := c.wait.waitingFor(fam); p != nil {
		return c.showAgain(ctx, p, fam)
	}
	if c.wait.wantNext() {
		if p := c.wait.takeRest(fam); p != nil {
			if t, err, done := c.showRest(ctx, p, fam); done {
				return t, err
			}
		}
		return c.startPending(ctx, fam)
	}
	if c.preflight {
		return c.readJSONFacts(ctx, fam)
	}
	out, _, err := c.run(ctx, c.ip("route show table main"), c.ip(batchArgs[fam]), strings.NewReader(c.showLines()),
		c.tableLimit()*int64(len(c.tables())), c.tableWhy())
	if err != nil {
		return route.Table{}, err
	}
	return c.parseJSONTable(out, fam)
}

// readJSONFacts is readJSON's read in one go, with the lines that print
// what preflight reads after the tables. An ip that stops at one of those
// (it exits 1, its tables printed) leaves them unread, not the node.
func (c *Client) readJSONFacts(ctx context.Context, fam route.Family) (route.Table, error) {
	n := len(c.tables())
	out, stderr, err := c.run(ctx, c.ip("route show table main"), c.readCommand(batchArgs[fam]), strings.NewReader(c.showLines()+factLines),
		c.tableLimit()*int64(n)+factsLimit*int64(1+strings.Count(factLines, "\n")), c.tableWhy()+" and what preflight reads")
	prefix, out, unlocked, ok := cutPrefix(out, factsLimit)
	if !ok {
		if err != nil {
			return route.Table{}, err
		}
		return route.Table{}, fmt.Errorf("%s: %s: output cut short", c.name, c.ip("route show table main"))
	}
	lines := bytes.SplitAfter(out, []byte("\n"))
	if last := len(lines) - 1; last >= 0 && !bytes.HasSuffix(lines[last], []byte("\n")) {
		// Nothing, or what ip began of a line before it stopped (its
		// JSON printer opens "[" before a dump that fails): not a line.
		lines = lines[:last]
	}
	var ce *CommandError
	ended := err != nil && errors.As(err, &ce) && len(lines) >= n && len(lines) < n+strings.Count(factLines, "\n")
	if err != nil && !ended {
		return route.Table{}, err
	}
	t, err := c.parseJSONTable(out, fam)
	if err != nil {
		return t, err
	}
	facts := lines[n:]
	for _, l := range facts {
		if len(l) > factsLimit {
			return route.Table{}, c.tooMuch(c.ip("netconf show")+": output", factsLimit, "a node's interfaces (--preflight off reads none)")
		}
	}
	t.Facts = readFacts(prefix, facts, ended, string(stderr))
	c.unlocked = unlocked
	return t, nil
}

// showAgain reads the tables once more through the ip a read left
// waiting, and leaves it waiting: a read under the lock taken after the
// first costs one round trip, no session and no process. It brings no
// facts: preflight's come from the first read. On failure the ip is gone,
// as after any failed show.
func (c *Client) showAgain(ctx context.Context, p *pendingIP, fam route.Family) (route.Table, error) {
	c.wait.take()
	line, _, err := c.show(ctx, p, c.ip("route show table main"), false, false)
	if err != nil {
		return route.Table{}, err
	}
	t, err := c.parseJSONTable(line, fam)
	if err != nil {
		p.abandon()
		return t, err
	}
	c.wait.hold(p)
	return t, nil
}

// showRest reads the tables through the ip the connection's previous
// Client left at rest, leaving it waiting as startPending does. done is
// false when that ip had ended at rest (its session closed or it was
// killed; nothing was sent to it since its last tables): the read starts
// a new one then. A read that failed otherwise, timed out or was too
// large, fails as any read does.
func (c *Client) showRest(ctx context.Context, p *pendingIP, fam route.Family) (t route.Table, err error, done bool) {
	label := c.ip("route show table main")
	c.wait.started()
	line, facts, err := c.show(ctx, p, label, true, c.preflight)
	var tooMuch *LimitError
	var renamed *notKeptError
	switch {
	case errors.As(err, &renamed):
		p.abandon() // it would print the old names: a new one reads them anew
	case err == nil:
		if t, err = c.parseJSONTable(line, fam); err != nil {
			p.abandon() // not kept past a table it printed wrong
			return t, err, true
		}
		t.Facts = facts
		if !p.ended {
			c.wait.hold(p)
		}
		return t, nil, true
	case c.tainted.Load() || errors.As(err, &tooMuch) || ctx.Err() != nil:
		return route.Table{}, err, true
	}
	c.wait = newIPWait(false)
	return route.Table{}, nil, false
}

// startIP starts an `ip -json -batch -` with args, waiting on stdin;
// keepable if it may outlive its Client (a kept connection's, without
// -force: a -force ip is never kept, and carries on past what it refuses).
//
// With prefixed, the read's prefix runs first in the same session
// (readCommand; p.prefixed: show reads what it printed).
func (c *Client) startIP(ctx context.Context, label, args string, fam route.Family, keepable, prefixed bool) (*pendingIP, error) {
	cmd := c.ip(args)
	if prefixed {
		cmd = c.readCommand(args)
	}
	sess, err := c.exec(ctx, label, cmd)
	if err != nil {
		return nil, err
	}
	// A waiting ip per node is kept until apply: its buffer is per-node
	// memory, so keep it small (ReadBytes grows a line).
	p := &pendingIP{sess: sess, stdout: bufio.NewReaderSize(sess.ch, 512), stderr: sess.ch.Stderr(), fam: fam, prefixed: prefixed}
	if keepable && c.kept != nil {
		p.watchStderr() // it may be kept: see watchStderr
		sess.answerRequests()
	}
	return p, nil
}

// startPending starts the ip that will also apply, sends it the show line
// and reads the table it prints, leaving it waiting for the batch.
func (c *Client) startPending(ctx context.Context, fam route.Family) (route.Table, error) {
	label := c.ip("route show table main")
	p, err := c.startIP(ctx, label, batchArgs[fam], fam, true, c.prefixed())
	if err != nil {
		return route.Table{}, err
	}
	c.wait.started()
	line, facts, err := c.show(ctx, p, label, c.kept != nil, c.preflight)
	var renamed *notKeptError
	if errors.As(err, &renamed) {
		// A new ip prints today's names; too many links to watch them
		// by: it serves this round only.
		p.retire, err = true, nil
	}
	if err != nil {
		return route.Table{}, err
	}
	t, err := c.parseJSONTable(line, fam)
	if err != nil {
		p.abandon() // not kept past a table it printed wrong
		return t, err
	}
	t.Facts = facts
	if !p.ended {
		c.wait.hold(p)
	}
	return t, nil
}

// show sends a waiting ip the show lines and reads the tables it prints,
// one JSON line each. On failure the ip is gone: its exit status and
// stderr say why when it ended by itself.
//
// With links (a read on a kept connection) it shows the links first
// (sameLinks). With facts (a read of a run with preflight) it shows the
// forwarding settings and the addresses after the tables (factLines); an
// ip that stops at one of those is ended (p.ended), its tables kept.
func (c *Client) show(ctx context.Context, p *pendingIP, label string, links, facts bool) ([]byte, *route.Facts, error) {
	var out, prefix []byte
	var renamed error
	var factOut [][]byte
	var factsEnded, unlocked, looked bool
	err := c.bounded(ctx, label, p.sess.Close, func() error {
		if p.prefixed {
			var err error
			if prefix, unlocked, err = c.readPrefix(p); err != nil {
				return err
			}
			p.prefixed, looked = false, true
		}
		lines := c.showLines()
		if links {
			lines = "link show\n" + lines
		}
		if facts {
			lines += factLines
		}
		if _, err := io.WriteString(p, lines); err != nil {
			return err
		}
		p.awaken()
		if links {
			if err := c.sameLinks(p); err != nil {
				var r *notKeptError
				if !errors.As(err, &r) {
					return err
				}
				renamed = err
			}
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
		p.shown += strings.Count(c.showLines(), "\n")
		p.lastTable = true
		if facts {
			var err error
			if factOut, factsEnded, err = c.readFactLines(p); err != nil {
				return err
			}
			p.shown += len(factOut)
		}
		return nil
	})
	if err == nil && looked {
		c.unlocked = unlocked
	}
	if err == nil && !facts {
		return out, nil, renamed
	}
	if err == nil {
		var stderr string
		if factsEnded {
			// Its tables stand; the ip is done with, and its stderr says
			// why it stopped.
			p.ended = true
			_ = c.bounded(ctx, label, p.sess.Close, func() error {
				p.closeInput()
				stderr = p.readStderr()
				return nil
			})
			p.sess.Close()
		}
		return out, readFacts(prefix, factOut, factsEnded, stderr), renamed
	}
	var tooMuch *LimitError
	if errors.As(err, &tooMuch) {
		p.sess.Close() // stop reading: ip is ended with its session
		return nil, nil, err
	}
	if !errors.Is(err, io.EOF) {
		c.taint()
		p.sess.Close()
		return nil, nil, err // cut short by the context or the timeout, or the session failed
	}
	// ip ended before printing the tables: its exit status and stderr say
	// why (an iproute2 without -json, sudo wanting a password).
	var stderr string
	var wait error
	err = c.bounded(ctx, label, p.sess.Close, func() error {
		p.closeInput()
		stderr = p.readStderr()
		wait = p.sess.wait()
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	err = c.exitError(label, wait, stderr)
	p.sess.Close()
	if err == nil {
		err = fmt.Errorf("%s: %s: output cut short", c.name, label)
	}
	return nil, nil, err
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
		if p, err = c.startIP(ctx, label, args, fam, !force, false); err != nil {
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
	}
	if expect != nil {
		// Everything up to the batch's first byte sends nothing: a
		// failure here leaves the node as it was.
		line, _, err := c.show(ctx, p, label, false, false)
		if err != nil {
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
		// The digest decides; the tables are parsed only to say what
		// changed.
		now, err := c.parseSections(line, []route.Family{fam}, []byte("\n"), nil)
		if err == nil && now.Digest != *expect {
			if now, err = c.parseJSONTable(line, fam); err == nil {
				err = &host.ChangedError{Host: c.name, Table: now}
			}
		}
		if err != nil {
			p.abandon()
			var changed *host.ChangedError
			if errors.As(err, &changed) {
				return host.ApplyResult{}, err
			}
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
	}
	// The batch, then the show line that verifies it; read, not copied: a
	// 1,000-node batch is 55 kB per node in flight.
	input := io.MultiReader(bytes.NewReader(batch), strings.NewReader(c.showLines()))
	var out []byte
	var stderr string
	var runErr error
	if c.kept != nil && !force {
		var alive bool
		out, stderr, alive, runErr = c.sendKeeping(ctx, p, label, input)
		if alive {
			// Verified below from what it printed; it waits for the
			// node's next round.
			p.shown += bytes.Count(batch, []byte("\n")) + len(c.tables())
			c.wait.hold(p)
		}
	} else {
		out, stderr, runErr = c.finishPending(ctx, p, label, input)
	}
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
			_, _ = io.CopyBuffer(p, smallReads{input}, make([]byte, maxWrite))
			p.closeInput()
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

// sameLinks reads the line `link show` printed and compares it with the
// links the ip printed before: ip caches interface names for as long as
// it runs (iproute2's ll_map, never refreshed in batch mode), so a kept
// ip would go on printing, and reading in batch lines, a renamed
// interface's old name; the links it prints come from the kernel each
// time. An interface whose name is not the one the ip saw before is a
// *notKeptError: that ip is done with. Call it inside c.bounded.
func (c *Client) sameLinks(p *pendingIP) error {
	line, err := readLineAtMost(p.stdout, c.tableLimit())
	if errors.Is(err, errOverLimit) {
		return c.tooMuch(c.ip("link show")+": output", c.tableLimit(), c.tableWhy())
	}
	if err != nil {
		return err
	}
	p.shown++
	now, tooMany := linkNames(line)
	if tooMany || p.links != nil && p.links.renamed(now) {
		p.links = nil
		return &notKeptError{host: c.name}
	}
	p.links = now
	return nil
}

// settleKept readies an ip to be kept at rest: if the last thing it
// printed was a table, it is asked for the links once more, on their own.
// x/crypto/ssh holds the last packet a channel received until the next
// one, for as long as the channel lives: a table of every route (tens of
// kilobytes a node, most of an idle watcher's memory growth) unless a
// small answer comes after it. The links are compared too. false: the
// ip is not to be kept (it failed to answer, or an interface was
// renamed).
func (c *Client) settleKept(p *pendingIP) bool {
	if !p.lastTable {
		return true
	}
	// Close waits for it: a short bound of its own, whatever the command
	// timeout (a node silent then is not kept: the connection closes).
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	err := c.bounded(ctx, c.ip("link show"), p.sess.Close, func() error {
		if _, err := io.WriteString(p, "link show\n"); err != nil {
			return err
		}
		return c.sameLinks(p)
	})
	p.lastTable = false
	return err == nil
}

// settleTimeout bounds settleKept.
const settleTimeout = 5 * time.Second

// sendKeeping writes the rest of the input to a waiting ip and reads the
// tables its show lines print, leaving it waiting (alive) on a kept
// connection. An ip that ends first (at a failing batch line) is
// collected as finishPending collects it: what it printed, its stderr
// and its exit status.
func (c *Client) sendKeeping(ctx context.Context, p *pendingIP, label string, input io.Reader) (out []byte, stderr string, alive bool, err error) {
	var wait, over error
	err = c.bounded(ctx, label, p.sess.Close, func() error {
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			// ip may stop reading at a failing line; the write error that
			// causes is not the news, its exit status is.
			_, _ = io.CopyBuffer(p, smallReads{input}, make([]byte, maxWrite))
		}()
		var readErr error
		for range c.tables() {
			var line []byte
			line, readErr = readLineAtMost(p.stdout, c.tableLimit())
			if errors.Is(readErr, errOverLimit) {
				p.sess.Close()
				over = c.tooMuch(label+": output", c.tableLimit(), c.tableWhy())
				return nil
			}
			out = append(out, line...)
			if readErr != nil {
				break
			}
		}
		if readErr == nil {
			// ip printed the tables after the last line it was sent:
			// it has read all of it, and the writer is done or about to be.
			<-wrote
			alive = true
			p.lastTable = true
			return nil
		}
		if !errors.Is(readErr, io.EOF) {
			return readErr // the session failed: nothing is known
		}
		p.closeInput()
		stderr = p.readStderr()
		wait = p.sess.wait()
		return nil
	})
	switch {
	case err != nil:
		p.sess.Close()
		return nil, "", false, err
	case over != nil:
		return nil, "", false, over
	case alive:
		return out, "", true, nil
	}
	p.sess.Close()
	return out, stderr, false, c.exitError(label, wait, stderr)
}

// parseJSONTable parses the line `route show` prints in a JSON batch. The
// digest covers exactly those bytes.
func (c *Client) parseJSONTable(out []byte, fam route.Family) (route.Table, error) {
	return c.parseSections(out, []route.Family{fam}, []byte("\n"), route.ParseJSON)
}
