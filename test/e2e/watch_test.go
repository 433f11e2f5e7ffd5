package e2e

import (
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// watcher is `routepush watch` running in the lab's bastion.
type watcher struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan lab.Result
}

// startWatch starts routepush watch in the background.
func startWatch(t *testing.T, l *lab.Lab, args ...string) *watcher {
	t.Helper()
	w := &watcher{done: make(chan lab.Result, 1)}
	started := make(chan struct{})
	go func() {
		res, _ := l.RoutepushWith(testContext(t), lab.RunOptions{Cmd: func(c *exec.Cmd) {
			w.mu.Lock()
			w.cmd = c
			w.mu.Unlock()
			close(started)
		}}, routepush, append([]string{"watch"}, args...)...)
		w.done <- res
	}()
	<-started
	return w
}

// stop sends SIGTERM and returns the watcher's result.
func (w *watcher) stop(t *testing.T) lab.Result {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		p := w.cmd.Process
		w.mu.Unlock()
		if p != nil {
			// ip netns exec and sh exec routepush: the process is it.
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher never started")
		}
	}
	select {
	case res := <-w.done:
		return res
	case <-time.After(60 * time.Second):
		t.Fatal("the watcher did not stop within 60 s of SIGTERM")
	}
	return lab.Result{}
}

// expectedOf is node i's IPv4 table when the nodes members (indexes in
// l.Nodes) are the cluster: a route to each other member, the connected
// route, and extra lines.
func expectedOf(l *lab.Lab, members []int, i int, extra ...string) string {
	var lines []string
	for _, j := range members {
		if j != i {
			o := l.Nodes[j]
			lines = append(lines, fmt.Sprintf("%s via %s dev eth0 proto 114 ", o.PodCIDR, o.Addr))
		}
	}
	lines = append(lines, fmt.Sprintf("198.18.0.0/16 dev eth0 proto kernel scope link src %s ", l.Nodes[i].Addr))
	lines = append(lines, extra...)
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// waitTables waits until every node of which has the table want(i), and
// returns how long that took; it fails past bound.
func waitTables(t *testing.T, l *lab.Lab, which []int, want func(i int) string, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var wrong []string
		for _, i := range which {
			if ipv4Table(t, l.Nodes[i]) != want(i) {
				wrong = append(wrong, l.Nodes[i].Name)
			}
		}
		took := time.Since(start)
		if len(wrong) == 0 {
			return took
		}
		if took > bound {
			n := l.Nodes[which[0]]
			t.Fatalf("after %s, not converged: %v (e.g. %s:\n--- want\n%s--- have\n%s)", took, wrong, n.Name, want(which[0]), ipv4Table(t, n))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func without(xs []int, x int) []int {
	return slices.DeleteFunc(slices.Clone(xs), func(y int) bool { return y == x })
}

// routepush watch on 10 nodes whose Node objects come and go: the first
// sync converges the cluster; a node that joins is routed to and from
// every node within 5 s; a Node deleted has its routes pruned everywhere
// within 5 s, others' routes untouched; routes flushed by hand are
// repaired by the resync; SIGTERM exits 0 and leaves no lock.
func TestWatchFollowsTheNodes(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 10, false)
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for _, n := range k.Nodes[:9] { // node-9 joins later
		k.register(t, n, nil, []string{n.PodCIDR.String()})
	}
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--resync", "8s", "-v")
	stopped := false
	defer func() {
		if !stopped {
			t.Logf("watcher: %s", w.stop(t))
		}
	}()

	// (a) The first sync converges the nine.
	nine := all[:9]
	took := waitTables(t, k.Lab, nine, func(i int) string { return expectedOf(k.Lab, nine, i) }, 30*time.Second)
	t.Logf("first sync: 9 nodes converged %s after the start", took)

	// (b) node-9 joins: every node routes to it, and it to every node.
	k.register(t, k.Nodes[9], nil, []string{k.Nodes[9].PodCIDR.String()})
	took = waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, 5*time.Second)
	t.Logf("join: 10 nodes converged %s after the Node object was created", took)

	// (c) node-3 is deleted: its routes go from every other node; a route
	// of another owner to nowhere near it stays.
	ipRun(t, k.Nodes[0], "route", "add", "10.99.0.0/24", "via", k.Nodes[1].Addr.String(), "proto", "static")
	foreign := fmt.Sprintf("10.99.0.0/24 via %s dev eth0 proto static ", k.Nodes[1].Addr)
	k.deleteNode(t, "node-3")
	left := without(all, 3)
	took = waitTables(t, k.Lab, left, func(i int) string {
		if i == 0 {
			return expectedOf(k.Lab, left, i, foreign)
		}
		return expectedOf(k.Lab, left, i)
	}, 5*time.Second)
	t.Logf("delete: node-3's routes gone from 9 nodes %s after the Node object was deleted", took)

	// (e) node-5's routes are flushed by hand: the resync puts them back.
	ipRun(t, k.Nodes[5], "route", "flush", "proto", "114")
	took = waitTables(t, k.Lab, []int{5}, func(i int) string { return expectedOf(k.Lab, left, i) }, 12*time.Second)
	t.Logf("flush: node-5 repaired %s after its routes were flushed (resync 8s)", took)

	res := w.stop(t)
	stopped = true
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	if !strings.Contains(res.Stderr, "reason=resync") || !strings.Contains(res.Stderr, "repaired=1") {
		t.Errorf("no resync round reporting a repair in the watcher's log:\n%s", res.Stderr)
	}
	assertNoLocks(t, k.Lab)
}

// 20 nodes that join within a second make one round, after which every
// node routes to every other; a node silenced for a while does not hold
// the others back, and converges once it is back.
func TestWatchCoalescesJoinsAndWaitsForTheUnreachable(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 22, false)
	all := make([]int, 22)
	for i := range all {
		all[i] = i
	}
	for _, n := range k.Nodes[:2] {
		k.register(t, n, nil, []string{n.PodCIDR.String()})
	}
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--debounce", "500ms", "--connect-timeout", "1s", "-v")
	stopped := false
	defer func() {
		if !stopped {
			t.Logf("watcher: %s", w.stop(t))
		}
	}()
	waitTables(t, k.Lab, all[:2], func(i int) string { return expectedOf(k.Lab, all[:2], i) }, 30*time.Second)

	// (d) 20 joins at once.
	var wg sync.WaitGroup
	for _, n := range k.Nodes[2:] {
		wg.Go(func() { k.register(t, n, nil, []string{n.PodCIDR.String()}) })
	}
	wg.Wait()
	took := waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, 10*time.Second)
	t.Logf("20 joins: 22 nodes converged %s after the last Node object was created", took)

	// (f) node-1 goes silent; node-21 leaves meanwhile.
	heal := silence(t, k.Lab, k.Nodes[1])
	k.deleteNode(t, "node-21")
	left := without(all, 21)
	others := without(left, 1)
	// The round waits for node-1's --connect-timeout (1 s) before it goes
	// on without it: about 2 s on a quiet machine.
	took = waitTables(t, k.Lab, others, func(i int) string { return expectedOf(k.Lab, left, i) }, 8*time.Second)
	t.Logf("silent node-1: the 20 others converged %s after node-21 left", took)
	time.Sleep(3 * time.Second)
	heal()
	took = waitTables(t, k.Lab, []int{1}, func(i int) string { return expectedOf(k.Lab, left, i) }, 15*time.Second)
	t.Logf("node-1 back: converged %s after it was reachable again", took)

	res := w.stop(t)
	stopped = true
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	if n := strings.Count(res.Stderr, "msg=\"round done\" reason=event nodes=22"); n != 1 {
		t.Errorf("%d event rounds of 22 nodes for the 20 joins, want 1:\n%s", n, res.Stderr)
	}
	assertNoLocks(t, k.Lab)
}
