package watch

import "time"

// NodeState is where a node stands after a round, for metrics and Events.
type NodeState string

// Node states.
const (
	Converged   NodeState = "converged"   // routes verified as planned
	Failed      NodeState = "failed"      // refused, failed or rolled back: see Err
	Unreachable NodeState = "unreachable" // not reached; retried with backoff
	Pending     NodeState = "pending"     // known, not yet reconciled
)

// Round is one reconcile round: the nodes an event (or a batch of
// coalesced events) affected, or every node for a sync or a resync.
type Round struct {
	// Reason is why the round ran: "sync" (the first, after the
	// informer's initial list), "event", "resync" or "retry".
	Reason  string
	Started time.Time
	Took    time.Duration
	// EventAge is how long the oldest event the round served had waited
	// when the round ended (event to converged); 0 for sync and resync.
	EventAge time.Duration
	Nodes    []NodeResult
}

// NodeResult is one node's part of a round.
type NodeResult struct {
	Name                    string
	State                   NodeState
	Added, Changed, Removed int // routes
	// Repaired is set when a resync found the node drifted (routes
	// missing or different) and put it right.
	Repaired bool
	Err      error
}

// Observer is told what the watcher does: metrics, Events and logs
// implement it. Calls come from one goroutine at a time and must not
// block for long.
type Observer interface {
	// RoundDone reports a finished round.
	RoundDone(Round)
	// Managed reports how many routes the watcher manages in all,
	// after a round.
	Managed(routes int)
	// Leading reports whether this watcher holds the lease (always
	// true without leader election).
	Leading(bool)
}

// Observers fans calls out to several observers.
type Observers []Observer

func (os Observers) RoundDone(r Round) {
	for _, o := range os {
		o.RoundDone(r)
	}
}

func (os Observers) Managed(n int) {
	for _, o := range os {
		o.Managed(n)
	}
}

func (os Observers) Leading(b bool) {
	for _, o := range os {
		o.Leading(b)
	}
}

// Forgetter is an Observer that keeps something per node (Metrics, Events,
// Conditions): the engine calls Forget when a node leaves the node table,
// so that a cluster whose nodes come and go does not grow it for ever.
type Forgetter interface {
	Forget(node string)
}

// Forget tells every observer that is a Forgetter that node left.
func (os Observers) Forget(node string) {
	for _, o := range os {
		if f, ok := o.(Forgetter); ok {
			f.Forget(node)
		}
	}
}

var (
	_ Forgetter = Observers(nil)
	_ Forgetter = (*Metrics)(nil)
	_ Forgetter = (*Events)(nil)
	_ Forgetter = (*Conditions)(nil)
)
