package orchestrator

import (
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// clusterNodes is an n-node IPv4 cluster: node i at 198.18.0.0 + i with pod
// CIDR 100.64.0.0/24 + i.
func clusterNodes(n int) []inventory.Node {
	nodes := make([]inventory.Node, n)
	for i := range nodes {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>8), byte(i), 0}), 24)
		nodes[i] = inventory.Node{Name: "n", InternalIPs: []netip.Addr{ip}, PodCIDRs: []netip.Prefix{cidr}}
	}
	return nodes
}

// The whole plan + diff + batch of a 5,000-node cluster: 4,999 routes per
// node, 25 M in all, worked out node by node as a run pushes them, against
// an empty table (first run) and against a converged one (re-run). Issue 5:
// at most 2 s of CPU and 64 MB of live heap.
func BenchmarkPlanDiff5000(b *testing.B) {
	const n = 5000
	nodes := clusterNodes(n)
	connected := route.Route{Dst: netip.MustParsePrefix("198.18.0.0/16"), Dev: "eth0", Protocol: 2, Type: "unicast"}
	for _, state := range []string{"empty", "converged"} {
		b.Run(state, func(b *testing.B) {
			var peak uint64
			var batchBytes int
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				plan := NewPlan(nodes, DefaultProtocol)
				// One converged table stands in for every node's: the
				// plan differs per node by one route, the diff's cost not.
				var current []route.Route
				if state == "converged" {
					h := plan.Host(0)
					current = make([]route.Route, 0, h.Len()+1)
					for k := range h.Len() {
						current = append(current, h.Route(k))
					}
				}
				current = append(current, connected)
				for i := range n {
					h := plan.Host(i)
					d, err := ComputeDiff(h, current)
					if err != nil {
						b.Fatal(err)
					}
					if !d.Empty() && len(UnconnectedNextHops(h, current)) > 0 {
						b.Fatal("next hops not connected")
					}
					batchBytes += len(d.ApplyBatch(h).Bytes())
					if i%1000 == 999 {
						var ms runtime.MemStats
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapInuse)
					}
				}
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(peak)/(1<<20), "MB-heap-in-use")
			b.ReportMetric(float64(batchBytes)/float64(b.N)/(1<<20), "MB-batches/op")
		})
	}
}

// cpuTime is the process's user plus system CPU time: with the garbage
// collector on the other core, wall time understates the cost.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
