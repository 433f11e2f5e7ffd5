package app

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// deploy/'s Deployment runs `routepush watch` with flags the verb takes,
// serves its probes on the pod's address (a bare :port would be loopback
// only, and the kubelet's probes would kill it) and elects on the Lease
// a bastion's watcher finds by default.
func TestDeploymentArgs(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../../deploy/20-deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d appsv1.Deployment
	if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&d); err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "watch" {
		t.Fatalf("args %v: want watch first", args)
	}
	cmd := newWatchCommand(deps{})
	if err := cmd.ParseFlags(args[1:]); err != nil {
		t.Fatalf("routepush %v: %v", args, err)
	}
	addr, _ := cmd.Flags().GetString("metrics-addr")
	if host, _, err := net.SplitHostPort(addr); err != nil || host == "" || net.ParseIP(host).IsLoopback() {
		t.Errorf("--metrics-addr=%q: the kubelet's probes cannot reach it", addr)
	}
	if ns, _ := cmd.Flags().GetString("lease-namespace"); ns != d.Namespace || ns != defaultLeaseNamespace {
		t.Errorf("--lease-namespace=%q in namespace %q: want both %q", ns, d.Namespace, defaultLeaseNamespace)
	}
}

// A watcher takes over only the locks of runs of this host that are
// provably gone.
func TestHolderGone(t *testing.T) {
	t.Parallel()
	started := time.Now()
	self := os.Getpid()
	gone := holderGone("bastion", self)
	for _, c := range []struct {
		name string
		h    orchestrator.Holder
		want bool
	}{
		{"another host", orchestrator.Holder{Host: "other", PID: 1 << 30}, false},
		{"a live process here", orchestrator.Holder{Host: "bastion", PID: os.Getppid()}, false},
		{"a pid that does not run", orchestrator.Holder{Host: "bastion", PID: 1 << 30}, true},
		{"an earlier round of this process (its unlock failed, or a crash of the node kept the lock)", orchestrator.Holder{Host: "bastion", PID: self, Started: started.Add(time.Second)}, true},
		{"this pid before this process (a restarted container)", orchestrator.Holder{Host: "bastion", PID: self, Started: started.Add(-time.Minute)}, true},
	} {
		if got := gone(c.h); got != c.want {
			t.Errorf("%s: gone = %v, want %v", c.name, got, c.want)
		}
	}
}

// Under a Lease, a run of another holder of the same lease (another host:
// a leader's pod killed mid-round) is taken over once it is older than
// the lease and the commands its nodes could still be finishing; a run
// under no lease, or another lease, never is.
func TestLeaseTakeOver(t *testing.T) {
	t.Parallel()
	f := &watchFlags{leaseNamespace: "routepush-system", leaseName: "routepush"}
	f.reach.commandTimeout = 10 * time.Second
	cfg := watchConfig(t.Context(), f, nil, nil, nil, time.Now())
	host, _ := os.Hostname()
	if h := cfg.NewHolder(); h.Lease != "routepush-system/routepush" || h.Host != host {
		t.Errorf("holder %+v does not name the lease", h)
	}
	old := time.Now().Add(-2 * time.Minute) // past 15 s + 5 × 10 s
	for _, c := range []struct {
		name string
		h    orchestrator.Holder
		want bool
	}{
		{"a previous leader's run, old enough", orchestrator.Holder{Host: "pod-a", PID: 1, Started: old, Lease: "routepush-system/routepush"}, true},
		{"a previous leader's run, maybe still finishing", orchestrator.Holder{Host: "pod-a", PID: 1, Started: time.Now().Add(-30 * time.Second), Lease: "routepush-system/routepush"}, false},
		{"a one-shot run", orchestrator.Holder{Host: "pod-a", PID: 1, Started: old}, false},
		{"a watcher under another lease", orchestrator.Holder{Host: "pod-a", PID: 1, Started: old, Lease: "other/routepush"}, false},
	} {
		if got := cfg.Run.TakeOver(c.h); got != c.want {
			t.Errorf("%s: take over = %v, want %v", c.name, got, c.want)
		}
	}
}

// In a pod, the watcher's address is inside its node's pod CIDR: with
// --running-on naming that node it is not reserved (the route to the CIDR
// goes where the pod lives); any other node's CIDR containing it, or no
// --running-on, still reserves it.
func TestHostAddrsInAPod(t *testing.T) {
	t.Parallel()
	pod := netip.MustParseAddr("100.64.3.17")
	nodes := []inventory.Node{
		{Name: "node-2", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24")}},
		{Name: "node-3", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.3.0/24")}},
	}
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), pod}
	reserved := func(runningOn string) bool {
		for _, r := range hostAddrs(local, nodes, runningOn) {
			if r.Addr == pod {
				return true
			}
		}
		return false
	}
	for runningOn, want := range map[string]bool{"node-3": false, "node-2": true, "": true, "node-9": true} {
		if got := reserved(runningOn); got != want {
			t.Errorf("--running-on %q: the pod address reserved = %v, want %v", runningOn, got, want)
		}
	}
	if len(hostAddrs(local, nodes, "")) != 1 {
		t.Error("loopback reserved")
	}
}
