package route

import (
	"strings"
	"testing"
)

func TestReservedProtocol(t *testing.T) {
	t.Parallel()
	// linux/rtnetlink.h and iproute2's rt_protos, Calico Felix (80) and
	// kube-router (17).
	taken := map[Protocol]string{
		0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
		10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
		17: "kube-router", 18: "keepalived", 42: "babel", 80: "Calico", 99: "openr",
		186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp",
	}
	for p := range 256 {
		owner, reserved := ReservedProtocol(Protocol(p))
		want, taken := taken[Protocol(p)]
		switch {
		case reserved != taken:
			t.Errorf("ReservedProtocol(%d) = %q, %v; want reserved %v", p, owner, reserved, taken)
		case taken && !strings.Contains(owner, want):
			t.Errorf("ReservedProtocol(%d) = %q; want it to name %s", p, owner, want)
		}
		if name := protocolNames[p]; name != "" && !reserved {
			t.Errorf("protocol %d (%s) has a name in rt_protos but is not reserved", p, name)
		}
	}
	if owner, _ := ReservedProtocol(2); owner != "the kernel's (proto kernel: the routes of the node's own addresses)" {
		t.Errorf("ReservedProtocol(2) = %q", owner)
	}
}
