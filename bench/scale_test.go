package main

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// rtmsg builds an IPv4 route message as the kernel dumps it.
func rtmsg(dst string, table, proto, typ byte, attrs ...[]byte) []byte {
	p := netip.MustParsePrefix(dst)
	b := make([]byte, unix.SizeofRtMsg)
	b[0], b[1], b[4], b[5], b[7] = unix.AF_INET, byte(p.Bits()), table, proto, typ
	a := p.Addr().As4()
	b = append(b, attr(unix.RTA_DST, a[:])...)
	for _, x := range attrs {
		b = append(b, x...)
	}
	return b
}

func attr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func gw(s string) []byte {
	a := netip.MustParseAddr(s).As4()
	return attr(unix.RTA_GATEWAY, a[:])
}

// The scale sequence's checker counts only routepush's own routes to
// members as correct, and every other route into the pod range as wrong.
func TestClassifyPodRoutes(t *testing.T) {
	own := netip.MustParsePrefix("100.64.0.0/24")
	want := map[netip.Prefix]netip.Addr{
		own:                                    netip.MustParseAddr("198.18.0.10"),
		netip.MustParsePrefix("100.64.1.0/24"): netip.MustParseAddr("198.18.0.11"),
		netip.MustParsePrefix("100.64.2.0/24"): netip.MustParseAddr("198.18.0.12"),
	}
	for _, c := range []struct {
		name         string
		msgs         [][]byte
		found, wrong int
	}{
		{"routepush's routes to both members", [][]byte{
			rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, gw("198.18.0.11")),
			rtmsg("100.64.2.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, gw("198.18.0.12")),
		}, 2, 0},
		{"the node's own pod address is no business of the check", [][]byte{
			rtmsg("100.64.0.1/32", unix.RT_TABLE_LOCAL, unix.RTPROT_KERNEL, unix.RTN_LOCAL),
		}, 0, 0},
		{"routes outside the pod range are not looked at", [][]byte{
			rtmsg("198.18.0.0/15", unix.RT_TABLE_MAIN, unix.RTPROT_KERNEL, unix.RTN_UNICAST),
			rtmsg("0.0.0.0/0", unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RTN_UNICAST, gw("198.18.0.1")),
		}, 0, 0},
		{"the wrong gateway", [][]byte{rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, gw("198.18.0.12"))}, 0, 1},
		{"another protocol", [][]byte{rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RTN_UNICAST, gw("198.18.0.11"))}, 0, 1},
		{"another table", [][]byte{rtmsg("100.64.1.0/24", 100, 114, unix.RTN_UNICAST, gw("198.18.0.11"))}, 0, 1},
		{"a blackhole", [][]byte{rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_BLACKHOLE)}, 0, 1},
		{"multipath", [][]byte{rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, attr(unix.RTA_MULTIPATH, make([]byte, 8)))}, 0, 1},
		{"a node that left", [][]byte{rtmsg("100.64.9.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, gw("198.18.0.19"))}, 0, 1},
		{"a wider route over the pod range", [][]byte{rtmsg("100.64.0.0/10", unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RTN_UNICAST, gw("198.18.0.1"))}, 0, 1},
		{"a second route to a member (another metric)", [][]byte{
			rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, gw("198.18.0.11")),
			rtmsg("100.64.1.0/24", unix.RT_TABLE_MAIN, 114, unix.RTN_UNICAST, gw("198.18.0.11")),
		}, 1, 1},
	} {
		var table []podRoute
		for _, m := range c.msgs {
			if r, ok := parseAnyPodRoute(m); ok {
				table = append(table, r)
			}
		}
		found, wrong := classify(own, want, table)
		if found != c.found || wrong != c.wrong {
			t.Errorf("%s: %d found, %d wrong; want %d and %d", c.name, found, wrong, c.found, c.wrong)
		}
	}
}
