package lab

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// DialBastion opens a connection from inside the bastion's network
// namespace, as a program running on the bastion would: tests use it to
// reach servers that listen there (the test kube-apiserver) without routing
// the host's own namespace to the lab.
func (l *Lab) DialBastion(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialIn(ctx, l.Bastion, network, addr)
}

// DialIn dials from inside a named network namespace. The socket is made
// on an OS thread that joins the namespace and goes back to its own before
// the Go scheduler may run anything else on it. (That thread can be the
// process's main one, which `ip netns pids` would otherwise list as a
// process of the namespace, and the lab's teardown would kill.)
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("lab: own namespace: %w", err)}
			return
		}
		defer unix.Close(own)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("lab: namespace %s: %w", ns, err)}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("lab: entering namespace %s: %w", ns, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: stay locked, and the thread ends with this goroutine
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
