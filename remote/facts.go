package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// What preflight reads (Config.Preflight): on a node with one family and
// ip's JSON, the forwarding settings and the addresses come from the ip
// that reads the tables, two lines more after its show lines; the
// FORWARD chains, from nft or iptables, in a session of their own on the
// same connection, beside that read. Nothing read here fails a node: what
// cannot be read is said in Facts.Unread.

// factLines are the batch lines that print the forwarding settings and
// the addresses of the ip's family, one JSON line each.
const factLines = "netconf show\naddress show\n"

// factsLimit bounds each of those lines, and what the FORWARD read
// prints: a node's interfaces, not its routes (a thousand pods' veths
// are about 200 kB).
const factsLimit = 1 << 20

// factsTimeout bounds the FORWARD read: it runs beside the tables' read,
// which waits for it, and is not worth a node's whole command timeout.
const factsTimeout = 10 * time.Second

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
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return lines, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		lines = append(lines, line)
	}
	return lines, false, nil
}

// batchFacts parses the lines factLines printed; ended and stderr say ip
// stopped at one of them, and why.
func (c *Client) batchFacts(lines [][]byte, ended bool, stderr string) *route.Facts {
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
		why := firstLine(stderr)
		if why == "" {
			why = "it ended"
		}
		f.Unread = append(f.Unread, "ip stopped at `"+strings.TrimSpace(strings.Split(factLines, "\n")[len(lines)])+"`: "+why)
	}
	return f
}

// factsExit starts the line the FORWARD read prints after each command,
// with its exit status.
const factsExit = "--- routepush: exit "

// factsScript reads the FORWARD chains: every base chain on the forward
// hook from nft, or where nft is missing or refuses, iptables' and
// ip6tables' FORWARD policy. With withIP, the forwarding settings and the
// addresses of both families come first (a dual-stack node, or one whose
// tables are read in text). It is a fixed string run by `sh -s` from
// stdin (the login shell may not be POSIX), through sudo -n with become
// as ip is: a sudoers rule that allows ip alone makes nft and iptables
// fail, which preflight reports, and nothing else.
func (c *Client) factsScript(withIP bool) string {
	s := ""
	if c.sudo {
		s = "sudo -n"
	}
	exit := `; echo "` + factsExit + `$?"` + "\n"
	script := "set -f\nS='" + s + "'\n"
	if withIP {
		script += c.ip("-json netconf show") + " 2>&1 </dev/null" + exit +
			c.ip("-json address show") + " 2>&1 </dev/null" + exit
	}
	return script + `$S nft -j list chains 2>&1 </dev/null
s=$?
echo "` + factsExit + `$s"
if [ "$s" -ne 0 ]; then
	$S iptables -S FORWARD 2>&1 </dev/null` + exit + `	$S ip6tables -S FORWARD 2>&1 </dev/null` + exit + `fi
`
}

// readFacts runs a factsScript, bounded by factsTimeout, and says what it
// found, and what it could not read and why. It runs beside the tables'
// read: it reads nothing of the Client's that read may change (the
// script was written before).
func (c *Client) readFacts(ctx context.Context, script string, withIP bool) *route.Facts {
	ctx, cancel := context.WithTimeout(ctx, factsTimeout)
	defer cancel()
	f := &route.Facts{}
	out, _, err := c.run(ctx, "preflight's reads (ip netconf, nft, iptables)", "sh -s", strings.NewReader(script), factsLimit, "what preflight reads")
	if err != nil {
		f.Unread = []string{"preflight: " + safetext.Line(err.Error())}
		return f
	}
	parts, codes := splitByExit(out)
	if withIP {
		for i, what := range []string{"forwarding settings", "addresses"} {
			if len(parts) <= i || codes[i] != 0 {
				f.Unread = append(f.Unread, what+": "+firstLine(string(at(parts, i))))
				continue
			}
			var err error
			if i == 0 {
				f.Netconf, err = route.ParseNetconfJSON(parts[i])
			} else {
				f.Addresses, err = route.ParseAddressesJSON(parts[i])
			}
			if err != nil {
				f.Unread = append(f.Unread, what+": "+safetext.Line(err.Error()))
			}
		}
		if len(parts) >= 2 {
			parts, codes = parts[2:], codes[2:]
		} else {
			parts, codes = nil, nil
		}
	}
	chains, unread := parseForward(parts, codes)
	f.Forward, f.Unread = chains, append(f.Unread, unread...)
	return f
}

func at(parts [][]byte, i int) []byte {
	if i < len(parts) {
		return parts[i]
	}
	return nil
}

// parseForward reads the FORWARD part of factsScript's output: nft's
// chains if it ran, else iptables' and ip6tables' policies.
func parseForward(parts [][]byte, codes []int) (chains []route.ForwardChain, unread []string) {
	if len(parts) == 0 {
		return nil, []string{"FORWARD policy: no answer"}
	}
	if codes[0] == 0 {
		chains, err := route.ParseNftChainsJSON(parts[0])
		if err != nil {
			return nil, []string{"FORWARD policy: " + safetext.Line(err.Error())}
		}
		return chains, nil
	}
	why := "nft: " + firstLine(string(parts[0]))
	for i, fam := range []route.Family{route.IPv4, route.IPv6} {
		if len(parts) <= i+1 || codes[i+1] != 0 {
			if len(parts) > i+1 {
				why += "; " + []string{"iptables", "ip6tables"}[i] + ": " + firstLine(string(parts[i+1]))
			}
			continue
		}
		c, err := route.ParseIptablesPolicy(parts[i+1], fam)
		if err != nil {
			unread = append(unread, fam.String()+" FORWARD policy: "+safetext.Line(err.Error()))
			continue
		}
		chains = append(chains, c...)
	}
	if len(chains) == 0 {
		unread = append(unread, "FORWARD policy: "+why)
	}
	return chains, unread
}

// splitByExit splits forwardScript's output at its exit lines: what each
// command printed, and its exit status (-1 if the line is not one).
func splitByExit(out []byte) (parts [][]byte, codes []int) {
	for len(out) > 0 {
		i := bytes.Index(out, []byte(factsExit))
		if i < 0 || (i > 0 && out[i-1] != '\n') {
			return parts, codes
		}
		rest := out[i+len(factsExit):]
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		code, err := strconv.Atoi(string(line))
		if err != nil {
			code = -1
		}
		parts, codes = append(parts, out[:i]), append(codes, code)
		out = after
	}
	return parts, codes
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
