package remote

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// What preflight reads (Config.Preflight), all in the session that reads
// the tables: the FORWARD chains from nft (or iptables, where nft is
// missing or refuses), printed before the tables by a fixed sh script that
// then runs ip in its place (exec: no session more, one process); and the
// forwarding settings and the addresses, on a node with one family and
// ip's JSON from that ip itself, two lines more after its show lines, else
// from ip run twice more by that script. Nothing read here fails a node:
// what cannot be read is said in Facts.Unread.

// factLines are the batch lines that print the forwarding settings and
// the addresses of the ip's family, one JSON line each.
const factLines = "netconf show\naddress show\n"

// factsLimit bounds each of those lines, and each part of what the read's
// prefix prints; the node cuts those parts at prefixCap itself (head -c),
// so that a large ruleset (kube-proxy's nftables mode makes a chain per
// service) leaves the FORWARD policy unread, not the node.
const (
	factsLimit = 1 << 20
	prefixCap  = factsLimit - 4<<10
)

// Markers of the read's prefix: after the FORWARD chains, and in a read
// script after the settings and after the addresses. Each is printed on a
// line of its own (printf "\n%s\n"), whatever came before it.
const (
	factsEnd     = "--- routepush: preflight read ---"
	lockedEnd    = "--- routepush: preflight read; a lock, or not looked for ---"
	netconfEnd   = "--- routepush: forwarding settings read ---"
	addressesEnd = "--- routepush: addresses read ---"
)

// forwardScript reads the FORWARD chains: nft's base chains (cut at
// prefixCap on the node: a large ruleset leaves them unread, not the
// node); then, where nft is missing or iptables-legacy has tables of the
// family (which nft does not see; /proc/net/ip_tables_names lists them,
// read by the shell itself), the first line iptables -S FORWARD prints,
// its policy (the rules after it, whose comments are anyone's text, are
// never read; its warnings go nowhere). Through sudo -n with become, as
// ip is: a sudoers rule that allows ip alone makes them fail, which
// preflight reports, and nothing else. Their stdin is /dev/null: ip's is
// the batch.
func forwardScript(sudo bool) string {
	s := ""
	if sudo {
		s = "sudo -n "
	}
	return s + `nft -j list chains 2>&1 </dev/null | head -c ` + strconv.Itoa(prefixCap) + `
printf "\n"
nft=1
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || nft=
if [ -z "$nft" ] || read -r t </proc/net/ip_tables_names 2>/dev/null; then echo v4; ` + s + `iptables -S FORWARD 2>/dev/null </dev/null | head -n 1; fi
if [ -z "$nft" ] || read -r t </proc/net/ip6_tables_names 2>/dev/null; then echo v6; ` + s + `ip6tables -S FORWARD 2>/dev/null </dev/null | head -n 1; fi
`
}

// prefixEnd ends every read's prefix with its marker, which also says
// whether routepush's lock is absent from the node: factsEnd only where
// the shell could look into the state directory (root's alone: the login
// user is root) and found no lock there, else lockedEnd. It is shell
// builtins only, no process: a run reads first, and needs the lock (and
// so SFTP) only on a node it will change or that has a lock (Unlocked).
// A node that lies here fools only the run about itself: a lock it hides
// is one it could delete.
const prefixEnd = `if [ -x ` + stateDir + ` ] && ! [ -e ` + lockPath + ` ] && ! [ -L ` + lockPath + ` ]; then printf "\n%s\n" "` + factsEnd + `"; else printf "\n%s\n" "` + lockedEnd + `"; fi
`

// readCommand is the command line of a read's ip (its words, as c.ip
// renders them) with its prefix before it: preflight's FORWARD read (with
// Config.Preflight) and prefixEnd. A fixed script run by sh -c (it holds
// no single quote; the login shell may not be POSIX), which then execs the
// ip given as its arguments.
func (c *Client) readCommand(ipArgs string) string {
	script := prefixEnd
	if c.preflight {
		script = forwardScript(c.sudo) + prefixEnd
	}
	return "sh -c '" + script + `exec "$@"` + "' sh " + c.ip(ipArgs)
}

// prefixed says whether a read that leaves its ip waiting for Apply runs
// readCommand's prefix: for preflight, or to look for the lock where the
// login user can (not through sudo, whose rules name ip alone). Without
// preflight a watcher's kept connection does not look (its rounds lock
// every node first anyway).
func (c *Client) prefixed() bool { return c.preflight || (!c.sudo && c.kept == nil) }

// Unlocked says whether the node's last read found no routepush lock
// there, having looked (prefixEnd); false if it had one, or could not
// look (become, a read without the prefix, a dual-stack read without
// preflight).
func (c *Client) Unlocked() bool { return c.unlocked }

// scriptPrefix starts a read script (a dual-stack node, or text mode):
// the settings and the addresses of both families, then the FORWARD
// chains, by the ip given as its arguments.
func (c *Client) scriptPrefix() string {
	script := `"$@" -json netconf show 2>&1 </dev/null | head -c ` + strconv.Itoa(prefixCap) + `
printf "\n%s\n" "` + netconfEnd + `"
"$@" -json address show 2>&1 </dev/null | head -c ` + strconv.Itoa(prefixCap) + `
printf "\n%s\n" "` + addressesEnd + `"
` + forwardScript(c.sudo) + prefixEnd
	return "sh -c '" + script + "' sh " + strings.TrimSpace(c.ip("")) + "; "
}

// cutPrefix splits a read's output at the end of its prefix: what the
// prefix printed, and the rest; unlocked is the end's (prefixEnd). ok is
// false when no end marker is within limit.
func cutPrefix(out []byte, limit int) (prefix, rest []byte, unlocked, ok bool) {
	i, mark := -1, ""
	for _, m := range []string{factsEnd, lockedEnd} {
		if j := bytes.Index(out, []byte("\n"+m+"\n")); j >= 0 && (i < 0 || j < i) {
			i, mark = j, m
		}
	}
	if i < 0 || i > limit {
		return nil, out, false, false
	}
	return out[:i+1], out[i+len(mark)+2:], mark == factsEnd, true
}

// readPrefix reads what a streaming read's prefix printed, up to its end
// marker, at most factsLimit. Call it inside c.bounded.
func (c *Client) readPrefix(p *pendingIP) (prefix []byte, unlocked bool, err error) {
	var out []byte
	for {
		line, err := readLineAtMost(p.stdout, factsLimit)
		if errors.Is(err, errOverLimit) || len(out)+len(line) > factsLimit {
			return nil, false, c.tooMuch("nft -j list chains: output", factsLimit, "a node's FORWARD chains, which it cuts at "+strconv.Itoa(prefixCap)+" bytes itself")
		}
		if err != nil {
			return nil, false, err
		}
		if l := string(line); l == factsEnd+"\n" || l == lockedEnd+"\n" {
			return out, l == factsEnd+"\n", nil
		}
		out = append(out, line...)
	}
}

// scriptFacts parses what a read script's prefix printed: the settings
// and addresses of both families, then the FORWARD chains.
func scriptFacts(prefix []byte) *route.Facts {
	f := &route.Facts{}
	for _, part := range []struct {
		mark, what string
		parse      func([]byte) error
	}{
		{netconfEnd, "forwarding settings", func(b []byte) (err error) { f.Netconf, err = route.ParseNetconfJSON(b); return }},
		{addressesEnd, "addresses", func(b []byte) (err error) { f.Addresses, err = route.ParseAddressesJSON(b); return }},
	} {
		before, after, found := bytes.Cut(prefix, []byte("\n"+part.mark+"\n"))
		if !found {
			f.Unread = append(f.Unread, part.what+": not printed")
			continue
		}
		prefix = after
		if err := part.parse(before); err != nil {
			f.Unread = append(f.Unread, part.what+": "+firstLine(string(before)))
		}
	}
	f.Forward, f.Unread = parseForward(prefix, f.Unread)
	return f
}

// parseForward reads forwardScript's output: nft's JSON document, and
// iptables' policy line of each family it printed one for (a line "v4" or
// "v6" before it). A family neither gave is said to be unread.
func parseForward(out []byte, unread []string) ([]route.ForwardChain, []string) {
	var chains []route.ForwardChain
	lines := bytes.Split(out, []byte("\n"))
	nft := false
	for _, line := range lines {
		if bytes.HasPrefix(line, []byte(`{"nftables"`)) {
			c, err := route.ParseNftChainsJSON(line)
			if err != nil {
				unread = append(unread, "FORWARD policy: nft's chains: "+firstLine(err.Error()))
				break
			}
			chains, nft = c, true
			break
		}
	}
	read := map[route.Family]bool{route.IPv4: nft, route.IPv6: nft}
	for i, line := range lines {
		fam := map[string]route.Family{"v4": route.IPv4, "v6": route.IPv6}[string(line)]
		if fam == 0 {
			continue
		}
		if i+1 < len(lines) && bytes.HasPrefix(lines[i+1], []byte("-P FORWARD ")) {
			if c, err := route.ParseIptablesPolicy(lines[i+1], fam); err == nil {
				chains, read[fam] = append(chains, c...), true
				continue
			}
		}
		if nft {
			// iptables-legacy has tables here that nft does not see.
			unread = append(unread, fam.String()+" FORWARD policy: iptables-legacy's, which nft does not show, printed no policy")
		}
	}
	for _, fam := range []route.Family{route.IPv4, route.IPv6} {
		if !read[fam] {
			unread = append(unread, fam.String()+" FORWARD policy: neither nft nor iptables printed it: "+firstLine(string(lines[0])))
		}
	}
	return chains, unread
}

// readFactLines reads the lines factLines print, after the tables. ended
// says ip stopped at one of them (an iproute2 that refuses `netconf
// show`): the tables it printed stand, and the ip is done with. Call it
// inside c.bounded.
func (c *Client) readFactLines(p *pendingIP) (lines [][]byte, ended bool, err error) {
	for range strings.Count(factLines, "\n") {
		line, err := readLineAtMost(p.stdout, factsLimit)
		if errors.Is(err, errOverLimit) {
			return nil, false, c.tooMuch(c.ip("netconf show")+": output", factsLimit, "a node's interfaces (--preflight off reads none)")
		}
		if errors.Is(err, io.EOF) {
			// ip stopped there: what it began of the line (its JSON
			// printer opens "[" before a dump that fails) is not one.
			return lines, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		lines = append(lines, line)
	}
	return lines, false, nil
}

// readFacts parses what a one-family JSON read brought for preflight: its
// prefix's FORWARD chains, and the lines factLines printed; ended and
// stderr say ip stopped at one of those, and why.
func readFacts(prefix []byte, lines [][]byte, ended bool, stderr string) *route.Facts {
	f := &route.Facts{}
	if len(lines) > 0 {
		n, err := route.ParseNetconfJSON(lines[0])
		if err != nil {
			f.Unread = append(f.Unread, "forwarding settings: "+safetext.Line(err.Error()))
		}
		f.Netconf = n
	}
	if len(lines) > 1 {
		a, err := route.ParseAddressesJSON(lines[1])
		if err != nil {
			f.Unread = append(f.Unread, "addresses: "+safetext.Line(err.Error()))
		}
		f.Addresses = a
	}
	if ended {
		f.Unread = append(f.Unread, "ip stopped at `"+strings.TrimSpace(strings.Split(factLines, "\n")[len(lines)])+"`: "+firstLine(stderr))
	}
	f.Forward, f.Unread = parseForward(prefix, f.Unread)
	return f
}

// firstLine is the first line of what a node printed, escaped and cut
// short for a message.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	if line == "" {
		return "nothing said"
	}
	return safetext.Line(line)
}
