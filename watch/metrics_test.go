package watch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	var _ Observer = m

	start := time.Unix(1_700_000_000, 0)
	m.Leading(true)
	m.RoundDone(Round{Reason: "sync", Started: start, Took: 2 * time.Second, Nodes: []NodeResult{
		{Name: "a", State: Converged, Added: 2},
		{Name: "b", State: Converged, Added: 2},
		{Name: "c", State: Unreachable, Err: errors.New("dial: timeout")},
	}})
	m.Managed(6)
	m.RoundDone(Round{Reason: "event", Started: start.Add(time.Minute), Took: 300 * time.Millisecond, EventAge: 700 * time.Millisecond, Nodes: []NodeResult{
		{Name: "a", State: Converged, Added: 1},
		{Name: "d", State: Pending},
	}})
	m.RoundDone(Round{Reason: "resync", Started: start.Add(10 * time.Minute), Took: time.Second, Nodes: []NodeResult{
		{Name: "a", State: Converged, Added: 1, Repaired: true},
		{Name: "b", State: Converged, Added: 2, Repaired: true},
		{Name: "c", State: Converged, Added: 3},
		{Name: "d", State: Failed, Err: errors.New("refused")},
	}})
	m.Managed(9)

	for state, want := range map[NodeState]float64{Converged: 3, Failed: 1, Unreachable: 0, Pending: 0} {
		if got := testutil.ToFloat64(m.nodes.WithLabelValues(string(state))); got != want {
			t.Errorf("routepush_nodes{state=%q} = %v, want %v", state, got, want)
		}
	}
	if got := testutil.ToFloat64(m.managed); got != 9 {
		t.Errorf("routes managed = %v, want 9", got)
	}
	if got := testutil.ToFloat64(m.repairs.WithLabelValues("drift")); got != 2 {
		t.Errorf("repairs = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.leader); got != 1 {
		t.Errorf("leader = %v, want 1", got)
	}
	wantResync := float64(start.Add(10*time.Minute + time.Second).Unix())
	if got := testutil.ToFloat64(m.lastResync); got != wantResync {
		t.Errorf("last resync = %v, want %v", got, wantResync)
	}

	rounds := `
# HELP routepush_rounds_total Reconcile rounds, by reason (sync, event, resync, retry) and result (ok: no node failed or unreachable; failed otherwise).
# TYPE routepush_rounds_total counter
routepush_rounds_total{reason="event",result="ok"} 1
routepush_rounds_total{reason="resync",result="failed"} 1
routepush_rounds_total{reason="sync",result="failed"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(rounds), "routepush_rounds_total"); err != nil {
		t.Error(err)
	}
	latency := `
# HELP routepush_event_to_converged_seconds Time from a Node or inventory event (the oldest one a round served) to the end of the round that served it.
# TYPE routepush_event_to_converged_seconds histogram
routepush_event_to_converged_seconds_bucket{le="0.05"} 0
routepush_event_to_converged_seconds_bucket{le="0.1"} 0
routepush_event_to_converged_seconds_bucket{le="0.25"} 0
routepush_event_to_converged_seconds_bucket{le="0.5"} 0
routepush_event_to_converged_seconds_bucket{le="1"} 1
routepush_event_to_converged_seconds_bucket{le="2"} 1
routepush_event_to_converged_seconds_bucket{le="5"} 1
routepush_event_to_converged_seconds_bucket{le="10"} 1
routepush_event_to_converged_seconds_bucket{le="20"} 1
routepush_event_to_converged_seconds_bucket{le="30"} 1
routepush_event_to_converged_seconds_bucket{le="60"} 1
routepush_event_to_converged_seconds_bucket{le="+Inf"} 1
routepush_event_to_converged_seconds_sum 0.7
routepush_event_to_converged_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(latency), "routepush_event_to_converged_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 3 {
		t.Errorf("reconcile duration series = %d, want 3 (one per reason)", n)
	}

	// Forget drops a deleted node; an unknown one changes nothing.
	m.Forget("d")
	m.Forget("nope")
	if got := testutil.ToFloat64(m.nodes.WithLabelValues(string(Failed))); got != 0 {
		t.Errorf("failed nodes after Forget = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.nodes.WithLabelValues(string(Converged))); got != 3 {
		t.Errorf("converged nodes after Forget = %v, want 3", got)
	}
	m.Leading(false)
	if got := testutil.ToFloat64(m.leader); got != 0 {
		t.Errorf("leader = %v, want 0", got)
	}
	// A standby counts no nodes and manages no routes.
	for _, s := range nodeStates {
		if got := testutil.ToFloat64(m.nodes.WithLabelValues(string(s))); got != 0 {
			t.Errorf("standby: routepush_nodes{state=%q} = %v, want 0", s, got)
		}
	}
	if got := testutil.ToFloat64(m.managed); got != 0 {
		t.Errorf("standby: routes managed = %v, want 0", got)
	}

	// Every metric is named routepush_*, documented and lints clean.
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "routepush_") || mf.GetHelp() == "" {
			t.Errorf("metric %q: want a routepush_ name and help", mf.GetName())
		}
	}
}

// Two watchers in one process, each with its registry, do not collide.
func TestMetricsOwnRegistry(t *testing.T) {
	NewMetrics(prometheus.NewRegistry())
	NewMetrics(prometheus.NewRegistry())
	NewMetrics(nil)
}
