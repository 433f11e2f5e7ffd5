package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/routepush/routepush/route"
)

// What routepush reads from a node is bounded: a broken or hostile node
// must not be able to fill the bastion's memory (a node whose ip printed
// one endless line once drove it to 3.4 GB). Tables and run records grow
// with the plan and are sized from it; everything else has a fixed bound.
const (
	// tableFloor covers a node's own routes (its links, its default,
	// whatever else it runs) whatever the plan: a node with a BGP feed of
	// tens of thousands of routes still fits.
	tableFloor = 16 << 20
	// perRoute is the allowance for one planned route in a table ip
	// prints: `ip -d -N -json` prints about 200 bytes, the text form
	// about 100, so four times the largest. 5,000 nodes: 5 MiB more.
	perRoute = 1 << 10
	// stderrLimit bounds a command's stderr: ip stops at the first failing
	// line, sudo says a line.
	stderrLimit = 64 << 10
	// lockLimit bounds the lock file: routepush writes about 200 bytes.
	lockLimit = 16 << 10
	// smallFileLimit bounds the unit and networkd's configuration files.
	smallFileLimit = 64 << 10
	// listLimit bounds what the node sends for one directory listing (the
	// runs directory, networkd's drop-in directories): about 10,000
	// entries.
	listLimit = 1 << 20
	// sftpSlack is what SFTP framing adds to a file's bytes.
	sftpSlack = 64 << 10
	// routeFloor bounds the routes of one table whatever the plan: what
	// a parse holds is per route and per JSON value, not per byte, and
	// the densest 16 MiB a node can print ({"dst":"1.0.0.1"} a route,
	// or [0,0,...]) would otherwise cost the bastion over a gigabyte.
	// Tens of thousands of the node's own routes still fit.
	routeFloor = 32 << 10
	// valuesPerRoute is the JSON values (or text fields) allowed per
	// route on average: ip prints about 8 for a route, 6 more a hop.
	valuesPerRoute = 16
)

// LimitError says a node sent more than routepush reads from it: the node
// is failed, and nothing more is read.
type LimitError struct {
	Host  string
	What  string // the command or file
	Limit int64
	Unit  string // what Limit counts, e.g. "routes"; "" for bytes
	Why   string // what the limit is for, e.g. "a table of 1,000 routes"
	Hint  string // what to look at
}

func (e *LimitError) Error() string {
	limit := sizeString(e.Limit)
	if e.Unit != "" {
		limit = countString(int(e.Limit)) + " " + e.Unit
	}
	msg := fmt.Sprintf("%s: %s: exceeds %s", e.Host, e.What, limit)
	if e.Why != "" {
		msg += " (the limit for " + e.Why + ")"
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// sizeString renders a byte count as people write it: 24 MiB, 64 KiB.
func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// countString renders a count with thousands separators: 1,000.
func countString(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// errOverLimit is what a bounded read returns when there was more.
var errOverLimit = errors.New("over the limit")

// readAtMost reads r to its end, or to limit bytes and then errOverLimit
// (it reads limit+1 to tell).
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit {
		return b[:limit], errOverLimit
	}
	return b, err
}

// readLineAtMost reads one line, newline included, of at most limit bytes.
func readLineAtMost(r *bufio.Reader, limit int64) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if int64(len(line)+len(chunk)) > limit {
			return nil, errOverLimit
		}
		line = append(line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// tableLimit bounds one table as ip prints it.
func (c *Client) tableLimit() int64 {
	return tableFloor + int64(c.planned)*perRoute
}

// tableWhy says what tableLimit is for.
func (c *Client) tableWhy() string {
	return "a table of " + countString(c.planned) + " planned routes"
}

// routeLimit bounds the routes of one table: the node's own and the
// planned ones.
func (c *Client) routeLimit() int64 { return routeFloor + int64(c.planned) }

// checkParseSize refuses a table section whose parse would hold more than
// routeLimit routes (twice that in objects or lines: hops and metrics) or
// valuesPerRoute values a route, before it is parsed.
func (c *Client) checkParseSize(section []byte, what string) error {
	size := route.SizeOf(section, c.textMode)
	limit := c.routeLimit()
	switch {
	case int64(size.Routes) > 2*limit:
		return &LimitError{Host: c.name, What: what, Limit: 2 * limit, Unit: "routes, hops and metrics", Why: c.tableWhy(), Hint: "is the node's ip sane? routepush did not parse it"}
	case int64(size.Values) > valuesPerRoute*limit:
		return &LimitError{Host: c.name, What: what, Limit: valuesPerRoute * limit, Unit: "values", Why: c.tableWhy(), Hint: "is the node's ip sane? routepush did not parse it"}
	}
	return nil
}

// recordLimit bounds a run record: the snapshot (a table, as ip route
// replace arguments), the apply and undo batches (a line or two per
// planned route) and the states appended.
func (c *Client) recordLimit() int64 {
	return c.tableLimit() + int64(c.planned)*perRoute
}

// routesFileLimit bounds the --persist routes file: a line per route.
func (c *Client) routesFileLimit() int64 {
	return 1<<20 + int64(c.planned)*perRoute
}

// tooMuch is the error for a command's output over its limit.
func (c *Client) tooMuch(what string, limit int64, why string) error {
	c.taint() // a session cut off mid-output: the node is not trusted with the next round's
	return &LimitError{Host: c.name, What: what, Limit: limit, Why: why, Hint: "is the node's ip sane? routepush stopped reading"}
}

// fileTooBig is the error for a file or listing over its limit.
func (c *Client) fileTooBig(what string, limit int64, why string) error {
	return &LimitError{Host: c.name, What: what, Limit: limit, Why: why, Hint: "routepush never writes that much there: look at the node before removing it"}
}

// meter counts what the node's SFTP server sends, and fails the session
// once an operation's budget is spent: pkg/sftp reads whole directory
// listings into memory, and this is what bounds them.
type meter struct {
	r     io.Reader
	mu    sync.Mutex
	n     int64
	limit int64
	over  bool
}

func (m *meter) Read(p []byte) (int, error) {
	m.mu.Lock()
	if m.over {
		m.mu.Unlock()
		return 0, errOverLimit
	}
	if m.limit > 0 {
		p = p[:min(int64(len(p)), max(1, m.limit-m.n+1))]
	}
	m.mu.Unlock()
	// Not under the lock: budget is called while this waits on the node.
	n, err := m.r.Read(p)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n += int64(n)
	if m.limit > 0 && m.n > m.limit {
		m.over = true
		return n, errOverLimit
	}
	return n, err
}

// budget lets the next operation receive at most n bytes (0: no bound).
func (m *meter) budget(n int64) {
	m.mu.Lock()
	m.n, m.limit = 0, n
	m.mu.Unlock()
}

func (m *meter) tripped() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.over
}
