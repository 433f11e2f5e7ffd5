package inventory

import (
	"strings"
	"testing"
)

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	f, err := LoadFile("testdata/ansible/cluster/inventory.ini", Options{})
	if err != nil {
		t.Fatal(err)
	}
	hosts := f.Groups["all"]
	for pattern, want := range map[string]string{
		"all":                       "ctl-1 node1 node2 node3 node4",
		"workers":                   "node1 node2 node3",
		"workers:!node3":            "node1 node2",
		"workers,!node3":            "node1 node2",
		"workers:&rack1":            "node1 node2",
		"workers:&rack1:!node2":     "node1",
		"&rack1":                    "node1 node2",
		"!workers":                  "ctl-1 node4",
		"k8s:!controllers":          "node1 node2 node3 node4",
		"rack*":                     "node1 node2 node3 node4",
		"node[!3-4]":                "node1 node2",
		"node[^3]":                  "node3",
		"node[!^3]":                 "node1 node2 node4",
		"node[!12]":                 "node3 node4",
		"n?de4,ctl-1":               "node4 ctl-1",
		"~node[2-3]":                "node2 node3",
		"~(ctl|node4)":              "ctl-1 node4",
		"~rack1":                    "node1 node2",
		"controllers:rack2":         "ctl-1 node3 node4",
		" workers : !node3 ":        "node1 node2",
		"ungrouped:controllers":     "ctl-1",
		"workers:!~node[13]":        "node2",
		"workers:&k8s:!rack2:node4": "node1 node2",
	} {
		got, err := MatchPattern(pattern, hosts, f.Groups)
		if err != nil {
			t.Errorf("%q: %v", pattern, err)
			continue
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%q selects %v, want %s", pattern, got, want)
		}
	}
	for pattern, want := range map[string]string{
		"wokers":        `"wokers" matches no node and no group`,
		"workers:!nod3": `"nod3" matches no node and no group`,
		"workers:&":     "an empty term",
		"~node[":        "unbalanced",
		"~node(":        "bad regular expression",
		"workers[0]":    "as a subscript",
		"node[12]":      "as a subscript",
		"node[1:3]":     "as a subscript",
		"!node[01:03]":  "as a subscript",
		"node[-1]":      "as a subscript",
		"node[1-2]":     "as a subscript",
		"node[:2]":      "as a subscript",
		"web:!n1,db":    "mixes ',' and ':'",
		"":              "no pattern",
	} {
		if _, err := MatchPattern(pattern, hosts, f.Groups); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", pattern, err, want)
		}
	}
}

// A term with a subscript is taken as one only when no host has that very
// name; !x and &x where x is both a host and a group are refused, since
// Ansible reads x alone as the host and !x as the group.
func TestMatchPatternSubscriptsAndAmbiguity(t *testing.T) {
	t.Parallel()
	hosts := []string{"node1", "node2", "node[1:3]", "x"}
	groups := Groups{"all": hosts, "web": {"node1", "node2"}, "x": {"node2"}}
	got, err := MatchPattern("node[1:3]", hosts, groups)
	if err != nil || strings.Join(got, " ") != "node[1:3]" {
		t.Errorf("a host named node[1:3]: %v, %v", got, err)
	}
	if got, err := MatchPattern("x", hosts, groups); err != nil || strings.Join(got, " ") != "x" {
		t.Errorf("x: %v, %v; Ansible: the host x", got, err)
	}
	for _, p := range []string{"!x", "web:&x"} {
		if _, err := MatchPattern(p, hosts, groups); err == nil || !strings.Contains(err.Error(), `"x" is both a host and a group`) {
			t.Errorf("%q: %v, want it refused as ambiguous", p, err)
		}
	}
}
