package remote

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeConn answers keepalives (or not) and records Close.
type fakeConn struct {
	ssh.Conn
	silent bool
	sent   atomic.Int32
	closed chan struct{}
	once   atomic.Bool
}

func (f *fakeConn) SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error) {
	f.sent.Add(1)
	if name != "keepalive@openssh.com" || !wantReply {
		panic("unexpected request " + name)
	}
	select {
	case <-f.closed:
		return false, nil, errors.New("closed")
	default:
	}
	if f.silent {
		<-f.closed
		return false, nil, errors.New("closed")
	}
	return false, nil, nil // OpenSSH declines it: an answer all the same
}

func (f *fakeConn) Close() error {
	if f.once.CompareAndSwap(false, true) {
		close(f.closed)
	}
	return nil
}

func TestKeepaliveCutsSilentPeer(t *testing.T) {
	f := &fakeConn{silent: true, closed: make(chan struct{})}
	start := time.Now()
	done := make(chan struct{})
	go func() { keepalive(f, 20*time.Millisecond, 3, nil); close(done) }()
	select {
	case <-f.closed:
	case <-time.After(2 * time.Second):
		t.Fatal("a silent peer was never cut off")
	}
	// One interval before the first request, then three unanswered.
	if took := time.Since(start); took < 80*time.Millisecond || took > time.Second {
		t.Errorf("cut off after %v, want about 80ms", took)
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("keepalive goroutine still running after the cut")
	}
	if n := f.sent.Load(); n != 1 {
		t.Errorf("%d requests sent, want 1 (one outstanding at a time)", n)
	}
}

func TestKeepaliveKeepsLivePeerAndEndsWithIt(t *testing.T) {
	f := &fakeConn{closed: make(chan struct{})}
	done := make(chan struct{})
	go func() { keepalive(f, 5*time.Millisecond, 1, nil); close(done) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-f.closed:
		t.Fatal("a live peer was cut off")
	default:
	}
	if f.sent.Load() < 5 {
		t.Errorf("only %d keepalives in 100ms at 5ms", f.sent.Load())
	}
	f.Close()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("keepalive goroutine outlived its connection")
	}
}

// A kept connection at rest is probed every restingAliveInterval, not
// every interval; in use again, at every interval.
func TestKeepaliveSparseAtRest(t *testing.T) {
	f := &fakeConn{closed: make(chan struct{})}
	var resting atomic.Bool
	resting.Store(true)
	done := make(chan struct{})
	go func() { keepalive(f, 5*time.Millisecond, 1, &resting); close(done) }()
	time.Sleep(100 * time.Millisecond)
	if n := f.sent.Load(); n != 0 {
		t.Errorf("%d keepalives at rest in 100ms, want none before %v", n, restingAliveInterval)
	}
	resting.Store(false)
	time.Sleep(100 * time.Millisecond)
	if n := f.sent.Load(); n < 5 {
		t.Errorf("only %d keepalives in 100ms at 5ms once in use again", n)
	}
	f.Close()
	<-done
}

func TestAliveSettingsPrecedence(t *testing.T) {
	d := &Dialer{}
	if i, c := d.aliveSettings(HostConfig{}); i != 15*time.Second || c != 3 {
		t.Errorf("defaults %v × %d, want 15s × 3", i, c)
	}
	if i, c := d.aliveSettings(HostConfig{ServerAliveInterval: 5 * time.Second, ServerAliveCountMax: 2}); i != 5*time.Second || c != 2 {
		t.Errorf("ssh_config %v × %d, want 5s × 2", i, c)
	}
	d.cfg.ServerAliveInterval, d.cfg.ServerAliveCountMax = time.Second, 4
	if i, c := d.aliveSettings(HostConfig{ServerAliveInterval: 5 * time.Second, ServerAliveCountMax: 2}); i != time.Second || c != 4 {
		t.Errorf("command line %v × %d, want 1s × 4", i, c)
	}
}
