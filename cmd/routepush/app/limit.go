package app

import (
	"fmt"
	"path"
	"strings"
)

// nodeLimit reads --limit as Ansible does, in part: comma-separated
// patterns of node names (shell globs), a leading '!' excluding. A node is
// in when it matches some pattern without '!' (or there is none) and no
// pattern with it.
func nodeLimit(spec string, names []string) (func(string) bool, error) {
	if spec == "" {
		return nil, nil
	}
	var in, out []string
	for _, p := range strings.Split(spec, ",") {
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
