package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/routepush/routepush/internal/nodepath"
	"github.com/routepush/routepush/internal/safetext"
)

// What routepush runs on a node is found there only when the defaults do
// not serve: `ip` on the PATH of the session (through sudo's secure_path
// with become), OpenSSH's sftp-server at Debian's path for become, /sbin/ip
// in the boot unit. The common case (Debian, Ubuntu, RHEL, Fedora, Arch
// with iproute2) costs no round trip more than before; discoverScript, one
// session, runs only when:
//
//   - a read finds no ip (exit 127, "not found"), or BusyBox's ip: an
//     iproute2 ip further along the PATH is then used by its absolute path
//     for the rest of the connection, or the node is refused before any
//     change;
//   - with become, `sudo -n /usr/lib/openssh/sftp-server` is not found and
//     no sftp_server is configured: sshd's configured Subsystem sftp, else
//     the first of the distributions' paths that exists, is used;
//   - with --persist: the boot unit must name an ip that works at boot.
//
// What it finds is cached per node in the Dialer (like text mode), so a
// second connection (a rollback, a watcher's round) finds it again free.
// A cached finding is only a guess about a node that may have changed
// since (a watcher runs for weeks; iproute2 gets installed, an
// sftp-server moves): one that leads nowhere, or to a path that has just
// failed, is looked for again, once (lookFor). An sftp-server is kept as
// the node's only once a session opened with it (files); an ip kept by
// its path that then fails as a missing one is looked for again (findIP).

// discoverScript prints what the node has, one fact a line, for
// parseDiscovery: the session's PATH; every executable `ip` along it, in
// order up to the first iproute2 one, with what `ip -V` says it is; what
// /sbin/ip is; the distributions' sftp-servers that exist; sshd_config's
// Subsystem sftp (readable without root; `sshd -T` is not). It is a fixed
// string, run by `sh -s` from stdin (the login shell may not be POSIX),
// and changes nothing. set -f: a PATH entry is never a glob. It stops at
// the first iproute2 ip: that is the one routepush uses, and every ip
// after it would be run (as root without become) for nothing.
//
// It does not look at who may write the directories it finds an ip in:
// the ip it reports is one the session's own PATH runs anyway (a plain
// `ip`, had nothing BusyBox's come first), and the boot unit's is the one
// that PATH finds too. A PATH directory others may write already gives
// them root through every plain `ip`; refusing it here would not close
// that, and `find -perm` is not on every node (README, Security model).
const discoverScript = `set -f
k() { v=$("$1" -V 2>&1 </dev/null | head -c 512); case $v in *iproute2*) echo iproute2 ;; *BusyBox*) echo busybox ;; *) echo other ;; esac; }
printf 'path %s\n' "$PATH"
IFS=:
for d in $PATH; do
	case $d in /*) ;; *) continue ;; esac
	if [ -f "$d/ip" ] && [ -x "$d/ip" ]; then
		t=$(k "$d/ip")
		printf 'ip %s %s\n' "$t" "$d/ip"
		if [ "$t" = iproute2 ]; then break; fi
	fi
done
unset IFS
if [ -f /sbin/ip ] && [ -x /sbin/ip ]; then printf 'sbin %s\n' "$(k /sbin/ip)"; fi
for f in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server; do
	if [ -f "$f" ] && [ -x "$f" ]; then printf 'sftp %s\n' "$f"; fi
done
s=$(sed -n 's/^[[:space:]]*[Ss][Uu][Bb][Ss][Yy][Ss][Tt][Ee][Mm][[:space:]][[:space:]]*sftp[[:space:]][[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/ssh/sshd_config 2>/dev/null | head -n 1)
case $s in /*) if [ -f "$s" ] && [ -x "$s" ]; then printf 'subsystem %s\n' "$s"; fi ;; esac
echo end
`

// discoverCommand runs discoverScript.
const discoverCommand = "sh -s"

// Bounds on what discovery reads: the whole output, and the lines it may
// have (a PATH of 64 entries with an ip in each, and the rest).
const (
	discoverLimit    = 32 << 10
	discoverMaxLines = 80
	// pathShown bounds the PATH a message repeats.
	pathShown = 512
)

// ipFound is one executable `ip` on the session's PATH.
type ipFound struct {
	kind string // iproute2, busybox or other, as its -V says
	path string // as the node printed it
	bad  error  // why path cannot be run by routepush (nodepath.CheckProgram)
}

// discovered is what discoverScript found on a node.
type discovered struct {
	path      string    // the session's PATH, escaped and cut for messages
	ips       []ipFound // in PATH order
	sbin      string    // /sbin/ip's kind, "" if there is none
	sftp      []string  // distributions' sftp-servers that exist, valid
	subsystem string    // sshd_config's Subsystem sftp, if valid and executable
	// badSubsystem says why sshd_config's Subsystem sftp is not used
	// (nodepath.CheckProgram), "" if it is or there is none.
	badSubsystem string
}

// parseDiscovery reads discoverScript's output strictly: every line must
// be one it prints, paths must pass nodepath.CheckProgram (an ip whose
// path does not is kept, marked bad: it cannot be run, but it says what
// is first on the PATH; a Subsystem whose path does not is left out,
// noted for the message: sshd_config is the admin's, and a custom
// sftp-server there says nothing about ip), and the output must end with
// "end". A node that prints anything else is refused.
func parseDiscovery(out []byte) (discovered, error) {
	var d discovered
	if !bytes.HasSuffix(out, []byte("\nend\n")) {
		return d, errors.New("output cut short or malformed")
	}
	lines := strings.Split(string(out[:len(out)-len("end\n")]), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last \n
	if len(lines) > discoverMaxLines {
		return d, fmt.Errorf("%d lines, more than %d", len(lines), discoverMaxLines)
	}
	sawPath := false
	for i, line := range lines {
		key, val, _ := strings.Cut(line, " ")
		bad := func(why string) error {
			return fmt.Errorf("line %d %s: %s", i+1, safetext.Quote(cut(line, 120)), why)
		}
		switch key {
		case "path":
			if sawPath || i != 0 {
				return d, bad("unexpected")
			}
			sawPath = true
			d.path = safetext.Line(cut(val, pathShown))
		case "ip":
			kind, p, ok := strings.Cut(val, " ")
			if !ok || !validKind(kind) {
				return d, bad("not an ip line")
			}
			d.ips = append(d.ips, ipFound{kind: kind, path: p, bad: nodepath.CheckProgram(p, "ip")})
		case "sbin":
			if d.sbin != "" || !validKind(val) {
				return d, bad("not a kind")
			}
			d.sbin = val
		case "sftp":
			if !slicesContains(sftpServerPaths, val) {
				return d, bad("not one of the paths asked about")
			}
			d.sftp = append(d.sftp, val)
		case "subsystem":
			if d.subsystem != "" || d.badSubsystem != "" {
				return d, bad("twice")
			}
			if err := nodepath.CheckProgram(val, "sftp-server"); err != nil {
				d.badSubsystem = fmt.Sprintf("%s: %v", safetext.Quote(cut(val, 120)), err)
				continue
			}
			d.subsystem = val
		default:
			return d, bad("not a line discovery prints")
		}
	}
	if !sawPath {
		return d, errors.New("no PATH line")
	}
	return d, nil
}

func validKind(k string) bool { return k == "iproute2" || k == "busybox" || k == "other" }

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// cut shortens s to at most n bytes, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// sftpServerPaths are OpenSSH's sftp-server on Debian and Ubuntu (the
// default), the Red Hat family and SUSE, and Arch.
var sftpServerPaths = []string{defaultSFTPServer, "/usr/libexec/openssh/sftp-server", "/usr/lib/ssh/sftp-server"}

// iproute2 returns the ip routepush should run: the first iproute2 ip on
// the PATH by its path. With none, the error says what the PATH holds, as
// a *NodeSoftwareError.
func (d discovered) iproute2(host string) (string, error) {
	for _, f := range d.ips {
		if f.kind != "iproute2" {
			continue
		}
		if f.bad != nil {
			return "", &NodeSoftwareError{Host: host, Msg: fmt.Sprintf("iproute2's ip is at %s on the PATH, which routepush will not run: %v", safetext.Quote(cut(f.path, 120)), f.bad)}
		}
		return f.path, nil
	}
	if len(d.ips) == 0 {
		return "", &NodeSoftwareError{Host: host, Msg: fmt.Sprintf("no ip on the PATH of a non-interactive session (PATH=%s): install iproute2", d.path)}
	}
	first := d.ips[0]
	if first.kind == "busybox" {
		return "", &NodeSoftwareError{Host: host, Msg: fmt.Sprintf("ip on the PATH is BusyBox's (%s), which cannot show route protocols: routepush cannot tell its routes from others'; install iproute2", safetext.Line(cut(first.path, 120)))}
	}
	return "", &NodeSoftwareError{Host: host, Msg: fmt.Sprintf("no iproute2 ip on the PATH of a non-interactive session (PATH=%s; %s says it is not iproute2's): install iproute2", d.path, safetext.Line(cut(first.path, 120)))}
}

// bootIP is the ip the boot unit runs: /sbin/ip where that is iproute2's
// (every usual distribution, and the unit routepush wrote before it
// looked: it stays as it was), else the iproute2 ip the session finds.
func (d discovered) bootIP(host string) (string, error) {
	if d.sbin == "iproute2" {
		return defaultBootIP, nil
	}
	return d.iproute2(host)
}

// sftpServer is the sftp-server become runs: sshd's own (Subsystem sftp),
// else the first of the distributions' that exists.
func (d discovered) sftpServer(host string) (string, error) {
	if d.subsystem != "" {
		return d.subsystem, nil
	}
	if len(d.sftp) > 0 {
		return d.sftp[0], nil
	}
	names := "names none"
	if d.badSubsystem != "" {
		names = "names one routepush will not run (" + d.badSubsystem + ")"
	}
	return "", &NodeSoftwareError{Host: host, Msg: fmt.Sprintf("no sftp-server for become: none at %s, and /etc/ssh/sshd_config %s (set sftp_server in the inventory or --sftp-server)", strings.Join(sftpServerPaths, ", "), names)}
}

// discover runs discoverScript on the node, once per Dialer: the result
// is cached under the node's name. cached says it came from the cache,
// found by an earlier look.
func (c *Client) discover(ctx context.Context) (d discovered, cached bool, err error) {
	if c.dialer != nil {
		if d, ok := c.dialer.discoveredOf(c.name); ok {
			return d, true, nil
		}
	}
	out, _, err := c.run(ctx, "discover ip and sftp-server", discoverCommand, strings.NewReader(discoverScript), discoverLimit, "what discovery prints")
	if err != nil {
		return discovered{}, false, err
	}
	d, err = parseDiscovery(out)
	if err != nil {
		return discovered{}, false, &NodeSoftwareError{Host: c.name, Msg: "discovering ip and sftp-server: " + err.Error()}
	}
	if c.dialer != nil {
		c.dialer.setDiscovered(c.name, d)
	}
	return d, false, nil
}

// lookFor picks a path from what discovery found on the node. When that
// was found by an earlier look, and the pick fails (nothing usable: a
// *NodeSoftwareError) or is a path that has just failed (failed), the
// node is looked at again, once: it may have changed since the look (a
// watcher's later round, iproute2 installed, an sftp-server moved), and a
// finding kept for the Dialer's life must not refuse it for good. A
// fresh look is believed: looking again at once would find the same.
func (c *Client) lookFor(ctx context.Context, pick func(discovered) (string, error), failed func(string) bool) (discovered, string, error) {
	d, cached, err := c.discover(ctx)
	if err != nil {
		return d, "", err
	}
	p, err := pick(d)
	if cached && (err != nil || failed(p)) {
		c.dialer.forgetDiscovered(c.name)
		if d, _, err = c.discover(ctx); err != nil {
			return d, "", err
		}
		p, err = pick(d)
	}
	return d, p, err
}

// ipName is the ip the client runs: "ip" on the PATH, or its path.
func (c *Client) ipName() string {
	if c.ipCmd != "" {
		return c.ipCmd
	}
	return "ip"
}

// ipMissing recognises a shell or sudo that found no ip to run. Without
// become the login shell runs ip, and every shell (sh, bash, zsh, fish)
// exits 127 for a command it cannot find, each in its own words ("ip: not
// found", "command not found: ip", "Unknown command: ip"), while
// iproute2's ip exits 0, 1, 2 or 255: 127 alone says it. With become sudo
// runs it, exits 1 and names what it was asked for, the bare name or the
// path (a stale one: "sudo: /usr/sbin/ip: command not found"); a 127 then
// is the shell not finding sudo, which hint explains.
func (c *Client) ipMissing(ce *CommandError) bool {
	if c.sudo {
		return strings.Contains(ce.Stderr, "sudo: "+c.ipName()+": command not found")
	}
	return ce.ExitStatus == 127
}

// busyBox recognises BusyBox's ip refusing iproute2's options: it prints
// its usage, which starts with its banner.
func busyBox(ce *CommandError) bool {
	return strings.Contains(ce.Stderr, "BusyBox v") && strings.Contains(ce.Stderr, "Usage: ip ")
}

// findIP looks along the node's PATH for an iproute2 ip after the one the
// session ran was missing or BusyBox's, and uses it by its path for the
// rest of the connection (and the node's later connections). It returns
// an error naming the node when there is none: nothing was changed.
func (c *Client) findIP(ctx context.Context) error {
	// The ip just run by its path failed as a missing one would: a
	// finding that names it again is out of date (lookFor).
	d, p, err := c.lookFor(ctx, func(d discovered) (string, error) { return d.iproute2(c.name) }, func(p string) bool { return p == c.ipCmd })
	if err != nil {
		return err
	}
	if p == c.ipCmd {
		// Already used by its path, and it failed as it did.
		return &NodeSoftwareError{Host: c.name, Msg: fmt.Sprintf("iproute2's ip at %s failed as a missing or BusyBox ip would", p)}
	}
	first := "no ip"
	if len(d.ips) > 0 {
		first = safetext.Line(d.ips[0].path) + " (" + d.ips[0].kind + ")"
	}
	c.dialer.logger().Info("using iproute2's ip by its path: the first ip on the PATH is not iproute2's", "node", c.name, "ip", p, "first", first)
	c.useIP(p)
	return nil
}

// useIP runs ip by this path from now on, on this connection and the
// node's later ones.
func (c *Client) useIP(p string) {
	c.ipCmd = p
	if c.dialer != nil {
		c.dialer.setNodeIP(c.name, p)
	}
}

// NodeSoftwareError is a node whose software routepush cannot work with
// (no ip, only BusyBox's, no sftp-server for become), found before any
// change to it.
type NodeSoftwareError struct {
	Host string
	Msg  string
}

func (e *NodeSoftwareError) Error() string { return e.Host + ": " + e.Msg }
