package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
)

// conditionsCluster is a fake API with Nodes that start, as on clouds,
// with NetworkUnavailable=True/NoRouteCreated, and counts status patches
// by node.
type conditionsCluster struct {
	*inventory.Cluster
	client *fake.Clientset
	mu     sync.Mutex
	writes map[string]int
	// hook, when set, runs on each patch once counted: it may hold the
	// patch (a slow API) or fail it.
	hook func(node string) error
}

func newConditionsCluster(t *testing.T, names ...string) *conditionsCluster {
	t.Helper()
	var objs []runtime.Object
	for _, name := range names {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1"}}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Reason: inventory.ReasonNoRouteCreated}}
		objs = append(objs, n)
	}
	c := &conditionsCluster{client: fake.NewClientset(objs...), writes: map[string]int{}}
	c.client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.PatchAction).GetName()
		c.mu.Lock()
		c.writes[name]++
		hook := c.hook
		c.mu.Unlock()
		if hook != nil {
			if err := hook(name); err != nil {
				return true, nil, err
			}
		}
		return false, nil, nil
	})
	c.Cluster = inventory.NewClusterForClient("test", c.client, inventory.KubeOptions{})
	return c
}

func (c *conditionsCluster) setHook(h func(node string) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hook = h
}

func (c *conditionsCluster) written(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes[node]
}

// condition returns a node's NetworkUnavailable status and reason.
func (c *conditionsCluster) condition(t *testing.T, node string) string {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeNetworkUnavailable {
			return string(cond.Status) + "/" + cond.Reason
		}
	}
	return "none"
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Converged nodes become False/RouteCreated, failed ones True/
// NoRouteCreated; unreachable and pending nodes, and a node another run
// holds, are left as they are; a second round that changes nothing sends
// nothing.
func TestConditionsFollowTheRounds(t *testing.T) {
	t.Parallel()
	c := newConditionsCluster(t, "a", "b", "c", "d", "e")
	cond, stop := NewConditions(c.Cluster, quiet())
	cond.Leading(true)
	round := Round{Reason: "sync", Nodes: []NodeResult{
		{Name: "a", State: Converged},
		{Name: "b", State: Failed, Err: errors.New("b: verify failed")},
		{Name: "c", State: Unreachable, Err: errors.New("c: no route to host")},
		{Name: "d", State: Pending},
		{Name: "e", State: Failed, Err: fmt.Errorf("e: locked by run x: %w", &host.LockedError{Host: "e"})},
		{Name: "unknown", State: Converged}, // no Node object: nothing to mark
	}}
	cond.RoundDone(round)
	waitFor(t, func() bool { return c.condition(t, "a") == "False/RouteCreated" })
	// b flips back and forth: False, then True again.
	cond.RoundDone(Round{Reason: "retry", Nodes: []NodeResult{{Name: "b", State: Converged}}})
	waitFor(t, func() bool { return c.condition(t, "b") == "False/RouteCreated" })
	cond.RoundDone(Round{Reason: "retry", Nodes: []NodeResult{{Name: "b", State: Failed, Err: errors.New("b: rolled back")}}})
	cond.RoundDone(round) // as before: nothing to write
	stop()
	stop() // idempotent
	cond.RoundDone(Round{Nodes: []NodeResult{{Name: "c", State: Converged}}})

	for node, want := range map[string]string{
		"a": "False/RouteCreated", "b": "True/NoRouteCreated",
		"c": "True/NoRouteCreated", "d": "True/NoRouteCreated", "e": "True/NoRouteCreated",
	} {
		if got := c.condition(t, node); got != want {
			t.Errorf("%s: NetworkUnavailable %s, want %s", node, got, want)
		}
	}
	for node, want := range map[string]int{"a": 1, "b": 2, "c": 0, "d": 0, "e": 0} {
		if got := c.written(node); got != want {
			t.Errorf("%s: %d status patches, want %d", node, got, want)
		}
	}
}

// While a write is slow, the rounds for a node coalesce into one entry
// holding the latest word; a new term drops what is pending and waits
// for the write in flight.
func TestConditionsCoalesceAndEndWithTheTerm(t *testing.T) {
	t.Parallel()
	c := newConditionsCluster(t, "slow", "b", "late")
	release := make(chan struct{})
	c.setHook(func(node string) error {
		if node == "slow" {
			<-release
		}
		return nil
	})
	cond, stop := NewConditions(c.Cluster, quiet())
	defer stop()
	cond.Leading(true)
	cond.RoundDone(Round{Nodes: []NodeResult{{Name: "slow", State: Converged}}})
	waitFor(t, func() bool { return c.written("slow") == 1 })
	for i := range 50 {
		s := Converged
		if i%2 == 0 {
			s = Failed
		}
		cond.RoundDone(Round{Nodes: []NodeResult{{Name: "b", State: s}}})
	}
	close(release)
	waitFor(t, func() bool { return c.condition(t, "b") == "False/RouteCreated" })
	if n := c.written("b"); n != 1 {
		t.Errorf("50 rounds for b while a write was slow: %d patches, want 1", n)
	}

	// A term ends with late's write queued behind a slow one.
	block := make(chan struct{})
	c.setHook(func(node string) error {
		if node == "b" {
			<-block
		}
		return nil
	})
	cond.RoundDone(Round{Nodes: []NodeResult{{Name: "b", State: Failed}, {Name: "late", State: Converged}}})
	waitFor(t, func() bool { return c.written("b") == 2 })
	ended := make(chan struct{})
	go func() {
		cond.Leading(false)
		close(ended)
	}()
	select {
	case <-ended:
		t.Fatal("Leading(false) returned while a write was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(block)
	<-ended
	time.Sleep(100 * time.Millisecond)
	if n := c.written("late"); n != 0 {
		t.Errorf("late was written %d times after its term ended", n)
	}
}

// A write the API refuses for a while is tried again.
func TestConditionsRetryAFailedWrite(t *testing.T) {
	t.Parallel()
	c := newConditionsCluster(t, "a")
	failures := 1
	c.setHook(func(string) error {
		if failures > 0 { // the hook runs on the one writer goroutine
			failures--
			return apierrors.NewServiceUnavailable("etcd leader changed")
		}
		return nil
	})
	cond, stop := NewConditions(c.Cluster, quiet())
	defer stop()
	cond.Leading(true)
	start := time.Now()
	cond.RoundDone(Round{Nodes: []NodeResult{{Name: "a", State: Converged}}})
	waitFor(t, func() bool { return c.condition(t, "a") == "False/RouteCreated" })
	if took := time.Since(start); took < time.Second {
		t.Errorf("written again after %s, want the 1 s backoff", took)
	}
}

// waitFor polls ok for up to 10 s.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}
