package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/routepush/routepush/test/lab"
)

// probeDoc is the probe's part of --output json.
type probeDoc struct {
	Failed bool
	Probe  *struct {
		PerNode                 int `json:"per_node"`
		Pairs, Answered, Failed int
		Results                 []struct {
			From, To, Family, Src, Dst, Error, Cause string
			Sent, Received                           int
			Answered                                 bool
		}
	}
}

func probeJSON(t *testing.T, res lab.Result) probeDoc {
	t.Helper()
	var doc probeDoc
	if err := json.Unmarshal([]byte(res.Stdout), &doc); err != nil || doc.Probe == nil {
		t.Fatalf("--output json: %v, probe %v\n%s", err, doc.Probe, res.Stdout)
	}
	return doc
}

// --probe on a lab it converges: every node pings three others' pod
// addresses from its own, each node is pinged by three, and every pair
// answers. Dropping ICMP into one node's pod address fails exactly the
// pairs that ping it, and says so; routepush probe changes nothing.
func TestProbePodToPod(t *testing.T) {
	t.Parallel()
	l := newLab(t, 6)
	res := rp(t, l, "--inventory", l.InventoryPath(), "--probe")
	if res.Code != 0 || !strings.Contains(res.Stdout, "; probe: 18 pairs, 18 answered, 0 did not") {
		t.Fatalf("apply --probe: exit %d, want 0 with 18 pairs answered", res.Code)
	}

	doc := probeJSON(t, rp(t, l, "probe", "--inventory", l.InventoryPath(), "--output", "json"))
	if doc.Probe.PerNode != 3 || doc.Probe.Pairs != 18 || doc.Probe.Answered != 18 || len(doc.Probe.Results) != 18 || doc.Failed {
		t.Errorf("probe: %+v, want 18 pairs of 6 nodes × 3, all answered", doc.Probe)
	}
	sent, got := map[string]int{}, map[string]int{}
	for _, r := range doc.Probe.Results {
		sent[r.From]++
		got[r.To]++
		if r.Sent != 3 || r.Received < 1 || r.From == r.To {
			t.Errorf("pair %+v", r)
		}
	}
	for _, n := range l.Nodes {
		if sent[n.Name] != 3 || got[n.Name] != 3 {
			t.Errorf("%s pinged %d and was pinged by %d, want 3 and 3", n.Name, sent[n.Name], got[n.Name])
		}
	}

	victim := l.Nodes[2]
	for _, args := range [][]string{
		{"add table inet probetest"},
		{"add chain inet probetest input { type filter hook input priority 0; }"},
		{"add rule inet probetest input ip daddr " + victim.PodIP.String() + " icmp type echo-request drop"},
	} {
		if out, err := l.Exec(testContext(t), victim.NS, "nft", args...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	before := snapshot(t, l)
	res = rp(t, l, "probe", "--inventory", l.InventoryPath(), "--output", "json")
	if res.Code != 1 {
		t.Errorf("probe with %s dropping: exit %d, want 1", victim.Name, res.Code)
	}
	doc = probeJSON(t, res)
	if doc.Probe.Failed != 3 || doc.Probe.Answered != 15 || !doc.Failed {
		t.Errorf("probe: %d failed, %d answered, failed=%v; want the 3 pairs into %s", doc.Probe.Failed, doc.Probe.Answered, doc.Failed, victim.Name)
	}
	for _, r := range doc.Probe.Results {
		if r.Answered == (r.To == victim.Name) {
			t.Errorf("%s -> %s answered=%v", r.From, r.To, r.Answered)
		}
		if !r.Answered && (r.Dst != victim.PodIP.String() || r.Received != 0 || r.Cause == "") {
			t.Errorf("failed pair %+v: want no reply from %s and a cause", r, victim.PodIP)
		}
	}
	assertUnchanged(t, l, before)

	res = rp(t, l, "probe", "--inventory", l.InventoryPath(), "--probe", "all")
	if res.Code != 1 || !strings.Contains(res.Stdout, "; probe: 30 pairs, 25 answered, 5 did not") {
		t.Errorf("--probe all: exit %d, want 1 with 30 pairs, the 5 into %s failed", res.Code, victim.Name)
	}
	if n := strings.Count(res.Stdout, "("+victim.PodIP.String()+")"); n != 5 {
		t.Errorf("the failed pairs' table names %s %d times, want 5", victim.PodIP, n)
	}
}
