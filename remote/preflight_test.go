package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// preflightIP serves a read's session as a node with preflight on does:
// what forwardScript prints (prefix, then its marker on a line of its
// own), then an ip that answers show lines with an empty table, and
// netconf and address show with their JSON lines, or with netconfDies
// as ip does when its dump fails (an opened "[" and exit 1). It counts
// the sessions that ran it and remembers each session's stdin.
type preflightIP struct {
	prefix      string
	netconfDies bool
	sessions    atomic.Int32
	lines       chan []string
}

func (f *preflightIP) exec(cmd string, ch ssh.Channel) bool {
	if !strings.HasPrefix(cmd, "sh -c '") && !strings.HasPrefix(cmd, "ip ") {
		return false
	}
	f.sessions.Add(1)
	go func() {
		exit := func(code uint32) {
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
			ch.Close()
		}
		if strings.HasPrefix(cmd, "sh -c '") {
			fmt.Fprintf(ch, "%s\n%s\n", f.prefix, factsEnd)
		}
		var got []string
		defer func() { f.lines <- got }()
		in := bufio.NewScanner(ch)
		for n := 1; in.Scan(); n++ {
			line := in.Text()
			got = append(got, line)
			switch {
			case strings.HasPrefix(line, "route show"):
				_, _ = ch.Write([]byte("[]\n"))
			case line == "netconf show" && f.netconfDies:
				_, _ = ch.Write([]byte("["))
				fmt.Fprintf(ch.Stderr(), "Error: dump terminated\n")
				exit(1)
				return
			case line == "netconf show":
				_, _ = ch.Write([]byte(`[{"family":"inet","interface":"all","forwarding":false,"rp_filter":"off"}]` + "\n"))
			case line == "address show":
				_, _ = ch.Write([]byte(`[{"ifname":"lo","addr_info":[{"family":"inet","local":"100.64.0.1","prefixlen":32}]}]` + "\n"))
			case strings.Contains(line, "100.64.255.0/24"):
				fmt.Fprintf(ch.Stderr(), "RTNETLINK answers: File exists\nCommand failed -:%d\n", n)
				exit(1)
				return
			}
		}
		exit(0)
	}()
	return true
}

// With preflight, a node's read and apply still cost one session and one
// ip: the FORWARD chains come first in it, the settings and addresses as
// two lines after the show line, and a batch line ip refuses is named by
// its number in the batch, not in everything the ip read.
func TestPreflightReadsInTheReadsSession(t *testing.T) {
	s, cfg := startKeepSSHD(t, 0)
	f := &preflightIP{prefix: `{"nftables": [{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}}]}`, lines: make(chan []string, 4)}
	s.exec = f.exec
	cfg.Preflight, cfg.CommandTimeout = true, 2*time.Second
	d := keptDialer(t, cfg)
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	table, err := c.ReadRoutes(ctx, v4)
	if err != nil {
		t.Fatal(err)
	}
	fa := table.Facts
	if fa == nil || len(fa.Netconf) != 1 || fa.Netconf[0].Forwarding || len(fa.Addresses) != 1 || len(fa.Forward) != 1 || !fa.Forward[0].Drop || len(fa.Unread) != 0 {
		t.Fatalf("facts %+v", fa)
	}
	res, _ := c.Apply(ctx, []byte("route add 100.64.1.0/24 via 198.18.0.2\nroute add 100.64.255.0/24 via 198.18.0.2\n"), false, v4, &table.Digest)
	var ce *CommandError
	if !errors.As(res.BatchErr, &ce) || !strings.Contains(ce.Stderr, "Command failed -:2") { // the 6th line the ip read
		t.Errorf("the refused line: %v, want it named batch line 2", res.BatchErr)
	}
	if got := f.sessions.Load(); got != 1 {
		t.Errorf("%d sessions, want 1: the read's, which applied the batch", got)
	}
	lines := <-f.lines
	want := []string{"route show table main", "netconf show", "address show", "route show table main", "route add 100.64.1.0/24 via 198.18.0.2", "route add 100.64.255.0/24 via 198.18.0.2"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("the read's ip read\n%q\nwant\n%q", lines, want)
	}
}

// An ip that stops at netconf show (its dump fails after an opened "[")
// leaves the settings unread, not the node: its tables stand, it is not
// held, and the apply starts an ip of its own.
func TestPreflightIPStoppingAtNetconf(t *testing.T) {
	s, cfg := startKeepSSHD(t, 0)
	f := &preflightIP{prefix: "sh: 1: nft: not found\nv4\n-P FORWARD ACCEPT\nv6\n-P FORWARD ACCEPT", netconfDies: true, lines: make(chan []string, 4)}
	s.exec = f.exec
	cfg.Preflight, cfg.CommandTimeout = true, 2*time.Second
	for _, readOnly := range []bool{false, true} {
		cfg.ReadOnly = readOnly
		d := keptDialer(t, cfg)
		ctx := context.Background()
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		table, err := c.ReadRoutes(ctx, v4)
		if err != nil {
			t.Fatalf("read-only %v: %v", readOnly, err)
		}
		if fa := table.Facts; fa == nil || len(fa.Forward) != 2 || len(fa.Unread) != 1 || !strings.Contains(fa.Unread[0], "ip stopped at `netconf show`: Error: dump terminated") {
			t.Errorf("read-only %v: facts %+v", readOnly, fa)
		}
		if !readOnly {
			before := f.sessions.Load()
			res, err := c.Apply(ctx, []byte("route add 100.64.1.0/24 via 198.18.0.2\n"), false, v4, &table.Digest)
			if err != nil || res.BatchErr != nil {
				t.Errorf("apply after: %v %v", err, res.BatchErr)
			}
			if got := f.sessions.Load() - before; got != 1 {
				t.Errorf("apply started %d sessions, want its own ip's", got)
			}
		}
		c.Close()
		for len(f.lines) > 0 {
			<-f.lines
		}
	}
}
