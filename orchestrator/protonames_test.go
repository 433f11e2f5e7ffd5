package orchestrator

import (
	"strings"
	"testing"

	"github.com/routepush/routepush/route"
)

// The names of other owners' protocols come from the plan (the caller's
// rt_protos), never from the files of whatever host runs the tests.
func TestFindingsNameProtocolsByThePlansNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		names          route.ProtocolNames
		conflict, over string
	}{
		{nil, "proto boot: ip route add or route add", "proto bird)"},
		{route.ProtocolNames{3: "handmade", 12: "bird2"}, "proto handmade: ip route add or route add", "proto bird2)"},
	} {
		p := NewPlanWith(labNodes(4), PlanOptions{Protocol: DefaultProtocol, ProtocolNames: tt.names})
		d, err := ComputeDiff(p.Host(0), mustRoutes(t, foreignTable))
		if err != nil {
			t.Fatal(err)
		}
		var whys []string
		for _, f := range d.Kept {
			whys = append(whys, f.Why(p.Host(0)))
		}
		got := strings.Join(whys, "\n")
		for _, want := range []string{tt.conflict, tt.over} {
			if !strings.Contains(got, want) {
				t.Errorf("names %v: findings\n%s\ndo not say %q", tt.names, got, want)
			}
		}
	}
}

// Protocol names reach the report as they are (Why, --check's diff, the
// JSON document's "why"): a name with control bytes, from the bastion's
// rt_protos files or however the plan's names were filled, is never used.
func TestHostileProtocolNamesNeverReachTheReport(t *testing.T) {
	t.Parallel()
	names := route.ProtocolNames{3: "\x1b[2Jboot", 12: "bird\r\nnode-9: changed"}
	p := NewPlanWith(labNodes(4), PlanOptions{Protocol: DefaultProtocol, ProtocolNames: names})
	h := p.Host(0)
	d, err := ComputeDiff(h, mustRoutes(t, foreignTable))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Kept) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range d.Kept {
		noControl(t, "why", f.Why(h))
		_, line := f.keptLine(h)
		noControl(t, "diff line", line)
		noControl(t, "JSON why", jsonFinding(h, f).Why)
	}
}
