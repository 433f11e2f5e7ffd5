package remote

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
)

// probeScript pings, from the source address on the second line of
// stdin, every address on the lines after it, all at once, each count
// times (the first line): a fixed string, run as `sh -c '...'` (it holds
// no single quote), whose stdin carries the addresses as data only. ping runs as the login user, as ping is made to (it
// needs no root); each prints its statistics when it ends, in one write
// to the pipe. -w bounds each, whatever answers.
const probeScript = `set -f
read -r count
read -r src
while read -r dst; do
	ping -n -q -c "$count" -i 0.2 -w ` + probeDeadline + ` -I "$src" "$dst" </dev/null 2>&1 &
done
wait
echo "--- routepush: probes done"
`

// probeCommand runs probeScript.
var probeCommand = "sh -c '" + probeScript + "'"

// probeDeadline is ping's -w: how long one probe may take, in seconds.
const probeDeadline = "2"

// probeTimeout bounds a whole probe on a node: every ping at once, and
// the session around them.
const probeTimeout = 15 * time.Second

// probeLimit bounds what the probes print: a few lines each.
func probeLimit(n int) int64 { return 4<<10 + int64(n)*1<<10 }

// Probe pings dsts from src on the node (orchestrator.Host).
func (c *Client) Probe(ctx context.Context, src netip.Addr, dsts []netip.Addr, count int) ([]host.ProbeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var in strings.Builder
	fmt.Fprintf(&in, "%d\n%s\n", count, src)
	for _, d := range dsts {
		fmt.Fprintf(&in, "%s\n", d)
	}
	out, _, err := c.run(ctx, "ping (the pod-to-pod probe)", probeCommand, strings.NewReader(in.String()), probeLimit(len(dsts)), "the probes' statistics")
	if err != nil {
		return nil, err
	}
	return parseProbes(out, dsts)
}

// pingStats is the two lines iputils' and BusyBox's ping end with.
var pingStats = regexp.MustCompile(`(?m)^--- (\S+) ping statistics ---\n(\d+) packets transmitted, (\d+) (?:packets )?received`)

// parseProbes finds each destination's statistics in what the probes
// printed. A destination without them got no count: what the node said
// instead (ping missing, the source not its own) is its Err.
func parseProbes(out []byte, dsts []netip.Addr) ([]host.ProbeResult, error) {
	body, done := bytes.CutSuffix(out, []byte("--- routepush: probes done\n"))
	if !done {
		return nil, fmt.Errorf("the probes' output was cut short")
	}
	stats := map[netip.Addr][2]int{}
	for _, m := range pingStats.FindAllSubmatch(body, -1) {
		a, err := netip.ParseAddr(string(m[1]))
		if err != nil {
			continue
		}
		sent, _ := strconv.Atoi(string(m[2]))
		recv, _ := strconv.Atoi(string(m[3]))
		stats[a.Unmap()] = [2]int{sent, recv}
	}
	// What is not statistics: a ping's complaint (to its stderr), said
	// as the node said it, escaped.
	var said []string
	for _, line := range strings.Split(string(body), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "PING ") || strings.HasPrefix(line, "---") ||
			strings.Contains(line, "packets transmitted") || strings.HasPrefix(line, "rtt ") || strings.HasPrefix(line, "round-trip") {
			continue
		}
		said = append(said, line)
	}
	why := "ping printed no statistics"
	if len(said) > 0 {
		why += ": " + firstLine(said[0])
	}
	res := make([]host.ProbeResult, len(dsts))
	for i, d := range dsts {
		res[i].Dst = d
		if s, ok := stats[d]; ok {
			res[i].Sent, res[i].Received = s[0], s[1]
		} else {
			res[i].Err = safetext.Line(why)
		}
	}
	return res, nil
}
