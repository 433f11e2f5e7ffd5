package orchestrator_test

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/route"
)

// A node's plan is a route to every other node's pod CIDR, never its own.
func ExampleNewPlan() {
	nodes := []inventory.Node{
		{Name: "worker-0", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.10")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")}},
		{Name: "worker-1", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.11")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}},
		{Name: "worker-2", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24")}},
	}
	plan := orchestrator.NewPlan(nodes, orchestrator.DefaultProtocol)
	h := plan.Host(1)
	for k := 0; k < h.Len(); k++ {
		fmt.Println(h.Route(k))
	}
	// Output:
	// 100.64.0.0/24 via 198.18.0.10 proto 114
	// 100.64.2.0/24 via 198.18.0.12 proto 114
}

// The diff against what a node has: one route to add, one to change (a
// route another owner made, adopted), and the batch that does it.
func ExampleComputeDiff() {
	nodes := []inventory.Node{
		{Name: "worker-0", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.10")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")}},
		{Name: "worker-1", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.11")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}},
		{Name: "worker-2", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24")}},
	}
	current, _ := route.ParseText([]byte("unicast 100.64.1.0/24 via 198.18.0.99 dev eth0 proto boot scope global\n"), route.IPv4)
	h := orchestrator.NewPlanWith(nodes, orchestrator.PlanOptions{Protocol: orchestrator.DefaultProtocol, Adopt: true}).Host(0)
	d, _ := orchestrator.ComputeDiff(h, current)
	fmt.Printf("%d to add, %d to change\n", d.Add.Len(), len(d.Replace))
	os.Stdout.Write(d.ApplyBatch(h).Bytes())
	// Output:
	// 1 to add, 1 to change
	// route del 100.64.1.0/24 via 198.18.0.99 proto 3 metric 0
	// route add 100.64.2.0/24 via 198.18.0.12 proto 114
	// route add 100.64.1.0/24 via 198.18.0.11 proto 114
}
