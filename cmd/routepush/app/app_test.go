package app

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/spf13/cobra"

	"github.com/routepush/routepush/inventory"
)

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), Streams{Out: &out, ErrOut: &errOut}, args)
	code := ExitCode(err, &errOut)
	return out.String() + errOut.String(), code
}

func TestRunRejectsBadCommandLines(t *testing.T) {
	// No kubeconfig anywhere and not in a pod, whatever this machine has.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--invetory", "hosts.yaml"}, "unknown flag: --invetory"},
		{[]string{}, "no kubeconfig found"},
		{[]string{"-i", "x.yaml", "-l", "role=worker"}, "--selector needs the Kubernetes API as the node source"},
		{[]string{"-i", "x.yaml", "--mark-network-available"}, "--mark-network-available needs the Kubernetes API"},
		{[]string{"--kubeconfig", kubeconfig, "--context", "prod"}, `context "prod" is not in ` + kubeconfig + ` (contexts: lab)`},
		{[]string{"--kubeconfig", kubeconfig, "-l", "role in (a"}, `--selector "role in (a"`},
		{[]string{"--kubeconfig", kubeconfig, "--chunk-size", "0"}, "--chunk-size must be at least 1"},
		{[]string{"-i", "x.yaml", "--rollback", "some"}, `unknown rollback mode "some"`},
		{[]string{"-i", "x.yaml", "--concurrency", "0"}, "--concurrency must be at least 1"},
		{[]string{"-i", "x.yaml", "--sftp-server", "/usr/lib/openssh/sftp-server;reboot"}, `--sftp-server "/usr/lib/openssh/sftp-server;reboot": byte ';' is not allowed`},
		{[]string{"-i", "x.yaml", "--sftp-server", "sftp-server"}, `--sftp-server "sftp-server": not an absolute path`},
		{[]string{"-i", "x.yaml", "--sftp-server", "/sbin/reboot"}, `--sftp-server "/sbin/reboot": names "reboot", not sftp-server`},
		{[]string{"-i", "x.yaml", "--protocol", "256"}, "--protocol must be 1-255"},
		{[]string{"-i", "x.yaml", "--protocol", "0"}, "--protocol must be 1-255"},
		// Other owners' protocols, refused by every verb that takes
		// --protocol before the inventory (x.yaml does not exist) is even
		// read.
		{[]string{"-i", "x.yaml", "--protocol", "2", "--prune"}, "--protocol 2 is the kernel's (proto kernel: the routes of the node's own addresses); routepush may only manage routes of a protocol nobody else uses, e.g. the default 114"},
		{[]string{"apply", "-i", "x.yaml", "--protocol", "3"}, "--protocol 3 is the default of ip route add (proto boot:"},
		{[]string{"check", "-i", "x.yaml", "--protocol", "4"}, "--protocol 4 is the administrator's (proto static:"},
		{[]string{"plan", "-i", "x.yaml", "--protocol", "16"}, "--protocol 16 is DHCP clients' (proto dhcp:"},
		{[]string{"plan", "-i", "x.yaml", "--protocol", "17"}, "--protocol 17 is mrouted's and kube-router's"},
		{[]string{"-i", "x.yaml", "--protocol", "0x50"}, "--protocol 80 is Calico Felix's"},
		{[]string{"-i", "x.yaml", "--protocol", "186"}, "--protocol 186 is BGP daemons' (proto bgp"},
		{[]string{"-i", "x.yaml", "--protocol", "192"}, "--protocol 192 is EIGRP daemons'"},
		{[]string{"-i", "../../../inventory/testdata/invalid-overlap.yaml"}, `node "worker-1" (nodes[1]) pod_cidr`},
		{[]string{"plan", "-i", "../../../inventory/testdata/invalid-special-cidr.yaml"}, `node "worker-1" (nodes[1]) pod_cidr: 169.254.169.254/32 overlaps 169.254.0.0/16`},
		{[]string{"check", "-i", "../../../inventory/testdata/invalid-special-cidr.yaml"}, `node "worker-1" (nodes[1]) pod_cidr: 169.254.169.254/32 overlaps 169.254.0.0/16`},
		{[]string{"extra"}, `unknown command "extra"`},
	}
	for _, tt := range tests {
		out, code := run(t, tt.args...)
		if code != ExitError || !strings.Contains(out, "ERROR: ") || !strings.Contains(out, tt.want) {
			t.Errorf("routepush %v: exit %d, output %q; want exit 1 and %q", tt.args, code, out, tt.want)
		}
	}
}

// parseOptions parses an apply command line the way Run does, without
// running.
func parseOptions(t *testing.T, args ...string) (*applyFlags, error) {
	t.Helper()
	cmd := newRootCommand(deps{streams: Streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}})
	f := &applyFlags{}
	apply := &cobra.Command{Use: "parse"}
	f.add(apply.Flags(), false)
	cmd.AddCommand(apply)
	if err := apply.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return f, f.load(apply)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "routepush.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Flags beat ROUTEPUSH_* which beat the config file which beats defaults.
func TestConfigPrecedence(t *testing.T) {
	cfg := writeConfig(t, "inventory: hosts.yaml\nconcurrency: 7\nconnect-timeout: 3s\nrollback: host\n")
	o, err := parseOptions(t, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.reach.concurrency != 7 || o.reach.connectTimeout.String() != "3s" || o.rollbackMode != "host" || o.source.inventory != "hosts.yaml" || o.routes.protocol != 114 {
		t.Errorf("from file: %+v", o)
	}
	t.Setenv("ROUTEPUSH_CONCURRENCY", "9")
	t.Setenv("ROUTEPUSH_CONNECT_TIMEOUT", "4s")
	if o, err = parseOptions(t, "--config", cfg); err != nil || o.reach.concurrency != 9 || o.reach.connectTimeout.String() != "4s" {
		t.Errorf("env over file: %+v, %v", o, err)
	}
	if o, err = parseOptions(t, "--config", cfg, "--concurrency", "11"); err != nil || o.reach.concurrency != 11 || o.reach.connectTimeout.String() != "4s" {
		t.Errorf("flag over env: %+v, %v", o, err)
	}
}

// A reserved protocol is refused from the config file and the environment
// too; unreserved ones are kept.
func TestProtocolReservedFromEverySource(t *testing.T) {
	cfg := writeConfig(t, "inventory: hosts.yaml\nprotocol: 12\n")
	if _, err := parseOptions(t, "--config", cfg); err == nil || !strings.Contains(err.Error(), "--protocol 12 is BIRD's") {
		t.Errorf("from file: error = %v, want BIRD's protocol refused", err)
	}
	t.Setenv("ROUTEPUSH_PROTOCOL", "42")
	if _, err := parseOptions(t, "--config", cfg); err == nil || !strings.Contains(err.Error(), "--protocol 42 is babeld's") {
		t.Errorf("from env: error = %v, want babel's protocol refused", err)
	}
	for _, p := range []string{"5", "113", "115", "254", "255"} {
		if o, err := parseOptions(t, "--config", cfg, "--protocol", p); err != nil || fmt.Sprint(o.routes.protocol) != p {
			t.Errorf("--protocol %s: %v, want it kept", p, err)
		}
	}
}

func TestConfigUnknownKey(t *testing.T) {
	cfg := writeConfig(t, "inventory: hosts.yaml\nconcurency: 7\n")
	if _, err := parseOptions(t, "--config", cfg); err == nil || !strings.Contains(err.Error(), `unknown key "concurency"`) {
		t.Errorf("error = %v, want unknown key", err)
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	if _, err := parseOptions(t, "--config", "../../../configs/routepush.example.yaml"); err != nil {
		t.Errorf("configs/routepush.example.yaml: %v", err)
	}
	if _, err := inventory.Load("../../../configs/hosts.example.yaml"); err != nil {
		t.Errorf("configs/hosts.example.yaml: %v", err)
	}
}

// The inventory's user wins over config and env (which the dialer uses
// only after ssh_config), --user on the command line wins over the
// inventory; --become applies to every node.
func TestTarget(t *testing.T) {
	n := &inventory.Node{Name: "w", Address: "198.18.0.10", SSH: inventory.SSH{User: "admin", Port: 2222, Jump: "j"},
		InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.1.10")}}
	if got := target(n, &reachFlags{user: "cfg"}); got.User != "admin" || got.Port != 2222 || got.Address != "198.18.0.10" ||
		got.Fallback != "198.18.1.10" || got.Jump != "j" || got.Become {
		t.Errorf("target = %+v, want the inventory's settings", got)
	}
	if got := target(n, &reachFlags{user: "flag", userFromFlag: true, become: true}); got.User != "flag" || !got.Become {
		t.Errorf("target = %+v, want --user and --become", got)
	}
	if got := target(&inventory.Node{Name: "w"}, &reachFlags{user: "cfg"}); got.User != "" {
		t.Errorf("target = %+v, want no user: ssh_config's comes before the config's", got)
	}
	// An address only the Node object gives is marked for the dialer.
	api := &inventory.Node{Name: "w", InternalIPs: []netip.Addr{netip.MustParseAddr("198.18.1.10")}, AddressFromAPI: true}
	if got := target(api, &reachFlags{}); got.Fallback != "198.18.1.10" || !got.FallbackFromAPI {
		t.Errorf("target = %+v, want the InternalIP marked as the Node object's", got)
	}
	if got := target(n, &reachFlags{}); got.FallbackFromAPI {
		t.Errorf("target = %+v: an inventory node's address is the operator's", got)
	}
}

// testKubeconfig points at a server that is never contacted.
const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://198.18.0.1:6443"}
users:
- name: admin
  user: {token: "t"}
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
`

// The command that finishes an abandoned rollback keeps the flags that
// choose the nodes and how to reach them, as given; nothing before a run
// has an id.
func TestFinishLater(t *testing.T) {
	args := []string{"-i", "hosts.yaml", "--concurrency", "10", "--config=rp.yaml", "--become", "--prune"}
	active := &activeRun{}
	if got := active.finishLater(args); got != "" {
		t.Errorf("finishLater before a run = %q, want nothing", got)
	}
	root := newRootCommand(deps{streams: Streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}, active: active})
	active.start("20261126T223050.123Z-1a2b3c", carriedFlags(root.Flags()))
	got := active.finishLater(args)
	want := "; nodes may be half-changed: finish with `routepush rollback --run 20261126T223050.123Z-1a2b3c -i hosts.yaml --config=rp.yaml --become`"
	if got != want {
		t.Errorf("finishLater =\n%s\nwant\n%s", got, want)
	}
}

func TestPlanAndVersion(t *testing.T) {
	out, code := run(t, "plan", "-i", "../../../inventory/testdata/valid-basic.yaml", "--metric", "10")
	want := "worker-2: 2 routes\n  100.64.0.0/24 via 198.18.0.10 proto 114 metric 10\n  100.64.1.0/24 via 198.18.0.11 proto 114 metric 10\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("plan: exit %d\n%s\nwant it to contain\n%s", code, out, want)
	}
	if out, code := run(t, "plan", "-i", "../../../inventory/testdata/invalid-bad-cidr.yaml"); code != 1 || !strings.Contains(out, "pod_cidr") {
		t.Errorf("plan of a bad inventory: exit %d\n%s", code, out)
	}
	if out, code := run(t, "version"); code != 0 || !strings.HasPrefix(out, "routepush ") {
		t.Errorf("version: exit %d: %q", code, out)
	}
}

func TestLogLevelAndFormat(t *testing.T) {
	var errOut bytes.Buffer
	log := newLogger(Streams{ErrOut: &errOut}, &baseFlags{logLevel: "info", logFormat: "json"})
	log.Info("reading route tables", "nodes", 3)
	log.Debug("not shown")
	if got := errOut.String(); !strings.Contains(got, `"msg":"reading route tables"`) || !strings.Contains(got, `"nodes":3`) || strings.Contains(got, "not shown") {
		t.Errorf("json log at info: %q", got)
	}
	if out, code := run(t, "plan", "-i", "../../../inventory/testdata/valid-basic.yaml", "--log-level", "loud"); code != 1 || !strings.Contains(out, "--log-level must be") {
		t.Errorf("bad --log-level: exit %d: %s", code, out)
	}
}

func TestNodeLimit(t *testing.T) {
	names := []string{"worker-0", "worker-1", "worker-2", "cp-0"}
	for spec, want := range map[string]string{
		"worker-*":           "worker-0 worker-1 worker-2",
		"worker-*,!worker-1": "worker-0 worker-2",
		"!cp-*":              "worker-0 worker-1 worker-2",
		"cp-0, worker-2":     "worker-2 cp-0",
		"worker-*:!worker-1": "worker-0 worker-2",
	} {
		limit, err := nodeLimit(spec, names, nil)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		var got []string
		for _, n := range names {
			if limit(n) {
				got = append(got, n)
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("--limit %q picks %v, want %s", spec, got, want)
		}
	}
	if _, err := nodeLimit("db-*", names, nil); err == nil || !strings.Contains(err.Error(), "matches no node") {
		t.Errorf("a limit matching nothing: %v", err)
	}
	if _, err := nodeLimit("worker-[", names, nil); err == nil {
		t.Error("a bad pattern was accepted")
	}
	// An Ansible inventory's groups: its whole pattern syntax.
	groups := inventory.Groups{"all": names, "workers": names[:3], "rack1": {"worker-0", "cp-0"}}
	limit, err := nodeLimit("workers:&rack1:cp-0", names, groups)
	if err != nil {
		t.Fatal(err)
	}
	if !limit("worker-0") || !limit("cp-0") || limit("worker-1") {
		t.Error("workers:&rack1,cp-0 picks the wrong nodes")
	}
	for spec, want := range map[string]string{
		"racks":        `--limit "racks": "racks" matches no node and no group`,
		"rack1:!rack1": `--limit "rack1:!rack1" matches no node`,
	} {
		if _, err := nodeLimit(spec, names, groups); err == nil || err.Error() != want {
			t.Errorf("--limit %q: %v, want %s", spec, err, want)
		}
	}
}

// Colour on a terminal, not into a buffer, and never with NO_COLOR: a
// pty is a terminal, so each case can fail for its reason.
func TestUseColor(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("no pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	t.Setenv("NO_COLOR", "")
	var b bytes.Buffer
	if useColor(&b) {
		t.Error("colour into a buffer")
	}
	if !useColor(tty) {
		t.Error("no colour on a terminal")
	}
	t.Setenv("NO_COLOR", "1")
	if useColor(tty) {
		t.Error("colour on a terminal with NO_COLOR set")
	}
}
