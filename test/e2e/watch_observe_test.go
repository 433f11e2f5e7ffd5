package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/routepush/routepush/test/kube"
	"github.com/routepush/routepush/test/lab"
)

// grantWatch gives the lab's user "routepush" what a watcher on a bastion
// needs beyond configs/rbac.yaml, as the README says: deploy/'s namespace
// and roles applied, then its ClusterRole (nodes watch, Events) and its
// Role for the Lease bound to the user.
func grantWatch(t *testing.T, k *kubeLab) {
	t.Helper()
	ctx := testContext(t)
	admin := k.api.Admin
	for _, file := range []string{"../../deploy/00-namespace.yaml", "../../deploy/10-rbac.yaml"} {
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(readFile(t, file))), 4096)
		for {
			var raw runtime.RawExtension
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(bytes.TrimSpace(raw.Raw)) == 0 {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			switch o := obj.(type) {
			case *corev1.Namespace:
				_, err = admin.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			case *corev1.ServiceAccount:
				_, err = admin.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRole:
				_, err = admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRoleBinding:
				_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.Role:
				_, err = admin.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.RoleBinding:
				_, err = admin.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			default:
				err = fmt.Errorf("unexpected %T", obj)
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
	}
	user := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: kube.RoutepushUser}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "routepush-watch-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "routepush-watch"},
		Subjects:   user,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ns, role := range map[string]string{"routepush-system": "routepush-watch-lease", "default": "routepush-watch-events"} {
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role + "-user"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
			Subjects:   user,
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// scrape GETs a path of a watcher's metrics server, from inside the
// bastion's network namespace where it listens (on 127.0.0.1).
func scrape(t *testing.T, k *kubeLab, port int, path string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: k.DialBastion}, Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

// metric returns a series' value from an exposition ("name{labels}" as
// Prometheus prints it), or -1 if it is not there.
func metric(body, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// waitMetric scrapes until ok holds for the series, and returns its value.
func waitMetric(t *testing.T, k *kubeLab, port int, series string, ok func(float64) bool, bound time.Duration) float64 {
	t.Helper()
	start := time.Now()
	for {
		_, body := scrape(t, k, port, "/metrics")
		v := metric(body, series)
		if ok(v) {
			return v
		}
		if time.Since(start) > bound {
			t.Fatalf("after %s, %s = %v:\n%s", bound, series, v, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func is(want float64) func(float64) bool   { return func(v float64) bool { return v == want } }
func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }

// waitCondition waits until a node's NetworkUnavailable is status/reason.
func waitCondition(t *testing.T, k *kubeLab, node string, status corev1.ConditionStatus, reason string, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		c := conditionOf(t, k, node)
		if c != nil && c.Status == status && c.Reason == reason {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("after %s, %s NetworkUnavailable = %+v, want %s/%s", bound, node, c, status, reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// routepush watch observed: /metrics scraped from the bastion counts the
// converged nodes, the routes managed, the rounds, a repair after a hand
// flush and a node that fails; the Node objects get RoutesConverged,
// RoutesRepaired and RoutesFailed Events; NetworkUnavailable is False on
// converged nodes, True on the failing one, and False again once it
// converges.
func TestWatchObservable(t *testing.T) {
	t.Parallel()
	const n, port = 6, 9090
	k := newKubeLab(t, n, false)
	grantWatch(t, k)
	k.registerAll(t)
	all := []int{0, 1, 2, 3, 4, 5}
	if code, _ := scrape(t, k, port, "/healthz"); code != 0 {
		t.Fatalf("something listens on :%d before the watcher", port)
	}
	w := startWatch(t, k.Lab, "--kubeconfig", k.kubeconfig, "--resync", "4s", "--mark-network-available",
		"--metrics-addr", fmt.Sprintf(":%d", port), "-v")
	stopped := false
	defer func() {
		if !stopped {
			t.Logf("watcher: %s", w.stop(t))
		}
	}()
	took := waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 30*time.Second)
	t.Logf("first sync: %d nodes converged %s after the start", n, took)

	// (1) After the first sync.
	waitMetric(t, k, port, `routepush_nodes{state="converged"}`, is(n), 10*time.Second)
	_, body := scrape(t, k, port, "/metrics")
	for series, want := range map[string]float64{
		`routepush_nodes{state="failed"}`:                   0,
		`routepush_routes_managed`:                          n * (n - 1),
		`routepush_leader`:                                  1,
		`routepush_rounds_total{reason="sync",result="ok"}`: 1,
		`routepush_repairs_total{reason="drift"}`:           0,
	} {
		if got := metric(body, series); got != want {
			t.Errorf("after the first sync: %s = %v, want %v", series, got, want)
		}
	}
	if metric(body, "process_resident_memory_bytes") <= 0 {
		t.Error("no process_resident_memory_bytes")
	}
	if code, text := scrape(t, k, port, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the first sync: %d %s", code, text)
	}
	for i := range all {
		waitCondition(t, k, k.Nodes[i].Name, corev1.ConditionFalse, "RouteCreated", 10*time.Second)
	}

	// (2) node-2's routes flushed by hand: the next resync repairs them
	// and counts a repair.
	ipRun(t, k.Nodes[2], "route", "flush", "proto", "114")
	took = waitTables(t, k.Lab, []int{2}, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 12*time.Second)
	repairs := waitMetric(t, k, port, `routepush_repairs_total{reason="drift"}`, atLeast(1), 5*time.Second)
	t.Logf("flush: node-2 repaired %s after the flush; routepush_repairs_total{reason=\"drift\"} = %v", took, repairs)

	// (3) node-4 fails: its kernel refuses the route via node-0, and its
	// routes are gone, so the next resync's repair fails and rolls back.
	rejectRouteVia(t, k.Lab, k.Nodes[4], k.Nodes[0].Addr)
	ipRun(t, k.Nodes[4], "route", "flush", "proto", "114")
	took = waitCondition(t, k, "node-4", corev1.ConditionTrue, "NoRouteCreated", 15*time.Second)
	failed := waitMetric(t, k, port, `routepush_nodes{state="failed"}`, is(1), 5*time.Second)
	t.Logf("node-4 failing: NetworkUnavailable=True %s after its flush; routepush_nodes{state=\"failed\"} = %v", took, failed)
	for _, i := range []int{0, 1, 2, 3, 5} {
		if c := conditionOf(t, k, k.Nodes[i].Name); c == nil || c.Status != corev1.ConditionFalse {
			t.Errorf("%s NetworkUnavailable = %+v while node-4 fails, want False", k.Nodes[i].Name, c)
		}
	}

	// (4) node-4 mended: a retry converges it; the condition follows.
	if err := k.RestartSSHD(testContext(t), k.Nodes[4]); err != nil {
		t.Fatal(err)
	}
	took = waitCondition(t, k, "node-4", corev1.ConditionFalse, "RouteCreated", 30*time.Second)
	waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 5*time.Second)
	waitMetric(t, k, port, `routepush_nodes{state="converged"}`, is(n), 5*time.Second)
	_, body = scrape(t, k, port, "/metrics")
	t.Logf("node-4 mended: NetworkUnavailable=False %s after sshd restarted", took)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "routepush_") && !strings.Contains(line, "_bucket{") {
			t.Logf("scraped: %s", line)
		}
	}
	if got := metric(body, `routepush_rounds_total{reason="resync",result="failed"}`); got < 1 {
		t.Errorf(`routepush_rounds_total{reason="resync",result="failed"} = %v, want at least 1 (node-4's)`, got)
	}

	res := w.stop(t)
	stopped = true
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	assertNoLocks(t, k.Lab)

	// The Events, flushed on stop, on the Node objects.
	evs, err := k.api.Admin.EventsV1().Events(metav1.NamespaceDefault).List(testContext(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ev := range evs.Items {
		if ev.ReportingController != "routepush" {
			continue
		}
		if ev.Regarding.Kind != "Node" || ev.Regarding.APIVersion != "v1" {
			t.Errorf("event %s regards %+v, want a Node", ev.Name, ev.Regarding)
		}
		seen[ev.Regarding.Name+"/"+ev.Reason+"/"+ev.Type] = true
	}
	var want []string
	for i := range all {
		want = append(want, k.Nodes[i].Name+"/RoutesConverged/Normal")
	}
	want = append(want, "node-2/RoutesRepaired/Normal", "node-4/RoutesFailed/Warning")
	for _, key := range want {
		if !seen[key] {
			t.Errorf("no Event %s; routepush's: %v", key, seen)
		}
	}
}

// record is what a node's run record says of its run.
type record struct {
	RunID  string     `json:"run_id"`
	Holder lockHolder `json:"holder"`
	last   string     // the record's last line: its latest state
}

// lockHolder is a run as a node's lock (and a record's holder) names it.
type lockHolder struct {
	RunID   string    `json:"run_id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// records reads every run record the lab's nodes keep.
func records(t *testing.T, l *lab.Lab) map[string][]record {
	t.Helper()
	m := map[string][]record{}
	for _, n := range l.Nodes {
		files, _ := filepath.Glob(filepath.Join(n.Dir, "var-lib-routepush", "runs", "*.json"))
		for _, f := range files {
			text := strings.TrimSpace(readFile(t, f))
			first, _, _ := strings.Cut(text, "\n")
			var r record
			if err := json.Unmarshal([]byte(first), &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			r.last = text[strings.LastIndex(text, "\n")+1:]
			m[n.Name] = append(m[n.Name], r)
		}
	}
	return m
}

// Two watchers on one Lease: only the leader writes (every lock and run
// record on every node is its process's). The leader is killed (-9)
// while its round is held mid-batch on node-2 (node-2 still locked by
// it, the round's other nodes converged and released), and a node joins
// meanwhile: the standby leads within the lease duration, takes the dead
// process's lock over (node-2's half-sent batch undone from its record)
// and converges every node, the new one included.
// waitUnlockedBut waits until the only node locked is name.
func waitUnlockedBut(t *testing.T, l *lab.Lab, name string, bound time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(bound); ; time.Sleep(20 * time.Millisecond) {
		locked := lockedNodes(l)
		if len(locked) == 1 && locked[0] == name {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("locked after %s: %v, want %s alone", bound, locked, name)
		}
	}
}

func TestWatchLeaseOneWriterAndTakeover(t *testing.T) {
	t.Parallel()
	faultCase(t, "17-leader-killed (watch leader killed -9 mid-batch; the standby takes its locks over and converges a node added meanwhile)")
	k := newKubeLab(t, 7, false)
	grantWatch(t, k)
	for _, n := range k.Nodes[:5] { // node-5 joins while the leader holds node-2, node-6 after it died
		k.register(t, n, nil, []string{n.PodCIDR.String()})
	}
	const (
		leaseDuration = 4 * time.Second
		retryPeriod   = 500 * time.Millisecond
	)
	args := func(port int) []string {
		return []string{"--kubeconfig", k.kubeconfig, "--lease-name", "routepush",
			"--lease-duration", leaseDuration.String(), "--lease-renew-deadline", "3s", "--lease-retry-period", retryPeriod.String(),
			"--resync", "1h", "--metrics-addr", fmt.Sprintf(":%d", port), "-v"}
	}
	watchers := map[int]*watcher{9091: startWatch(t, k.Lab, args(9091)...), 9092: startWatch(t, k.Lab, args(9092)...)}
	var stopping []*watcher
	defer func() {
		for _, w := range stopping {
			t.Logf("watcher: %s", w.stop(t))
		}
	}()
	for _, w := range watchers {
		stopping = append(stopping, w)
	}
	five := []int{0, 1, 2, 3, 4}
	waitTables(t, k.Lab, five, func(i int) string { return expectedOf(k.Lab, five, i) }, time.Now(), 30*time.Second)

	// Which one leads: the Lease, and each one's routepush_leader.
	lease := waitLease(t, k, "", 10*time.Second)
	leaderPort, standbyPort := 0, 0
	for port, w := range watchers {
		if strings.HasSuffix(lease, fmt.Sprintf("_%d", w.pid(t))) {
			leaderPort = port
		} else {
			standbyPort = port
		}
	}
	if leaderPort == 0 {
		t.Fatalf("the Lease is held by %q, neither watcher", lease)
	}
	leader, standby := watchers[leaderPort], watchers[standbyPort]
	leaderPID, standbyPID := leader.pid(t), standby.pid(t)
	waitMetric(t, k, leaderPort, "routepush_leader", is(1), 5*time.Second)
	waitMetric(t, k, standbyPort, "routepush_leader", is(0), 5*time.Second)
	if code, _ := scrape(t, k, standbyPort, "/readyz"); code != http.StatusOK {
		t.Errorf("standby /readyz: %d, want 200 (standing by is its job)", code)
	}
	t.Logf("leader pid %d (:%d), standby pid %d (:%d)", leaderPID, leaderPort, standbyPID, standbyPort)

	// node-5 joins; node-2 holds its first added route: the leader is
	// mid-batch there, node-2 locked and recorded as applying.
	hold := holdNode(t, k.Lab, k.Nodes[2], "kill", atBatchLine, 1, "")
	k.register(t, k.Nodes[5], nil, []string{k.Nodes[5].PodCIDR.String()})
	if res, ok := hold.waitPaused(t, nil); !ok {
		t.Fatalf("node-2 never held its batch: %s", res)
	}
	// Each node of the join round is its own: the other five converge
	// and let go while node-2 is held, locked and recorded as applying.
	six := []int{0, 1, 2, 3, 4, 5}
	waitTables(t, k.Lab, without(six, 2), func(i int) string { return expectedOf(k.Lab, six, i) }, time.Now(), 10*time.Second)
	waitUnlockedBut(t, k.Lab, "node-2", 10*time.Second)
	for node, rs := range records(t, k.Lab) {
		for _, r := range rs {
			if r.Holder.PID != leaderPID {
				t.Errorf("%s: run %s recorded by pid %d, not the leader's %d", node, r.RunID, r.Holder.PID, leaderPID)
			}
		}
	}
	var heldBy lockHolder
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(k.Nodes[2].Dir, "var-lib-routepush", "lock"))), &heldBy); err != nil || heldBy.PID != leaderPID {
		t.Errorf("node-2's lock is not the leader's: %+v %v", heldBy, err)
	}

	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	stopping = []*watcher{standby}
	hold.drop(t) // its session died with the leader's connection
	k.register(t, k.Nodes[6], nil, []string{k.Nodes[6].PodCIDR.String()})

	waitMetric(t, k, standbyPort, "routepush_leader", is(1), leaseDuration+2*retryPeriod+5*time.Second)
	takeover := time.Since(killed)
	all := []int{0, 1, 2, 3, 4, 5, 6}
	waitTables(t, k.Lab, all, func(i int) string { return expectedOf(k.Lab, all, i) }, time.Now(), 30*time.Second)
	converged := time.Since(killed)
	t.Logf("takeover: the standby led %s after the kill, all 7 nodes converged %s after it (lease duration %s, retry period %s)",
		takeover.Round(time.Millisecond), converged.Round(time.Millisecond), leaseDuration, retryPeriod)
	// client-go's elector: the lease expires leaseDuration after the
	// standby last saw it renewed (at most a retry period before the
	// kill), and the standby tries every retry period (×1.2 jitter).
	if bound := leaseDuration + 3*retryPeriod + time.Second; takeover > bound {
		t.Errorf("takeover took %s, want at most %s", takeover, bound)
	}
	if bound := leaseDuration + 3*retryPeriod + 6*time.Second; converged > bound {
		t.Errorf("convergence after the kill took %s, want at most %s", converged, bound)
	}
	if l := waitLease(t, k, "", time.Second); !strings.HasSuffix(l, fmt.Sprintf("_%d", standbyPID)) {
		t.Errorf("the Lease is held by %q, not the standby", l)
	}

	res := standby.stop(t)
	stopping = nil
	if res.Code != 0 {
		t.Errorf("new leader after SIGTERM: %s", res)
	}
	for _, line := range strings.Split(res.Stderr, "\n") {
		if strings.Contains(line, "took over") || strings.Contains(line, "leading") || strings.Contains(line, "round done") {
			t.Logf("new leader: %s", line)
		}
	}
	if !strings.Contains(res.Stderr, "took over a node locked by a run whose process is gone") || !strings.Contains(res.Stderr, "node=node-2") {
		t.Errorf("the new leader does not say it took node-2 over:\n%s", res.Stderr)
	}
	assertNoLocks(t, k.Lab)
	// Every record is the dead leader's (before the kill) or the new
	// one's (after); the dead run on node-2 was undone.
	for node, rs := range records(t, k.Lab) {
		for _, r := range rs {
			switch r.Holder.PID {
			case leaderPID:
				if r.Holder.Started.After(killed) {
					t.Errorf("%s: run %s of the dead leader started after the kill", node, r.RunID)
				}
			case standbyPID:
				if r.Holder.Started.Before(killed) {
					t.Errorf("%s: run %s of the standby started before the kill: it wrote while standing by", node, r.RunID)
				}
			default:
				t.Errorf("%s: run %s by pid %d, neither watcher", node, r.RunID, r.Holder.PID)
			}
			if node == "node-2" && r.RunID == heldBy.RunID && !strings.Contains(r.last, `"state":"rolled-back"`) {
				t.Errorf("node-2: the dead leader's run %s, held mid-batch, ends %s; want it undone", r.RunID, r.last)
			}
		}
	}
}

// waitLease waits until the watchers' Lease has a holder other than not,
// and returns it.
func waitLease(t *testing.T, k *kubeLab, not string, bound time.Duration) string {
	t.Helper()
	start := time.Now()
	for {
		var l *coordinationv1.Lease
		l, err := k.api.Admin.CoordinationV1().Leases("routepush-system").Get(testContext(t), "routepush", metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != not {
			return *l.Spec.HolderIdentity
		}
		if time.Since(start) > bound {
			t.Fatalf("no Lease holder within %s: %v", bound, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pid is the watcher's process id (ip netns exec and sh exec routepush:
// the process is it), once it has started.
func (w *watcher) pid(t *testing.T) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		p := w.cmd.Process
		w.mu.Unlock()
		if p != nil {
			return p.Pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher never started")
		}
	}
}
