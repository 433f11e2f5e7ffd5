// Package e2e runs the routepush binary against labs of real sshd nodes,
// each in its own network namespace with its own kernel routing table.
// It needs root; `make test` installs what the lab uses.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/routepush/routepush/test/kube"
	"github.com/routepush/routepush/test/lab"
)

// routepush is the binary under test, built once by TestMain.
var routepush string

// sftpHold is test/lab/sftphold, built by TestMain: nodes run it between
// sshd and sftp-server to hold back one SFTP request (holdSFTPRequest).
var sftpHold string

// kubeAPIServer is the test kube-apiserver, from the cache or built by
// TestMain (`make test` builds it before the tests start).
var kubeAPIServer string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests need root (network namespaces); run them through `make test` as root")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "routepush-e2e-bin-")
	if err != nil {
		panic(err)
	}
	routepush = filepath.Join(dir, "routepush")
	build := exec.Command("go", "build", "-o", routepush, "../../cmd/routepush")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building routepush:", err)
		os.Exit(1)
	}
	sftpHold = filepath.Join(dir, "sftphold")
	build = exec.Command("go", "build", "-o", sftpHold, "../lab/sftphold")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sftphold:", err)
		os.Exit(1)
	}
	if kubeAPIServer, err = kube.Binary(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	printFaultSuite()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLab brings up a lab of n nodes that is torn down when the test ends.
func newLab(t *testing.T, n int) *lab.Lab {
	t.Helper()
	return newLabWith(t, lab.Options{Nodes: n})
}

// newLabWith is newLab with options.
func newLabWith(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// rp runs routepush in the lab's bastion.
func rp(t *testing.T, l *lab.Lab, args ...string) lab.Result {
	t.Helper()
	res, err := l.Routepush(testContext(t), routepush, args...)
	if err != nil {
		t.Fatalf("running routepush %v: %v", args, err)
	}
	t.Logf("routepush %s: %s", strings.Join(args, " "), res)
	return res
}

// expiresRE matches the seconds an expiring route has left, which change
// from one read to the next.
var expiresRE = regexp.MustCompile(`expires -?\d+sec`)

// snapshot returns every node's `ip -d route show` and `ip -d -6 route
// show` (types, protocols and nexthop objects included: plain `ip route
// show` hides proto boot), with the seconds an expiring route has left
// written as "expires Nsec".
func snapshot(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, n := range l.Nodes {
		m[n.Name] = detailed(t, l, n)
	}
	return m
}

func detailed(t *testing.T, l *lab.Lab, n *lab.Node) string {
	t.Helper()
	s, err := l.DetailedRoutes(testContext(t), n)
	if err != nil {
		t.Fatal(err)
	}
	return expiresRE.ReplaceAllString(s, "expires Nsec")
}

// assertUnchanged fails for every node whose detailed tables differ from
// want (before the run, or as the test left them).
func assertUnchanged(t *testing.T, l *lab.Lab, want map[string]string) {
	t.Helper()
	after := snapshot(t, l)
	for _, n := range l.Nodes {
		tally(t, strings.Count(want[n.Name], "\n"), want[n.Name] != after[n.Name])
		if want[n.Name] != after[n.Name] {
			t.Errorf("%s: route table (ip -d route show, v4 and v6) is not as it must be:\n--- want\n%s--- have\n%s", n.Name, want[n.Name], after[n.Name])
		}
	}
}

// ipRun runs ip inside a node's namespace.
func ipRun(t *testing.T, n *lab.Node, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.NS}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.NS, strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// exec4 returns a node's `ip -4 route show`.
func exec4(n *lab.Node) (string, error) {
	out, err := exec.Command("ip", "-n", n.NS, "-4", "route", "show").Output()
	return string(out), err
}

// fingerprint is the SHA256 fingerprint of a node's host key.
func fingerprint(n *lab.Node) string { return ssh.FingerprintSHA256(n.HostKey) }

// The fault suite's figures, printed at the end of the run: which fault
// cases ran and how they ended, and over all tests how many node tables
// were compared with what they had to be, route by route.
var faults struct {
	sync.Mutex
	cases                     []string
	nodes, routes, mismatches int
}

// faultCase names a test as a case of the fault suite.
func faultCase(t *testing.T, name string) {
	t.Cleanup(func() {
		result := "pass"
		if t.Failed() {
			result = "FAIL"
		}
		faults.Lock()
		defer faults.Unlock()
		faults.cases = append(faults.cases, fmt.Sprintf("%s: %s", name, result))
	})
}

// tally counts one node's table compared with what it had to be.
func tally(t *testing.T, routes int, mismatch bool) {
	faults.Lock()
	defer faults.Unlock()
	faults.nodes++
	faults.routes += routes
	if mismatch {
		faults.mismatches++
	}
}

// printFaultSuite writes the figures to stdout (seen with go test -v) and
// to FAULT_SUITE_OUT, which make e2e prints after the tests.
func printFaultSuite() {
	faults.Lock()
	defer faults.Unlock()
	sort.Strings(faults.cases)
	var b strings.Builder
	fmt.Fprintf(&b, "fault suite: %d cases run\n", len(faults.cases))
	for _, c := range faults.cases {
		fmt.Fprintf(&b, "  fault %s\n", c)
	}
	fmt.Fprintf(&b, "fault suite: %d node tables checked, %d routes compared, %d mismatches\n", faults.nodes, faults.routes, faults.mismatches)
	fmt.Print(b.String())
	if path := os.Getenv("FAULT_SUITE_OUT"); path != "" {
		_ = os.WriteFile(path, []byte(b.String()), 0o644)
	}
}
