package watch

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics is the Observer that keeps the watcher's Prometheus metrics.
// It registers on the Registerer given to NewMetrics (a registry of the
// watcher's own, not the global default), so tests and two watchers in
// one process do not collide. The metrics:
//
//	routepush_nodes{state}                          gauge: nodes by their latest state
//	                                                (converged, failed, unreachable, pending)
//	routepush_routes_managed                        gauge: routes the watcher manages in all
//	routepush_reconcile_duration_seconds{reason}    histogram: how long rounds took
//	routepush_event_to_converged_seconds            histogram: from an event to the end of
//	                                                the round that served it
//	routepush_repairs_total{reason}                 counter: nodes repaired ("drift": a resync
//	                                                found routes missing or different)
//	routepush_rounds_total{reason,result}           counter: rounds by reason (sync, event,
//	                                                resync, retry) and result (ok, failed)
//	routepush_last_full_resync_timestamp_seconds    gauge: unix time the last sync or resync
//	                                                round ended
//	routepush_leader                                gauge: 1 while this watcher holds the lease
//
// A node's state is the last one a round reported for it; a node stays
// counted until Forget is called for it (the engine does so when its Node
// object is deleted), or until this watcher stops leading.
type Metrics struct {
	nodes      *prometheus.GaugeVec
	managed    prometheus.Gauge
	duration   *prometheus.HistogramVec
	eventAge   prometheus.Histogram
	repairs    *prometheus.CounterVec
	rounds     *prometheus.CounterVec
	lastResync prometheus.Gauge
	leader     prometheus.Gauge
	mu         sync.Mutex
	state      map[string]NodeState
}

// Round results, the values of routepush_rounds_total's result label.
const (
	resultOK     = "ok"
	resultFailed = "failed"
)

// RepairDrift is the reason label of routepush_repairs_total for a node a
// resync found drifted and repaired.
const RepairDrift = "drift"

// latencyBuckets are in seconds, from 50 ms to a minute.
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60}

var nodeStates = []NodeState{Converged, Failed, Unreachable, Pending}

// NewMetrics makes the watcher's metrics and registers them on reg (it
// panics, as prometheus.MustRegister does, if they are registered there
// already). A nil reg registers nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		nodes: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "routepush_nodes",
			Help: "Nodes by the state the latest round left them in: converged (routes verified as planned), failed (refused, failed or rolled back), unreachable (not reached, retried with backoff) or pending (known, not yet reconciled).",
		}, []string{"state"}),
		managed: f.NewGauge(prometheus.GaugeOpts{
			Name: "routepush_routes_managed",
			Help: "Routes the watcher manages across all nodes, after the latest round.",
		}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "routepush_reconcile_duration_seconds",
			Help:    "How long reconcile rounds took, by reason (sync, event, resync, retry).",
			Buckets: latencyBuckets,
		}, []string{"reason"}),
		eventAge: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "routepush_event_to_converged_seconds",
			Help:    "Time from a Node or inventory event (the oldest one a round served) to the end of the round that served it.",
			Buckets: latencyBuckets,
		}),
		repairs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "routepush_repairs_total",
			Help: "Nodes repaired, by reason (drift: a resync found routes missing or different and put them right).",
		}, []string{"reason"}),
		rounds: f.NewCounterVec(prometheus.CounterOpts{
			Name: "routepush_rounds_total",
			Help: "Reconcile rounds, by reason (sync, event, resync, retry) and result (ok: no node failed or unreachable; failed otherwise).",
		}, []string{"reason", "result"}),
		lastResync: f.NewGauge(prometheus.GaugeOpts{
			Name: "routepush_last_full_resync_timestamp_seconds",
			Help: "Unix time at which the last full round (the first sync or a periodic resync) ended.",
		}),
		leader: f.NewGauge(prometheus.GaugeOpts{
			Name: "routepush_leader",
			Help: "1 while this watcher holds the lease (and may write to nodes), else 0.",
		}),
		state: map[string]NodeState{},
	}
	// Series that exist from the start, so that rate() and absent() work
	// before the first change.
	for _, s := range nodeStates {
		m.nodes.WithLabelValues(string(s)).Set(0)
	}
	m.repairs.WithLabelValues(RepairDrift)
	return m
}

// RoundDone implements Observer.
func (m *Metrics) RoundDone(r Round) {
	result := resultOK
	repaired := 0
	m.mu.Lock()
	for _, n := range r.Nodes {
		if n.State == Failed || n.State == Unreachable {
			result = resultFailed
		}
		if n.Repaired {
			repaired++
		}
		if n.Name != "" && n.State != "" {
			m.state[n.Name] = n.State
		}
	}
	m.setNodesLocked()
	m.mu.Unlock()

	reason := r.Reason
	if reason == "" {
		reason = "unknown"
	}
	m.rounds.WithLabelValues(reason, result).Inc()
	m.duration.WithLabelValues(reason).Observe(r.Took.Seconds())
	if r.EventAge > 0 {
		m.eventAge.Observe(r.EventAge.Seconds())
	}
	if repaired > 0 {
		m.repairs.WithLabelValues(RepairDrift).Add(float64(repaired))
	}
	if r.Reason == "sync" || r.Reason == "resync" {
		end := time.Now()
		if !r.Started.IsZero() {
			end = r.Started.Add(r.Took)
		}
		m.lastResync.Set(float64(end.UnixNano()) / 1e9)
	}
}

// Managed implements Observer.
func (m *Metrics) Managed(routes int) { m.managed.Set(float64(routes)) }

// Leading implements Observer. A watcher that stops leading forgets the
// nodes' states and the routes it managed: a standby manages nothing, and
// its stale counts would add to the leader's in a sum over replicas (or
// keep an alert on failed nodes firing from a pod that no longer acts).
func (m *Metrics) Leading(b bool) {
	if b {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
	m.managed.Set(0)
	m.mu.Lock()
	clear(m.state)
	m.setNodesLocked()
	m.mu.Unlock()
}

// Forget drops a node from routepush_nodes: the engine calls it when the
// node's Node object is deleted. It is safe to call from any goroutine.
func (m *Metrics) Forget(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.state[node]; !ok {
		return
	}
	delete(m.state, node)
	m.setNodesLocked()
}

func (m *Metrics) setNodesLocked() {
	count := make(map[NodeState]int, len(nodeStates))
	for _, s := range m.state {
		count[s]++
	}
	for _, s := range nodeStates {
		m.nodes.WithLabelValues(string(s)).Set(float64(count[s]))
	}
}

var _ Observer = (*Metrics)(nil)
