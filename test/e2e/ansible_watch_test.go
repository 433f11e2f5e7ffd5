package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// routepush watch on an INI inventory alone, the pod CIDRs in host_vars/:
// host_vars/node-1.yml emptied for a moment (with the inventory file
// touched, as a git pull may) deletes no route to node-1's pods anywhere;
// a vars-only edit (node-2's pod CIDR written where there was none)
// converges without a restart.
func TestWatchAnsibleHostVars(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	all := []int{0, 1, 2}
	dir := mkdir(t, filepath.Join(l.Dir, "playbook", "host_vars"))
	inv := filepath.Join(l.Dir, "playbook", "inventory.ini")
	var ini strings.Builder
	ini.WriteString("[k8s]\n")
	for _, n := range l.Nodes {
		fmt.Fprintf(&ini, "%s ansible_host=%s\n", n.Name, n.Addr)
	}
	writeFile(t, inv, ini.String())
	vars := func(i int) string { return fmt.Sprintf("pod_cidr: %s\n", l.Nodes[i].PodCIDR) }
	writeFile(t, filepath.Join(dir, "node-0.yml"), vars(0))
	writeFile(t, filepath.Join(dir, "node-1.yml"), vars(1))
	writeFile(t, filepath.Join(dir, "node-2.yml"), "# no pod CIDR yet\n")
	started := time.Now()
	w := startWatch(t, l, "--config", l.ConfigPath(), "--inventory", inv, "-v")
	stopped := false
	defer func() {
		if !stopped {
			res := w.stop(t)
			t.Logf("watcher: %s\n%s", res, res.Stderr)
		}
	}()
	waitTables(t, l, all, func(i int) string { return expectedOf(l, []int{0, 1}, i) }, started, 30*time.Second)

	// Watch every node's route to node-1's pods while its vars file is
	// empty for a moment.
	var lost atomic.Value
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		want := fmt.Sprintf("%s via %s ", l.Nodes[1].PodCIDR, l.Nodes[1].Addr)
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, i := range []int{0, 2} { // node-2 has no pod CIDR yet, but routes to the others
				out, err := exec4(l.Nodes[i])
				if err == nil && !strings.Contains(out, want) {
					lost.Store(l.Nodes[i].Name)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	changes := strings.Count(w.logString(), "inventory changed")
	writeFile(t, filepath.Join(dir, "node-1.yml"), "")
	writeFile(t, inv, ini.String())
	for deadline := time.Now().Add(10 * time.Second); strings.Count(w.logString(), "inventory changed") == changes; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not read the inventory again")
		}
	}
	time.Sleep(500 * time.Millisecond) // a round on what it read
	writeFile(t, filepath.Join(dir, "node-1.yml"), vars(1))
	time.Sleep(4 * time.Second)
	close(done)
	<-sampled
	if n := lost.Load(); n != nil {
		t.Errorf("%s lost its route to node-1's pods while host_vars/node-1.yml was empty for a moment", n)
	}
	waitTables(t, l, all, func(i int) string { return expectedOf(l, []int{0, 1}, i) }, time.Now(), 10*time.Second)

	edited := time.Now()
	writeFile(t, filepath.Join(dir, "node-2.yml"), vars(2))
	took := waitTables(t, l, all, func(i int) string { return expectedOf(l, all, i) }, edited, 10*time.Second)
	t.Logf("node-2's pod CIDR, written in host_vars/ alone, routed everywhere %s later", took)

	res := w.stop(t)
	stopped = true
	if res.Code != 0 {
		t.Errorf("watcher after SIGTERM: %s", res)
	}
	for _, want := range []string{"lost pod CIDRs: kept as it was", "pod CIDRs again; nothing deleted"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("the watcher's log does not say %q:\n%s", want, res.Stderr)
		}
	}
}

func (w *watcher) logString() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}
