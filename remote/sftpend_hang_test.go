package remote

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A node whose SFTP "server" answers the handshake with a bad packet and
// never answers the client's CHANNEL_CLOSE (a hostile sshd, which may
// well answer keepalives, so keepalive.go never cuts it off) is given up
// on within the command timeout and end's one second: sftpSession.end
// once read one time.After channel in two selects, so once the first had
// timed out the second waited for stderr's EOF, which never came, and the
// whole run with it. The connection is closed and tainted, not kept. The
// silent node is a proxy that stops passing client->server bytes once
// the server has replied to the subsystem request.
func TestSFTPEndBoundedOnSilentNode(t *testing.T) {
	t.Parallel()
	var freeze atomic.Bool
	addr := serveOneConn(t, "SSH-2.0-OpenSSH_9.2p1", func(ch ssh.Channel, chReqs <-chan *ssh.Request) {
		for req := range chReqs {
			_ = req.Reply(true, nil)
			freeze.Store(true) // from now on the server hears nothing
			time.Sleep(50 * time.Millisecond)
			// Not SSH_FXP_VERSION: pkg/sftp's handshake fails.
			_, _ = ch.Write([]byte{0, 0, 0, 5, 0xff, 0, 0, 0, 3})
		}
	})
	// client <-> proxy <-> server
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { pl.Close() })
	go func() {
		cc, err := pl.Accept()
		if err != nil {
			return
		}
		sc, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		go io.Copy(cc, sc)
		buf := make([]byte, 32<<10)
		for {
			n, err := cc.Read(buf)
			if err != nil {
				return
			}
			if !freeze.Load() {
				sc.Write(buf[:n])
			}
		}
	}()
	cl := &Client{name: "node-x", user: "root", conn: dialSSH(t, pl.Addr().String(), "node-x"), timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := cl.files(ctx); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("files() succeeded on a node whose SFTP handshake failed")
		}
		if !strings.Contains(err.Error(), "did not close the session") {
			t.Errorf("%v does not say the node left the session open", err)
		}
		if !cl.tainted.Load() {
			t.Errorf("the connection is not tainted: it would be kept for the next round")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("files() still blocked 15s after start (command timeout 2s, ctx 3s, end waits 1s)")
	}
}
