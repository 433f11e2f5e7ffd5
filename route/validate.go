package route

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/routepush/routepush/internal/safetext"
)

// A node reports its routes, and routepush renders them back into the undo
// and replace lines of `ip -batch`: every text field is checked against a
// strict pattern when it is parsed, so a field holding a newline, a quote,
// a '#' or a control byte is refused rather than becoming batch lines (or
// terminal escapes) of its own.

// ValidDev reports whether s can be a Linux interface name as routepush
// renders it: 1 to 15 bytes (IFNAMSIZ-1), not "." or "..", printable ASCII
// without whitespace, '/' or ':' (which the kernel refuses) nor the quotes,
// '#' and backslash that `ip -batch` gives a meaning to.
func ValidDev(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f {
			return false
		}
		switch c {
		case '/', ':', '"', '\'', '#', '\\':
			return false
		}
	}
	return true
}

var (
	// tableRE: a table number, or a name from rt_tables.
	tableRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
	// metricValueRE: a metric value as ip prints it (a number, maybe with
	// a unit: "rtt 10ms"; a congestion control or feature name).
	metricValueRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,31}$`)
)

// scopeNames are the scopes of iproute2's rt_scopes; -N prints numbers.
var scopeNames = map[string]bool{"global": true, "universe": true, "site": true, "link": true, "host": true, "nowhere": true}

// prefNames are the IPv6 router preferences ip prints.
var prefNames = map[string]bool{"low": true, "medium": true, "high": true}

// validFlags are the flags ip prints for a route or a hop.
var validFlags = map[string]bool{"unresolved": true}

func init() {
	for f := range knownFlags {
		validFlags[f] = true
	}
}

func byteNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 8)
	return err == nil
}

// validateFields checks every text field of a parsed route, naming the
// first one out of pattern (escaped: it is the node's text).
func validateFields(r *Route) error {
	bad := func(field, v string) error {
		return fmt.Errorf("%s %s is refused: not a valid %s", field, safetext.Quote(v), field)
	}
	if r.Type != "" && !routeTypes[r.Type] {
		return bad("type", r.Type)
	}
	if r.Dev != "" && !ValidDev(r.Dev) {
		return bad("dev", r.Dev)
	}
	if r.Table != "" && !tableRE.MatchString(r.Table) {
		return bad("table", r.Table)
	}
	if r.Scope != "" && !scopeNames[r.Scope] && !byteNumber(r.Scope) {
		return bad("scope", r.Scope)
	}
	if r.Pref != "" && !prefNames[r.Pref] && !byteNumber(r.Pref) {
		return bad("pref", r.Pref)
	}
	for _, f := range r.Flags {
		if !validFlags[f] {
			return bad("flag", f)
		}
	}
	for _, m := range r.Metrics {
		if !textMetricKeys[m.Name] {
			return bad("metric", m.Name)
		}
		if !metricValueRE.MatchString(m.Value) {
			return bad(m.Name+" value", m.Value)
		}
	}
	for _, nh := range r.Nexthops {
		if nh.Dev != "" && !ValidDev(nh.Dev) {
			return bad("nexthop dev", nh.Dev)
		}
		for _, f := range nh.Flags {
			if !validFlags[f] {
				return bad("nexthop flag", f)
			}
		}
	}
	return nil
}
