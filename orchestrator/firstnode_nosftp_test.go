package orchestrator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
)

// waitGate waits for ch, at most 2 s (the run's order may never close it).
func waitGate(ch chan struct{}) {
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
	}
}

// gatedKernel is a fakeKernel whose Lock waits for a gate first: two runs
// interleaved deterministically.
type gatedKernel struct {
	*fakeKernel
	before func()
	after  func()
}

func (g *gatedKernel) Lock(ctx context.Context, holder []byte) error {
	if g.before != nil {
		g.before()
	}
	err := g.fakeKernel.Lock(ctx, holder)
	if g.after != nil {
		g.after()
	}
	return err
}

// Of two runs started at once, one goes on and the other stops at the
// first node it cannot lock, even when the node first by name has no
// SFTP server and so takes no lock: nodes are locked alone, in name
// order, until one is (run.go read). When only the first by name was
// locked alone, both runs passed a first node without SFTP, went on to
// lock the rest in parallel, each got some, and both failed; a hostile
// node needed only a name that sorts first and a 127 on the sftp
// subsystem. Here run A takes node-1 first, and B waits for that.
func TestNoSFTPFirstNodeStillSerializesRuns(t *testing.T) {
	nodes := labNodes(3)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].noSFTP = true // first by name
	p := NewPlan(nodes, DefaultProtocol)

	aHas1, bHas2 := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	connectFor := func(run string) Connector {
		return func(_ context.Context, n *inventory.Node) (Host, error) {
			g := &gatedKernel{fakeKernel: c.kernels[n.Name]}
			switch {
			case run == "A" && n.Name == "node-1":
				g.after = func() { once1.Do(func() { close(aHas1) }) }
			case run == "A" && n.Name == "node-2":
				g.before = func() { waitGate(bHas2) }
			case run == "B" && n.Name == "node-2":
				g.after = func() { once2.Do(func() { close(bHas2) }) }
			case run == "B" && n.Name == "node-1":
				g.before = func() { waitGate(aHas1) }
			}
			return g, nil
		}
	}
	opts := func(id string) Options {
		return Options{Holder: Holder{RunID: id, Host: "bastion", PID: 42, Started: time.Now()}, Concurrency: 2}
	}
	var repA, repB *Report
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		repA = Run(context.Background(), p, connectFor("A"), opts("20261201T000000.000Z-aaaaaa"))
	}()
	go func() {
		defer wg.Done()
		repB = Run(context.Background(), p, connectFor("B"), opts("20261201T000000.000Z-bbbbbb"))
	}()
	wg.Wait()
	if repA.Failed() && repB.Failed() {
		t.Fatalf("two runs started at once both failed, neither stopped at the first node it could not lock:\nA: %v\nB: %v", repA.Errors(), repB.Errors())
	}
	if repA.Failed() || !repB.Failed() {
		t.Fatalf("want A (which locked node-1 first) to go on and B to stop:\nA: %v\nB: %v", repA.Errors(), repB.Errors())
	}
	// B stopped at node-1, locked alone: it never reached node-2.
	if got := repB.Nodes[2].Outcome; got != Skipped {
		t.Errorf("run B's node-2: %v, want Skipped (B stops at node-1)", got)
	}
}
