package watch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// SIGTERM while a round drains for longer than the lease duration: the
// lease is renewed while lead winds down, so the other watcher cannot
// take it while this one still writes, and a release never clears
// another holder's record.
func TestRunLeadingRenewsWhileLeadDrains(t *testing.T) {
	client := fake.NewClientset()
	o := testLease("a")
	var mu sync.Mutex
	var aEnded, bStarted time.Time
	aLeads := make(chan struct{}, 1)
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		errA <- RunLeading(ctxA, client, o, nil, func(ctx context.Context) {
			aLeads <- struct{}{}
			<-ctx.Done()
			time.Sleep(2 * o.Duration) // a node mid-apply: command timeout, settle
			mu.Lock()
			aEnded = time.Now()
			mu.Unlock()
		})
	}()
	<-aLeads
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	bLeads := make(chan struct{}, 1)
	go func() {
		_ = RunLeading(ctxB, client, testLease("b"), nil, func(ctx context.Context) {
			mu.Lock()
			bStarted = time.Now()
			mu.Unlock()
			bLeads <- struct{}{}
			<-ctx.Done()
		})
	}()
	time.Sleep(time.Second)
	cancelA() // SIGTERM
	<-errA
	mu.Lock()
	t.Logf("a's lead ended %v, b's started %v", aEnded.Format("15:04:05.000"), bStarted.Format("15:04:05.000"))
	if !bStarted.IsZero() && bStarted.Before(aEnded) {
		t.Errorf("b led %s before a stopped writing", aEnded.Sub(bStarted).Round(time.Millisecond))
	}
	mu.Unlock()
	l, err := client.CoordinationV1().Leases(o.Namespace).Get(context.Background(), o.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := ""
	if l.Spec.HolderIdentity != nil {
		h = *l.Spec.HolderIdentity
	}
	// b may take the lease at any moment now: what it has done is read
	// under the lock, after the lease.
	mu.Lock()
	bLed := !bStarted.IsZero()
	mu.Unlock()
	t.Logf("lease after a's release: holder %q (b leading: %v)", h, bLed)
	if bLed && h != "b" {
		t.Errorf("a's release overwrote b's lease: holder %q while b leads", h)
	}
}

// The API server blackholed (requests hang until their timeout): lead is
// cancelled once the last renewal is RenewDeadline old, before the lease
// duration is up and another watcher may lead.
func TestRunLeadingStopsWhenTheAPIGoesSilent(t *testing.T) {
	client := fake.NewClientset()
	o := testLease("a")
	var hole atomic.Bool
	client.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if hole.Load() {
			time.Sleep(o.RenewDeadline) // until the client's timeout
			return true, nil, context.DeadlineExceeded
		}
		return false, nil, nil
	})
	leads := make(chan struct{}, 1)
	var cancelled atomic.Int64
	errc := make(chan error, 1)
	go func() {
		errc <- RunLeading(context.Background(), client, o, nil, func(ctx context.Context) {
			leads <- struct{}{}
			<-ctx.Done()
			cancelled.Store(time.Now().UnixNano())
		})
	}()
	<-leads
	time.Sleep(500 * time.Millisecond) // a renewal or two
	lost := time.Now()
	hole.Store(true)
	select {
	case <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("RunLeading did not return")
	}
	d := time.Unix(0, cancelled.Load()).Sub(lost)
	t.Logf("lead cancelled %s after the API went silent (lease duration %s)", d.Round(time.Millisecond), o.Duration)
	if d >= o.Duration {
		t.Errorf("lead cancelled %s after the API went silent, past the lease duration %s: another watcher may lead by then", d.Round(time.Millisecond), o.Duration)
	}
}
