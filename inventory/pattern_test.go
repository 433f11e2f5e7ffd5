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
		"node[12]":                  "node1 node2",
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
		"workers[0]":    "subscripts of a group",
		"":              "no pattern",
	} {
		if _, err := MatchPattern(pattern, hosts, f.Groups); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", pattern, err, want)
		}
	}
}
