package app

import (
	"log/slog"
	"sync"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/watch"
)

// readiness is the Observer /readyz answers from. A leader (or a watcher
// without a Lease) is ready once the first round of its term, the full
// sync, has ended, whatever its nodes' outcome: from then on it follows
// events. A standby is ready while it stands by: that is its whole job,
// and a Deployment's rolling update waits for the new pod, a standby
// since the old one holds the Lease, to be ready.
type readiness struct {
	mu      sync.Mutex
	leading bool
	synced  bool // the term's first round ended
	standby bool // campaigning, not leading
}

func (r *readiness) ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leading {
		return r.synced
	}
	return r.standby
}

// standingBy is called as the watcher campaigns for the Lease.
func (r *readiness) standingBy() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.standby = true
}

func (r *readiness) RoundDone(round watch.Round) {
	if round.Reason != "sync" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced = true
}

func (r *readiness) Managed(int) {}

func (r *readiness) Leading(b bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leading, r.synced = b, false
}

// logObserver logs what the engine's own round lines do not say: when
// this watcher starts and stops leading, and a node that converged again
// after failing or being unreachable (the engine logs each time it does
// not).
type logObserver struct {
	log  *slog.Logger
	mu   sync.Mutex
	down map[string]watch.NodeState // nodes last seen failed or unreachable
}

func newLogObserver(log *slog.Logger) *logObserver {
	return &logObserver{log: log, down: map[string]watch.NodeState{}}
}

func (o *logObserver) RoundDone(r watch.Round) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range r.Nodes {
		switch n.State {
		case watch.Failed, watch.Unreachable:
			o.down[n.Name] = n.State
		case watch.Converged:
			if was, ok := o.down[n.Name]; ok {
				o.log.Info("node converged again", "node", safetext.Line(n.Name), "was", string(was), "reason", r.Reason)
				delete(o.down, n.Name)
			}
		}
	}
}

func (o *logObserver) Managed(int) {}

func (o *logObserver) Leading(b bool) {
	if b {
		o.log.Info("leading: this watcher pushes routes")
		return
	}
	o.log.Info("not leading: stopped pushing routes")
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.down)
}

// Forget drops a node whose Node object was deleted.
func (o *logObserver) Forget(node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.down, node)
}

var (
	_ watch.Observer = (*readiness)(nil)
	_ watch.Observer = (*logObserver)(nil)
)
