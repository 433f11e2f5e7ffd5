package inventory

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadValid(t *testing.T) {
	t.Parallel()
	nodes, err := Load("testdata/valid-basic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{
		{
			Name: "worker-0", Address: "198.18.0.10",
			InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.10")},
			PodCIDRs:    []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")},
			SSH:         SSH{User: "root", Port: 22, IdentityFile: "~/.ssh/id_ed25519"},
		},
		{
			Name: "worker-1", Address: "worker-1.lab.example",
			InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("2001:db8::11")},
			PodCIDRs:    []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24"), netip.MustParsePrefix("2001:db8:1::/64")},
			SSH:         SSH{User: "admin", Port: 2222, IdentityFile: "~/.ssh/id_ed25519"},
		},
		{
			Name: "worker-2", Address: "198.18.0.12",
			InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.12")},
			SSH:         SSH{User: "root", Port: 22, IdentityFile: "~/.ssh/id_ed25519"},
		},
	}
	if !reflect.DeepEqual(nodes, want) {
		t.Errorf("Load() =\n%#v\nwant\n%#v", nodes, want)
	}
}

// Each invalid fixture must fail with a message naming the node (where it
// has a usable name) and the field, and saying what is wrong.
func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string
	}{
		{"invalid-unknown-key.yaml", []string{`node "worker-0" (nodes[0])`, `unknown key "pod_cdir"`}},
		{"invalid-missing-name.yaml", []string{"nodes[0] name: missing"}},
		{"invalid-missing-address.yaml", []string{`node "worker-0" (nodes[0]) address: missing`}},
		{"invalid-duplicate-name.yaml", []string{`node "worker-0" (nodes[1]) name: duplicate: nodes[0] has the same name`}},
		{"invalid-duplicate-ip.yaml", []string{`node "worker-1" (nodes[1]) internal_ip: 198.18.0.10 is also the internal IP of node "worker-0"`}},
		{"invalid-bad-ip.yaml", []string{`node "worker-0" (nodes[0]) internal_ip: "198.18.0.300" is not an IP address`}},
		{"invalid-bad-cidr.yaml", []string{`node "worker-0" (nodes[0]) pod_cidr: "100.64.0/24" is not a CIDR`}},
		{"invalid-noncanonical-cidr.yaml", []string{`node "worker-0" (nodes[0]) pod_cidr: "100.64.0.5/24" has host bits set; did you mean 100.64.0.0/24?`}},
		{"invalid-overlap.yaml", []string{`node "worker-1" (nodes[1]) pod_cidr: 100.64.1.0/24 overlaps 100.64.0.0/16 of node "worker-0"`}},
		{"invalid-special-cidr.yaml", []string{`node "worker-1" (nodes[1]) pod_cidr: 169.254.169.254/32 overlaps 169.254.0.0/16 (link-local; the cloud metadata address 169.254.169.254 is inside): routing it to pods would hijack it`}},
		{"invalid-cidr-contains-ip.yaml", []string{`node "worker-0" (nodes[0]) pod_cidr: 198.18.0.0/24 contains 198.18.0.10, the internal IP of node "worker-0"`, `contains 198.18.0.11, the internal IP of node "worker-1"`}},
		{"invalid-dns-without-internal-ip.yaml", []string{`node "worker-0" (nodes[0]) internal_ip: missing`}},
		{"invalid-family-mismatch.yaml", []string{`node "worker-0" (nodes[0]) pod_cidr: 2001:db8:1::/64 is IPv6 but the node has no IPv6 internal_ip`}},
		{"invalid-shell-name.yaml", []string{`nodes[0] name: "$(touch /tmp/pwned)" is not a valid node name`, `node "worker-1" (nodes[1]) address: "198.18.0.11;reboot" is neither`, `node "worker-1" (nodes[1]) pod_cidr: "100.64.1.0/24` + "`id`" + `" is not a CIDR`,
			`node "worker-2" (nodes[2]) address: "fe80::1%$(touch /tmp/pwned)" is neither`}},
		{"invalid-sftp-server.yaml", []string{`defaults sftp_server: "usr/lib/openssh/sftp-server": not an absolute path`,
			`node "worker-0" (nodes[0]) sftp_server: "/usr/libexec/openssh/sftp-server;reboot": byte ';' is not allowed`,
			`node "worker-1" (nodes[1]) sftp_server: "/usr/lib/../../tmp/sftp-server": ".." path element`,
			// Any other program would run as root through sudo -n.
			`node "worker-3" (nodes[3]) sftp_server: "/sbin/reboot": names "reboot", not sftp-server`}},
		{"invalid-yaml.yaml", []string{"testdata/invalid-yaml.yaml", "line 3"}},
		{"invalid-no-nodes.yaml", []string{"no nodes"}},
		{"invalid-bad-port.yaml", []string{`node "worker-0" (nodes[0]) port: 70000 is out of range`, `user: "root;id" is not a valid user name`}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			_, err := Load("testdata/" + tt.file)
			if err == nil {
				t.Fatal("Load() succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidationErrorIsTyped(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/invalid-overlap.yaml")
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Node != "worker-1" || fe.Field != "pod_cidr" {
		t.Errorf("errors.As(%v) = %+v, want a FieldError for worker-1 pod_cidr", err, fe)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/does-not-exist.yaml")
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Errorf("Load() error = %v, want one naming the file", err)
	}
}

func TestUnknownKeyIsTheOnlyComplaint(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/invalid-unknown-key.yaml")
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Errs) != 1 {
		t.Errorf("Load() = %v, want exactly one problem", err)
	}
}

// sftp_server: a node's own, else the defaults'.
func TestLoadSFTPServer(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hosts.yaml")
	if err := os.WriteFile(path, []byte(`defaults:
  sftp_server: /usr/lib/ssh/sftp-server
nodes:
  - {name: worker-0, address: 198.18.0.10, pod_cidr: 100.64.0.0/24, sftp_server: /usr/libexec/openssh/sftp-server}
  - {name: worker-1, address: 198.18.0.11, pod_cidr: 100.64.1.0/24}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if nodes[0].SSH.SFTPServer != "/usr/libexec/openssh/sftp-server" || nodes[1].SSH.SFTPServer != "/usr/lib/ssh/sftp-server" {
		t.Errorf("sftp_server: %q, %q", nodes[0].SSH.SFTPServer, nodes[1].SSH.SFTPServer)
	}
}

// defaults' sftp_server naming another program than an sftp-server is
// refused for every node: a hostile inventory must not choose what sudo
// -n runs as root on each of them.
func TestLoadRefusesAnotherProgramAsDefaultSFTPServer(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hosts.yaml")
	if err := os.WriteFile(path, []byte("defaults:\n  become: true\n  sftp_server: /sbin/reboot\nnodes:\n  - {name: worker-0, address: 198.18.0.10, pod_cidr: 100.64.0.0/24}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), `defaults sftp_server: "/sbin/reboot": names "reboot", not sftp-server`) {
		t.Errorf("Load: %v", err)
	}
}
