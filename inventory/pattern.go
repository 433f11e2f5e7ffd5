package inventory

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// patternSplit finds the terms of a pattern as Ansible does when it splits
// on ':': runs of anything but whitespace, ':', '[' and ']', or whole
// bracketed expressions, so node[1:3] stays one term.
var patternSplit = regexp.MustCompile(`(?:[^\s:\[\],]|\[[^\]]*\])+`)

// MatchPattern returns the hosts an Ansible host pattern selects, as
// ansible-playbook's --limit does: terms separated by ':' or ',', each a
// host or group name, a glob (web*, node-[12]) or ~regex (matched from the
// start, as Python's re.match); '&' intersects and '!' excludes. Terms
// without a prefix are taken together first, then the '&' terms, then the
// '!' ones; with only '&' and '!' terms, "all" comes first.
//
// Unlike Ansible, which warns and carries on, a term that matches no host
// or group is an error: a misspelt exclusion would otherwise act on the
// very node it was meant to spare.
func MatchPattern(pattern string, hosts []string, groups Groups) ([]string, error) {
	terms := patternSplit.FindAllString(pattern, -1)
	seps := patternSplit.ReplaceAllString(pattern, "")
	if rest := strings.Trim(seps, " \t:,"); rest != "" {
		return nil, fmt.Errorf("%q: unbalanced %q", pattern, rest)
	}
	// Ansible splits on ',' alone when there is one: "web:!node1,db" is
	// to it the terms "web:!node1" (matching nothing) and "db". Taking
	// both as separators would act on hosts it would not.
	if strings.Contains(seps, ",") && strings.Contains(seps, ":") {
		return nil, fmt.Errorf("%q mixes ',' and ':' between terms, which Ansible reads otherwise (it splits on ',' alone when there is one): use one of them", pattern)
	}
	if len(terms) == 0 {
		return nil, fmt.Errorf("%q: no pattern", pattern)
	}
	var regular, and, not []string
	for _, t := range terms {
		if name := t[1:]; t[0] == '&' || t[0] == '!' {
			// Ansible takes x alone as the host, but !x as the group
			// (it spares the host): which one was meant cannot be told.
			if _, isGroup := groups[name]; isGroup && slices.Contains(hosts, name) {
				return nil, fmt.Errorf("%q: %q is both a host and a group, and Ansible reads %q as the one and %q as the other: rename one of them", t, name, name, t)
			}
		}
		switch t[0] {
		case '&':
			and = append(and, t[1:])
		case '!':
			not = append(not, t[1:])
		default:
			regular = append(regular, t)
		}
	}
	if len(regular) == 0 {
		regular = []string{"all"}
	}
	var selected []string
	for _, t := range regular {
		m, err := matchTerm(t, hosts, groups)
		if err != nil {
			return nil, err
		}
		for _, h := range m {
			selected = addTo(selected, h)
		}
	}
	for _, t := range and {
		m, err := matchTerm(t, hosts, groups)
		if err != nil {
			return nil, err
		}
		selected = slices.DeleteFunc(selected, func(h string) bool { return !slices.Contains(m, h) })
	}
	for _, t := range not {
		m, err := matchTerm(t, hosts, groups)
		if err != nil {
			return nil, err
		}
		selected = slices.DeleteFunc(selected, func(h string) bool { return slices.Contains(m, h) })
	}
	return selected, nil
}

// matchTerm returns the hosts of one term: a host's name, else the groups
// it matches; a glob or regex also matches host names.
func matchTerm(term string, hosts []string, groups Groups) ([]string, error) {
	if term == "" {
		return nil, fmt.Errorf("an empty term ('&' or '!' alone)")
	}
	if slices.Contains(hosts, term) {
		return []string{term}, nil
	}
	if !strings.HasPrefix(term, "~") && subscript.MatchString(term) {
		return nil, fmt.Errorf("%q: Ansible reads [N], [N:M] and [N-M] as a subscript (the Nth host of what is before it), not as a glob class; routepush does not take subscripts: name the hosts, or use a ~regex", term)
	}
	re, err := termRegexp(term)
	if err != nil {
		return nil, err
	}
	var out []string
	matchedGroup := false
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		if re.MatchString(g) {
			matchedGroup = true
			for _, h := range groups[g] {
				out = addTo(out, h)
			}
		}
	}
	if !matchedGroup || term[0] == '~' || strings.ContainsAny(term, ".?*[") {
		for _, h := range hosts {
			if re.MatchString(h) {
				out = addTo(out, h)
			}
		}
	}
	if len(out) == 0 && !matchedGroup {
		return nil, fmt.Errorf("%q matches no node and no group", term)
	}
	return out, nil
}

// subscript is a term Ansible takes as a subscript (its
// PATTERN_WITH_SUBSCRIPT, [x-y] included, which it still reads so with a
// warning): workers[0], node[1:3], node[-1], node[12].
var subscript = regexp.MustCompile(`^(.+)\[(-?\d+|(-?\d+)?:(-?\d+)?|\d+-\d*)\]$`)

// termRegexp compiles a term as Ansible does: ~regex as a regular
// expression matched from the start, anything else as a whole-name glob
// (fnmatch: *, ?, [seq], [!seq]).
func termRegexp(term string) (*regexp.Regexp, error) {
	if rest, ok := strings.CutPrefix(term, "~"); ok {
		re, err := regexp.Compile(`^(?:` + rest + `)`)
		if err != nil {
			return nil, fmt.Errorf("%q: bad regular expression: %v", term, err)
		}
		return re, nil
	}
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i := 0; i < len(term); i++ {
		switch c := term[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := strings.IndexByte(term[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			set := strings.ReplaceAll(term[i+1:i+1+j], `\`, `\\`)
			switch {
			case strings.HasPrefix(set, "!"):
				set = "^" + set[1:]
			case strings.HasPrefix(set, "^"):
				// fnmatch takes a leading ^ as itself ([^3] is '^' or
				// '3'), not as a negation.
				set = `\` + set
			}
			b.WriteString("[" + set + "]")
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`)$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("%q: bad pattern: %v", term, err)
	}
	return re, nil
}
