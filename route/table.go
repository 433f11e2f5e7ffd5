package route

import (
	"fmt"
	"regexp"
	"strconv"
)

// Table is a node's routing table as read for one or more families: the
// parsed routes, and a digest of exactly what iproute2 printed. Two reads
// with the same digest saw byte-identical tables, which is how a rollback
// proves it put everything back.
type Table struct {
	Routes []Route
	Digest [32]byte
}

// ParseTable checks a --table value: "main", or a table number. Names
// other than main are refused: nodes print numbers (-N), and a name in one
// node's rt_tables may mean another table, or nothing, on the next. The
// table routepush manages is returned as a number, "" for main.
func ParseTable(s string) (string, error) {
	switch s {
	case "", "main", "254":
		return "", nil
	case "local", "255", "default", "253", "unspec", "0":
		return "", fmt.Errorf("--table %s: routepush does not manage the kernel's %s table", s, s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return "", fmt.Errorf("--table %q: give main or the table's number (1-4294967295; ip -N route show table all prints them)", s)
	}
	return strconv.FormatUint(n, 10), nil
}

var failedLineRE = regexp.MustCompile(`Command failed -:(\d+)`)

// FailedBatchLine returns the 1-based line of the batch that `ip -batch -`
// reported as failed in its stderr, or 0 when it names none.
func FailedBatchLine(stderr string) int {
	m := failedLineRE.FindStringSubmatch(stderr)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// ChangedError says a node's table was not what it had been read as when a
// batch was about to go to it: someone else changed it in between, so the
// batch was not sent. Table is the table as found then.
type ChangedError struct {
	Host  string
	Table Table
}

func (e *ChangedError) Error() string {
	return e.Host + ": the route table changed since it was read; nothing was sent"
}

// NotSentError says a batch was not sent at all: what failed came before
// its first line (starting ip, reading the tables again to compare), so
// the node is as it was.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return "nothing was sent: " + e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }
