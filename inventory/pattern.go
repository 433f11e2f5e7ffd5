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
	if rest := strings.Trim(patternSplit.ReplaceAllString(pattern, ""), " \t:,"); rest != "" {
		return nil, fmt.Errorf("%q: unbalanced %q", pattern, rest)
	}
	if len(terms) == 0 {
		return nil, fmt.Errorf("%q: no pattern", pattern)
	}
	var regular, and, not []string
	for _, t := range terms {
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
	if strings.HasSuffix(term, "]") && !strings.HasPrefix(term, "~") {
		if i := strings.LastIndex(term, "["); i > 0 {
			if _, isGroup := groups[term[:i]]; isGroup {
				return nil, fmt.Errorf("%q: subscripts of a group (group[0], group[1:3]) are not supported: name the hosts", term)
			}
		}
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
			set := term[i+1 : i+1+j]
			if strings.HasPrefix(set, "!") {
				set = "^" + set[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(set, `\`, `\\`) + "]")
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
