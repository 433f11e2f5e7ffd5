package nodepath

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/usr/lib/openssh/sftp-server", true},
		{"/usr/libexec/openssh/sftp-server", true},
		{"/usr/lib/ssh/sftp-server", true},
		{"/usr/sbin/ip", true},
		{"/nix/store/abc123-iproute2-6.1.0/bin/ip", true},
		{"/opt/c++/ip_2.x", true},
		{"/" + strings.Repeat("a", MaxLen-1), true},
		{"/" + strings.Repeat("a", MaxLen), false},
		{"", false},
		{"ip", false},
		{"usr/sbin/ip", false},
		{"./ip", false},
		{"/", false},
		{"/usr/sbin/", false},
		{"/usr//sbin/ip", false},
		{"/usr/../sbin/ip", false},
		{"/usr/./sbin/ip", false},
		{"/usr/sbin/..", false},
		{"/usr/s bin/ip", false},
		{"/usr/sbin/ip;reboot", false},
		{"/usr/sbin/ip\nroute flush", false},
		{"/usr/sbin/$(reboot)", false},
		{"/usr/sbin/`id`", false},
		{"/usr/sbin/ip\x1b[2J", false},
		{"/usr/sbin/ip'", false},
		{`/usr/sbin/ip"`, false},
		{"/usr/sbin/%h", false},
		{"/usr/sbin/ip\x00", false},
		{"/usr/sbin/ïp", false},
		{"/usr/sbin/-ip", false},
		{"/usr/sbin/ip*", false},
	} {
		err := Check(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}

// A path that passes Check but names another program than the one asked
// for is refused: an inventory's sftp_server or a node's discovery must
// not choose what runs as root.
func TestCheckProgram(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, base string
		ok         bool
	}{
		{"/usr/lib/openssh/sftp-server", "sftp-server", true},
		{"/usr/libexec/openssh/sftp-server", "sftp-server", true},
		{"/usr/sbin/ip", "ip", true},
		{"/sbin/reboot", "sftp-server", false},
		{"/bin/sh", "sftp-server", false},
		{"/usr/bin/curl", "ip", false},
		{"/usr/lib/openssh/sftp-server2", "sftp-server", false},
		{"/usr/sbin/ip/x", "ip", false},
		{"/usr/sbin/xip", "ip", false},
		{"/tmp/../sbin/ip", "ip", false}, // Check's rules first
		{"sftp-server", "sftp-server", false},
	} {
		err := CheckProgram(tc.path, tc.base)
		if (err == nil) != tc.ok {
			t.Errorf("CheckProgram(%q, %q) = %v, want ok %v", tc.path, tc.base, err, tc.ok)
		}
	}
}
