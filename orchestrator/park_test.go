package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
)

// openConns wraps a fake cluster's connector and counts the connections
// open at once (the most there were) and those each node was given.
type openConns struct {
	mu       sync.Mutex
	open     int
	most     int
	per      map[string]int
	connect  Connector
	onDialed func(name string, nth int) error // before the nth connection to a node is handed out
}

func newOpenConns(c *fakeCluster) *openConns {
	return &openConns{per: map[string]int{}, connect: c.connect}
}

func (o *openConns) dial(ctx context.Context, n *inventory.Node) (Host, error) {
	o.mu.Lock()
	o.per[n.Name]++
	nth := o.per[n.Name]
	o.mu.Unlock()
	if o.onDialed != nil {
		if err := o.onDialed(n.Name, nth); err != nil {
			return nil, err
		}
	}
	h, err := o.connect(ctx, n)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.open++
	o.most = max(o.most, o.open)
	o.mu.Unlock()
	return &countedHost{Host: h, o: o}, nil
}

type countedHost struct {
	Host
	o    *openConns
	once sync.Once
}

func (h *countedHost) Close() error {
	h.once.Do(func() {
		h.o.mu.Lock()
		h.o.open--
		h.o.mu.Unlock()
	})
	return h.Host.Close()
}

func parkOptions() Options {
	return Options{
		Holder:      Holder{RunID: NewRunID(time.Now()), Host: "bastion", PID: 42, Started: time.Now()},
		Concurrency: 1, MaxIdleConnections: 2,
	}
}

// states lists the states a node's record went through.
func states(k *fakeKernel, runID string) string {
	var got []string
	for _, s := range regexp.MustCompile(`"state":"([a-z-]+)"`).FindAllStringSubmatch(string(k.runs[runID]), -1) {
		got = append(got, s[1])
	}
	return strings.Join(got, " ")
}

// Past MaxIdleConnections, a node that waits for others does so with its
// connection closed (parked): it connects again to apply, and again to
// settle, under the same lock. The run's connections stay within the
// bound plus the nodes worked on, and every node ends as if none had
// been parked: converged, recorded, unlocked.
func TestRunParksWaitingNodesPastMaxIdleConnections(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	o := newOpenConns(c)
	opts := parkOptions()
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts)
	if rep.Failed() {
		t.Fatalf("apply failed: %v", rep.Errors())
	}
	if o.most > opts.MaxIdleConnections+opts.Concurrency {
		t.Errorf("%d connections were open at once, want at most %d waiting and %d worked on", o.most, opts.MaxIdleConnections, opts.Concurrency)
	}
	kept, parked := 0, 0
	for _, n := range nodes {
		k := c.kernels[n.Name]
		switch o.per[n.Name] {
		case 1:
			kept++
		case 3: // read, apply, settle
			parked++
		default:
			t.Errorf("%s: %d connections, want 1 (kept open) or 3 (parked)", n.Name, o.per[n.Name])
		}
		if k.lock != nil {
			t.Errorf("%s still locked: %s", n.Name, k.lock)
		}
		if got := states(k, opts.Holder.RunID); got != "applying verified" {
			t.Errorf("%s: record went through %q, want applying verified", n.Name, got)
		}
		if k.applied != 1 {
			t.Errorf("%s: %d batches, want 1", n.Name, k.applied)
		}
	}
	if kept != opts.MaxIdleConnections || parked != len(nodes)-kept {
		t.Errorf("%d nodes kept their connection and %d were parked, want %d and %d", kept, parked, opts.MaxIdleConnections, len(nodes)-opts.MaxIdleConnections)
	}
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, Options{Check: true}); rep.Changes() || rep.Failed() {
		t.Errorf("after the run, check finds changes (%v) or fails: %v", rep.Changes(), rep.Errors())
	}
}

// A parked node is rolled back as a kept one is: a failure on the last
// node undoes every other, parked or not, and each record says so.
func TestRunRollsBackParkedNodes(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	before := c.digests()
	c.kernels["node-5"].failDst = "100.64.0.0/24"
	opts := parkOptions()
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), newOpenConns(c).dial, opts)
	if !rep.Failed() {
		t.Fatal("run did not fail")
	}
	after := c.digests()
	for _, n := range nodes {
		k := c.kernels[n.Name]
		if after[n.Name] != before[n.Name] {
			t.Errorf("%s: table not restored", n.Name)
		}
		if k.lock != nil {
			t.Errorf("%s still locked: %s", n.Name, k.lock)
		}
		want := "applying verified rolled-back"
		if n.Name == "node-5" {
			want = "applying failed rolled-back"
		}
		if got := states(k, opts.Holder.RunID); got != want {
			t.Errorf("%s: record went through %q, want %s", n.Name, got, want)
		}
	}
}

// A parked node that another run locked while it waited, or that cannot
// be reached when its turn comes, gets nothing: the run fails there
// before sending its batch, rolls the others back, and leaves the other
// run's lock alone; a node out of reach keeps this run's lock, and the
// report says so.
func TestRunSendsNothingToAParkedNodeItCannotHoldAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// meddle acts on the node's second connection, the one to apply.
		meddle func(k *fakeKernel) error
		errors []string // in the node's report
	}{
		{"locked by another run", func(k *fakeKernel) error {
			k.mu.Lock()
			k.lock = []byte(`{"run":"20261201T000000.000Z-000000","host":"other","pid":7}` + "\n")
			k.mu.Unlock()
			return nil
		}, []string{"connecting again to apply", "no longer this run's"}},
		{"out of reach", func(k *fakeKernel) error {
			return &testUnreachable{k.name}
		}, []string{"connecting again to apply", "no route to host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := labNodes(6)
			c := newFakeCluster(nodes)
			before := c.digests()
			o := newOpenConns(c)
			victim := "node-4" // parked: MaxIdleConnections 2, Concurrency 1
			lost := false
			o.onDialed = func(name string, nth int) error {
				if name != victim || nth < 2 {
					return nil
				}
				if tc.name == "out of reach" {
					lost = true
				}
				return tc.meddle(c.kernels[name])
			}
			opts := parkOptions()
			rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts)
			if !rep.Failed() {
				t.Fatal("run did not fail")
			}
			var nr *NodeReport
			for i := range rep.Nodes {
				if rep.Nodes[i].Name == victim {
					nr = &rep.Nodes[i]
				}
			}
			if nr.Outcome != Failed || nr.Err == nil {
				t.Fatalf("%s: %s (%v), want failed", victim, nr.Outcome, nr.Err)
			}
			for _, want := range tc.errors {
				if !strings.Contains(nr.Err.Error(), want) {
					t.Errorf("%s: error %q does not say %q", victim, nr.Err, want)
				}
			}
			k := c.kernels[victim]
			if k.applied != 0 {
				t.Errorf("%s: %d batches sent, want none", victim, k.applied)
			}
			after := c.digests()
			for _, n := range nodes {
				if after[n.Name] != before[n.Name] {
					t.Errorf("%s: table changed", n.Name)
				}
				if n.Name != victim && c.kernels[n.Name].lock != nil {
					t.Errorf("%s still locked: %s", n.Name, c.kernels[n.Name].lock)
				}
			}
			switch {
			case lost && string(k.lock) != string(opts.Holder.lockText()):
				t.Errorf("%s: lock %q, want this run's kept (the node was out of reach)", victim, k.lock)
			case lost && (nr.RecordErr == nil || !strings.Contains(nr.RecordErr.Error(), "release its lock")):
				t.Errorf("%s: report does not say its lock stays: %v", victim, nr.RecordErr)
			case !lost && !strings.Contains(string(k.lock), `"host":"other"`):
				t.Errorf("%s: lock %q, want the other run's left alone", victim, k.lock)
			}
		})
	}
}

type testUnreachable struct{ name string }

func (e *testUnreachable) Error() string {
	return e.name + ": dial tcp: connect: no route to host"
}

// A parked node gets its batch only if it is still as the run left it:
// its lock in place (a restart of the node loses it, and may lose the
// record, without which nothing could undo the batch after a crash of
// routepush) and the same boot. Otherwise nothing is sent there, and the
// others are rolled back.
func TestRunSendsNothingToAParkedNodeThatRestarted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
		meddle     func(k *fakeKernel)
	}{
		{"lock gone", "the run's lock was gone", func(k *fakeKernel) { k.lock = nil }},
		{"lock left empty", "the run's lock was left empty", func(k *fakeKernel) { k.lock = []byte{} }},
		{"booted again", "its boot id changed", func(k *fakeKernel) { k.boot = "boot-2" }},
		{"boot id unreadable", "could not read its boot id again", func(k *fakeKernel) { k.bootErr = errors.New("read boot_id: permission denied") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := labNodes(6)
			c := newFakeCluster(nodes)
			for _, k := range c.kernels {
				k.boot = "boot-1"
			}
			before := c.digests()
			o := newOpenConns(c)
			victim := "node-4"
			o.onDialed = func(name string, nth int) error {
				if name == victim && nth == 2 {
					k := c.kernels[name]
					k.mu.Lock()
					tc.meddle(k)
					k.mu.Unlock()
				}
				return nil
			}
			rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, parkOptions())
			if !rep.Failed() {
				t.Fatal("run did not fail")
			}
			for _, n := range rep.Nodes {
				if n.Name == victim && (n.Outcome != Failed || !strings.Contains(fmt.Sprint(n.Err), tc.want)) {
					t.Errorf("%s: %s (%v), want failed: %s", victim, n.Outcome, n.Err, tc.want)
				}
			}
			if k := c.kernels[victim]; k.applied != 0 {
				t.Errorf("%s: %d batches sent, want none", victim, k.applied)
			}
			after := c.digests()
			for _, n := range nodes {
				if after[n.Name] != before[n.Name] {
					t.Errorf("%s: table changed", n.Name)
				}
				if k := c.kernels[n.Name]; k.lock != nil {
					t.Errorf("%s still locked: %s", n.Name, k.lock)
				}
			}
		})
	}
}

// Once a node is refused at its read the run will change nothing, so the
// nodes read after it are let go at once rather than parked and
// connected to again only to be released.
func TestRunParksNoNodeOnceTheRunIsDoomed(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	c.kernels["node-0"].seed(t, "100.64.2.0/24 via 198.18.0.12 dev eth0 proto static scope global")
	o := newOpenConns(c)
	opts := parkOptions()
	opts.MaxIdleConnections = -1
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts)
	if !rep.Failed() || rep.Nodes[0].Outcome != Refused {
		t.Fatalf("node-0: %s, want refused", rep.Nodes[0].Outcome)
	}
	for _, n := range nodes {
		if o.per[n.Name] != 1 {
			t.Errorf("%s: %d connections, want 1", n.Name, o.per[n.Name])
		}
		if k := c.kernels[n.Name]; k.lock != nil || k.applied != 0 {
			t.Errorf("%s: lock %q, %d batches, want neither", n.Name, k.lock, k.applied)
		}
	}
}

// Independent runs (routepush watch) go through each node in one turn:
// nothing waits, so nothing is parked, whatever MaxIdleConnections says.
func TestRunIndependentParksNothing(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	o := newOpenConns(c)
	opts := parkOptions()
	opts.MaxIdleConnections, opts.Independent = -1, true
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts); rep.Failed() {
		t.Fatalf("run failed: %v", rep.Errors())
	}
	for _, n := range nodes {
		if o.per[n.Name] != 1 {
			t.Errorf("%s: %d connections, want 1", n.Name, o.per[n.Name])
		}
	}
}

// A rollback at scale holds no more connections than the bound: each
// parked node is rolled back and released in one turn, and let go before
// the next.
func TestRunRollbackKeepsTheBound(t *testing.T) {
	t.Parallel()
	nodes := labNodes(8)
	c := newFakeCluster(nodes)
	c.kernels["node-7"].failDst = "100.64.0.0/24"
	o := newOpenConns(c)
	opts := parkOptions()
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts); !rep.Failed() {
		t.Fatal("run did not fail")
	}
	// node-7 failed and kept its connection for its own rollback: one more.
	if most := opts.MaxIdleConnections + opts.Concurrency + 1; o.most > most {
		t.Errorf("%d connections were open at once, want at most %d", o.most, most)
	}
}

// A parked node whose lock was gone when it was reached again is let go
// of at once, while connected: the lock this run took back to look is
// not left behind when settle cannot reach the node again.
func TestRunLetsGoOfALockItFoundGone(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	o := newOpenConns(c)
	victim := "node-4"
	o.onDialed = func(name string, nth int) error {
		switch {
		case name != victim:
		case nth == 2:
			k := c.kernels[name]
			k.mu.Lock()
			k.lock = nil
			k.mu.Unlock()
		case nth > 2:
			return &testUnreachable{name}
		}
		return nil
	}
	opts := parkOptions()
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts); !rep.Failed() {
		t.Fatal("run did not fail")
	}
	k := c.kernels[victim]
	if k.lock != nil || k.applied != 0 {
		t.Errorf("%s: lock %q, %d batches; want neither", victim, k.lock, k.applied)
	}
	if got := states(k, opts.Holder.RunID); got != "applying not-applied" {
		t.Errorf("%s: record went through %q, want applying not-applied", victim, got)
	}
}

// --check, and a run doomed at its read, let go of every node as it is
// read, refused ones included: a cluster-wide refusal holds no more
// connections than the nodes being read.
func TestRunHoldsNoRefusedNode(t *testing.T) {
	t.Parallel()
	for _, check := range []bool{true, false} {
		nodes := labNodes(6)
		c := newFakeCluster(nodes)
		for i, n := range nodes {
			// Another owner's route to a destination the node's plan has.
			next := nodes[(i+1)%len(nodes)]
			c.kernels[n.Name].seed(t, fmt.Sprintf("%s via %s dev eth0 proto static scope global", next.PodCIDRs[0], next.InternalIPs[0]))
		}
		o := newOpenConns(c)
		opts := parkOptions()
		opts.Check = check
		rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts)
		for _, n := range rep.Nodes {
			if n.Outcome != Refused {
				t.Fatalf("check=%v: %s %s, want refused", check, n.Name, n.Outcome)
			}
		}
		if o.most > opts.Concurrency {
			t.Errorf("check=%v: %d connections open at once, want at most %d", check, o.most, opts.Concurrency)
		}
		for _, k := range c.kernels {
			if k.lock != nil {
				t.Errorf("check=%v: %s still locked", check, k.name)
			}
		}
	}
}

// A parked node that cannot be reached once when its turn comes is tried
// again (nothing has been sent): a blip does not fail the run.
func TestRunTriesAParkedNodeAgain(t *testing.T) {
	t.Parallel()
	nodes := labNodes(4)
	c := newFakeCluster(nodes)
	o := newOpenConns(c)
	o.onDialed = func(name string, nth int) error {
		if name == "node-3" && nth == 2 {
			return &testUnreachable{name}
		}
		return nil
	}
	opts := parkOptions()
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts); rep.Failed() {
		t.Fatalf("run failed: %v", rep.Errors())
	}
	if k := c.kernels["node-3"]; k.applied != 1 || o.per["node-3"] != 4 {
		t.Errorf("node-3: %d batches over %d connection attempts, want 1 over 4 (read, a failed one, apply, release)", k.applied, o.per["node-3"])
	}
}

// Ctrl-C while a parked node connects again for its batch: nothing is
// sent there, the node is reported skipped (not failed), the nodes
// already applied are rolled back, and settle, on a context of its own,
// still releases every lock.
func TestRunInterruptedWhileAParkedNodeConnectsAgain(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	before := c.digests()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := newOpenConns(c)
	victim := "node-4"
	o.onDialed = func(name string, nth int) error {
		if name == victim && nth == 2 {
			cancel()
			return context.Canceled
		}
		return nil
	}
	rep := Run(ctx, NewPlan(nodes, DefaultProtocol), o.dial, parkOptions())
	if rep.Err == nil {
		t.Error("the report does not say the run was interrupted")
	}
	for _, n := range rep.Nodes {
		if n.Name == victim && n.Outcome != Skipped {
			t.Errorf("%s: %s (%v), want skipped", victim, n.Outcome, n.Err)
		}
	}
	if k := c.kernels[victim]; k.applied != 0 {
		t.Errorf("%s: %d batches sent, want none", victim, k.applied)
	}
	after := c.digests()
	for _, n := range nodes {
		if after[n.Name] != before[n.Name] {
			t.Errorf("%s: table changed", n.Name)
		}
		if k := c.kernels[n.Name]; k.lock != nil {
			t.Errorf("%s still locked: %s", n.Name, k.lock)
		}
	}
}

// A node waiting for others keeps its SFTP session open only while the
// run has places for that (a fifth of MaxIdleConnections): past them it
// closes the session
// after its record and again after its verify, and opens another for
// what comes next. Every node still ends converged, recorded, unlocked.
func TestRunClosesWaitingNodesFilesPastTheirPlaces(t *testing.T) {
	t.Parallel()
	nodes := labNodes(6)
	c := newFakeCluster(nodes)
	opts := parkOptions()
	opts.MaxIdleConnections = 10 // every connection kept open, 2 SFTP sessions
	rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, opts)
	if rep.Failed() {
		t.Fatalf("apply failed: %v", rep.Errors())
	}
	kept, closed := 0, 0
	for _, n := range nodes {
		k := c.kernels[n.Name]
		switch k.filesClosed {
		case 0:
			kept++
		case 2: // after its record, after its verify
			closed++
			if got := strings.Join(k.closedAt, ", "); got != "applying, applying verified" {
				t.Errorf("%s: SFTP session closed with its record at %q, want after the record and after the verify (applying, applying verified)", n.Name, got)
			}
		default:
			t.Errorf("%s: SFTP session closed %d times while waiting, want 0 (kept) or 2", n.Name, k.filesClosed)
		}
		if k.lock != nil {
			t.Errorf("%s still locked: %s", n.Name, k.lock)
		}
		if got := states(k, opts.Holder.RunID); got != "applying verified" {
			t.Errorf("%s: record went through %q, want applying verified", n.Name, got)
		}
	}
	if kept != 2 || closed != len(nodes)-kept {
		t.Errorf("%d nodes kept their SFTP session and %d closed it, want 2 and %d", kept, closed, len(nodes)-2)
	}

	// A node that does not answer the close in time has lost its
	// connection with it (remote's bound closes it): it waits parked and
	// connects again under the same lock, for its apply and its release.
	nodes = labNodes(6)
	c = newFakeCluster(nodes)
	c.kernels["node-5"].closeErr = errors.New("node-5: close sftp: no answer within 1m0s: connection closed")
	o := newOpenConns(c)
	opts = parkOptions()
	opts.MaxIdleConnections = 10
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), o.dial, opts); rep.Failed() {
		t.Fatalf("apply with node-5's close timing out failed: %v", rep.Errors())
	}
	for _, n := range nodes {
		k := c.kernels[n.Name]
		want := 1
		if n.Name == "node-5" {
			want = 3 // read, apply, release
		}
		if o.per[n.Name] != want {
			t.Errorf("%s: %d connections, want %d", n.Name, o.per[n.Name], want)
		}
		if k.lock != nil {
			t.Errorf("%s still locked: %s", n.Name, k.lock)
		}
		if got := states(k, opts.Holder.RunID); got != "applying verified" {
			t.Errorf("%s: record went through %q, want applying verified", n.Name, got)
		}
	}

	// Within the places (200 with the default), no session is closed.
	nodes = labNodes(6)
	c = newFakeCluster(nodes)
	opts = parkOptions()
	opts.MaxIdleConnections = 30
	if rep := Run(context.Background(), NewPlan(nodes, DefaultProtocol), c.connect, opts); rep.Failed() {
		t.Fatalf("apply failed: %v", rep.Errors())
	}
	for _, n := range nodes {
		if k := c.kernels[n.Name]; k.filesClosed != 0 {
			t.Errorf("%s: SFTP session closed %d times, want 0 within the places", n.Name, k.filesClosed)
		}
	}
}
