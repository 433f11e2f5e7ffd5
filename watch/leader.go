package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseOptions name the Lease that elects one writer among watchers.
type LeaseOptions struct {
	Namespace, Name string
	Identity        string        // this watcher's, e.g. hostname_pid (the default)
	Duration        time.Duration // lease duration; default 15 s
	RenewDeadline   time.Duration // default 10 s
	RetryPeriod     time.Duration // default 2 s
}

// The defaults of LeaseOptions, client-go's usual settings.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ErrLeaseLost is what RunLeading returns, wrapped, when this watcher lost
// the lease (renewals failed for RenewDeadline) rather than stopped.
var ErrLeaseLost = errors.New("lost the Lease")

// Check checks the options as RunLeading will, without starting: for a
// command to refuse bad flags before it connects anywhere.
func (o LeaseOptions) Check() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults fills what is unset and checks the rest.
func (o LeaseOptions) withDefaults() (LeaseOptions, error) {
	if o.Namespace == "" || o.Name == "" {
		return o, errors.New("watch: leader election needs the Lease's namespace and name")
	}
	if o.Identity == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "routepush"
		}
		o.Identity = host + "_" + strconv.Itoa(os.Getpid())
	}
	for _, d := range []struct {
		v    *time.Duration
		def  time.Duration
		name string
	}{{&o.Duration, DefaultLeaseDuration, "lease duration"}, {&o.RenewDeadline, DefaultRenewDeadline, "renew deadline"}, {&o.RetryPeriod, DefaultRetryPeriod, "retry period"}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return o, fmt.Errorf("watch: the Lease's %s must be positive, not %s", d.name, *d.v)
		}
	}
	if o.Duration <= o.RenewDeadline {
		return o, fmt.Errorf("watch: the lease duration (%s) must be longer than the renew deadline (%s): a leader that cannot renew must stop before another may take over", o.Duration, o.RenewDeadline)
	}
	if float64(o.RenewDeadline) <= leaderelection.JitterFactor*float64(o.RetryPeriod) {
		return o, fmt.Errorf("watch: the renew deadline (%s) must be longer than %g × the retry period (%s)", o.RenewDeadline, leaderelection.JitterFactor, o.RetryPeriod)
	}
	return o, nil
}

// RunLeading runs lead while this watcher holds the Lease, and only then:
// lead's context is cancelled as soon as the lease is lost (lead must stop
// writing to nodes before it returns), and RunLeading returns when ctx is
// done (releasing the lease) or the lease is lost. leading, if not nil,
// is told of every change.
//
// The lease is given up only once lead has returned, so the next leader
// starts after this one stopped writing: on a clean stop (ctx done, or lead
// returning on its own) it is released at once, and RunLeading returns nil;
// on a lost lease (renewals failing for RenewDeadline) lead is cancelled
// then, at least Duration−RenewDeadline before another watcher may take
// it, and RunLeading returns an error saying so, after lead returned.
func RunLeading(ctx context.Context, client kubernetes.Interface, o LeaseOptions, leading func(bool), lead func(ctx context.Context)) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if client == nil {
		return errors.New("watch: leader election needs a Kubernetes client")
	}
	// The election outlives ctx: on a stop the lease is renewed while
	// lead winds down (its rounds finish or roll back), and released
	// only after; stopping the renewals first would let another watcher
	// take the lease while this one still writes.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	t := &term{done: make(chan struct{})}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			t.stop()
			stopElecting()
		case <-stopped:
		}
	}()
	lock := &releaseGate{
		Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
		},
		before:  t.stop,
		timeout: o.RenewDeadline,
	}
	// Our own watchdog on the renewals: client-go cancels the leader's
	// context only once its renew loop and a release attempt have both
	// given up, which against an API that went silent is well past the
	// lease duration. lead is stopped as soon as the last renewal is
	// RenewDeadline old, before any other watcher may take the lease.
	watchdog := func(lctx context.Context) {
		tick := time.NewTicker(o.RetryPeriod / 4)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
				if time.Since(lock.lastRenew()) > o.RenewDeadline {
					t.stop()
					return
				}
			}
		}
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.Duration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            o.Namespace + "/" + o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				lock.renewed()
				go watchdog(lctx)
				if t.run(lctx, leading, lead) {
					// lead returned on its own while leading: step down.
					stopElecting()
				}
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("watch: leader election on Lease %s/%s: %w", o.Namespace, o.Name, err)
	}
	le.Run(electCtx)
	// The elector may have started lead without it having run yet, or the
	// lease may have been lost without a release: either way lead stops
	// (or never starts) here, and is waited for.
	t.stop()
	if ctx.Err() != nil || t.selfStopped() {
		return nil
	}
	return fmt.Errorf("watch: %w %s/%s (as %s): stopped pushing", ErrLeaseLost, o.Namespace, o.Name, o.Identity)
}

// term is one term of leadership: lead runs at most once, and stop cancels
// it and waits for it to return (or keeps it from starting).
type term struct {
	mu      sync.Mutex
	started bool
	stopped bool
	self    bool // lead returned while the lease was still held
	cancel  context.CancelFunc
	done    chan struct{} // closed when lead returns, if it started
}

// run runs lead on a context cancelled with lctx (the elector's, done when
// the lease is lost) or by stop; it reports whether lead returned while
// neither had happened.
func (t *term) run(lctx context.Context, leading func(bool), lead func(context.Context)) bool {
	t.mu.Lock()
	if t.stopped || lctx.Err() != nil {
		t.mu.Unlock()
		return false
	}
	ctx, cancel := context.WithCancel(lctx)
	t.started, t.cancel = true, cancel
	t.mu.Unlock()
	defer close(t.done)
	defer cancel()
	if leading != nil {
		leading(true)
	}
	lead(ctx)
	self := ctx.Err() == nil
	if leading != nil {
		leading(false)
	}
	t.mu.Lock()
	t.self = self
	t.mu.Unlock()
	return self
}

// stop cancels lead and waits for it to return; lead that has not started
// never will.
func (t *term) stop() {
	t.mu.Lock()
	t.stopped = true
	started := t.started
	if started {
		t.cancel()
	}
	t.mu.Unlock()
	if started {
		<-t.done
	}
}

func (t *term) selfStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.self
}

// releaseGate holds the elector's release of the lease (an update that
// clears the holder) until lead has returned, so the next leader cannot
// start while this one still writes. The release then gets its own
// timeout: waiting for lead must not use up the elector's.
//
// It also notes when the lease was last written as ours (the watchdog's
// clock), and releases only a lease that is still ours: a release that
// came late must not clear the next leader's record.
type releaseGate struct {
	resourcelock.Interface
	before  func()
	timeout time.Duration

	mu   sync.Mutex
	last time.Time
}

func (g *releaseGate) renewed() {
	g.mu.Lock()
	g.last = time.Now()
	g.mu.Unlock()
}

func (g *releaseGate) lastRenew() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

func (g *releaseGate) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := g.Interface.Create(ctx, r)
	if err == nil && r.HolderIdentity == g.Identity() {
		g.renewed()
	}
	return err
}

func (g *releaseGate) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if r.HolderIdentity != "" {
		err := g.Interface.Update(ctx, r)
		if err == nil && r.HolderIdentity == g.Identity() {
			g.renewed()
		}
		return err
	}
	g.before()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	defer cancel()
	cur, _, err := g.Get(ctx)
	if err != nil {
		return err
	}
	if cur.HolderIdentity != g.Identity() {
		return nil // another holds it now: nothing of ours to release
	}
	return g.Interface.Update(ctx, r)
}
