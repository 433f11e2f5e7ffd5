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
)

// probeScript pings, from the source address on the second line of
// stdin, every address on the lines after it, each count times (the
// first line), probeBatch at a time: a fixed string, run as
// `sh -c '...'` (it holds no single quote), whose stdin carries the
// addresses as data only. Each ping's output, its complaints included,
// is printed as one line (its lines joined by the shell, no process),
// after its address and exit status: one write, shorter than a pipe's
// atomic size, so that what a ping said stays with its address whatever
// the shell (bash's printf writes in pieces). A line after each batch
// ends the script by SIGPIPE once routepush has gone. ping runs as the
// login user, as ping is made to (it needs no root); -w bounds each.
var probeScript = `set -f
read -r count
read -r src
n=0
while read -r dst; do
	( out=$(ping -n -q -c "$count" -i 0.2 -w ` + probeDeadline + ` -I "$src" "$dst" 2>&1 </dev/null); s=$?; IFS="
"; set -- $out; IFS=" "; echo "` + probeHead + ` $dst $s $*" ) &
	n=$((n+1))
	[ $((n % ` + strconv.Itoa(probeBatch) + `)) -ne 0 ] || { wait; echo "` + probeBatched + `"; }
done
wait
echo "` + probesDone + `"
`

// Markers of probeScript's output.
const (
	probeHead    = "--- routepush: probe"
	probeBatched = "--- routepush: probes batched"
	probesDone   = "--- routepush: probes done"
)

// probeBatch is how many pings run at once on a node (--probe all on a
// large cluster is that many at a time, not every other node at once).
const probeBatch = 64

// probeCommand runs probeScript.
var probeCommand = "sh -c '" + probeScript + "'"

// probeDeadline is ping's -w: how long one probe may take, in seconds.
// It stops as soon as its count of replies came; a busy node (hundreds
// of pings starting at once on a lab's two cores) needs more than a
// round trip's time to see the first.
const probeDeadline = "5"

// probeTimeout bounds a whole probe on a node of n addresses: each batch
// of pings within its deadline, and the session around them.
func probeTimeout(n int) time.Duration {
	return 10*time.Second + time.Duration((n+probeBatch-1)/probeBatch)*6*time.Second
}

// probeLimit bounds what the probes print: a few lines each.
func probeLimit(n int) int64 { return 4<<10 + int64(n)*2<<10 }

// Probe pings dsts from src on the node (orchestrator.Host).
func (c *Client) Probe(ctx context.Context, src netip.Addr, dsts []netip.Addr, count int) ([]host.ProbeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout(len(dsts)))
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

// pingStats is how iputils' and BusyBox's ping end: the statistics of
// the address they pinged.
var pingStats = regexp.MustCompile(`--- (\S+) ping statistics --- (\d+) packets transmitted, (\d+) (?:packets )?received`)

// parseProbes finds each destination's line in what probeScript printed,
// and in it ping's statistics. A destination without them got no count:
// what its ping said instead (ping missing, the source not the node's)
// is its Err, escaped.
func parseProbes(out []byte, dsts []netip.Addr) ([]host.ProbeResult, error) {
	body, done := bytes.CutSuffix(out, []byte(probesDone+"\n"))
	if !done {
		return nil, fmt.Errorf("the probes' output was cut short")
	}
	said := map[netip.Addr][2]string{} // exit status, what it printed
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, probeHead+" ")
		if !ok {
			continue
		}
		f := strings.SplitN(rest, " ", 3)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		text := ""
		if len(f) == 3 {
			text = f[2]
		}
		said[a] = [2]string{f[1], text}
	}
	res := make([]host.ProbeResult, len(dsts))
	for i, d := range dsts {
		res[i].Dst = d
		s, ok := said[d]
		if !ok {
			res[i].Err = "no answer from its ping"
			continue
		}
		if m := pingStats.FindStringSubmatch(s[1]); m != nil {
			if a, err := netip.ParseAddr(m[1]); err != nil || a.Unmap() != d {
				res[i].Err = "ping printed another address's statistics: " + firstLine(m[1])
				continue
			}
			res[i].Sent, _ = strconv.Atoi(m[2])
			res[i].Received, _ = strconv.Atoi(m[3])
			continue
		}
		why := "ping exited " + firstLine(s[0]) + " without statistics"
		if text := strings.TrimSpace(s[1]); text != "" {
			why += ": " + firstLine(text)
		}
		res[i].Err = why
	}
	return res, nil
}
