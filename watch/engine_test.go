package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

// recorder is an Observer keeping the rounds it is told of.
type recorder struct {
	mu     sync.Mutex
	rounds []Round
}

func (r *recorder) RoundDone(x Round) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rounds = append(r.rounds, x)
}
func (r *recorder) Managed(int)   {}
func (r *recorder) Leading(bool)  {}
func (r *recorder) Forget(string) {}

// wait returns the rounds once there are n, or fails.
func (r *recorder) wait(t *testing.T, n int) []Round {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		got := append([]Round(nil), r.rounds...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("fewer than %d rounds in 10 s", n)
	return nil
}

func kubeNode(i int) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%02d", i)},
		Spec:       corev1.NodeSpec{PodCIDR: fmt.Sprintf("100.64.%d.0/24", i), PodCIDRs: []string{fmt.Sprintf("100.64.%d.0/24", i)}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("198.18.0.%d", 10+i)}}},
	}
}

// No node can be reached here: the connector counts the attempts, so the
// test sees which nodes each round contacted, and the backoff.
func TestEngineCoalescesAndRetries(t *testing.T) {
	t.Parallel()
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	dials := map[string]int{}
	rec := &recorder{}
	e := New(Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
		Plan:    orchestrator.PlanOptions{Protocol: orchestrator.DefaultProtocol},
		Connect: func(_ context.Context, n *inventory.Node) (orchestrator.Host, error) {
			mu.Lock()
			dials[n.Name]++
			mu.Unlock()
			return nil, &host.UnreachableError{Err: errors.New("no route to host")}
		},
		Debounce: time.Second, // the fake API under -race takes its time
		Observer: rec,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	sync := rec.wait(t, 1)[0]
	if sync.Reason != "sync" || len(sync.Nodes) != 3 || sync.Nodes[0].State != Unreachable {
		t.Fatalf("first round = %+v, want a sync of 3 unreachable nodes", sync)
	}
	// 20 joins within the debounce: one round, each node contacted once.
	for i := 3; i < 23; i++ {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var event Round
	for n := 2; event.Reason == ""; n++ {
		for _, r := range rec.wait(t, n) {
			if r.Reason == "event" {
				event = r
				break
			}
		}
	}
	// The 20 joins in it, and the first three unless their retry round
	// had them then (they are taken after it).
	joins := 0
	for _, n := range event.Nodes {
		var i int
		if _, err := fmt.Sscanf(n.Name, "node-%d", &i); err == nil && i >= 3 {
			joins++
		}
	}
	if joins != 20 || len(event.Nodes) > 23 || event.EventAge <= 0 {
		t.Errorf("event round: %d nodes, %d of them the joins (want the 20 coalesced), event age %s", len(event.Nodes), joins, event.EventAge)
	}
	// The three first nodes are retried after 1 s, unreachable still.
	var rounds []Round
	for n := 3; ; n++ {
		rounds = rec.wait(t, n)
		if rounds[len(rounds)-1].Reason == "retry" && slices.ContainsFunc(rounds, func(r Round) bool { return r.Reason == "event" }) {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	events := 0
	for _, r := range rounds {
		if r.Reason == "event" {
			events++
		}
	}
	if events != 1 {
		t.Errorf("%d event rounds for 20 joins within the debounce, want 1", events)
	}
	mu.Lock()
	defer mu.Unlock()
	if dials["node-22"] < 1 || dials["node-00"] < 2 {
		t.Errorf("dials = %v", dials)
	}
}

// dialLog counts the dials of each node, and when they came.
type dialLog struct {
	mu    sync.Mutex
	dials map[string][]time.Time
}

func (d *dialLog) add(n string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials[n] = append(d.dials[n], time.Now())
}

func (d *dialLog) count(n string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials[n])
}

// A node whose connection hangs holds back no other round: a join while
// it hangs is dialled at once; the hanging node is taken again (with the
// join in its plan) once its round ends; a node that left is forgotten.
func TestEngineRoundsDoNotWaitForEachOther(t *testing.T) {
	t.Parallel()
	client := apiClient(true)
	for i := range 3 {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	log := &dialLog{dials: map[string][]time.Time{}}
	rec := &forgetRecorder{}
	e := New(Config{
		Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
		Plan:    orchestrator.PlanOptions{Protocol: orchestrator.DefaultProtocol},
		Connect: func(ctx context.Context, n *inventory.Node) (orchestrator.Host, error) {
			log.add(n.Name)
			if n.Name == "node-00" && log.count(n.Name) == 1 {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil, &host.UnreachableError{Err: errors.New("no route to host")}
		},
		Debounce: 100 * time.Millisecond,
		Observer: rec,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("10 s and still not: %s", what)
			}
		}
	}
	// The sync round: node-00 hangs; node-01 and node-02 come back
	// unreachable and wait their backoff.
	waitFor("node-00 dialled", func() bool { return log.count("node-00") == 1 })
	joined := time.Now()
	if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the joined node-03 dialled while node-00 hangs", func() bool { return log.count("node-03") == 1 })
	if took := time.Since(joined); took > 3*time.Second {
		t.Errorf("node-03 dialled %s after it joined, with node-00 hanging", took)
	}
	if n := log.count("node-00"); n != 1 {
		t.Errorf("node-00 dialled %d times while its first round ran, want 1", n)
	}
	// node-01 leaves: forgotten.
	if err := client.CoreV1().Nodes().Delete(t.Context(), "node-01", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("node-01 forgotten", func() bool { return rec.forgot("node-01") })
	close(release)
	// node-00's round ends; the join marked it due while it ran: it is
	// taken again at once, not after a backoff.
	waitFor("node-00 dialled again", func() bool { return log.count("node-00") >= 2 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its context's end")
	}
}

type forgetRecorder struct {
	recorder
	mu      sync.Mutex
	forgets []string
}

func (r *forgetRecorder) Forget(n string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgets = append(r.forgets, n)
}

func (r *forgetRecorder) forgot(n string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.forgets, n)
}

// apiClient is a fake API whose access reviews answer allowed.
func apiClient(allowed bool) *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r.Status.Allowed = allowed
		return true, r, nil
	})
	return c
}

// A user who may list but not watch nodes is told so, before anything:
// an informer without watch would list again every few seconds and see
// every event late.
func TestEngineNeedsWatchOnNodes(t *testing.T) {
	t.Parallel()
	e := New(Config{
		Cluster: inventory.NewClusterForClient("lab", apiClient(false), inventory.KubeOptions{}),
		Connect: func(context.Context, *inventory.Node) (orchestrator.Host, error) {
			t.Error("connected without the right to watch nodes")
			return nil, errors.New("no")
		},
	})
	err := e.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "may not list or watch nodes") || !strings.Contains(err.Error(), "configs/rbac.yaml") {
		t.Errorf("Run = %v, want the missing rights named", err)
	}
}

// A round waits for a pause in the events, not a fixed time after the
// first: joins that come closer together than the debounce, for longer
// than it, are one round. A stream with no pause in it is not held back
// past ten debounces.
func TestEngineDebounceWaitsForAPause(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name          string
		joins         int
		every         time.Duration
		debounce      time.Duration
		minRounds     int
		maxRounds     int
		firstRoundMax time.Duration // after the first join
	}{
		// 6 joins 150 ms apart over 750 ms: a 400 ms window from the
		// first join would split them.
		{"burst", 6, 150 * time.Millisecond, 400 * time.Millisecond, 1, 1, 3 * time.Second},
		// 30 joins 100 ms apart over 3 s with a 200 ms debounce: capped
		// at 2 s, the first round starts while they still come.
		{"stream", 30, 100 * time.Millisecond, 200 * time.Millisecond, 2, 30, 2800 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			client := apiClient(true)
			if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(0), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			var mu sync.Mutex
			var firstEventDial time.Time
			e := New(Config{
				Cluster: inventory.NewClusterForClient("fake", client, inventory.KubeOptions{}),
				Plan:    orchestrator.PlanOptions{Protocol: orchestrator.DefaultProtocol},
				Connect: func(_ context.Context, n *inventory.Node) (orchestrator.Host, error) {
					mu.Lock()
					if n.Name != "node-00" && firstEventDial.IsZero() {
						firstEventDial = time.Now()
					}
					mu.Unlock()
					return nil, &host.UnreachableError{Err: errors.New("no route to host")}
				},
				Debounce: c.debounce,
				Observer: rec,
			})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			rec.wait(t, 1)
			start := time.Now()
			for i := 1; i <= c.joins; i++ {
				if _, err := client.CoreV1().Nodes().Create(t.Context(), kubeNode(i), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(c.every)
			}
			last := fmt.Sprintf("node-%02d", c.joins)
			var events []Round
			for n := 2; ; n++ {
				events = events[:0]
				seen := false
				for _, r := range rec.wait(t, n) {
					if r.Reason == "event" {
						events = append(events, r)
						seen = seen || slices.ContainsFunc(r.Nodes, func(s NodeResult) bool { return s.Name == last })
					}
				}
				if seen {
					break
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run after cancel: %v", err)
			}
			if len(events) < c.minRounds || len(events) > c.maxRounds {
				t.Errorf("%d event rounds for %d joins %s apart (debounce %s), want %d to %d", len(events), c.joins, c.every, c.debounce, c.minRounds, c.maxRounds)
			}
			mu.Lock()
			defer mu.Unlock()
			if took := firstEventDial.Sub(start); took > c.firstRoundMax {
				t.Errorf("the first event round dialled %s after the first join, want within %s", took, c.firstRoundMax)
			}
		})
	}
}
