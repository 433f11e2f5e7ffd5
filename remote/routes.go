package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/routepush/routepush/route"
)

// The commands routepush runs on nodes: fixed strings and validated table
// numbers, nothing else spliced in. -d shows every route's protocol (plain
// `ip route show` hides "boot"); -N prints numbers, so a node's own
// rt_protos names cannot confuse parsing.
func (c *Client) readArgs(fam route.Family, table string) string {
	if c.textMode {
		return fmt.Sprintf("-d -%d route show table %s", fam, table)
	}
	return fmt.Sprintf("-d -N -json -%d route show table %s", fam, table)
}

// tables are the tables read from each family: main, where next hops are
// resolved, and the table routepush manages if --table names another.
func (c *Client) tables() []string {
	if c.table == "" {
		return []string{"main"}
	}
	return []string{"main", c.table}
}

// showLines are the batch lines that print a family's tables, one JSON
// line each.
func (c *Client) showLines() string {
	var b strings.Builder
	for _, t := range c.tables() {
		b.WriteString("route show table " + t + "\n")
	}
	return b.String()
}

// batchArgs start an ip that reads, applies and verifies one family in
// JSON: the family is ip's, for the whole process (a batch line cannot
// choose it), so this serves nodes with one family.
var batchArgs = map[route.Family]string{
	route.IPv4: "-4 -d -N -json -batch -",
	route.IPv6: "-6 -d -N -json -batch -",
}

// Markers between the parts of one session's output. Neither ip's JSON nor
// its text output can contain them.
const (
	endOfTable = "--- routepush: end of table ---"
	batchOK    = "--- routepush: batch applied ---"
	readNext   = "--- routepush: tables follow ---"
	checked    = "--- routepush: tables as read, batch next ---"
)

// ip renders an ip command line, through sudo -n with become.
func (c *Client) ip(args string) string {
	if c.sudo {
		// -n: fail at once, never wait for a password nobody will type.
		return "sudo -n ip " + args
	}
	return "ip " + args
}

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

// ReadRoutes reads the node's main routing table for each family. The
// digest covers exactly what ip printed, in family order.
//
// On a node with one family it runs one `ip -json -batch -` with a `route
// show` line. When the run will apply (Config.ReadOnly is false), that ip
// is left waiting for more lines: Apply then sends the batch and the show
// line again to the same process. A node then costs one session and one ip
// process for snapshot, apply and verify; on these machines a process
// costs more than anything else a node does. A dual-stack node is read in
// one shell session running ip once per family.
//
// On an iproute2 without JSON output it falls back to parsing text, and
// stays with text for the rest of the connection so before/after digests
// compare alike.
func (c *Client) ReadRoutes(ctx context.Context, fams []route.Family) (route.Table, error) {
	if !c.textMode && len(fams) == 1 {
		t, err := c.readJSON(ctx, fams[0])
		var ce *CommandError
		if err == nil || !errors.As(err, &ce) || !unknownOption(ce.Stderr) {
			return t, err
		}
		c.useText() // no -json here: go straight to text
	}
	t, err := c.readScripted(ctx, fams)
	var ce *CommandError
	if err != nil && !c.textMode && errors.As(err, &ce) && unknownOption(ce.Stderr) {
		c.useText()
		t, err = c.readScripted(ctx, fams)
	}
	return t, err
}

// useText switches the client, and later connections to its node, to text
// mode.
func (c *Client) useText() {
	c.textMode = true
	if c.dialer != nil {
		c.dialer.setTextNode(c.name)
	}
}

// readScripted reads the tables in one shell session (dual-stack nodes, and
// text mode).
func (c *Client) readScripted(ctx context.Context, fams []route.Family) (route.Table, error) {
	label := c.ip("route show table main")
	out, _, err := c.run(ctx, label, c.readScript(fams), nil, c.scriptLimit(fams), c.tableWhy())
	if err != nil {
		return route.Table{}, err
	}
	return c.parseTables(out, fams)
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

// parseSections parses one section per family and table, each ending in
// sep. The digest covers what ip printed, in family order, but for the
// fields that tick by themselves (route.StableSection). Routes
// of the managed table, printed without their table (ip leaves out the one
// asked for), are marked with it.
func (c *Client) parseSections(out []byte, fams []route.Family, sep []byte, parse func([]byte, route.Family) ([]route.Route, error)) (route.Table, error) {
	var t route.Table
	h := sha256.New()
	for _, fam := range fams {
		for ti, table := range c.tables() {
			i := bytes.Index(out, sep)
			if i < 0 {
				return route.Table{}, fmt.Errorf("%s: reading the %s table %s: output cut short", c.name, fam, table)
			}
			section := out[:i]
			out = out[i+len(sep):]
			if err := c.checkParseSize(section, fmt.Sprintf("the %s table %s", fam, table)); err != nil {
				return route.Table{}, err
			}
			// What changes by itself (expires) is left out: the digest
			// must catch every change, and only changes.
			stable := route.StableSection(section, c.textMode)
			fmt.Fprintf(h, "%s %s %d\n", fam, table, len(stable))
			h.Write(stable)
			routes, err := parse(section, fam)
			if ti > 0 {
				for k := range routes {
					routes[k].Table = table
				}
			}
			if err != nil {
				return route.Table{}, fmt.Errorf("%s: %w", c.name, err)
			}
			if t.Routes == nil {
				t.Routes = routes // one family and table: no copy of a table-sized slice
			} else {
				t.Routes = append(t.Routes, routes...)
			}
		}
	}
	copy(t.Digest[:], h.Sum(nil))
	return t, nil
}

// unknownOption recognises an iproute2 too old for -json or -N.
func unknownOption(stderr string) bool {
	return strings.Contains(stderr, `Option "-json" is unknown`) || strings.Contains(stderr, `Option "-N" is unknown`) ||
		strings.Contains(stderr, `Option "-Numeric" is unknown`)
}

// Apply feeds a batch to `ip -batch -`, then reads the tables. With force,
// ip carries on past failing lines and still reports that some failed.
//
// With expect, the tables are read again in the same session right before
// the batch, and the batch is sent only if their digest is expect: a table
// that changed since it was read is returned in a *route.ChangedError, and
// nothing is sent. Together with a batch that only adds and deletes
// exactly, no route is ever overwritten that the batch was not written
// against.
func (c *Client) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (route.Table, error, error) {
	if !c.textMode && len(fams) == 1 {
		return c.applyJSON(ctx, batch, force, fams[0], expect)
	}
	return c.applyScripted(ctx, batch, force, fams, expect)
}

// applyScripted is Apply in one shell session (dual-stack nodes, and text
// mode): `[READ && echo checked &&] A && echo ok; echo next && READ` runs
// the reads after the batch whether or not it failed, and the markers say
// which parts ran. The batch travels on stdin, written only once the
// first read has been compared: without it, ip -batch reads an empty
// input and changes nothing.
func (c *Client) applyScripted(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (route.Table, error, error) {
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
		return route.Table{}, nil, &route.NotSentError{Err: err}
	}
	defer sess.Close()
	stdout := bufio.NewReader(sess.ch)
	var errOut []byte
	var errOver bool
	errDone := make(chan struct{})
	go func() {
		var err error
		errOut, err = readAtMost(sess.ch.Stderr(), stderrLimit)
		if errOver = errors.Is(err, errOverLimit); errOver {
			sess.Close() // stop the flood; stdout ends with it
		}
		close(errDone)
	}()
	limit := c.scriptLimit(fams)
	if expect != nil {
		var before []byte
		err := c.bounded(ctx, apply, sess.Close, func() error {
			for {
				line, err := readLineAtMost(stdout, limit-int64(len(before)))
				if errors.Is(err, errOverLimit) {
					return c.tooMuch(c.ip("route show")+": output", limit, c.tableWhy())
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
			// The batch was never written: nothing was sent.
			sess.Close()
			if errors.Is(err, io.EOF) {
				// The read failed by itself; its stderr says why. (A
				// silent node never ends stderr: it is awaited only here.)
				<-errDone
				if errOver {
					return route.Table{}, nil, &route.NotSentError{Err: c.tooMuch(c.ip("route show")+": stderr", stderrLimit, "")}
				}
				err = &CommandError{Host: c.name, Command: c.ip("route show"), ExitStatus: 1, Stderr: string(errOut), Hint: c.hint(string(errOut))}
			}
			return route.Table{}, nil, &route.NotSentError{Err: err}
		}
		now, err := c.parseTables(before, fams)
		if err == nil && now.Digest != *expect {
			err = &route.ChangedError{Host: c.name, Table: now}
		} else if err != nil {
			err = &route.NotSentError{Err: err}
		}
		if err != nil {
			_ = sess.ch.CloseWrite() // an empty batch: ip changes nothing
			sess.Close()
			return route.Table{}, nil, err
		}
	}
	var out []byte
	var wait, over error
	err = c.bounded(ctx, apply, sess.Close, func() error {
		go func() {
			// ip may stop reading at a failing line; its exit says why.
			_, _ = io.CopyBuffer(sess.ch, smallReads{bytes.NewReader(batch)}, make([]byte, maxWrite))
			_ = sess.ch.CloseWrite()
		}()
		// The markers and the tables after the batch.
		var err error
		if out, err = readAtMost(stdout, limit+1<<10); errors.Is(err, errOverLimit) {
			sess.Close()
			over = c.tooMuch(apply+": output", limit, c.tableWhy())
		}
		<-errDone
		if over == nil && errOver {
			over = c.tooMuch(apply+": stderr", stderrLimit, "")
		}
		if over == nil {
			wait = sess.wait()
		}
		return nil
	})
	if over != nil {
		return route.Table{}, nil, over // the batch went: verify failed
	}
	if err != nil {
		err = &LostError{err} // the session itself failed: nothing is known
		return route.Table{}, err, err
	}
	var exit *exitStatus
	if wait != nil && !errors.As(wait, &exit) {
		err = &LostError{fmt.Errorf("%s: %s: %w", c.name, apply, wait)}
		return route.Table{}, err, err
	}
	var applyErr error
	if bytes.HasPrefix(out, []byte(batchOK+"\n")) {
		out = out[len(batchOK)+1:]
	} else {
		// ip -batch exits 1 when a line fails; its stderr says which.
		applyErr = &CommandError{Host: c.name, Command: apply, ExitStatus: 1, Stderr: string(errOut), Hint: c.hint(string(errOut))}
	}
	if !bytes.HasPrefix(out, []byte(readNext+"\n")) {
		return route.Table{}, applyErr, fmt.Errorf("%s: reading the tables after the batch: output cut short", c.name)
	}
	if wait != nil {
		return route.Table{}, applyErr, fmt.Errorf("%s: reading the tables after the batch: %w", c.name, wait)
	}
	t, err := c.parseTables(out[len(readNext)+1:], fams)
	return t, applyErr, err
}
