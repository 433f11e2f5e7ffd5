package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/routepush/routepush/test/lab"
)

// watcher is `routepush watch` running in the lab's bastion; its log can
// be read while it runs.
type watcher struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan lab.Result
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(p)
}

// waitLog waits until the watcher's log matches re, and fails past bound.
func (w *watcher) waitLog(t *testing.T, re *regexp.Regexp, bound time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(bound); ; time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		ok := re.Match(w.log.Bytes())
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher's log does not match %s after %s", re, bound)
		}
	}
}

// rounds returns the watcher's "round done" log lines so far.
func (w *watcher) rounds() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(w.log.String(), "\n") {
		if strings.Contains(l, `msg="round done"`) {
			lines = append(lines, l)
		}
	}
	return lines
}

// assertRoundsSince checks that the watcher logged exactly one round since
// it had logged before rounds, on nodes nodes: a second round that changed
// nothing would leave no record and, with everything kept, no session.
func assertRoundsSince(t *testing.T, w *watcher, what string, before, nodes int) {
	t.Helper()
	now := w.rounds()
	if len(now)-before != 1 {
		t.Errorf("%s: %d rounds, want 1:\n%s", what, len(now)-before, strings.Join(now[min(before, len(now)):], "\n"))
		return
	}
	if last := now[len(now)-1]; !strings.Contains(last, fmt.Sprintf(" nodes=%d ", nodes)) {
		t.Errorf("%s: the round was not on %d nodes: %s", what, nodes, last)
	}
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
			c.Stderr = io.MultiWriter(c.Stderr, w)
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
// returns how long after since the last of them got it; it fails when
// that is past bound. Nodes are read side by side, and a node once right
// is read again only at the end (it must still be), so the reading costs
// the measure little.
func waitTables(t *testing.T, l *lab.Lab, which []int, want func(i int) string, since time.Time, bound time.Duration) time.Duration {
	t.Helper()
	right := map[int]time.Time{}
	for {
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		for _, i := range which {
			if _, ok := right[i]; ok {
				continue
			}
			wg.Go(func() {
				out, err := exec4(l.Nodes[i])
				at := time.Now()
				if err == nil && sortedLines(out) == want(i) {
					mu.Lock()
					right[i] = at
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(right) == len(which) {
			break
		}
		if time.Since(since) > bound {
			var wrong []string
			for _, i := range which {
				if _, ok := right[i]; !ok {
					wrong = append(wrong, l.Nodes[i].Name)
				}
			}
			n := l.Nodes[which[0]]
			t.Fatalf("%s after the change, not converged: %v (e.g. %s:\n--- want\n%s--- have\n%s)", time.Since(since), wrong, n.Name, want(which[0]), ipv4Table(t, n))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var last time.Time
	for _, i := range which {
		if got := ipv4Table(t, l.Nodes[i]); got != want(i) {
			t.Fatalf("%s changed again after it converged:\n--- want\n%s--- have\n%s", l.Nodes[i].Name, want(i), got)
		}
		if right[i].After(last) {
			last = right[i]
		}
	}
	took := last.Sub(since)
	if took > bound {
		t.Fatalf("converged %s after the change, past %s", took, bound)
	}
	return took
}

// sortedLines is a table's lines sorted, as ipv4Table returns them.
func sortedLines(out string) string {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func without(xs []int, x int) []int {
	return slices.DeleteFunc(slices.Clone(xs), func(y int) bool { return y == x })
}

// waitUnlocked waits until no node is locked: the rounds that had them
// are over (the lock is the last thing a node's run lets go of).
func waitUnlocked(t *testing.T, l *lab.Lab, bound time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(bound); len(lockedNodes(l)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still locked after %s: %v", bound, lockedNodes(l))
		}
	}
	time.Sleep(100 * time.Millisecond) // the round's report, after the last release
}

// assertPings pings every member's pod IP from every other member's.
func assertPings(t *testing.T, l *lab.Lab, members []int) {
	t.Helper()
	m := l.PingMatrix(testContext(t))
	for _, i := range members {
		for _, j := range members {
			if i != j && !m[i][j] {
				t.Errorf("pod ping %s -> %s failed", l.Nodes[i].Name, l.Nodes[j].Name)
			}
		}
	}
}

// setInternalIP makes a Node's InternalIP addr, as its kubelet would.
func (k *kubeLab) setInternalIP(t *testing.T, name, addr string) {
	t.Helper()
	nodes := k.api.Admin.CoreV1().Nodes()
	n, err := nodes.Get(testContext(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}, {Type: corev1.NodeHostName, Address: name}}
	if _, err := nodes.UpdateStatus(testContext(t), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// sessions counts the SSH sessions (commands and subsystems) each node's
// sshd started so far.
func sessions(t *testing.T, l *lab.Lab, which []int) []int {
	t.Helper()
	n := make([]int, len(which))
	for k, i := range which {
		n[k] = strings.Count(sshdLog(t, l.Nodes[i].Dir), "Starting session: ")
	}
	return n
}

// assertSessions checks that each node i of which started want(i) SSH
// sessions since before.
func assertSessions(t *testing.T, l *lab.Lab, what string, which []int, before []int, want func(i int) int) {
	t.Helper()
	after := sessions(t, l, which)
	for k, i := range which {
		if got := after[k] - before[k]; got != want(i) {
			t.Errorf("%s: %s started %d SSH sessions, want %d", what, l.Nodes[i].Name, got, want(i))
		}
	}
}

// assertOneRound checks that exactly the nodes which each have one run
// record more than before, all of one run: one round changed them, and
// no other node.
func assertOneRound(t *testing.T, l *lab.Lab, what string, before map[string][]record, which []int) {
	t.Helper()
	old := map[string]bool{}
	for _, rs := range before {
		for _, r := range rs {
			old[r.RunID] = true
		}
	}
	want := map[string]bool{}
	for _, i := range which {
		want[l.Nodes[i].Name] = true
	}
	now := records(t, l)
	runs := map[string]bool{}
	for _, n := range l.Nodes {
		var fresh []string
		for _, r := range now[n.Name] {
			if !old[r.RunID] {
				fresh = append(fresh, r.RunID)
				runs[r.RunID] = true
			}
		}
		switch {
		case want[n.Name] && len(fresh) != 1:
			t.Errorf("%s: %s has %d new run records %v, want 1", what, n.Name, len(fresh), fresh)
		case !want[n.Name] && len(fresh) != 0:
			t.Errorf("%s: %s has new run records %v, want none", what, n.Name, fresh)
		}
	}
	if len(runs) > 1 {
		t.Errorf("%s: the nodes' new records are of %d runs, want one round: %v", what, len(runs), runs)
	}
}

// routepush watch on 10 nodes whose Node objects come and go: the first
// sync converges the cluster and pings pass; a node that joins is routed
// to and from every node within 5 s in one round, recorded once on each
// node, with no new SSH session on the others (their connection, SFTP
// session and ip are kept from the sync) and two on the new node (its
// SFTP session and its ip); a Node deleted has its routes pruned
// everywhere within 5 s in one round, recorded on every other node and
// nothing on it (no session there), others' routes untouched; SIGTERM
// exits 0 and leaves no lock.
func TestWatchFollowsTheNodes(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 10, false)
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for _, n := range k.Nodes[:9] { // node-9 joins later
		k.register(t, n, nil, []string{n.PodCIDR.String()})
	}
	started := time.Now()
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "-v")
	stopped := false
	defer func() {
		if !stopped {
			res := w.stop(t)
			t.Logf("watcher: %s\n%s", res, res.Stderr)
		}
	}()

	// (a) The first sync converges the nine; pod addresses answer.
	nine := all[:9]
	took := waitTables(t, k.Lab, nine, func(i int) string { return expectedOf(k.Lab, nine, i) }, started, 30*time.Second)
	t.Logf("first sync: 9 nodes converged %s after the start", took)
	assertPings(t, k.Lab, nine)

	// (b) node-9 joins: every node routes to it, and it to every node,
	// each with one login for the increment.
	before := sessions(t, k.Lab, all)
	recordsBefore := records(t, k.Lab)
	roundsBefore := len(w.rounds())
	changed := time.Now()
	k.register(t, k.Nodes[9], nil, []string{k.Nodes[9].PodCIDR.String()})
	took = waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, changed, 5*time.Second)
	t.Logf("join: 10 nodes converged %s after the Node object was created", took)
	time.Sleep(500 * time.Millisecond) // a second round would have started by now
	assertSessions(t, k.Lab, "join of node-9", all, before, func(i int) int {
		if i == 9 {
			return 2 // its lock and record (SFTP), its table (ip)
		}
		return 0 // the connection, SFTP session and ip kept from the sync
	})
	assertOneRound(t, k.Lab, "join of node-9", recordsBefore, all)
	assertRoundsSince(t, w, "join of node-9", roundsBefore, 10)
	assertPings(t, k.Lab, all)

	// (c) node-3 is deleted: its routes go from every other node; a route
	// of another owner to nowhere near it stays. node-3 itself is not
	// contacted (it left the cluster; its table is its own business).
	ipRun(t, k.Nodes[0], "route", "add", "100.127.0.0/24", "via", k.Nodes[1].Addr.String(), "proto", "static")
	foreign := fmt.Sprintf("100.127.0.0/24 via %s dev eth0 proto static ", k.Nodes[1].Addr)
	before = sessions(t, k.Lab, all)
	recordsBefore = records(t, k.Lab)
	roundsBefore = len(w.rounds())
	changed = time.Now()
	k.deleteNode(t, "node-3")
	left := without(all, 3)
	took = waitTables(t, k.Lab, left, func(i int) string {
		if i == 0 {
			return expectedOf(k.Lab, left, i, foreign)
		}
		return expectedOf(k.Lab, left, i)
	}, changed, 5*time.Second)
	t.Logf("delete: node-3's routes gone from 9 nodes %s after the Node object was deleted", took)
	time.Sleep(500 * time.Millisecond) // a second round would log in by now
	assertSessions(t, k.Lab, "deletion of node-3", all, before, func(int) int { return 0 })
	assertOneRound(t, k.Lab, "deletion of node-3", recordsBefore, left)
	assertRoundsSince(t, w, "deletion of node-3", roundsBefore, 9)

	// (d) node-5 is given a new InternalIP: every other node's route to
	// it is replaced, and pods still reach each other.
	moved := "198.18.0.200"
	ipRun(t, k.Nodes[5], "addr", "add", moved+"/16", "dev", "eth0")
	changed = time.Now()
	k.setInternalIP(t, "node-5", moved)
	took = waitTables(t, k.Lab, left, func(i int) string {
		var want string
		if i == 0 {
			want = expectedOf(k.Lab, left, i, foreign)
		} else {
			want = expectedOf(k.Lab, left, i)
		}
		n5 := k.Nodes[5]
		return strings.Replace(want, fmt.Sprintf("%s via %s ", n5.PodCIDR, n5.Addr), fmt.Sprintf("%s via %s ", n5.PodCIDR, moved), 1)
	}, changed, 5*time.Second)
	t.Logf("new address: node-5's route replaced on 8 nodes %s after its InternalIP changed", took)
	assertPings(t, k.Lab, left)

	res := w.stop(t)
	stopped = true
	if testing.Verbose() {
		t.Logf("watcher's log:\n%s", res.Stderr)
	}
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	assertNoLocks(t, k.Lab)
}

// Routes flushed by hand on one node are put back by the next resync,
// and the watcher's log counts the repair.
func TestWatchRepairsDrift(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 4, false)
	all := []int{0, 1, 2, 3}
	k.registerAll(t)
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--resync", "4s", "-v")
	stopped := false
	defer func() {
		if !stopped {
			res := w.stop(t)
			t.Logf("watcher: %s\n%s", res, res.Stderr)
		}
	}()
	waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 30*time.Second)
	flushed := time.Now()
	ipRun(t, k.Nodes[2], "route", "flush", "proto", "114")
	if got, want := ipv4Table(t, k.Nodes[2]), expectedOf(k.Lab, []int{2}, 2); got != want {
		t.Fatalf("node-2 after the flush:\n%s", got)
	}
	took := waitTables(t, k.Lab, []int{2}, func(i int) string { return expectedOf(k.Lab, all, i) }, flushed, 10*time.Second)
	t.Logf("flush: node-2 repaired %s after its routes were flushed (resync 4s)", took)
	w.waitLog(t, regexp.MustCompile(`msg="round done" reason=resync nodes=4 converged=4 .* repaired=1 `), 10*time.Second)

	res := w.stop(t)
	stopped = true
	if testing.Verbose() {
		t.Logf("watcher's log:\n%s", res.Stderr)
	}
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	assertNoLocks(t, k.Lab)
}

// 20 nodes that join within a second make one round, after which every
// node routes to every other. A node silent for a minute (no RST: its
// link down) holds no other back: a node that leaves meanwhile is pruned
// from the others within 5 s though every round that tries the silent
// node waits out the default 10 s connect timeout; once back, it
// converges within a minute (its backoff's cap).
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
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--debounce", "500ms", "-v")
	stopped := false
	defer func() {
		if !stopped {
			res := w.stop(t)
			t.Logf("watcher: %s\n%s", res, res.Stderr)
		}
	}()
	waitTables(t, k.Lab, all[:2], func(i int) string { return expectedOf(k.Lab, all[:2], i) }, time.Now(), 30*time.Second)

	// (d) 20 joins at once.
	var wg sync.WaitGroup
	joined := time.Now()
	for _, n := range k.Nodes[2:] {
		wg.Go(func() { k.register(t, n, nil, []string{n.PodCIDR.String()}) })
	}
	wg.Wait()
	if took := time.Since(joined); took > time.Second {
		t.Fatalf("creating 20 Node objects took %s, not within a second: the case is not what it says", took)
	}
	took := waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, joined, 10*time.Second)
	t.Logf("20 joins: 22 nodes converged %s after the first Node object was created", took)

	// (f) node-1 goes silent, and a change makes every round try it.
	heal := silence(t, k.Lab, k.Nodes[1])
	silenced := time.Now()
	k.deleteNode(t, "node-21")
	left := without(all, 21)
	others := without(left, 1)
	took = waitTables(t, k.Lab, others, func(i int) string { return expectedOf(k.Lab, left, i) }, silenced, 5*time.Second)
	t.Logf("silent node-1: the 20 others converged %s after node-21 left", took)
	// Another change while node-1's rounds wait for it: node-20 leaves.
	time.Sleep(12 * time.Second)
	changed := time.Now()
	k.deleteNode(t, "node-20")
	left = without(left, 20)
	others = without(left, 1)
	took = waitTables(t, k.Lab, others, func(i int) string { return expectedOf(k.Lab, left, i) }, changed, 5*time.Second)
	t.Logf("silent node-1: the 19 others converged %s after node-20 left", took)
	time.Sleep(time.Until(silenced.Add(time.Minute)))
	heal()
	healed := time.Now()
	took = waitTables(t, k.Lab, []int{1}, func(i int) string { return expectedOf(k.Lab, left, i) }, healed, 75*time.Second)
	t.Logf("node-1 back after a minute: converged %s after it was reachable again", took)

	res := w.stop(t)
	stopped = true
	if testing.Verbose() {
		t.Logf("watcher's log:\n%s", res.Stderr)
	}
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	if n := strings.Count(res.Stderr, "msg=\"round done\" reason=event nodes=22"); n != 1 {
		t.Errorf("%d event rounds of 22 nodes for the 20 joins, want 1:\n%s", n, res.Stderr)
	}
	assertNoLocks(t, k.Lab)
}

// With the API as the node source, the inventory says how to reach each
// node, and is read again when it changes: node-2's entry names a port
// nothing listens on, so it waits out its backoff while the others
// converge; once the file is fixed, node-2 converges at once, not at its
// next retry.
func TestWatchReadsTheInventoryAgain(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, false)
	all := []int{0, 1, 2}
	k.registerAll(t)
	inv := filepath.Join(k.Dir, "watch-hosts.yaml")
	if err := k.WriteInventory(inv, k.Nodes); err != nil {
		t.Fatal(err)
	}
	good := readFile(t, inv)
	bad := strings.Replace(good, fmt.Sprintf("address: %s\n", k.Nodes[2].Addr), fmt.Sprintf("address: %s\n    port: 2222\n", k.Nodes[2].Addr), 1)
	if bad == good {
		t.Fatal("could not give node-2 another port in the inventory")
	}
	writeFile(t, inv, bad)
	started := time.Now()
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--inventory", inv, "-v")
	stopped := false
	defer func() {
		if !stopped {
			res := w.stop(t)
			t.Logf("watcher: %s\n%s", res, res.Stderr)
		}
	}()
	two := []int{0, 1}
	took := waitTables(t, k.Lab, two, func(i int) string { return expectedOf(k.Lab, all, i) }, started, 30*time.Second)
	t.Logf("node-0 and node-1 converged %s after the start, node-2 unreachable", took)
	// node-2 is refused at 0, 1, 3, 7 and 15 s: its next retry is 16 s
	// later, long after the bound below.
	time.Sleep(time.Until(started.Add(17 * time.Second)))
	if got := ipv4Table(t, k.Nodes[2]); got == expectedOf(k.Lab, all, 2) {
		t.Fatal("node-2 converged through a port nothing listens on")
	}
	fixed := time.Now()
	writeFile(t, inv, good)
	// The file is polled every second and read once two polls agree; then
	// one round.
	took = waitTables(t, k.Lab, []int{2}, func(i int) string { return expectedOf(k.Lab, all, i) }, fixed, 4*time.Second)
	t.Logf("node-2 converged %s after its inventory entry was fixed", took)
	waitUnlocked(t, k.Lab, 10*time.Second)

	res := w.stop(t)
	stopped = true
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	if !strings.Contains(res.Stderr, "inventory changed; reading it again") {
		t.Errorf("the watcher's log does not say it read the inventory again:\n%s", res.Stderr)
	}
}

// SIGTERM while a round has a node mid-batch: the watcher lets that node
// finish (a batch abandoned half-way could reach ip after a rollback read
// the table), verifies it, releases every lock and exits 0; the nodes
// done before stay converged.
func TestWatchStopsCleanlyMidRound(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 4, false)
	all := []int{0, 1, 2, 3}
	k.registerAll(t)
	before := detailed(t, k.Lab, k.Nodes[3])
	batch := holdNode(t, k.Lab, k.Nodes[3], "batch", atBatchLine, 1, "")
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "-v")
	if res, ok := batch.waitPaused(t, w.done); !ok {
		t.Fatalf("node-3's batch was never held:\n%s", res)
	}
	three := all[:3]
	waitTables(t, k.Lab, three, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 30*time.Second)
	w.mu.Lock()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	w.mu.Unlock()
	// The watcher waits for node-3 (its batch is half in ip's hands):
	// it must not exit before the batch is let go.
	select {
	case res := <-w.done:
		t.Fatalf("the watcher exited with node-3's batch still held: %s\n%s", res, res.Stderr)
	case <-time.After(time.Second):
	}
	stopAt := time.Now()
	batch.release(t)
	var res lab.Result
	select {
	case res = <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher did not stop within 30 s of node-3's batch going on")
	}
	t.Logf("stopped %s after node-3's batch went on", time.Since(stopAt).Round(time.Millisecond))
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	// Its batch was on its way: it finished, and verified.
	if got := ipv4Table(t, k.Nodes[3]); got != expectedOf(k.Lab, all, 3) {
		t.Errorf("node-3 not converged after its batch was let finish (before: %s):\n%s", before, got)
	}
	if !regexp.MustCompile(`msg="round done" reason=sync nodes=4 converged=4 `).MatchString(res.Stderr) {
		t.Errorf("the stopped round does not report node-3 converged:\n%s", res.Stderr)
	}
	for _, i := range three {
		if got := ipv4Table(t, k.Nodes[i]); got != expectedOf(k.Lab, all, i) {
			t.Errorf("%s no longer converged:\n%s", k.Nodes[i].Name, got)
		}
	}
	assertNoLocks(t, k.Lab)
}

// In a Deployment the watcher's pod address is inside its node's pod
// CIDR. The lab's bastion is given such an address in node-2's: without
// --running-on the rails hold node-2 out (a route to its CIDR would take
// the watcher's own address); with --running-on node-2 every node
// converges.
func TestWatchAsAPod(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, false)
	all := []int{0, 1, 2}
	k.registerAll(t)
	podAddr := k.Nodes[2].PodCIDR.Addr().Next().Next().Next() // .3, not the node's pod IP
	if out, err := exec.Command("ip", "-n", k.Bastion, "addr", "add", podAddr.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("giving the bastion a pod address: %v %s", err, out)
	}

	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "-v")
	w.waitLog(t, regexp.MustCompile(`(?s)left out.*node-2.*an address of this control host`), 20*time.Second)
	res := w.stop(t)
	if res.Code != 0 {
		t.Errorf("watcher without --running-on: %s", res)
	}

	started := time.Now()
	w = startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--running-on", "node-2", "-v")
	took := waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, started, 30*time.Second)
	t.Logf("--running-on node-2: 3 nodes converged %s after the start", took)
	waitUnlocked(t, k.Lab, 10*time.Second)
	if res := w.stop(t); res.Code != 0 {
		t.Errorf("watcher with --running-on: %s", res)
	}
}

// A node with another owner's route to a planned destination is refused
// by the watcher as by apply: its table stays byte for byte as it was
// (the route is not routepush's), every other node converges, and the
// log says why.
func TestWatchRefusesAndLeavesForeignRoutes(t *testing.T) {
	t.Parallel()
	k := newKubeLab(t, 3, false)
	all := []int{0, 1, 2}
	k.registerAll(t)
	ipRun(t, k.Nodes[1], "route", "add", k.Nodes[2].PodCIDR.String(), "via", k.Nodes[2].Addr.String(), "proto", "static")
	before := detailed(t, k.Lab, k.Nodes[1])
	started := time.Now()
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "-v")
	others := []int{0, 2}
	waitTables(t, k.Lab, others, func(i int) string { return expectedOf(k.Lab, all, i) }, started, 30*time.Second)
	w.waitLog(t, regexp.MustCompile(`node=node-1 state=failed .*refusing to change the node`), 10*time.Second)
	time.Sleep(2 * time.Second) // its retries
	if got := detailed(t, k.Lab, k.Nodes[1]); got != before {
		t.Errorf("node-1, refused, changed:\n--- before\n%s--- after\n%s", before, got)
	}
	if res := w.stop(t); res.Code != 0 {
		t.Errorf("watcher: %s", res)
	}
	assertNoLocks(t, k.Lab)
}
