package watch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Short enough for tests, long enough for -race on a loaded machine: a
// leader starved of the CPU past the lease duration loses it for real.
func testLease(id string) LeaseOptions {
	return LeaseOptions{
		Namespace: "routepush-system", Name: "routepush", Identity: id,
		Duration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond,
	}
}

// timeline records when each watcher's lead started and returned.
type timeline struct {
	mu      sync.Mutex
	started map[string]time.Time
	ended   map[string]time.Time
	now     atomic.Int32 // leads running at once
	most    atomic.Int32
}

func newTimeline() *timeline {
	return &timeline{started: map[string]time.Time{}, ended: map[string]time.Time{}}
}

// lead is a lead that runs until its context is cancelled.
func (tl *timeline) lead(id string, leads chan<- string) func(context.Context) {
	return func(ctx context.Context) {
		n := tl.now.Add(1)
		for {
			m := tl.most.Load()
			if n <= m || tl.most.CompareAndSwap(m, n) {
				break
			}
		}
		tl.mu.Lock()
		tl.started[id] = time.Now()
		tl.mu.Unlock()
		leads <- id
		<-ctx.Done()
		// A writer finishing its round after the cancel: the next leader
		// must still wait for it.
		time.Sleep(200 * time.Millisecond)
		tl.mu.Lock()
		tl.ended[id] = time.Now()
		tl.mu.Unlock()
		tl.now.Add(-1)
	}
}

func TestRunLeadingOneLeaderThenHandover(t *testing.T) {
	client := fake.NewClientset()
	tl := newTimeline()
	leads := make(chan string, 2)
	type watcher struct {
		cancel  context.CancelFunc
		err     chan error
		changes []bool
		mu      sync.Mutex
	}
	start := func(id string) *watcher {
		ctx, cancel := context.WithCancel(context.Background())
		w := &watcher{cancel: cancel, err: make(chan error, 1)}
		go func() {
			w.err <- RunLeading(ctx, client, testLease(id), func(b bool) {
				w.mu.Lock()
				w.changes = append(w.changes, b)
				w.mu.Unlock()
			}, tl.lead(id, leads))
		}()
		return w
	}
	a := start("a")
	select {
	case id := <-leads:
		if id != "a" {
			t.Fatalf("%s leads, want a", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a never led")
	}
	b := start("b")
	// b must not lead while a holds the lease, however long it waits.
	select {
	case id := <-leads:
		t.Fatalf("%s leads while a holds the lease", id)
	case <-time.After(2 * testLease("").Duration):
	}

	stopped := time.Now()
	a.cancel()
	select {
	case err := <-a.err:
		if err != nil {
			t.Fatalf("a, cancelled: %v, want nil", err)
		}
		tl.mu.Lock()
		ended := tl.ended["a"]
		tl.mu.Unlock()
		if ended.IsZero() {
			t.Fatal("a's RunLeading returned before its lead did")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a's RunLeading did not return after its cancel")
	}
	select {
	case id := <-leads:
		if id != "b" {
			t.Fatalf("%s leads, want b", id)
		}
	case <-time.After(testLease("").Duration):
		t.Fatalf("b did not take over within the lease duration")
	}
	took := time.Since(stopped)

	tl.mu.Lock()
	aEnd, bStart := tl.ended["a"], tl.started["b"]
	tl.mu.Unlock()
	if aEnd.IsZero() || !aEnd.Before(bStart) {
		t.Errorf("a's lead returned at %v, b's started at %v: want a's first", aEnd, bStart)
	}
	if m := tl.most.Load(); m != 1 {
		t.Errorf("%d leads ran at once", m)
	}
	a.mu.Lock()
	if got := a.changes; len(got) != 2 || !got[0] || got[1] {
		t.Errorf("a was told %v, want [true false]", got)
	}
	a.mu.Unlock()
	t.Logf("b took over %s after a's cancel (a's lead stopped %s before b's started)", took.Round(time.Millisecond), bStart.Sub(aEnd).Round(time.Millisecond))

	b.cancel()
	if err := <-b.err; err != nil {
		t.Fatalf("b, cancelled: %v", err)
	}
}

func TestRunLeadingLostLease(t *testing.T) {
	client := fake.NewClientset()
	var failing atomic.Bool
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, errors.New("apiserver unreachable")
		}
		return false, nil, nil
	})
	leads := make(chan string, 1)
	var cancelled, returned atomic.Int64 // unix nanos
	errc := make(chan error, 1)
	go func() {
		errc <- RunLeading(context.Background(), client, testLease("a"), nil, func(ctx context.Context) {
			leads <- "a"
			<-ctx.Done()
			cancelled.Store(time.Now().UnixNano())
			time.Sleep(100 * time.Millisecond)
			returned.Store(time.Now().UnixNano())
		})
	}()
	select {
	case <-leads:
	case <-time.After(5 * time.Second):
		t.Fatal("never led")
	}
	lost := time.Now()
	failing.Store(true)
	var err error
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("RunLeading did not return after losing the lease")
	}
	if err == nil || !strings.Contains(err.Error(), "lost the Lease routepush-system/routepush") {
		t.Fatalf("err = %v, want the lease lost", err)
	}
	if returned.Load() == 0 {
		t.Fatal("RunLeading returned before lead did")
	}
	// lead's context is cancelled once renewing fails for RenewDeadline,
	// before the lease (Duration) could expire for another watcher.
	if d := time.Unix(0, cancelled.Load()).Sub(lost); d >= testLease("").Duration {
		t.Errorf("lead cancelled %s after renewals began failing, want < lease duration", d)
	}
}

func TestRunLeadingCancelledBeforeLeading(t *testing.T) {
	client := fake.NewClientset()
	// Another watcher holds the lease; this one waits and is cancelled.
	holder, stopHolder := context.WithCancel(context.Background())
	defer stopHolder()
	leads := make(chan string, 2)
	held := make(chan error, 1)
	go func() {
		held <- RunLeading(holder, client, testLease("a"), nil, func(ctx context.Context) { leads <- "a"; <-ctx.Done() })
	}()
	<-leads
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := RunLeading(ctx, client, testLease("b"), nil, func(context.Context) { leads <- "b" }); err != nil {
		t.Fatalf("cancelled while waiting: %v, want nil", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned %s after its context was done", d)
	}
	stopHolder()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if len(leads) != 0 {
		t.Errorf("b led while cancelled")
	}
}

func TestRunLeadingLeadReturnsReleases(t *testing.T) {
	client := fake.NewClientset()
	start := time.Now()
	if err := RunLeading(context.Background(), client, testLease("a"), nil, func(context.Context) {}); err != nil {
		t.Fatalf("lead returned on its own: %v, want nil", err)
	}
	// Released: another takes it at once, not after the lease duration.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var took time.Duration
	if err := RunLeading(ctx, client, testLease("b"), nil, func(context.Context) { took = time.Since(start) }); err != nil {
		t.Fatal(err)
	}
	if took == 0 || took >= testLease("").Duration {
		t.Errorf("b led %s after a started, want within the lease duration", took)
	}
}

func TestLeaseOptionsChecked(t *testing.T) {
	ok := testLease("a")
	for _, c := range []struct {
		name string
		edit func(*LeaseOptions)
		want string
	}{
		{"no namespace", func(o *LeaseOptions) { o.Namespace = "" }, "namespace and name"},
		{"no name", func(o *LeaseOptions) { o.Name = "" }, "namespace and name"},
		{"negative", func(o *LeaseOptions) { o.RetryPeriod = -time.Second }, "retry period must be positive"},
		{"duration not past deadline", func(o *LeaseOptions) { o.Duration = o.RenewDeadline }, "must be longer than the renew deadline"},
		{"deadline too short", func(o *LeaseOptions) { o.RetryPeriod = o.RenewDeadline }, "must be longer than 1.2 × the retry period"},
		{"default deadline past duration", func(o *LeaseOptions) { o.Duration, o.RenewDeadline = 5*time.Second, 0 }, "must be longer than the renew deadline"},
	} {
		o := ok
		c.edit(&o)
		err := RunLeading(context.Background(), fake.NewClientset(), o, nil, func(context.Context) { t.Errorf("%s: lead ran", c.name) })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	o, err := LeaseOptions{Namespace: "n", Name: "l"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 15*time.Second || o.RenewDeadline != 10*time.Second || o.RetryPeriod != 2*time.Second || o.Identity == "" {
		t.Errorf("defaults: %+v", o)
	}
}
