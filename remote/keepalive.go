package remote

import (
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Keepalive defaults, OpenSSH's ServerAliveInterval and ServerAliveCountMax
// when ssh_config and the command line say nothing: a peer that stops
// answering is declared dead within interval × (count+1), 60 s.
const (
	defaultAliveInterval = 15 * time.Second
	defaultAliveCount    = 3
)

// restingAliveInterval spaces the keepalives of a kept connection at
// rest: often enough to keep NAT and load balancer state (Azure's idle
// timeout is 4 minutes by default, AWS's NAT gateway's 350 s), rarely
// enough that a watcher's hundreds of idle connections cost next to no
// CPU (at 15 s, 200 of them took 0.6 % of a core on the lab).
const restingAliveInterval = 2 * time.Minute

// keepalive sends `keepalive@openssh.com` with want-reply on conn every
// interval, as OpenSSH's ServerAliveInterval does; any answer (OpenSSH
// declines it) proves the peer alive. When count requests' worth of time
// (interval × count) passes with a request unanswered, it closes conn:
// every session, read, write, SFTP call and channel open waiting on the
// peer then returns. Run it as the connection's one goroutine; it ends
// when conn does (a request fails at once on a closed connection). The
// bound per request is a runtime timer, not another goroutine.
//
// A silent peer is thus cut off at most interval × (count+1) after it
// last answered: up to one interval before the next request, then count
// intervals unanswered.
//
// While resting is set (a kept connection no Client uses, keep.go), a
// request goes at most every restingAliveInterval: nothing waits on the
// node then, and the check before the connection is used again finds a
// peer that went silent meanwhile.
func keepalive(conn ssh.Conn, interval time.Duration, count int, resting *atomic.Bool) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	dead := time.AfterFunc(time.Hour, func() { conn.Close() })
	dead.Stop()
	last := time.Now()
	for now := range tick.C {
		if resting != nil && resting.Load() && now.Sub(last) < restingAliveInterval {
			continue
		}
		last = now
		dead.Reset(interval * time.Duration(count))
		_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
		if !dead.Stop() || err != nil {
			// Timed out (the timer closed the connection) or the
			// connection is closed: nothing more to keep alive.
			conn.Close()
			return
		}
	}
}

// aliveSettings returns the keepalive interval and count for a host: the
// command line (Config), then ssh_config, then the defaults. Zero or
// negative values count as unset, so keepalives are never off: they are
// what bounds every wait on a node that went silent.
func (d *Dialer) aliveSettings(hc HostConfig) (time.Duration, int) {
	interval, count := d.cfg.ServerAliveInterval, d.cfg.ServerAliveCountMax
	if interval <= 0 {
		interval = hc.ServerAliveInterval
	}
	if interval <= 0 {
		interval = defaultAliveInterval
	}
	if count <= 0 {
		count = hc.ServerAliveCountMax
	}
	if count <= 0 {
		count = defaultAliveCount
	}
	return interval, count
}
