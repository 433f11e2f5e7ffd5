package remote

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routepush/routepush/route"
)

func TestReadFacts(t *testing.T) {
	t.Parallel()
	nft := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "hook": "postrouting", "policy": "accept"}}]}
`
	f := readFacts([]byte(nft+"\n"), nil, false, "")
	if len(f.Unread) != 0 || len(f.Forward) != 2 || !f.Forward[0].Drop || f.Forward[0].Family != route.IPv4 || f.Forward[1].Family != route.IPv6 || f.Forward[0].Table != "filter" {
		t.Errorf("nft: %+v", f)
	}

	// No nft: iptables' and ip6tables' policies, each after its family's
	// line (only the first line of -S is printed: a rule's comment can
	// forge nothing).
	f = readFacts([]byte("sh: 1: nft: not found\n\nv4\n-P FORWARD DROP\nv6\n-P FORWARD ACCEPT\n"), nil, false, "")
	if len(f.Unread) != 0 || len(f.Forward) != 2 || !f.Forward[0].Drop || f.Forward[0].Tool != "iptables" || f.Forward[1].Drop || f.Forward[1].Tool != "ip6tables" {
		t.Errorf("iptables: %+v", f)
	}
	// One family's policy not printed (not root): that family unread.
	f = readFacts([]byte("sh: 1: nft: not found\n\nv4\nv6\n-P FORWARD DROP\n"), nil, false, "")
	if len(f.Forward) != 1 || f.Forward[0].Family != route.IPv6 || len(f.Unread) != 1 || !strings.HasPrefix(f.Unread[0], "IPv4 FORWARD policy: neither") {
		t.Errorf("ip6tables alone: %+v", f)
	}
	// nft, and iptables-legacy's tables beside it: both read.
	f = readFacts([]byte(nft+"\nv4\n-P FORWARD DROP\n"), nil, false, "")
	if len(f.Forward) != 3 || len(f.Unread) != 0 || f.Forward[2].Tool != "iptables" || !f.Forward[2].Drop {
		t.Errorf("nft and legacy: %+v", f)
	}
	// nft's chains cut short on the node (a large ruleset): unread.
	f = readFacts([]byte(nft[:50]+"\n"), nil, false, "")
	if len(f.Forward) != 0 || len(f.Unread) != 3 {
		t.Errorf("cut short: %+v", f)
	}

	// Nothing can read it (sudo allows ip alone): said, with the node's
	// words escaped.
	f = readFacts([]byte("sudo: a password is required\x1b[2J\n\n"), nil, false, "")
	if len(f.Forward) != 0 || len(f.Unread) != 2 || !strings.Contains(f.Unread[0], "a password is required") || strings.Contains(f.Unread[0], "\x1b") {
		t.Errorf("none: %+v", f)
	}

	// A script's prefix: settings and addresses first.
	script := `[{"family":"inet","interface":"all","forwarding":true,"rp_filter":"off"}]
` + "\n" + netconfEnd + `
Error: something
` + "\n" + addressesEnd + "\n" + nft
	f = scriptFacts([]byte(script))
	if len(f.Netconf) != 1 || len(f.Forward) != 2 || len(f.Unread) != 1 || !strings.HasPrefix(f.Unread[0], "addresses: Error: something") {
		t.Errorf("script: %+v", f)
	}
}

// The FORWARD read as a node's sh runs it, with a fake nft first on the
// PATH: the chains it prints, the marker on a line of its own though nft
// ends without a newline, and ip's stdin left whole for the ip after it
// (cat here).
func TestForwardScriptRuns(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, tools map[string]string) *route.Facts {
		t.Helper()
		dir := t.TempDir()
		for name, body := range tools {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("sh", "-c", forwardScript(false)+prefixEnd+"cat", "sh")
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
		cmd.Stdin = strings.NewReader("route show table main\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		prefix, rest, _, ok := cutPrefix(out, factsLimit)
		if !ok || string(rest) != "route show table main\n" {
			t.Fatalf("marker or stdin lost: %q", out)
		}
		return readFacts(prefix, nil, false, "")
	}
	// nft prints its document without a newline at the end.
	f := run(t, map[string]string{"nft": `printf '%s' '{"nftables": [{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}}]}'`})
	if len(f.Forward) != 1 || !f.Forward[0].Drop || len(f.Unread) != 0 {
		t.Errorf("nft: %+v", f)
	}
}

// The prefix is fixed: sudo -n with become, nothing of the node's, and
// a script sh -c can hold; its marker ends it only on a line of its own.
func TestReadCommandIsFixed(t *testing.T) {
	t.Parallel()
	plain := (&Client{preflight: true}).readCommand("-4 -d -N -json -batch -")
	if !strings.HasPrefix(plain, "sh -c 'nft -j list chains 2>&1 </dev/null | head -c ") || !strings.Contains(plain, "echo v4; iptables -S FORWARD 2>/dev/null </dev/null | head -n 1;") || !strings.HasSuffix(plain, `exec "$@"' sh ip -4 -d -N -json -batch -`) {
		t.Errorf("without become: %s", plain)
	}
	become := (&Client{sudo: true, preflight: true, ipCmd: "/usr/local/sbin/ip"})
	for _, cmd := range []string{become.readCommand("-4 -d -N -json -batch -"), become.scriptPrefix()} {
		if strings.Count(cmd, "'") != 2 {
			t.Errorf("the script holds a single quote: %s", cmd)
		}
		for _, want := range []string{"sudo -n nft -j list chains", "sudo -n iptables -S FORWARD 2>/dev/null </dev/null | head -n 1", "sudo -n ip6tables -S FORWARD 2>/dev/null </dev/null | head -n 1", "sh sudo -n /usr/local/sbin/ip"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("with become lacks %q:\n%s", want, cmd)
			}
		}
	}
	if !strings.Contains(become.scriptPrefix(), `"$@" -json netconf show`) || !strings.HasSuffix(become.scriptPrefix(), "' sh sudo -n /usr/local/sbin/ip; ") {
		t.Errorf("script prefix: %s", become.scriptPrefix())
	}
	if _, _, _, ok := cutPrefix([]byte(`{"x": 1} `+factsEnd+"\n[]\n"), factsLimit); ok {
		t.Errorf("a marker inside a line was taken for the end")
	}
	if p, rest, unlocked, ok := cutPrefix([]byte("x\n\n"+factsEnd+"\n[]\n"), factsLimit); !ok || !unlocked || string(p) != "x\n\n" || string(rest) != "[]\n" {
		t.Errorf("cutPrefix: %q %q %v %v", p, rest, unlocked, ok)
	}
	if p, rest, unlocked, ok := cutPrefix([]byte("x\n\n"+lockedEnd+"\n[]\n"), factsLimit); !ok || unlocked || string(p) != "x\n\n" || string(rest) != "[]\n" {
		t.Errorf("cutPrefix, a lock: %q %q %v %v", p, rest, unlocked, ok)
	}
}

func TestParseProbes(t *testing.T) {
	t.Parallel()
	a, b, c, d, e := netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("100.64.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("100.64.4.1"), netip.MustParseAddr("100.64.5.1")
	out := probeHead + " 100.64.1.1 0 PING 100.64.1.1 (100.64.1.1) from 100.64.0.1 : 56(84) bytes of data. --- 100.64.1.1 ping statistics --- 3 packets transmitted, 3 received, 0% packet loss, time 402ms rtt min/avg/max/mdev = 0.031/0.040/0.050/0.008 ms\n" +
		probeHead + " 2001:db8::1 2 ping: bind icmp socket: Cannot assign requested address\x1b[2J\n" +
		probeBatched + "\n" +
		probeHead + " 100.64.2.1 1 PING 100.64.2.1 (100.64.2.1) from 100.64.0.1 : 56(84) bytes of data. --- 100.64.2.1 ping statistics --- 3 packets transmitted, 0 received, 100% packet loss, time 2031ms\n" +
		probeHead + " 100.64.5.1 0 --- 100.64.9.9 ping statistics --- 3 packets transmitted, 3 received\n" +
		probesDone + "\n"
	res, err := parseProbes([]byte(out), []netip.Addr{a, b, c, d, e})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Sent != 3 || res[0].Received != 3 || res[0].Err != "" || res[1].Received != 0 || res[1].Sent != 3 || res[1].Err != "" {
		t.Errorf("%+v", res)
	}
	// Each complaint stays with its own address, escaped once.
	if res[2].Err != `ping exited 2 without statistics: ping: bind icmp socket: Cannot assign requested address\x1b[2J` {
		t.Errorf("no statistics: %q", res[2].Err)
	}
	if res[3].Err != "no answer from its ping" {
		t.Errorf("no line: %q", res[3].Err)
	}
	if res[4].Received != 0 || !strings.Contains(res[4].Err, "another address's statistics") {
		t.Errorf("another's statistics: %+v", res[4])
	}
	if _, err := parseProbes([]byte(out[:100]), []netip.Addr{a}); err == nil {
		t.Errorf("cut short: no error")
	}
}

// The probe script as a node's sh runs it: loopback pings itself (no
// other address is sent anything), an address the node does not hold as
// a source is ping's complaint, and each stays with its address.
func TestProbeScriptRuns(t *testing.T) {
	t.Parallel()
	lo := netip.MustParseAddr("127.0.0.1")
	cmd := exec.Command("sh", "-c", probeScript)
	cmd.Stdin = strings.NewReader("2\n127.0.0.1\n127.0.0.1\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	res, err := parseProbes(out, []netip.Addr{lo})
	if err != nil || res[0].Sent != 2 || res[0].Received != 2 {
		t.Fatalf("%+v %v:\n%s", res, err, out)
	}
	// Under bash, whose printf writes in pieces, 70 pings ending at
	// once (a fake ping: no traffic) each keep their own statistics.
	dir := t.TempDir()
	fake := "#!/bin/sh\nfor a; do dst=$a; done\nsleep 0.2\necho \"PING $dst\"\necho\necho \"--- $dst ping statistics ---\"\ncase $dst in *.7) echo \"3 packets transmitted, 0 received\"; exit 1;; esac\necho \"3 packets transmitted, 3 received\"\n"
	if err := os.WriteFile(filepath.Join(dir, "ping"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	var dsts []netip.Addr
	in.WriteString("3\n100.64.0.1\n")
	for i := range 70 {
		d := netip.AddrFrom4([4]byte{100, 64, byte(i), byte(i % 10)})
		dsts = append(dsts, d)
		in.WriteString(d.String() + "\n")
	}
	if _, err := exec.LookPath("bash"); err == nil {
		cmd = exec.Command("bash", "-c", probeScript)
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
		cmd.Stdin = strings.NewReader(in.String())
		out, err = cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		res, err = parseProbes(out, dsts)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != "" || r.Sent != 3 || (r.Received == 0) != (i%10 == 7) {
				t.Errorf("%s: %+v", dsts[i], r)
			}
		}
	}

	cmd = exec.Command("sh", "-c", probeScript)
	cmd.Stdin = strings.NewReader("1\n198.18.255.254\n127.0.0.1\n")
	out, _ = cmd.Output()
	res, err = parseProbes(out, []netip.Addr{lo})
	if err != nil || res[0].Err == "" || res[0].Sent != 0 {
		t.Errorf("a source the host does not hold: %+v %v:\n%s", res, err, out)
	}
}

// probeScript goes between single quotes: it must hold none.
func TestProbeScriptQuotes(t *testing.T) {
	t.Parallel()
	if strings.Contains(probeScript, "'") {
		t.Errorf("probeScript holds a single quote:\n%s", probeScript)
	}
}

// prefixEnd says "unlocked" only where the shell could look into the
// state directory and found no lock there: a lock, a dangling symlink
// in its place, or no directory at all (routepush makes it with its
// first lock) each say "a lock, or not looked for".
func TestPrefixEndLooksForTheLock(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		setup    func(dir string) error
		unlocked bool
	}{
		"no lock": {func(dir string) error { return os.Mkdir(dir, 0o700) }, true},
		"a lock": {func(dir string) error {
			return errors.Join(os.Mkdir(dir, 0o700), os.WriteFile(filepath.Join(dir, "lock"), []byte("{}\n"), 0o600))
		}, false},
		"an empty lock": {func(dir string) error {
			return errors.Join(os.Mkdir(dir, 0o700), os.WriteFile(filepath.Join(dir, "lock"), nil, 0o600))
		}, false},
		"a dangling link": {func(dir string) error {
			return errors.Join(os.Mkdir(dir, 0o700), os.Symlink("/nonexistent", filepath.Join(dir, "lock")))
		}, false},
		"no state dir yet": {func(string) error { return nil }, false},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "routepush")
			if err := tc.setup(dir); err != nil {
				t.Fatal(err)
			}
			script := strings.ReplaceAll(prefixEnd, stateDir, dir)
			out, err := exec.Command("sh", "-c", script+`exec cat`).Output()
			if err != nil {
				t.Fatal(err)
			}
			_, _, unlocked, ok := cutPrefix(out, factsLimit)
			if !ok || unlocked != tc.unlocked {
				t.Errorf("%q: unlocked %v (marker found %v), want %v", out, unlocked, ok, tc.unlocked)
			}
		})
	}
}
