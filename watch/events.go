package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/routepush/routepush/internal/safetext"
)

// Event reasons on Node objects.
const (
	ReasonConverged = "RoutesConverged" // Normal: the node's routes are as planned
	ReasonFailed    = "RoutesFailed"    // Warning: the node failed or was not reached
	ReasonRepaired  = "RoutesRepaired"  // Normal: a resync repaired drift
)

// ReportingController is the reporting controller of routepush's Events.
const ReportingController = "routepush"

// maxNote bounds an Event's note: the events.k8s.io/v1 API refuses notes
// of 1 KiB or more.
const maxNote = 1000

// flushWait bounds how long the stop function of NewEvents waits for
// the Events queued to reach the apiserver.
const flushWait = 5 * time.Second

// queueLen bounds the Events waiting to be written; more are dropped
// (and logged) rather than block a round.
const queueLen = 256

// Events is the Observer that records Kubernetes Events (events.k8s.io/v1,
// reporting controller "routepush") on the Node objects:
//
//	RoutesConverged  Normal   the node became converged after not being so,
//	                          or a round changed its routes
//	RoutesFailed     Warning  the node became failed or unreachable, or
//	                          failed with another error than before (the
//	                          error, sanitised and truncated to 1 KiB)
//	RoutesRepaired   Normal   a resync found the node drifted and repaired
//	                          it (with the counts)
//
// To avoid floods, a node whose state did not change and whose routes the
// round did not change gets no Event. An Event names its Node by
// reference kind Node, name and UID = the node's name, as the kubelet's
// node Events do (a NodeResult has no UID; `kubectl describe node` finds
// Events under either), so no lookup of the Node is needed. Events are
// in namespace "default", as for every cluster-scoped object.
//
// Events are written by a goroutine of their own through the
// events.k8s.io/v1 client (not client-go's EventBroadcaster, whose
// asynchronous hand-off cannot be flushed when the watcher stops), so a
// round never waits for the apiserver.
type Events struct {
	client   kubernetes.Interface
	logger   *slog.Logger
	instance string
	queue    chan *eventsv1.Event
	done     chan struct{}

	mu      sync.Mutex
	stopped bool
	seq     uint64 // makes Event names unique
	last    map[string]nodeSeen
}

type nodeSeen struct {
	state NodeState
	err   string
}

// NewEvents starts recording Events through client. The function it
// returns stops recording after writing the Events already queued (for
// up to 5 s); it may be called more than once.
func NewEvents(client kubernetes.Interface, logger *slog.Logger) (*Events, func()) {
	if logger == nil {
		logger = slog.Default()
	}
	host, _ := os.Hostname()
	instance := ReportingController + "-" + host
	if len(instance) > 128 {
		instance = instance[:128]
	}
	e := &Events{
		client:   client,
		logger:   logger,
		instance: instance,
		queue:    make(chan *eventsv1.Event, queueLen),
		done:     make(chan struct{}),
		last:     map[string]nodeSeen{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	go e.write(ctx)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			e.mu.Lock()
			e.stopped = true
			close(e.queue)
			e.mu.Unlock()
			select {
			case <-e.done:
			case <-time.After(flushWait):
				e.logger.Warn("kubernetes events: not all written before stopping")
			}
			cancel()
			<-e.done
		})
	}
	return e, stop
}

// write creates the queued Events until the queue is closed.
func (e *Events) write(ctx context.Context) {
	defer close(e.done)
	for ev := range e.queue {
		if ctx.Err() != nil {
			continue // stopping and out of time: drain
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.client.EventsV1().Events(ev.Namespace).Create(wctx, ev, metav1.CreateOptions{})
		cancel()
		if err != nil {
			e.logger.Warn("kubernetes event not written", "node", safetext.Line(ev.Regarding.Name), "reason", ev.Reason, "err", safetext.Line(err.Error()))
		}
	}
}

// RoundDone implements Observer.
func (e *Events) RoundDone(r Round) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	for _, n := range r.Nodes {
		if n.Name == "" {
			continue
		}
		prev, seen := e.last[n.Name]
		cur := nodeSeen{state: n.State}
		if n.Err != nil {
			cur.err = n.Err.Error()
		}
		e.last[n.Name] = cur
		changed := n.Added+n.Changed+n.Removed > 0
		switch n.State {
		case Converged:
			switch {
			case n.Repaired:
				e.event(n.Name, corev1.EventTypeNormal, ReasonRepaired, "Repair",
					"resync repaired drifted routes: %d added, %d changed, %d removed", n.Added, n.Changed, n.Removed)
			case changed || !seen || prev.state != Converged:
				e.event(n.Name, corev1.EventTypeNormal, ReasonConverged, "Reconcile",
					"routes converged (%s round): %d added, %d changed, %d removed", reasonOr(r.Reason), n.Added, n.Changed, n.Removed)
			}
		case Failed, Unreachable:
			if seen && prev == cur && !changed {
				continue
			}
			msg := string(n.State)
			if cur.err != "" {
				msg += ": " + cur.err
			}
			e.event(n.Name, corev1.EventTypeWarning, ReasonFailed, "Reconcile", "%s", note(msg))
		}
	}
}

// Managed implements Observer; Events has nothing to say about it.
func (e *Events) Managed(int) {}

// Leading implements Observer; Events has nothing to say about it.
func (e *Events) Leading(bool) {}

// Forget drops what Events remembers of a node: the engine calls it when
// the node's Node object is deleted. Safe from any goroutine.
func (e *Events) Forget(node string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.last, node)
}

func (e *Events) event(node, typ, reason, action, format string, args ...any) {
	now := time.Now()
	e.seq++
	prefix := node
	if len(prefix) > 220 { // a name is at most 253 bytes
		prefix = prefix[:220]
	}
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x.%x", prefix, now.UnixNano(), e.seq),
			Namespace: metav1.NamespaceDefault,
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: ReportingController,
		ReportingInstance:   e.instance,
		Action:              action,
		Reason:              reason,
		Regarding: corev1.ObjectReference{
			Kind:       "Node",
			APIVersion: "v1",
			Name:       node,
			UID:        types.UID(node),
		},
		Note: fmt.Sprintf(format, args...),
		Type: typ,
	}
	select {
	case e.queue <- ev:
		e.logger.Debug("kubernetes event", "node", safetext.Line(node), "type", typ, "reason", reason)
	default:
		e.logger.Warn("kubernetes event dropped: queue full", "node", safetext.Line(node), "reason", reason)
	}
}

func reasonOr(s string) string {
	if s == "" {
		return "unknown"
	}
	return safetext.Line(s)
}

// note makes s safe for an Event's note: sanitised (a node's error text
// may hold anything) and cut, on a rune boundary, below the API's limit.
func note(s string) string {
	s = safetext.Text(s)
	if len(s) <= maxNote {
		return s
	}
	const more = " …(truncated)"
	cut := maxNote - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}

var _ Observer = (*Events)(nil)
