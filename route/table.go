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
	// Facts are what the read found about how the node forwards, when
	// the run's preflight asked (nil otherwise): never in the digest.
	Facts *Facts
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

// failedLineRE is how ip -batch names the line it stopped at.
var failedLineRE = regexp.MustCompile(`Command failed -:(\d+)`)

// ShiftBatchLines renumbers the failed line ip -batch names in stderr by
// -offset: for a batch that ip read after offset lines of other input.
func ShiftBatchLines(stderr string, offset int) string {
	if offset == 0 {
		return stderr
	}
	return failedLineRE.ReplaceAllStringFunc(stderr, func(m string) string {
		n, _ := strconv.Atoi(failedLineRE.FindStringSubmatch(m)[1])
		return "Command failed -:" + strconv.Itoa(n-offset)
	})
}

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
