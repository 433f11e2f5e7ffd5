package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/routepush/routepush/host"
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

// ip renders an ip command line, through sudo -n with become: `ip` on
// the PATH, or the iproute2 ip discovery chose by its path (checked by
// nodepath.Check: nothing in it means anything to a shell).
func (c *Client) ip(args string) string {
	ip := "ip"
	if c.ipCmd != "" {
		ip = c.ipCmd
	}
	if c.sudo {
		// -n: fail at once, never wait for a password nobody will type.
		return "sudo -n " + ip + " " + args
	}
	return ip + " " + args
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
//
// With Config.Preflight it also reads what preflight checks (facts.go).
func (c *Client) ReadRoutes(ctx context.Context, fams []route.Family) (route.Table, error) {
	c.unlocked = false
	t, err := c.readTables(ctx, fams)
	if err == nil && c.preflight && t.Facts == nil {
		// A read that brought none (a watcher's kept ip at rest shows no
		// facts): said, so that strict never vouches for it.
		t.Facts = &route.Facts{Unread: []string{"preflight: this read brought nothing of it"}}
	}
	return t, err
}

// readTables is ReadRoutes without preflight's facts.
func (c *Client) readTables(ctx context.Context, fams []route.Family) (route.Table, error) {
	t, err := c.readRoutes(ctx, fams)
	var ce *CommandError
	if err != nil && errors.As(err, &ce) && (c.ipMissing(ce) || busyBox(ce)) {
		// No ip, or BusyBox's, first on the PATH: an iproute2 ip further
		// along it is used by its path, else the node is refused. Reads
		// change nothing: read again.
		if err := c.findIP(ctx); err != nil {
			return route.Table{}, err
		}
		return c.readRoutes(ctx, fams)
	}
	return t, err
}

// readRoutes is ReadRoutes with the ip the client has.
func (c *Client) readRoutes(ctx context.Context, fams []route.Family) (route.Table, error) {
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

// parseSections parses one section per family and table, each ending in
// sep; with parse nil it only digests them. The digest covers what ip printed, in family order, but for the
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
			if parse == nil {
				continue // the digest only
			}
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
// that changed since it was read is returned in a *host.ChangedError, and
// nothing is sent. Together with a batch that only adds and deletes
// exactly, no route is ever overwritten that the batch was not written
// against.
//
// Apply may be the first ip a connection runs (`routepush rollback` sends
// the undo batch on a fresh one): when that ip is missing or BusyBox's,
// it has read nothing, and the iproute2 ip along the PATH is looked for
// (findIP) and the batch tried once more with it, as ReadRoutes does.
// Looking first would cost every node a session; only a failure costs it.
func (c *Client) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	res, err := c.apply(ctx, batch, force, fams, expect)
	if c.ipNotRun(res, err) {
		if err := c.findIP(ctx); err != nil {
			return host.ApplyResult{}, &host.NotSentError{Err: err}
		}
		res, err = c.apply(ctx, batch, force, fams, expect)
	}
	var ce *CommandError
	if errors.As(res.BatchErr, &ce) {
		res.FailedLine = route.FailedBatchLine(ce.Stderr)
	}
	return res, err
}

// apply is Apply with the ip the client has.
func (c *Client) apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	if !c.textMode && len(fams) == 1 {
		return c.applyJSON(ctx, batch, force, fams[0], expect)
	}
	return c.applyScripted(ctx, batch, force, fams, expect)
}

// ipNotRun says an apply's ip never read the batch: it was missing (the
// shell or sudo found none) or BusyBox's (it prints its usage while
// parsing iproute2's options, before reading any input). Either failure
// comes as the batch's own error (BatchErr) or, when the tables were
// compared first, as what stopped that comparison (a *host.NotSentError):
// nothing reached the node either way.
func (c *Client) ipNotRun(res host.ApplyResult, err error) bool {
	var ce *CommandError
	var notSent *host.NotSentError
	switch {
	case res.BatchErr != nil:
		if !errors.As(res.BatchErr, &ce) {
			return false
		}
	case errors.As(err, &notSent):
		if !errors.As(notSent.Err, &ce) {
			return false
		}
	default:
		return false
	}
	return c.ipMissing(ce) || busyBox(ce)
}
