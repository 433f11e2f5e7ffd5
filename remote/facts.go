package remote

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// What preflight reads (Config.Preflight), all in the session that reads
// the tables: the FORWARD chains from nft (or iptables, where nft is
// missing or refuses), printed before the tables by the same shell that
// then runs ip (a prefix to the read's command: no session more, one
// process); and the forwarding settings and the addresses, on a node with
// one family and ip's JSON from that ip itself, two lines more after its
// show lines, else from ip run twice more in the read's script. Nothing
// read here fails a node: what cannot be read is said in Facts.Unread.

// factLines are the batch lines that print the forwarding settings and
// the addresses of the ip's family, one JSON line each.
const factLines = "netconf show\naddress show\n"

// factsLimit bounds each of those lines, and what the read's prefix
// prints: a node's interfaces, not its routes (a thousand pods' veths
// are about 200 kB).
const factsLimit = 1 << 20

// Markers of the read's prefix: after the FORWARD chains, and in a read
// script after each of the settings and the addresses.
const (
	factsEnd     = "--- routepush: preflight read ---"
	netconfEnd   = "--- routepush: forwarding settings read ---"
	addressesEnd = "--- routepush: addresses read ---"
)

// forwardPrefix runs before the read's ip, in the same shell session:
// nft's base chains, or where nft is missing or refuses, iptables'
// FORWARD policy, then the end marker. A fixed string (the login shell
// runs it: nothing but ;, || and redirections), through sudo -n with
// become as ip is: a sudoers rule that allows ip alone makes nft and
// iptables fail, which preflight reports, and nothing else.
func (c *Client) forwardPrefix() string {
	sudo := ""
	if c.sudo {
		sudo = "sudo -n "
	}
	return sudo + "nft -j list chains 2>&1 </dev/null || " + sudo + "iptables -S FORWARD 2>&1 </dev/null; echo '" + factsEnd + "'; "
}

// scriptPrefix is forwardPrefix for a read script (a dual-stack node, or
// text mode), with the settings and the addresses of both families first.
func (c *Client) scriptPrefix() string {
	return c.ip("-json netconf show") + " 2>&1 </dev/null; echo '" + netconfEnd + "'; " +
		c.ip("-json address show") + " 2>&1 </dev/null; echo '" + addressesEnd + "'; " + c.forwardPrefix()
}

// cutPrefix splits a read's output at the end of its prefix: what the
// prefix printed, and the rest. ok is false when the marker is not where
// it must be, within factsLimit.
func cutPrefix(out []byte) (prefix, rest []byte, ok bool) {
	mark := []byte(factsEnd + "\n")
	i := bytes.Index(out, mark)
	if i < 0 || i > factsLimit || (i > 0 && out[i-1] != '\n') {
		return nil, out, false
	}
	return out[:i], out[i+len(mark):], true
}

// readPrefix reads what a streaming read's prefix printed, up to its end
// marker, at most factsLimit. Call it inside c.bounded.
func (c *Client) readPrefix(p *pendingIP) ([]byte, error) {
	var out []byte
	for {
		line, err := readLineAtMost(p.stdout, factsLimit)
		if errors.Is(err, errOverLimit) || len(out)+len(line) > factsLimit {
			return nil, c.tooMuch("nft -j list chains: output", factsLimit, "a node's FORWARD chains (--preflight off reads none)")
		}
		if err != nil {
			return nil, err
		}
		if string(line) == factsEnd+"\n" {
			return out, nil
		}
		out = append(out, line...)
	}
}

// prefixFacts parses what a read's prefix printed: the FORWARD chains,
// and in a script's, the settings and addresses before them.
func prefixFacts(prefix []byte, script bool) *route.Facts {
	f := &route.Facts{}
	if script {
		for _, part := range []struct {
			mark, what string
			parse      func([]byte) error
		}{
			{netconfEnd, "forwarding settings", func(b []byte) (err error) { f.Netconf, err = route.ParseNetconfJSON(b); return }},
			{addressesEnd, "addresses", func(b []byte) (err error) { f.Addresses, err = route.ParseAddressesJSON(b); return }},
		} {
			before, after, found := bytes.Cut(prefix, []byte(part.mark+"\n"))
			if !found {
				f.Unread = append(f.Unread, part.what+": not printed")
				continue
			}
			prefix = after
			if err := part.parse(before); err != nil {
				f.Unread = append(f.Unread, part.what+": "+firstLine(string(before)))
			}
		}
	}
	f.Forward, f.Unread = parseForward(prefix, f.Unread)
	return f
}

// parseForward reads forwardPrefix's output: nft's JSON document if it
// printed one, else iptables' policy line; else what they said is why
// the policy is not read.
func parseForward(out []byte, unread []string) ([]route.ForwardChain, []string) {
	for _, line := range bytes.Split(out, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte(`{"nftables"`)):
			chains, err := route.ParseNftChainsJSON(line)
			if err != nil {
				return nil, append(unread, "FORWARD policy: "+safetext.Line(err.Error()))
			}
			return chains, unread
		case bytes.HasPrefix(line, []byte("-P FORWARD ")):
			chains, err := route.ParseIptablesPolicy(line, route.IPv4)
			if err != nil {
				return nil, append(unread, "FORWARD policy: "+safetext.Line(err.Error()))
			}
			return chains, unread
		}
	}
	return nil, append(unread, "FORWARD policy: neither nft nor iptables could read it: "+firstLine(string(out)))
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
