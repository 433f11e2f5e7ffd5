package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/watch"
)

// leadings records Leading calls.
type leadings struct {
	mu  sync.Mutex
	got []bool
}

func (l *leadings) RoundDone(watch.Round) {}
func (l *leadings) Managed(int)           {}
func (l *leadings) Leading(b bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, b)
}

func (l *leadings) calls() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.got...)
}

func testLease() watch.LeaseOptions {
	return watch.LeaseOptions{Namespace: "routepush-system", Name: "routepush", Identity: "bastion_1",
		Duration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
}

// A leader whose renewals fail loses the lease, stops its watcher, and
// campaigns again rather than exiting: once the API answers, it leads
// again, with a watcher of a new term. Ready while it stands by, not
// while a term's first round is under way.
func TestLeadLoopCampaignsAgainAfterALostLease(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	var failing atomic.Bool
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	cluster := inventory.NewClusterForClient("test", client, inventory.KubeOptions{})
	rec, ready := &leadings{}, &readiness{}
	obs := watch.Observers{rec, ready}
	terms := make(chan int, 4)
	var running, most atomic.Int32
	term := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- leadLoop(ctx, cluster, testLease(), obs, ready, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context) error {
			if n := running.Add(1); n > most.Load() {
				most.Store(n)
			}
			defer running.Add(-1)
			term++
			terms <- term
			<-ctx.Done()
			return nil
		})
	}()
	waitTerm := func(want int) {
		t.Helper()
		select {
		case got := <-terms:
			if got != want {
				t.Fatalf("term %d started, want %d", got, want)
			}
		case err := <-done:
			t.Fatalf("leadLoop returned %v while term %d was awaited", err, want)
		case <-time.After(10 * time.Second):
			t.Fatalf("term %d never started", want)
		}
	}
	waitTerm(1)
	if ready.ready() {
		t.Error("ready while leading before the first round ended")
	}
	obs.RoundDone(watch.Round{Reason: "sync"})
	if !ready.ready() {
		t.Error("not ready after the first round")
	}
	failing.Store(true)
	// Lost within the renew deadline; the loop stands by, ready.
	for deadline := time.Now().Add(5 * time.Second); len(rec.calls()) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("lease never lost; leading calls %v", rec.calls())
		}
	}
	time.Sleep(200 * time.Millisecond)
	if !ready.ready() {
		t.Error("standby after losing the lease: not ready")
	}
	failing.Store(false)
	waitTerm(2)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("leadLoop after ctx done: %v", err)
	}
	if got := rec.calls(); len(got) != 4 || !got[0] || got[1] || !got[2] || got[3] {
		t.Errorf("leading calls %v, want true false true false", got)
	}
	if most.Load() != 1 {
		t.Errorf("%d watchers ran at once", most.Load())
	}
}

// An error of the watcher's own ends the loop with it.
func TestLeadLoopReturnsTheWatchersError(t *testing.T) {
	t.Parallel()
	cluster := inventory.NewClusterForClient("test", fake.NewClientset(), inventory.KubeOptions{})
	boom := errors.New("inventory hosts.yaml: no such file")
	err := leadLoop(context.Background(), cluster, testLease(), watch.Observers{}, &readiness{}, slog.New(slog.DiscardHandler), func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("leadLoop = %v, want %v", err, boom)
	}
}
