package route

import "bytes"

// StableSection returns one table section as ip printed it, minus the
// fields that change by themselves, for routepush to hash into a table's
// digest. With text it is the output of `ip -d route show`; without, the
// JSON array of `ip -d -N -json route show`.
//
// The digest proves a restore exact by comparing what ip printed before and
// after, byte for byte, and two fields of that output are clocks:
//
//   - expires, the seconds left to a route with a lifetime: an IPv6 route
//     learnt from router advertisements, or any IPv6 route added with
//     `expires N`. "expires":288 in JSON, " expires 288sec" in text; it
//     goes down every second, and below zero ("expires -9sec") once the
//     route has lapsed, until the kernel collects it.
//   - unbalanced_time, in the nh_info of a route over a resilient nexthop
//     group: the seconds the group has been unbalanced, ticking in
//     hundredths ("unbalanced_time":34.79, " unbalanced_time 34.8").
//
// A node with either would never print the same bytes twice, so both are
// left out of the digest. Nothing else ticks in a dump (checked with
// iproute2 6.1 on Linux 6.18): the kernel fills the other counters of a
// route's cache info (used, age, users) only when it answers `ip route
// get`, and lists cached exceptions only for `ip route show cache`, which
// routepush does not run.
//
// Every other byte is kept, so any other change to the table (another
// gateway, metric, flag, group weight, an added or removed route) still
// changes the result. What is lost is the value of those two fields, and
// whether a route has a lifetime at all: a route that gained or lost
// `expires` with nothing else changed hashes the same. The parsers still
// report it (Route.Unrestorable is "expires", or "nhid"), so routepush
// never replaces or deletes such a route.
//
// A section with nothing to remove comes back as is, without a copy; any
// other result is a new slice, and section is never written to.
func StableSection(section []byte, text bool) []byte {
	for i := range tickingFields {
		section = tickingFields[i].cut(section, text)
	}
	return section
}

// tickingField is a field of ip's output that changes by itself.
type tickingField struct {
	json []byte // the object key, with its quotes
	text []byte // the name, with the spaces around it
	// rare is where, in both, a byte rare in ip's output stands (an x or
	// an _). Searches start there: a search led by a quote or a space,
	// which most of the bytes are, is ten times slower, and a table with
	// neither field is the common case.
	rare int
	unit string // what follows the number in text
}

var tickingFields = []tickingField{
	{json: []byte(`"expires"`), text: []byte(" expires "), rare: len(` e`), unit: "sec"},
	{json: []byte(`"unbalanced_time"`), text: []byte(" unbalanced_time "), rare: len(` unbalanced`)},
}

// cut removes every occurrence of the field from s.
func (f *tickingField) cut(s []byte, text bool) []byte {
	name := f.json
	if text {
		name = f.text
	}
	rare := name[f.rare:]
	var out []byte
	last := 0 // s[last:] is not yet in out
	for i := 0; ; {
		j := bytes.Index(s[i:], rare)
		if j < 0 {
			break
		}
		k := i + j - f.rare // where the name would start
		i += j + 1
		if k < last || !bytes.HasPrefix(s[k:], name) {
			continue
		}
		var start, end int
		if text {
			start, end = textMember(s, k, len(name), f.unit)
		} else {
			var alone int
			start, end, alone = jsonMember(s, k, len(name))
			if start < last && end >= 0 {
				// The comma before it went with the member cut just
				// before: this one is now first in its object.
				start, end = k, alone
			}
		}
		if end < 0 {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(s))
		}
		out = append(out, s[last:start]...)
		last = end
		i = max(i, end)
	}
	if out == nil {
		return s
	}
	return append(out, s[last:]...)
}

// textMember returns the bytes to cut for the token whose name (with its
// spaces, n bytes) starts at s[k]: the name and the number with its unit,
// leaving the space or line end after them. end is -1 if no number with
// the unit follows, ending the token.
func textMember(s []byte, k, n int, unit string) (start, end int) {
	i := numberEnd(s, k+n)
	if i < 0 || !bytes.HasPrefix(s[i:], []byte(unit)) {
		return 0, -1
	}
	i += len(unit)
	if i < len(s) && !isSpace(s[i]) {
		return 0, -1
	}
	return k, i
}

// jsonMember returns the bytes to cut for the object member whose key (n
// bytes) starts at s[k]: the comma before it and the member, or for the
// first member of an object, the member and the comma after it. end is -1
// unless the key is followed by a colon and a number that ends the member.
// alone is where the cut would end if the member were first.
//
// It looks at the neighbours only, not at the whole document: in valid
// JSON a quote after a comma or brace opens a string, and a string followed
// by a colon is a key, so a string that merely contains the key's bytes
// (they would be escaped, \"expires\") is never taken for it.
func jsonMember(s []byte, k, n int) (start, end, alone int) {
	i := skipSpace(s, k+n)
	if i >= len(s) || s[i] != ':' {
		return 0, -1, -1
	}
	if i = numberEnd(s, skipSpace(s, i+1)); i < 0 {
		return 0, -1, -1
	}
	after := skipSpace(s, i)
	if after >= len(s) || (s[after] != ',' && s[after] != '}') {
		return 0, -1, -1
	}
	alone = i
	if s[after] == ',' {
		alone = skipSpace(s, after+1)
	}
	p := k - 1
	for p >= 0 && isSpace(s[p]) {
		p--
	}
	switch {
	case p >= 0 && s[p] == ',':
		return p, i, alone
	case p >= 0 && s[p] == '{':
		return k, alone, alone
	}
	return 0, -1, -1
}

// numberEnd returns where the number that starts at s[i] ends, or -1 if
// none does. It reads JSON's numbers, which include what %d and %g print.
func numberEnd(s []byte, i int) int {
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i = digitsEnd(s, i); i < 0 {
		return -1
	}
	if i < len(s) && s[i] == '.' {
		if i = digitsEnd(s, i+1); i < 0 {
			return -1
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i = digitsEnd(s, i); i < 0 {
			return -1
		}
	}
	return i
}

// digitsEnd returns where the run of digits at s[i] ends, -1 if it is
// empty.
func digitsEnd(s []byte, i int) int {
	d := i
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == d {
		return -1
	}
	return i
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
