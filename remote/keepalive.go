package remote

import (
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
func keepalive(conn ssh.Conn, interval time.Duration, count int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	dead := time.AfterFunc(time.Hour, func() { conn.Close() })
	dead.Stop()
	for range tick.C {
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
