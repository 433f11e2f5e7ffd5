package remote

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// parseDiscovery takes only the lines discoverScript prints, paths only
// as nodepath.Check allows, and bounds what it keeps: whatever else a node
// prints refuses it, naming the line, escaped.
func TestParseDiscovery(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("/x", 300)
	for _, tc := range []struct {
		name, out string
		wantErr   string // "" : parses
		ip        string // what iproute2() returns, or its error's text
		boot      string
		sftp      string
	}{
		{name: "debian", out: "path /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nip iproute2 /usr/sbin/ip\nip iproute2 /usr/bin/ip\nip iproute2 /sbin/ip\nip iproute2 /bin/ip\nsbin iproute2\nsftp /usr/lib/openssh/sftp-server\nsubsystem /usr/lib/openssh/sftp-server\nend\n",
			ip: "/usr/sbin/ip", boot: "/sbin/ip", sftp: "/usr/lib/openssh/sftp-server"},
		{name: "rhel", out: "path /usr/local/bin:/usr/bin\nip iproute2 /usr/bin/ip\nsbin iproute2\nsftp /usr/libexec/openssh/sftp-server\nend\n",
			ip: "/usr/bin/ip", boot: "/sbin/ip", sftp: "/usr/libexec/openssh/sftp-server"},
		{name: "subsystem wins", out: "path /usr/bin\nip iproute2 /usr/bin/ip\nsftp /usr/lib/openssh/sftp-server\nsubsystem /opt/ssh/libexec/sftp-server\nend\n",
			ip: "/usr/bin/ip", boot: "/usr/bin/ip", sftp: "/opt/ssh/libexec/sftp-server"},
		{name: "busybox first, iproute2 further", out: "path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip iproute2 /usr/sbin/ip\nsbin iproute2\nend\n",
			ip: "/usr/sbin/ip", boot: "/sbin/ip", sftp: "no sftp-server for become"},
		{name: "busybox only", out: "path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip busybox /usr/sbin/ip\nsbin busybox\nend\n",
			ip:   "node-3: ip on the PATH is BusyBox's (/usr/local/sbin/ip), which cannot show route protocols: routepush cannot tell its routes from others'; install iproute2",
			boot: "BusyBox's"},
		{name: "no ip", out: "path /usr/local/bin:/usr/bin:/bin\nend\n",
			ip: "node-3: no ip on the PATH of a non-interactive session (PATH=/usr/local/bin:/usr/bin:/bin): install iproute2"},
		{name: "sbin busybox, iproute2 in local", out: "path /usr/local/sbin:/usr/sbin\nip iproute2 /usr/local/sbin/ip\nip busybox /usr/sbin/ip\nsbin busybox\nend\n",
			ip: "/usr/local/sbin/ip", boot: "/usr/local/sbin/ip"},
		{name: "escapes in PATH are escaped", out: "path /usr/bin:/evil\x1b[2J\nend\n",
			ip: `PATH=/usr/bin:/evil\x1b[2J)`},
		{name: "a very long PATH is cut", out: "path " + strings.Repeat("/a", 2000) + "\nend\n",
			ip: "...): install iproute2"},
		{name: "iproute2 at a path with a space", out: "path /usr/bin:/opt/my tools\nip iproute2 /opt/my tools/ip\nend\n",
			ip: `iproute2's ip is at "/opt/my tools/ip" on the PATH, which routepush will not run`},
		{name: "iproute2 at a path with ;", out: "path /x;reboot\nip iproute2 /x;reboot/ip\nend\n",
			ip: "which routepush will not run: byte ';' is not allowed"},
		{name: "a bad path after a good one does not matter", out: "path /usr/sbin:/x y\nip iproute2 /usr/sbin/ip\nip iproute2 /x y/ip\nend\n",
			ip: "/usr/sbin/ip"},
		{name: "relative ip", out: "path .:/usr/bin\nip iproute2 ./ip\nend\n", ip: "not an absolute path"},
		{name: "dotdot ip", out: "path /usr/bin\nip iproute2 /usr/bin/../../tmp/ip\nend\n", ip: `".." path element`},
		{name: "very long ip path", out: "path /x\nip iproute2 " + long + "/ip\nend\n", ip: "path longer than 256 bytes"},
		// A Subsystem routepush will not run is left out, said in the
		// message when nothing else serves: it does not refuse the node,
		// nor its ip (sshd_config is the admin's, and says nothing of ip).
		{name: "subsystem relative", out: "path /usr/bin\nip iproute2 /usr/bin/ip\nsubsystem internal-sftp\nend\n",
			ip: "/usr/bin/ip", sftp: `/etc/ssh/sshd_config names one routepush will not run ("internal-sftp": not an absolute path)`},
		{name: "subsystem with a quote", out: "path /usr/bin\nsubsystem /usr/lib/sftp'x\nsftp /usr/lib/ssh/sftp-server\nend\n",
			sftp: "/usr/lib/ssh/sftp-server"},
		{name: "subsystem not poisoning ip", out: "path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip iproute2 /usr/sbin/ip\nsbin iproute2\nsubsystem /opt/openssh@9.6/libexec/sftp-server\nend\n",
			ip: "/usr/sbin/ip", boot: "/sbin/ip", sftp: "byte '@' is not allowed"},
		// Only a program of the right name is run as root: not whatever
		// a node (or sshd_config) names.
		{name: "subsystem names another program", out: "path /usr/bin\nip iproute2 /usr/bin/ip\nsftp /usr/libexec/openssh/sftp-server\nsubsystem /bin/sh\nend\n",
			ip: "/usr/bin/ip", sftp: "/usr/libexec/openssh/sftp-server"},
		{name: "subsystem names another program, nothing else", out: "path /usr/bin\nsubsystem /bin/sh\nend\n",
			sftp: `names one routepush will not run ("/bin/sh": names "sh", not sftp-server)`},
		{name: "ip names another program", out: "path /usr/bin\nip iproute2 /usr/bin/curl\nend\n",
			ip: `iproute2's ip is at "/usr/bin/curl" on the PATH, which routepush will not run: names "curl", not ip`, boot: "which routepush will not run"},
		{name: "two subsystem lines, the first bad", out: "path /usr/bin\nsubsystem /bin/sh\nsubsystem /usr/lib/x/sftp-server\nend\n", wantErr: "twice"},
		{name: "sftp not asked about", out: "path /usr/bin\nsftp /tmp/sftp-server\nend\n", wantErr: "not one of the paths asked about"},
		{name: "unknown line", out: "path /usr/bin\nrm -rf /\nend\n", wantErr: `line 2 "rm -rf /": not a line discovery prints`},
		{name: "unknown kind", out: "path /usr/bin\nip iproute3 /usr/bin/ip\nend\n", wantErr: "not an ip line"},
		{name: "forged line after an escape", out: "path /usr/bin\nip iproute2 /usr/bin/ip\x1b[1A\nend\n", ip: "byte '\\x1b' is not allowed"},
		{name: "no end", out: "path /usr/bin\nip iproute2 /usr/bin/ip\n", wantErr: "output cut short"},
		{name: "nothing", out: "", wantErr: "output cut short"},
		{name: "motd before", out: "Welcome!\npath /usr/bin\nend\n", wantErr: "not a line discovery prints"},
		{name: "two PATH lines", out: "path /usr/bin\npath /bin\nend\n", wantErr: "unexpected"},
		{name: "two sbin lines", out: "path /usr/bin\nsbin iproute2\nsbin iproute2\nend\n", wantErr: "not a kind"},
		{name: "too many lines", out: "path /usr/bin\n" + strings.Repeat("ip other /usr/bin/ip\n", discoverMaxLines) + "end\n", wantErr: "more than 80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := parseDiscovery([]byte(tc.out))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse: %v, want an error with %q", err, tc.wantErr)
				}
				if strings.ContainsAny(err.Error(), "\x1b\n") {
					t.Errorf("error not escaped: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			check := func(what, want string, got string, err error) {
				t.Helper()
				if want == "" {
					return
				}
				s := got
				if err != nil {
					s = err.Error()
					if strings.ContainsAny(s, "\x1b\n") {
						t.Errorf("%s: error not escaped: %q", what, s)
					}
					if !strings.HasPrefix(s, "node-3: ") {
						t.Errorf("%s: error does not name the node: %q", what, s)
					}
				}
				if !strings.Contains(s, want) || (err == nil && s != want) {
					t.Errorf("%s = %q, want %q", what, s, want)
				}
			}
			ip, err := d.iproute2("node-3")
			check("iproute2", tc.ip, ip, err)
			boot, err := d.bootIP("node-3")
			check("bootIP", tc.boot, boot, err)
			sftp, err := d.sftpServer("node-3")
			check("sftpServer", tc.sftp, sftp, err)
			if len(d.path) > pathShown+len("...") {
				t.Errorf("kept a PATH of %d bytes", len(d.path))
			}
		})
	}
}

// discoverScript itself, run by the shells a node may have (dash, bash,
// BusyBox's ash) on made-up PATHs: a BusyBox ip first, a directory with a
// space and a glob, a relative entry, a fake iproute2 ip further on. Its
// output parses, the first iproute2 ip is chosen, and the script stops
// there: an ip after it (here one that leaves a canary) is never run.
func TestDiscoverScriptRuns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mk := func(rel, body string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	canary := filepath.Join(dir, "ran")
	bb := mk("bb/ip", "#!/bin/sh\necho 'BusyBox v1.35.0 (Debian) multi-call binary.' >&2\necho 'Usage: ip [OPTIONS]' >&2\nexit 1\n")
	mk("with space/ip", "#!/bin/sh\necho 'ip utility, iproute2-6.1.0'\n")
	mk("star/ip", "#!/bin/sh\necho 'ip utility, iproute2-6.1.0'\n")
	mk("other/ip", "#!/bin/sh\necho 'something else'\n")
	good := mk("good/ip", "#!/bin/sh\necho 'ip utility, iproute2-ss190107'\n")
	mk("after/ip", "#!/bin/sh\ntouch '"+canary+"'\necho 'ip utility, iproute2-6.1.0'\n")
	mk("notexec/ip", "")
	if err := os.Chmod(filepath.Join(dir, "notexec/ip"), 0o644); err != nil {
		t.Fatal(err)
	}
	pathOf := func(dirs ...string) string {
		for i, d := range dirs {
			if d != "relative" && d[0] != '/' {
				dirs[i] = filepath.Join(dir, d)
			}
		}
		return strings.Join(dirs, ":")
	}
	shells := [][]string{{"sh"}, {"dash"}, {"bash"}, {"busybox", "sh"}}
	for _, sh := range shells {
		if _, err := exec.LookPath(sh[0]); err != nil {
			continue
		}
		t.Run(strings.Join(sh, " "), func(t *testing.T) {
			run := func(path string) discovered {
				t.Helper()
				cmd := exec.Command(sh[0], append(sh[1:], "-s")...)
				cmd.Stdin = strings.NewReader(discoverScript)
				cmd.Env = []string{"PATH=" + path}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				d, err := parseDiscovery(out)
				if err != nil {
					t.Fatalf("parse: %v\n%s", err, out)
				}
				return d
			}
			kinds := func(d discovered) string {
				var k []string
				for _, f := range d.ips {
					k = append(k, f.kind)
				}
				return strings.Join(k, " ")
			}
			// The spaced directory's ip is the first iproute2 one but
			// not runnable: refused, naming it; nothing after it ran.
			d := run(pathOf("bb", "with space", "st*", "relative", "notexec", "other", "good", "after", "/usr/bin", "/bin"))
			if got := kinds(d); got != "busybox iproute2" || d.ips[0].path != bb || d.ips[1].bad == nil {
				t.Errorf("kinds along the PATH: %q, first %q, the spaced one %v", got, d.ips[0].path, d.ips[1].bad)
			}
			if _, err := d.iproute2("n"); err == nil || !strings.Contains(err.Error(), "with space/ip") {
				t.Errorf("iproute2() = %v, want the spaced path refused", err)
			}
			d = run(pathOf("bb", "st*", "relative", "notexec", "other", "good", "after", "/usr/bin", "/bin"))
			if got := kinds(d); got != "busybox other iproute2" {
				t.Errorf("kinds along the PATH: %q", got)
			}
			if ip, err := d.iproute2("n"); err != nil || ip != good {
				t.Errorf("iproute2() = %q, %v; want %s", ip, err, good)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Errorf("the ip after the first iproute2 one was run")
			}
		})
	}
}

// The usage BusyBox 1.35's ip prints for an option it lacks is told from
// iproute2's errors; a missing ip from a failing one: without become by
// the shell's 127 alone, whatever the login shell (zsh and fish word it
// otherwise), with become by sudo's words for the ip it was asked to run,
// bare or by the path found earlier (which may have gone since).
func TestRecogniseBusyBoxAndMissingIP(t *testing.T) {
	t.Parallel()
	usage := "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n\nUsage: ip [OPTIONS] address|route|link|tunnel|neigh|rule [ARGS]\n"
	if !busyBox(&CommandError{ExitStatus: 1, Stderr: usage}) {
		t.Error("BusyBox's usage not recognised")
	}
	if busyBox(&CommandError{ExitStatus: 255, Stderr: `Option "-json" is unknown, try "ip -help".`}) {
		t.Error("iproute2's unknown option taken for BusyBox")
	}
	c := &Client{}
	for _, tc := range []struct {
		status int
		stderr string
		want   bool
	}{
		{127, "sh: 1: ip: not found", true},
		{127, "bash: line 1: ip: command not found", true},
		{127, "sh: 1: /usr/sbin/ip: not found", true},
		{127, "zsh:1: command not found: ip", true},
		{127, "fish: Unknown command: ip", true},
		{1, "RTNETLINK answers: File exists", false},
		{255, "Error: any valid prefix is expected rather than \"x\".", false},
		{1, "sudo: ip: command not found", false}, // not sudo's without become
		{1, "ip: not found", false},
	} {
		if got := c.ipMissing(&CommandError{ExitStatus: tc.status, Stderr: tc.stderr}); got != tc.want {
			t.Errorf("ipMissing(%d, %q) = %v", tc.status, tc.stderr, got)
		}
	}
	c.sudo = true
	for _, tc := range []struct {
		ipCmd, stderr string
		want          bool
	}{
		{"", "sudo: ip: command not found", true},
		{"/usr/sbin/ip", "sudo: /usr/sbin/ip: command not found\n", true},
		{"/usr/local/sbin/ip", "sudo: /usr/local/sbin/ip: command not found", true},
		{"/usr/sbin/ip", "sudo: ip: command not found", false},
		{"", "sh: 1: sudo: not found", false}, // 127, but sudo is what is missing
		{"", "sudo: a password is required", false},
	} {
		c.ipCmd = tc.ipCmd
		if got := c.ipMissing(&CommandError{ExitStatus: 127, Stderr: tc.stderr}); got != tc.want {
			t.Errorf("become, ip %q: ipMissing(%q) = %v", tc.ipCmd, tc.stderr, got)
		}
	}
}

// With become, the hint's sudoers line names the ip and sftp-server this
// node runs, not Debian's paths.
func TestSudoersHintNamesTheNodesPaths(t *testing.T) {
	t.Parallel()
	c := &Client{user: "admin", sudo: true, ipCmd: "/usr/local/sbin/ip", sftpServer: "/usr/libexec/openssh/sftp-server"}
	h := c.sudoersHint()
	for _, want := range []string{"/usr/local/sbin/ip -batch -", "/usr/libexec/openssh/sftp-server \"\""} {
		if !strings.Contains(h, want) {
			t.Errorf("hint lacks %q: %s", want, h)
		}
	}
	if strings.Contains(h, "/usr/sbin/ip ") || strings.Contains(h, "/usr/lib/openssh/") { // ip6tables is at /usr/sbin/ip6tables
		t.Errorf("hint names Debian's paths: %s", h)
	}
	if got := c.ip("-batch -"); got != "sudo -n /usr/local/sbin/ip -batch -" {
		t.Errorf("ip() = %q", got)
	}
	if got := (&Client{}).ip("-batch -"); got != "ip -batch -" {
		t.Errorf("default ip() = %q", got)
	}
}

// The boot unit names the ip it was given, and /sbin/ip's unit is the one
// routepush always wrote: nodes persisted before are not rewritten.
func TestBootUnitNamesTheIP(t *testing.T) {
	t.Parallel()
	if u := string(bootUnit("/usr/local/sbin/ip")); !strings.Contains(u, "\nExecStart=/usr/local/sbin/ip -force -batch /etc/routepush/routes\n") {
		t.Errorf("unit:\n%s", u)
	}
	if u := string(bootUnit(defaultBootIP)); !strings.Contains(u, "\nExecStart=/sbin/ip -force -batch /etc/routepush/routes\n") {
		t.Errorf("unit:\n%s", u)
	}
}

// busyBoxNode serves a node whose `ip` on the PATH is BusyBox's: every
// bare `ip ...` prints BusyBox's usage and exits 1, `sh -s` prints found
// (what discovery finds), and `/usr/sbin/ip ... -batch -` is iproute2's
// (fakeIP). cmds records every command line the node was asked to run.
func busyBoxNode(t *testing.T, found string) (*keepSSHD, *Dialer, *[]string) {
	t.Helper()
	s, cfg := startKeepSSHD(t, 0)
	var mu sync.Mutex
	var cmds []string
	exit := func(ch ssh.Channel, code uint32) {
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
		ch.Close()
	}
	s.exec = func(cmd string, ch ssh.Channel) bool {
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		switch {
		case strings.HasPrefix(cmd, "ip "):
			go func() {
				_, _ = ch.Stderr().Write([]byte("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n\nUsage: ip [OPTIONS] address|route|link|tunnel|neigh|rule [ARGS]\n"))
				exit(ch, 1)
			}()
		case cmd == discoverCommand:
			go func() {
				script, _ := io.ReadAll(ch)
				if string(script) != discoverScript {
					exit(ch, 2)
					return
				}
				_, _ = ch.Write([]byte(found))
				exit(ch, 0)
			}()
		case strings.HasPrefix(cmd, "/usr/sbin/ip ") && strings.HasSuffix(cmd, "-batch -"):
			go s.ip.serve(ch, strings.Contains(cmd, "-force "))
		default:
			go exit(ch, 127)
		}
		return true
	}
	return s, keptDialer(t, cfg), &cmds
}

// Through a real SSH session: BusyBox's ip fails the first read, the
// discovery script finds iproute2's further along the PATH, and from then
// on, on this connection and the next one, only that ip runs, by its path.
func TestBusyBoxIPReplacedByIproute2s(t *testing.T) {
	s, d, cmds := busyBoxNode(t, "path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip iproute2 /usr/sbin/ip\nsbin iproute2\nend\n")
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	table, err := c.ReadRoutes(ctx, v4)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Apply(ctx, []byte("route add 100.64.9.0/24 via 198.18.0.2 proto 114\n"), false, v4, &table.Digest)
	if err != nil || res.BatchErr != nil || len(res.Table.Routes) != 1 {
		t.Fatalf("apply: %v %v %+v", err, res.BatchErr, res.Table)
	}
	c.Close()
	c, err = d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadRoutes(ctx, v4); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := []string{"ip -4 -d -N -json -batch -", discoverCommand, "/usr/sbin/ip -4 -d -N -json -batch -", "/usr/sbin/ip -4 -d -N -json -batch -", "/usr/sbin/ip -4 -d -N -json -batch -"}
	if got := strings.Join(*cmds, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("commands run:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// With no usable iproute2 the read fails naming the node, before any
// change: nothing but the first read and the script ran, and nothing a
// hostile node printed reached a command line.
func TestBusyBoxIPRefused(t *testing.T) {
	for name, tc := range map[string]struct{ found, want string }{
		"busybox only": {"path /usr/local/sbin:/usr/sbin\nip busybox /usr/local/sbin/ip\nip busybox /usr/sbin/ip\nend\n",
			"n1: ip on the PATH is BusyBox's (/usr/local/sbin/ip), which cannot show route protocols: routepush cannot tell its routes from others'; install iproute2"},
		"iproute2 at a shell-unsafe path": {"path /x;reboot\nip busybox /usr/local/sbin/ip\nip iproute2 /x;reboot/ip\nend\n",
			`n1: iproute2's ip is at "/x;reboot/ip" on the PATH, which routepush will not run: byte ';' is not allowed`},
		"garbage": {"path /usr/bin\n\x1b[2Jip iproute2 /usr/sbin/ip\nend\n", `n1: discovering ip and sftp-server: line 2 "\x1b[2Jip iproute2 /usr/sbin/ip": not a line discovery prints`},
		"endless": {"path /usr/bin\n" + strings.Repeat("ip other /usr/bin/ip\n", discoverLimit/10) + "end\n", "n1: discover ip and sftp-server: output: exceeds 32 KiB (the limit for what discovery prints)"},
	} {
		t.Run(name, func(t *testing.T) {
			s, d, cmds := busyBoxNode(t, tc.found)
			ctx := context.Background()
			c, err := d.Dial(ctx, s.target())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.ReadRoutes(ctx, v4)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("read: %v, want %q", err, tc.want)
			}
			if got := strings.Join(*cmds, " | "); got != "ip -4 -d -N -json -batch - | "+discoverCommand {
				t.Errorf("commands run: %s", got)
			}
		})
	}
}

// become on a node whose sftp-server is only at RHEL's path: sudo refuses
// Debian's (sudoers names the other), the script finds RHEL's, and the
// SFTP session runs it; the next connection goes there at once. Named by
// the target (sftp_server), nothing is looked for.
func TestBecomeFindsTheNodesSFTPServer(t *testing.T) {
	for _, named := range []bool{false, true} {
		s, cfg := startKeepSSHD(t, 0)
		var mu sync.Mutex
		var cmds []string
		s.exec = func(cmd string, ch ssh.Channel) bool {
			mu.Lock()
			cmds = append(cmds, cmd)
			mu.Unlock()
			switch cmd {
			case "sudo -n /usr/libexec/openssh/sftp-server":
				go func() {
					_ = sftp.NewRequestServer(ch, sftp.InMemHandler()).Serve()
					ch.Close()
				}()
			case discoverCommand:
				go func() {
					_, _ = io.ReadAll(ch)
					_, _ = ch.Write([]byte("path /usr/local/bin:/usr/bin\nip iproute2 /usr/bin/ip\nsbin iproute2\nsftp /usr/libexec/openssh/sftp-server\nend\n"))
					exitWith(ch, 0)
				}()
			default:
				go func() {
					_, _ = ch.Stderr().Write([]byte("sudo: a password is required\n"))
					exitWith(ch, 1)
				}()
			}
			return true
		}
		d := keptDialer(t, cfg)
		tg := s.target()
		tg.Become = true
		if named {
			tg.SFTPServer = "/usr/libexec/openssh/sftp-server"
		}
		for range 2 {
			c, err := d.Dial(context.Background(), tg)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.withFiles(context.Background(), "stat /", func(fsys sftpFS) error {
				_, err := fsys.Lstat("/")
				return err
			}); err != nil {
				t.Fatalf("named %v: %v", named, err)
			}
			c.Close()
		}
		want := "sudo -n /usr/lib/openssh/sftp-server | sh -s | sudo -n /usr/libexec/openssh/sftp-server | sudo -n /usr/libexec/openssh/sftp-server"
		if named {
			want = "sudo -n /usr/libexec/openssh/sftp-server | sudo -n /usr/libexec/openssh/sftp-server"
		}
		if got := strings.Join(cmds, " | "); got != want {
			t.Errorf("named %v: commands run:\n%s\nwant\n%s", named, got, want)
		}
	}
}

// The script's lines about fixed paths (/sbin/ip, the distributions'
// sftp-servers, sshd_config's Subsystem sftp and its sed) under each shell
// a node may have: the paths are moved into a temporary directory in the
// script's text (and back in its output), so that the real ones on the
// machine running the test do not matter.
func TestDiscoverScriptFixedPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mk := func(rel, body string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	iproute2 := "#!/bin/sh\necho 'ip utility, iproute2-6.1.0'\n"
	busybox := "#!/bin/sh\necho 'BusyBox v1.35.0 (Debian) multi-call binary.' >&2\nexit 1\n"
	custom := mk("opt/ssh/sftp-server", "", 0o755)
	odd := mk("opt/ssh@9/sftp-server", "", 0o755)
	mk("opt/notexec/sftp-server", "", 0o644)
	type fixed struct {
		sbin       string // "": none; else its body
		sbinMode   os.FileMode
		sftps      []string // which of sftpServerPaths exist
		sshdConfig string   // "": none
	}
	for _, tc := range []struct {
		name      string
		f         fixed
		sbin      string
		sftp      []string
		subsystem string
		bad       string
	}{
		{name: "debian", f: fixed{sbin: iproute2, sftps: []string{defaultSFTPServer}, sshdConfig: "Include /etc/ssh/sshd_config.d/*.conf\nSubsystem\tsftp\t" + custom + "\n"},
			sbin: "iproute2", sftp: []string{defaultSFTPServer}, subsystem: custom},
		{name: "busybox sbin, arguments after the path", f: fixed{sbin: busybox, sshdConfig: "  subsystem   sftp  " + custom + " -f AUTHPRIV -l INFO\n"},
			sbin: "busybox", subsystem: custom},
		{name: "commented out", f: fixed{sshdConfig: "#Subsystem sftp " + custom + "\n# Subsystem sftp " + custom + "\n"}},
		{name: "internal-sftp", f: fixed{sftps: sftpServerPaths[1:], sshdConfig: "Subsystem sftp internal-sftp\n"}, sftp: sftpServerPaths[1:]},
		{name: "another subsystem's name", f: fixed{sshdConfig: "Subsystem sftpx " + custom + "\nSubsystem\tsftp-legacy " + custom + "\n"}},
		{name: "the first of two", f: fixed{sshdConfig: "Subsystem sftp " + custom + "\nSubsystem sftp /usr/lib/openssh/sftp-server\n"}, subsystem: custom},
		{name: "not there", f: fixed{sshdConfig: "Subsystem sftp " + filepath.Join(dir, "nowhere/sftp-server") + "\n"}},
		{name: "not executable", f: fixed{sbin: iproute2, sbinMode: 0o644, sshdConfig: "Subsystem sftp " + filepath.Join(dir, "opt/notexec/sftp-server") + "\n"}},
		{name: "odd byte: printed, left out by the parse", f: fixed{sshdConfig: "Subsystem sftp " + odd + "\n"}, bad: "byte '@' is not allowed"},
		{name: "no sshd_config", f: fixed{sbin: iproute2}, sbin: "iproute2"},
	} {
		for _, sh := range [][]string{{"sh"}, {"dash"}, {"bash"}, {"busybox", "sh"}} {
			if _, err := exec.LookPath(sh[0]); err != nil {
				continue
			}
			t.Run(tc.name+"/"+strings.Join(sh, " "), func(t *testing.T) {
				t.Parallel()
				root := t.TempDir()
				script := discoverScript
				moved := map[string]string{}
				move := func(real string) string {
					p := filepath.Join(root, "r"+real)
					script = strings.ReplaceAll(script, real, p)
					moved[p] = real
					return p
				}
				// None of these paths holds another: each is moved alone.
				sftps := map[string]string{}
				for _, real := range sftpServerPaths {
					sftps[real] = move(real)
				}
				sbin := move("/sbin/ip")
				conf := move("/etc/ssh/sshd_config")
				if tc.f.sbin != "" {
					mode := tc.f.sbinMode
					if mode == 0 {
						mode = 0o755
					}
					writeAll(t, sbin, tc.f.sbin, mode)
				}
				for _, real := range tc.f.sftps {
					writeAll(t, sftps[real], "", 0o755)
				}
				if tc.f.sshdConfig != "" {
					writeAll(t, conf, tc.f.sshdConfig, 0o644)
				}
				cmd := exec.Command(sh[0], append(sh[1:], "-s")...)
				cmd.Stdin = strings.NewReader(script)
				cmd.Env = []string{"PATH=/usr/bin:/bin"}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				text := string(out)
				for p, real := range moved {
					text = strings.ReplaceAll(text, p, real)
				}
				d, err := parseDiscovery([]byte(text))
				if err != nil {
					t.Fatalf("parse: %v\n%s", err, text)
				}
				if d.sbin != tc.sbin || strings.Join(d.sftp, " ") != strings.Join(tc.sftp, " ") || d.subsystem != tc.subsystem {
					t.Errorf("sbin %q, sftp %q, subsystem %q; want %q, %q, %q\n%s", d.sbin, d.sftp, d.subsystem, tc.sbin, tc.sftp, tc.subsystem, text)
				}
				if (tc.bad == "") != (d.badSubsystem == "") || !strings.Contains(d.badSubsystem, tc.bad) {
					t.Errorf("subsystem refused: %q, want %q", d.badSubsystem, tc.bad)
				}
			})
		}
	}
}

// writeAll writes a file, its folder made first.
func writeAll(t *testing.T, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}
