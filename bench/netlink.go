package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routepush/routepush/test/lab"
)

// podRange is where the lab's pod CIDRs are: the only routes followed.
var podRange = netip.MustParsePrefix("100.64.0.0/10")

// routeMonitor follows the pod routes of every lab node's main IPv4 table
// as the kernel announces them (rtnetlink's RTMGRP_IPV4_ROUTE group on a
// socket made in each node's namespace). It is the bench's own reader of
// the tables: a convergence is timed by the announcement that completed
// it, to the millisecond, with no process started and no polling, so it
// neither lags by a polling period nor takes CPU from what it measures.
type routeMonitor struct {
	mu      sync.Mutex
	tables  []map[netip.Prefix]netip.Addr // per node: pod CIDR -> next hop, proto 114 routes
	last    time.Time                     // when the last change came
	errs    []error
	changed chan struct{} // one pending signal at most
	files   []*os.File
	done    sync.WaitGroup
}

// monitorRoutes starts following every node's table: subscribed first,
// then dumped, so no change falls between the two.
func monitorRoutes(nodes []*lab.Node) (*routeMonitor, error) {
	m := &routeMonitor{changed: make(chan struct{}, 1)}
	for i, n := range nodes {
		fd, err := netlinkIn(n.NS, unix.RTMGRP_IPV4_ROUTE)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		f := os.NewFile(uintptr(fd), "rtnetlink "+n.Name) // non-blocking: read through the poller
		m.files = append(m.files, f)
		m.tables = append(m.tables, map[netip.Prefix]netip.Addr{})
		if err := dumpRequest(f); err != nil {
			m.close()
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		m.done.Add(1)
		go m.follow(i, f)
	}
	return m, nil
}

// netlinkIn opens an rtnetlink socket in a named namespace, subscribed to
// groups (RTMGRP_IPV4_ROUTE: IPv4 route changes; 0: none): made on an OS
// thread that joins the namespace and goes back (as lab.DialIn does), the
// socket stays in the namespace it was made in.
func netlinkIn(ns string, groups uint32) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		defer unix.Close(own)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err == nil {
			// Room for a full table's announcements at once (a joining
			// node gets one per other node in one batch).
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			if err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
				unix.Close(fd)
				fd = -1
			}
		}
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: stay locked, and the thread ends with this goroutine
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// dumpRequest asks for the whole IPv4 route table; the answer comes on the
// socket as RTM_NEWROUTE messages, among the announcements.
func dumpRequest(f *os.File) error {
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1)
	req[unix.SizeofNlMsghdr] = unix.AF_INET
	_, err := f.Write(req)
	return err
}

// follow reads node i's socket until it is closed. A socket that
// overflowed lost announcements: the table is read again from scratch.
func (m *routeMonitor) follow(i int, f *os.File) {
	defer m.done.Done()
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		if errors.Is(err, unix.ENOBUFS) {
			m.mu.Lock()
			clear(m.tables[i])
			m.mu.Unlock()
			if err := dumpRequest(f); err != nil {
				m.fail(err)
				return
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				m.fail(err)
			}
			return
		}
		m.apply(i, buf[:k], time.Now())
	}
}

func (m *routeMonitor) fail(err error) {
	m.mu.Lock()
	m.errs = append(m.errs, err)
	m.mu.Unlock()
	m.signal()
}

func (m *routeMonitor) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// apply takes the route messages of one datagram into node i's table.
func (m *routeMonitor) apply(i int, b []byte, at time.Time) {
	changed := false
	m.mu.Lock()
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			break
		}
		if typ == unix.RTM_NEWROUTE || typ == unix.RTM_DELROUTE {
			if dst, via, ok := parseRoute(b[unix.SizeofNlMsghdr:l]); ok {
				if typ == unix.RTM_NEWROUTE {
					m.tables[i][dst] = via
				} else {
					delete(m.tables[i], dst)
				}
				changed = true
			}
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	if changed {
		m.last = at
	}
	m.mu.Unlock()
	if changed {
		m.signal()
	}
}

// parseRoute reads an rtmsg: a main-table unicast route of protocol 114
// into the pod range, with one gateway (parseAnyPodRoute's "ours").
func parseRoute(b []byte) (dst netip.Prefix, via netip.Addr, ok bool) {
	r, ok := parseAnyPodRoute(b)
	if !ok || !r.ours {
		return dst, via, false
	}
	return r.dst, r.via, true
}

// wait waits until cond holds over the tables and returns when the change
// that made it hold came (the last change seen, so at worst a moment
// late; since if it held already), or fails past bound.
func (m *routeMonitor) wait(since time.Time, bound time.Duration, cond func(tables []map[netip.Prefix]netip.Addr) bool) (time.Time, error) {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		ok, last, err := cond(m.tables), m.last, errors.Join(m.errs...)
		m.mu.Unlock()
		switch {
		case err != nil:
			return time.Time{}, err
		case ok && last.Before(since):
			return since, nil
		case ok:
			return last, nil
		}
		select {
		case <-m.changed:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("not converged within %s", bound)
		}
	}
}

func (m *routeMonitor) close() {
	for _, f := range m.files {
		f.Close()
	}
	m.done.Wait()
}
