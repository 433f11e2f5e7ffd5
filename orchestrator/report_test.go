package orchestrator

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/test/reportschema"
)

// The --output json document of a check, of an adopting apply and of a
// failed one (rolled back) each match the checked-in schema.
func TestJSONReportMatchesSchema(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].seed(t, foreignTable)
	plan := NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true, Prune: true})
	check := Run(context.Background(), plan, c.connect, Options{Check: true, Persist: true})
	c.kernels["node-3"].failDst = "100.64.0.0/24"
	holder := Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 1}
	failed := Run(context.Background(), plan, c.connect, Options{Holder: holder, Concurrency: 1, Persist: true})
	for name, j := range map[string]JSONReport{"check": check.JSON(""), "failed apply": failed.JSON(holder.RunID)} {
		doc, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := reportschema.Validate(doc); err != nil {
			t.Errorf("%s: %v\n%s", name, err, doc)
		}
	}
	if err := reportschema.Validate([]byte(`{"schema_version": 1}`)); err == nil {
		t.Error("the schema accepts a document without nodes")
	}
	j := check.JSON("")
	if n := j.Nodes[0]; len(n.Removed) != 3 || len(n.Kept) != 2 || len(n.Changed) != 1 || n.Changed[0].From.Protocol != 3 {
		t.Errorf("node-0 in JSON: %+v", n)
	}
	if p := j.Nodes[1].Persist; p == nil || len(p.Drift) != 2 || len(p.Warnings) != 1 || p.Written {
		t.Errorf("node-1's persist in JSON: %+v", p)
	}
	if f := failed.JSON(holder.RunID); !f.Failed || f.Nodes[3].Error == "" || !f.Nodes[0].RolledBack {
		t.Errorf("failed apply in JSON: %+v", f)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files")

// The --check diff, plain and coloured, against golden files: stable
// ordering, every kind of line.
func TestWriteDiffGolden(t *testing.T) {
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].seed(t, foreignTable)
	c.kernels["node-2"].seed(t, "unicast 100.64.0.0/24 via 198.18.0.10 dev eth0 proto 114 scope global\n")
	var b strings.Builder
	for _, o := range []PlanOptions{{Protocol: DefaultProtocol}, {Protocol: DefaultProtocol, Adopt: true, Prune: true}} {
		fmt.Fprintf(&b, "# adopt=%v prune=%v\n", o.Adopt, o.Prune)
		Run(context.Background(), NewPlanWith(nodes, o), c.connect, Options{Check: true}).WriteDiff(&b)
	}
	// --persist: no routes file, a stale one, systemd and networkd.
	c.kernels["node-1"].systemd = true
	c.kernels["node-2"].persisted = []byte("route replace 100.64.9.0/24 via 198.18.0.19 proto 114\n")
	c.kernels["node-3"].systemd, c.kernels["node-3"].networkd = true, true
	b.WriteString("# adopt=true persist=true\n")
	Run(context.Background(), NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true}), c.connect, Options{Check: true, Persist: true}).WriteDiff(&b)
	var colored strings.Builder
	Run(context.Background(), NewPlanWith(nodes, PlanOptions{Protocol: DefaultProtocol, Adopt: true}), c.connect, Options{Check: true}).WriteDiffColor(&colored, true)
	golden(t, "testdata/diff.golden", b.String())
	golden(t, "testdata/diff-color.golden", colored.String())
}

// The summary table of a check and of a failed apply, against a golden
// file: durations are set, everything else is what the run reported.
func TestWriteSummaryGolden(t *testing.T) {
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	c.kernels["node-1"].systemd = true
	c.kernels["node-2"].networkd = true
	c.kernels["node-3"].failDst = "100.64.0.0/24"
	plan := NewPlan(nodes, DefaultProtocol)
	var b strings.Builder
	for _, o := range []Options{
		{Check: true, Persist: true, Limit: func(n string) bool { return n != "node-5" }},
		{Persist: true, Concurrency: 1, Limit: func(n string) bool { return n != "node-5" }},
	} {
		rep := Run(context.Background(), plan, c.connect, o)
		rep.Duration = 1234 * time.Millisecond
		for i := range rep.Nodes {
			rep.Nodes[i].Duration = time.Duration(i+1) * 111 * time.Millisecond
		}
		fmt.Fprintf(&b, "# check=%v\n", o.Check)
		rep.WriteSummary(&b)
	}
	golden(t, "testdata/summary.golden", b.String())
}

// golden compares got with a golden file, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./orchestrator -run Golden -update rewrites it):\n%s", name, got)
	}
}
