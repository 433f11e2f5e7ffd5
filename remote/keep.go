package remote

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"github.com/routepush/routepush/host"
	"golang.org/x/crypto/ssh"
)

// A watcher reconciles the same nodes round after round, and a round of
// one route per node was mostly logins and process starts: on the lab's
// 200 nodes a join cost the nodes 15 CPU-s (each node a login, with its
// sshd's fork, re-exec and privilege separation, and two sftp-server
// starts besides the ip session); keeping the connections took that to
// 8.4 CPU-s, keeping their SFTP sessions too to 4.3; keeping the ip as
// well, on a machine where a process start costs more, from 7.5 to 2.0
// (bench/RESULTS.md).
//
// With Config.KeepConnections a Dialer keeps a node's connection open when
// its Client is closed, with the Client's SFTP session and its waiting
// ip (waiting.go), and the node's next Dial (its next round) gets a new
// Client on them: the login, the sftp-server start and the ip session
// and process are saved; every lock, record and file operation is each
// Client's own, as before. One-shot runs keep nothing: Close closes,
// as it always did.
//
// A kept connection is never trusted blindly:
//   - it ends as any connection does (keepalives cut a silent node off,
//     a reset or EOF closes it), and one that ended is dropped, not reused;
//   - a Client that gave up on a call (a command timeout, an SFTP call
//     abandoned) or saw a session or the connection fail returns nothing
//     to the cache: Close closes the connection;
//   - before it is reused it must answer a keepalive within a third of
//     the connect timeout (at most 2 s): one that answers with a reset (a
//     reboot) or not at all (a middlebox forgot it) is closed and the
//     node dialed anew;
//   - one kept longer than Config.KeepMaxAge is dialed anew: a login sees
//     what the node allows today (a revoked key, what a name resolves to);
//   - an SFTP session whose channel ended at rest is not reused;
//   - a node reached otherwise (its address, port, user, identity, jump
//     hosts or become changed) is dialed anew and its old connection
//     closed;
//   - one left unused for Config.KeepIdle (a node that left the cluster)
//     is closed, Dialer.Forget closes one at once, and Dialer.Close
//     closes them all;
//   - an ip that refused a batch line is not kept (it exits there), and
//     one that ended at rest is replaced at the next read, which sent it
//     nothing before it found that out.
//
// At rest, a kept connection holds on its node the sshd process of the
// connection, an sftp-server and an ip; on the watcher about 20 kB and
// nine goroutines (measured at 200 nodes with eight: the eighth reads the
// ip's stderr, the ninth answers its session's requests); its keepalives
// go every restingAliveInterval.

// keptConn is one node's kept connection.
type keptConn struct {
	target Target // as dialed
	conn   ssh.Conn
	files  keptFiles  // its SFTP session, while at rest
	ip     *pendingIP // its waiting ip, while at rest (waiting.go)
	// records is the node's run records as its last listing through this
	// connection counted them, plus those written through it since;
	// known once listed (records.go).
	records      int
	recordsKnown bool
	// runsChecked: a Lock through this connection found runs/ root's
	// alone (lock.go): only root can have changed it since.
	runsChecked bool
	bootID      string // the node's, once read through it (boot.go)
	// noSFTP: the node has no SFTP server, as found through it.
	noSFTP    *host.NoSFTPError
	bootKnown bool
	user      string
	source    netip.Addr
	timeout   time.Duration // the endpoint's connect timeout: bounds the check before reuse
	ended     chan struct{} // closed when the connection has ended (serve returned)
	inUse     bool          // a Client has it
	gone      bool          // Forget came while a Client had it: not kept after
	born      time.Time     // when it was kept first: it is not kept past maxAge
	idle      time.Time     // since when it is unused
	resting   atomic.Bool   // !inUse, for its keepalives (sparse at rest)
}

func (k *keptConn) alive() bool {
	select {
	case <-k.ended:
		return false
	default:
		return true
	}
}

// keptFiles is an SFTP session handed from a Client to the next on the
// same kept connection.
type keptFiles struct {
	sftp  *sftp.Client
	ch    ssh.Channel
	meter *meter
	ended <-chan struct{}
}

// alive reports whether the session's channel is still open.
func (f keptFiles) alive() bool {
	select {
	case <-f.ended:
		return false
	default:
		return true
	}
}

// keptConns are a Dialer's kept connections, one per node name.
type keptConns struct {
	mu     sync.Mutex
	m      map[string]*keptConn
	max    int
	idle   time.Duration
	maxAge time.Duration // a connection older than this is dialed anew
	closed bool
	swept  time.Time
}

// take returns the node's idle kept connection, in use from now on, if
// it is alive and reached as t says; nil if there is none. One reached
// otherwise, ended, or unused too long is closed and forgotten.
func (ks *keptConns) take(t Target) *keptConn {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.sweep()
	k := ks.m[t.Name]
	switch {
	case k == nil || k.inUse:
		return nil
	case k.target != t || !k.alive() || ks.maxAge > 0 && time.Since(k.born) > ks.maxAge:
		// Reached otherwise, ended, or old: a login now sees what the
		// node allows today (a revoked key, sshd's settings, what a name
		// resolves to), which a connection kept for ever never would.
		ks.forget(k)
		return nil
	}
	k.inUse = true
	k.resting.Store(false)
	return k
}

// add keeps a new connection for the node, in use; false when it is not
// kept (the Dialer keeps none, is closed, is full, or the node has one in
// use: a second Client at once, which closes its own).
func (ks *keptConns) add(k *keptConn) bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.max <= 0 || ks.closed {
		return false
	}
	if old := ks.m[k.target.Name]; old != nil {
		if old.inUse {
			return false
		}
		ks.forget(old)
	}
	if len(ks.m) >= ks.max {
		return false
	}
	if ks.m == nil {
		ks.m = map[string]*keptConn{}
	}
	k.inUse = true
	if k.born.IsZero() {
		k.born = time.Now()
	}
	ks.m[k.target.Name] = k
	return true
}

// put gives a connection back once its Client is done with it, with the
// Client's SFTP session and waiting ip if it has them; false if it is not
// kept after all (it ended, or the Dialer was closed), and the caller
// closes them.
func (ks *keptConns) put(k *keptConn, files keptFiles, ip *pendingIP) bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed || ks.m[k.target.Name] != k || !k.alive() || k.gone {
		if ks.m[k.target.Name] == k {
			delete(ks.m, k.target.Name)
		}
		return false
	}
	k.inUse, k.idle, k.files, k.ip = false, time.Now(), files, ip
	k.resting.Store(true)
	return true
}

// drop forgets a connection its Client closes.
func (ks *keptConns) drop(k *keptConn) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.m[k.target.Name] == k {
		delete(ks.m, k.target.Name)
	}
}

// forget forgets an idle connection and closes it; ks.mu is held. The
// close goes on beside: through a jump host it writes on the jump's
// connection, which may block until that one's keepalives give up, and
// every other node's Dial waits for ks.mu.
func (ks *keptConns) forget(k *keptConn) {
	delete(ks.m, k.target.Name)
	go k.close()
}

// close closes the connection and the SFTP session at rest on it (its
// waiting ip ends with the connection). The connection goes first (it
// closes the socket, waiting for nothing on the node); pkg/sftp's Close
// then returns, its reader ended with it.
func (k *keptConn) close() {
	k.conn.Close()
	k.ip = nil
	if s := k.files.sftp; s != nil {
		k.files = keptFiles{}
		go s.Close()
	}
}

// sweep closes the connections unused for longer than the idle limit: a
// node that left the cluster is not dialed again. At most once a second;
// ks.mu is held.
func (ks *keptConns) sweep() {
	now := time.Now()
	if ks.idle <= 0 || now.Sub(ks.swept) < time.Second {
		return
	}
	ks.swept = now
	for _, k := range ks.m {
		if !k.inUse && now.Sub(k.idle) > ks.idle {
			ks.forget(k)
		}
	}
}

// closeIdle closes every connection not in use, and with stop keeps none
// from now on (those in use close with their Client).
func (ks *keptConns) closeIdle(stop bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.closed = ks.closed || stop
	for _, k := range ks.m {
		if !k.inUse {
			ks.forget(k)
		}
	}
}

// Forget closes the node's kept connection, if it has one not in use: the
// node left the cluster.
func (d *Dialer) Forget(name string) {
	d.kept.mu.Lock()
	defer d.kept.mu.Unlock()
	switch k := d.kept.m[name]; {
	case k == nil:
	case k.inUse:
		k.gone = true // closed when its Client is done
	default:
		d.kept.forget(k)
	}
}

// CloseIdle closes every kept connection not in use (a watcher that lost
// its lease holds none while another writes); later Clients keep theirs
// again.
func (d *Dialer) CloseIdle() { d.kept.closeIdle(false) }

// reuse returns a Client on the node's kept connection if there is one
// that is alive and answers a keepalive within the connect timeout. A
// connection that fails the check is closed; one that did not answer in
// time makes the node unreachable, as a dial that timed out would.
func (d *Dialer) reuse(ctx context.Context, t Target) (*Client, error) {
	k := d.kept.take(t)
	if k == nil {
		return nil, nil
	}
	// A short check: a connection that does not answer is dialed anew (a
	// middlebox may have forgotten it while the node is fine), and the
	// dial then has the whole connect timeout.
	timeout := min(k.timeout/3, 2*time.Second) // the endpoint's is never 0
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		_, _, err := k.conn.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	var err error
	select {
	case err = <-answered:
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	if err == nil {
		c := d.client(t, k)
		if c.sftp != nil && !(keptFiles{ended: c.sftpEnded}).alive() {
			c.closeFiles() // sftp-server ended at rest: the next lock opens another
		}
		return c, nil
	}
	go k.close() // ends the request too
	d.kept.drop(k)
	if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%s: %w", t.Name, err) // the caller's context ended
	}
	return nil, nil // it ended (a reboot, a reset) or did not answer: dial anew
}

// release ends a Client's use of a kept connection: back to the cache,
// with its SFTP session and ip (nil if none), if the Client never gave up
// on a call or saw the connection fail; else forgotten, for the caller to
// close. It reports whether the connection stays open, ip with it.
func (c *Client) release(ip *pendingIP) bool {
	k := c.kept
	if k == nil {
		return false
	}
	c.kept = nil // a second Close must not hand the connection back again
	files := keptFiles{c.sftp, c.sftpCh, c.meter, c.sftpEnded}
	if ip != nil {
		ip.rest() // before another Client can take it
	}
	if !c.tainted.Load() && c.dialer.kept.put(k, files, ip) {
		c.sftp, c.sftpCh, c.meter, c.sftpEnded = nil, nil, nil, nil // the next Client's
		return true
	}
	c.dialer.kept.drop(k)
	return false
}
