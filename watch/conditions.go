package watch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/inventory"
)

// conditionsQueueLen bounds the nodes waiting for their condition to be
// written (one entry per node, whatever the rounds say meanwhile): more
// than any cluster has nodes; past it a node is dropped and logged.
const conditionsQueueLen = 1 << 16

// conditionWriteTimeout bounds one node's write (a read and a patch, with
// conflict retries).
const conditionWriteTimeout = 10 * time.Second

// conditionRetries is how often a write that failed (the API unreachable,
// a timeout) is tried again, after 1 s doubling; then the node waits for
// its next round.
const conditionRetries = 5

// Conditions is the Observer that keeps each Node's NetworkUnavailable
// condition true to its routes (--mark-network-available), as Kubernetes'
// route controller does for a cloud's routes:
//
//	converged    False, reason RouteCreated
//	failed       True, reason NoRouteCreated: refused, failed or rolled
//	             back, so its routes are not as planned
//	unreachable  left as it is: the node's routes were not read, and the
//	             routes to it on the other nodes stand (the route
//	             controller too keeps a node's condition while its routes
//	             exist, whether or not the node answers; NotReady is the
//	             kubelet's and the node lifecycle controller's to say)
//	pending      left as it is
//
// A node another run holds locked is left as it is too: its routes are
// that run's business, not a failure of this watcher's.
//
// Writes go through inventory.Cluster, which patches only when status or
// reason differ from what it last saw of the node (the informer's copy,
// or its own last write), so a round that leaves a node as it was sends
// nothing. They are made by one goroutine of their own, never by the
// round: a node's pending value is replaced by a newer round's (one entry
// per node), and a failed write is retried a few times with backoff.
//
// Only the leader writes: Leading drops what is pending and waits for a
// write in flight (cancelled) before it returns, so nothing is written
// for a term that has ended.
type Conditions struct {
	cluster *inventory.Cluster
	logger  *slog.Logger
	done    chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond // signals work, stopping and the end of a write
	stopped bool
	writing bool
	want    map[string]bool // node → unavailable, waiting to be written
	order   []string        // the nodes of want, oldest first
	fails   map[string]int  // writes in a row that failed, per node
	term    uint64          // counts Leading calls: a retry of an old term is dropped
	ctx     context.Context // the term's: cancelled by Leading and stop
	cancel  context.CancelFunc
}

// NewConditions starts keeping conditions through cluster. The function
// it returns stops after writing what is pending (for up to 5 s); it may
// be called more than once.
func NewConditions(cluster *inventory.Cluster, logger *slog.Logger) (*Conditions, func()) {
	if logger == nil {
		logger = slog.Default()
	}
	c := &Conditions{cluster: cluster, logger: logger, done: make(chan struct{}),
		want: map[string]bool{}, fails: map[string]int{}}
	c.cond = sync.NewCond(&c.mu)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.write()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			c.mu.Lock()
			c.stopped = true
			c.cond.Broadcast()
			c.mu.Unlock()
			select {
			case <-c.done:
			case <-time.After(flushWait):
				c.logger.Warn("NetworkUnavailable conditions: not all written before stopping")
				c.mu.Lock()
				c.dropLocked()
				c.cancel()
				c.mu.Unlock()
				<-c.done
			}
			c.cancel()
		})
	}
	return c, stop
}

// RoundDone implements Observer.
func (c *Conditions) RoundDone(r Round) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range r.Nodes {
		switch n.State {
		case Converged:
			c.setLocked(n.Name, false, c.term, true)
		case Failed:
			var held *host.LockedError
			if !errors.As(n.Err, &held) {
				c.setLocked(n.Name, true, c.term, true)
			}
		}
	}
}

// Managed implements Observer; Conditions has nothing to say about it.
func (c *Conditions) Managed(int) {}

// Leading implements Observer: a term begins or ends. What is pending
// is dropped and a write in flight cancelled and waited for; the next
// leader (or this one's next term) decides every node again in its first
// round.
func (c *Conditions) Leading(bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
	c.cancel()
	for c.writing {
		c.cond.Wait()
	}
	c.term++
	c.ctx, c.cancel = context.WithCancel(context.Background())
}

// Forget drops what Conditions holds of a node whose Node object was
// deleted. Safe from any goroutine.
func (c *Conditions) Forget(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.want[node]; ok {
		delete(c.want, node)
		for i, n := range c.order {
			if n == node {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	}
	delete(c.fails, node)
}

// setLocked queues node's condition for term; a value already queued
// is replaced if replace (a round's word is newer), else kept (a retry's
// is older).
func (c *Conditions) setLocked(node string, unavailable bool, term uint64, replace bool) {
	if node == "" || c.stopped || term != c.term {
		return
	}
	_, queued := c.want[node]
	if queued && !replace {
		return
	}
	if !queued {
		if len(c.order) >= conditionsQueueLen {
			c.logger.Warn("NetworkUnavailable condition dropped: queue full", "node", safetext.Line(node))
			return
		}
		c.order = append(c.order, node)
	}
	c.want[node] = unavailable
	c.cond.Broadcast()
}

func (c *Conditions) dropLocked() {
	clear(c.want)
	clear(c.fails)
	c.order = nil
}

// write writes the queued conditions, oldest first, until stopped with
// nothing left.
func (c *Conditions) write() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.order) == 0 && !c.stopped {
			c.cond.Wait()
		}
		if len(c.order) == 0 {
			c.mu.Unlock()
			return
		}
		node := c.order[0]
		c.order = c.order[1:]
		unavailable := c.want[node]
		delete(c.want, node)
		ctx, term := c.ctx, c.term
		c.writing = true
		c.mu.Unlock()

		err := c.patch(ctx, node, unavailable)

		c.mu.Lock()
		c.writing = false
		c.cond.Broadcast()
		if ctx.Err() == nil || err == nil {
			c.retryLocked(node, unavailable, term, err)
		} // else cancelled with its term, or by stop: not a failure
		c.mu.Unlock()
	}
}

// patch writes one node's condition.
func (c *Conditions) patch(ctx context.Context, node string, unavailable bool) error {
	ctx, cancel := context.WithTimeout(ctx, conditionWriteTimeout)
	defer cancel()
	mark, status := c.cluster.MarkNetworkAvailable, "False"
	if unavailable {
		mark, status = c.cluster.MarkNetworkUnavailable, "True"
	}
	changed, err := mark(ctx, node)
	switch {
	case err == nil && changed:
		c.logger.Info("NetworkUnavailable condition set", "node", safetext.Line(node), "status", status)
	case err == nil:
		c.logger.Debug("NetworkUnavailable condition already so", "node", safetext.Line(node), "status", status)
	case apierrors.IsNotFound(err):
		// An inventory node the API does not know (--allow-unknown-nodes),
		// or a Node deleted meanwhile: nothing to mark.
		c.logger.Debug("NetworkUnavailable condition not set: no such Node", "node", safetext.Line(node))
		return nil
	}
	return err
}

// retryLocked schedules a failed write again, unless the term ended, the
// node has a newer value queued, the failure will not pass by itself
// (403, 401) or it failed too often: then the node's next round decides.
func (c *Conditions) retryLocked(node string, unavailable bool, term uint64, err error) {
	if err == nil {
		delete(c.fails, node)
		return
	}
	if term != c.term || c.stopped {
		return
	}
	c.fails[node]++
	n := c.fails[node]
	final := n > conditionRetries || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)
	c.logger.Warn("failed to set the NetworkUnavailable condition", "node", safetext.Line(node),
		"attempt", n, "retrying", !final, "err", safetext.Line(err.Error()))
	if final {
		delete(c.fails, node)
		return
	}
	time.AfterFunc(time.Second<<(n-1), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		// Only if nothing happened to the node since: a write that
		// succeeded (fails cleared) or failed again (its own retry)
		// makes this one stale.
		if c.fails[node] == n {
			c.setLocked(node, unavailable, term, false)
		}
	})
}

var _ Observer = (*Conditions)(nil)
