package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

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
func (r *recorder) Managed(int)  {}
func (r *recorder) Leading(bool) {}

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
	client := fake.NewClientset()
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
	if len(event.Nodes) != 23 || event.EventAge <= 0 {
		t.Errorf("event round: %d nodes (want 23, the joins coalesced), event age %s", len(event.Nodes), event.EventAge)
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
