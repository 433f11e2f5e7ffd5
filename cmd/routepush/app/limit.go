package app

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/routepush/routepush/inventory"
)

// nodeLimit reads --limit as Ansible does. With an Ansible inventory
// (groups not nil) that is all of Ansible's host patterns
// (inventory.MatchPattern). Otherwise it is a part of them: patterns of
// node names (shell globs) separated by ',' or ':', a leading '!'
// excluding; a node is in when it matches some pattern without '!' (or
// there is none) and no pattern with it.
func nodeLimit(spec string, names []string, groups inventory.Groups) (func(string) bool, error) {
	if spec == "" {
		return nil, nil
	}
	if groups != nil {
		selected, err := inventory.MatchPattern(spec, names, groups)
		if err != nil {
			return nil, fmt.Errorf("--limit %q: %w", spec, err)
		}
		if len(selected) == 0 {
			return nil, fmt.Errorf("--limit %q matches no node", spec)
		}
		return func(name string) bool { return slices.Contains(selected, name) }, nil
	}
	var in, out []string
	for _, p := range strings.Split(strings.ReplaceAll(spec, ":", ","), ",") {
		p = strings.TrimSpace(p)
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, fmt.Errorf("--limit %q: bad pattern %q", spec, p)
		}
		if neg {
			out = append(out, p)
		} else {
			in = append(in, p)
		}
	}
	matches := func(ps []string, name string) bool {
		for _, p := range ps {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	limit := func(name string) bool {
		return (len(in) == 0 || matches(in, name)) && !matches(out, name)
	}
	for _, n := range names {
		if limit(n) {
			return limit, nil
		}
	}
	return nil, fmt.Errorf("--limit %q matches no node", spec)
}
