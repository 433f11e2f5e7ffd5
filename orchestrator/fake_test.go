package orchestrator

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/persist"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/route"
)

// fakeKernel is an in-memory routing table that understands the batch lines
// routepush writes, enough to test run, verify and rollback logic. Its
// table is its own model (fakekernel_test.go), not package route's.
type fakeKernel struct {
	mu      sync.Mutex
	name    string
	routes  []kroute
	failDst string // a "route replace" of this destination fails like the kernel would
	applied int    // batches received
	closed  int    // Close calls
	// filesClosed counts CloseFilesUntilNeeded calls, closedAt the states
	// of the node's records at each; closeErr is what they return.
	filesClosed int
	closedAt    []string
	closeErr    error
	lock        []byte // the node's lock, as a Journal keeps it
	// unlocked is what the last read said of the lock (Unlocked);
	// cannotLook: reads never look (become).
	unlocked, cannotLook bool
	locks                int               // Lock calls
	runs                 map[string][]byte // run records by id
	// unsynced counts the record writes and appends that were not
	// durable, synced the ones that were.
	unsynced, synced int
	boot             string // its boot id
	bootErr          error  // what reading it fails with
	// What --persist installs: the routes file (nil: none), whether the
	// node runs systemd, and a write that fails.
	persisted     []byte
	previous      []byte // what the last WritePersisted replaced, as routes.previous
	systemd       bool
	networkd      bool // systemd-networkd manages foreign routes
	failPersist   bool
	persistWrites int
	source        netip.Addr    // where the node sees routepush's session come from
	failAppend    bool          // AppendRun fails: the node's disk is full
	failUnlock    bool          // Unlock fails: the node went silent at the end
	slowUnlock    time.Duration // Unlock takes this long, unless its context ends first
	// lostApplies is how many batches, from the (lostAfter+1)th on, fail
	// before anything is sent: a connection that died while kept open.
	lostApplies, lostAfter int
	connects               int // connections handed out
	// beforeApply, when set, runs as a batch arrives, before anything is
	// compared: someone else changing the table between read and batch.
	beforeApply func(k *fakeKernel)
	// beforeLock runs as a Lock arrives (outside k.mu): someone else
	// between the read and the lock. failReadOn fails that ReadRoutes
	// call (1-based); reads counts them.
	beforeLock        func(k *fakeKernel)
	failReadOn, reads int
	// noSFTP: the node has no SFTP server: every file operation (lock,
	// records, boot id, routes file) fails with a *host.NoSFTPError;
	// fileOps counts them all the same.
	noSFTP  bool
	fileOps int
	// loseSFTPAfter > 0: the node's SFTP server goes after that many
	// file operations; every later one fails as noSFTP's do.
	loseSFTPAfter int
	// facts is what its reads find about how it forwards; unanswered
	// are the addresses its probes get no reply from; probes counts the
	// Probe calls, probeErr what each fails with.
	facts      *route.Facts
	unanswered map[netip.Addr]bool
	probes     int
	probeErr   error
	// onProbe, when set, runs as a probe arrives (an interrupt then);
	// lockedAtProbe says the node's lock was held when it did.
	onProbe       func()
	lockedAtProbe bool
}

func (k *fakeKernel) Probe(_ context.Context, src netip.Addr, dsts []netip.Addr, count int) ([]host.ProbeResult, error) {
	if k.onProbe != nil {
		k.onProbe()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.probes++
	k.lockedAtProbe = k.lock != nil
	if k.probeErr != nil {
		return nil, k.probeErr
	}
	out := make([]host.ProbeResult, len(dsts))
	for i, d := range dsts {
		out[i] = host.ProbeResult{Dst: d, Sent: count, Received: count}
		if k.unanswered[d] {
			out[i].Received = 0
		}
	}
	return out, nil
}

// files is what a file operation meets first: the node's missing SFTP
// server, if it has none.
func (k *fakeKernel) files() error {
	k.fileOps++
	if k.loseSFTPAfter > 0 && k.fileOps > k.loseSFTPAfter {
		k.noSFTP = true
	}
	if k.noSFTP {
		return &host.NoSFTPError{Host: k.name, Why: "Dropbear runs /usr/lib/sftp-server: not found, exit status 127", Fix: "install openssh-sftp-server"}
	}
	return nil
}

func (k *fakeKernel) ReadPersisted(context.Context) (persist.State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return persist.State{}, err
	}
	return persist.State{Path: "/etc/routepush/routes", Exists: k.persisted != nil, Routes: slices.Clone(k.persisted),
		UnitCurrent: k.persisted != nil, UnitEnabled: k.persisted != nil && k.systemd, Systemd: k.systemd, ForeignRoutesManaged: k.networkd}, nil
}

func (k *fakeKernel) WritePersisted(_ context.Context, routes []byte, _ persist.State) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	if k.failPersist {
		return fmt.Errorf("%s: write /etc/routepush/routes: disk full", k.name)
	}
	k.previous = k.persisted
	k.persisted = slices.Clone(routes)
	k.persistWrites++
	return nil
}

func (k *fakeKernel) UndoPersisted(_ context.Context, found persist.State) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	k.persisted = nil
	if found.Exists {
		k.persisted = k.previous
	}
	return nil
}

func (k *fakeKernel) RestorePersisted(_ context.Context, prev persist.State) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	k.persisted = nil
	if prev.Exists {
		k.persisted = slices.Clone(prev.Routes)
	}
	return nil
}

func (k *fakeKernel) Lock(_ context.Context, holder []byte) error {
	if k.beforeLock != nil {
		k.beforeLock(k)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	k.locks++
	if k.lock != nil {
		return &host.LockedError{Host: k.name, Holder: k.lock}
	}
	k.lock = slices.Clone(holder)
	return nil
}

func (k *fakeKernel) Unlock(ctx context.Context, holder []byte) error {
	if k.slowUnlock > 0 {
		select {
		case <-time.After(k.slowUnlock):
		case <-ctx.Done():
			return fmt.Errorf("%s: unlock: %w", k.name, ctx.Err())
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	if k.failUnlock {
		return fmt.Errorf("%s: unlock: connection lost", k.name)
	}
	if string(k.lock) == string(holder) {
		k.lock = nil
	}
	return nil
}

func (k *fakeKernel) BootID(context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return "", err
	}
	if k.bootErr != nil {
		return "", k.bootErr
	}
	return k.boot, nil
}

func (k *fakeKernel) countSync(durable bool) {
	if durable {
		k.synced++
	} else {
		k.unsynced++
	}
}

func (k *fakeKernel) SessionSource() netip.Addr { return k.source }

func (k *fakeKernel) Unlocked() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.unlocked
}

func (k *fakeKernel) WriteRun(_ context.Context, id string, record []byte, _ int, _ func([]byte) bool, durable bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	k.countSync(durable)
	if k.runs == nil {
		k.runs = map[string][]byte{}
	}
	k.runs[id] = slices.Clone(record)
	return nil
}

func (k *fakeKernel) AppendRun(_ context.Context, id string, line []byte, durable bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return err
	}
	k.countSync(durable)
	if k.failAppend {
		return fmt.Errorf("%s: append to /var/lib/routepush/runs/%s.json: no space left on device", k.name, id)
	}
	if _, ok := k.runs[id]; !ok {
		return fmt.Errorf("%s: no record of run %s", k.name, id)
	}
	k.runs[id] = append(k.runs[id], line...)
	return nil
}

func (k *fakeKernel) digest() [32]byte { return fakeDigest(k.routes) }

func (k *fakeKernel) ReadRoutes(_ context.Context, _ []route.Family) (route.Table, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	if k.failReadOn > 0 && k.reads == k.failReadOn {
		return route.Table{}, fmt.Errorf("%s: read: connection lost", k.name)
	}
	k.unlocked = k.lock == nil && !k.cannotLook
	t := route.Table{Routes: make([]route.Route, len(k.routes)), Digest: k.digest(), Facts: k.facts}
	for i := range k.routes {
		t.Routes[i] = k.routes[i].routeValue()
	}
	return t, nil
}

// seed adds routes given as `ip route show` lines, as if someone else had
// added them; the caller holds no lock or owns the kernel.
func (k *fakeKernel) seed(t testing.TB, text string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		l, err := parseKLine(line)
		if err != nil {
			t.Fatalf("seed %q: %v", line, err)
		}
		k.routes = append(k.routes, l.kroute)
	}
}

type fakeCommandError struct{ stderr string }

func (e *fakeCommandError) Error() string      { return "ip -batch: " + strings.TrimSpace(e.stderr) }
func (e *fakeCommandError) StderrText() string { return e.stderr }

func (k *fakeKernel) Apply(ctx context.Context, batch []byte, force bool, fams []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	if k.beforeApply != nil {
		k.beforeApply(k)
	}
	k.mu.Lock()
	lost := k.lostApplies > 0 && k.applied >= k.lostAfter
	if lost {
		k.lostApplies--
	}
	k.mu.Unlock()
	if lost {
		return host.ApplyResult{}, &host.NotSentError{Err: fmt.Errorf("%s: ip -batch: connection lost", k.name)}
	}
	if expect != nil {
		if now, _ := k.ReadRoutes(ctx, fams); now.Digest != *expect {
			return host.ApplyResult{}, &host.ChangedError{Host: k.name, Table: now}
		}
	}
	line, batchErr := k.apply(batch, force)
	t, err := k.ReadRoutes(ctx, fams)
	return host.ApplyResult{Table: t, BatchErr: batchErr, FailedLine: line}, err
}

// apply runs a batch as ip -batch does; it returns the first failing
// line's number and its error.
func (k *fakeKernel) apply(batch []byte, force bool) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applied++
	var firstErr error
	firstLine := 0
	for n, line := range strings.Split(strings.TrimSpace(string(batch)), "\n") {
		var err error
		switch {
		case strings.HasPrefix(line, "route replace "):
			err = k.replace(strings.TrimPrefix(line, "route replace "))
		case strings.HasPrefix(line, "route add "):
			err = k.add(strings.TrimPrefix(line, "route add "))
		case strings.HasPrefix(line, "route del "):
			err = k.del(strings.TrimPrefix(line, "route del "))
		default:
			err = fmt.Errorf("unknown command")
		}
		if err != nil {
			err = &fakeCommandError{fmt.Sprintf("Error: %v.\nCommand failed -:%d\n", err, n+1)}
			if !force {
				return n + 1, err
			}
			if firstErr == nil {
				firstErr, firstLine = err, n+1
			}
		}
	}
	return firstLine, firstErr
}

// replace is `ip route replace`: add the route, or overwrite the one with
// its key.
func (k *fakeKernel) replace(spec string) error {
	l, err := parseKLine(spec)
	if err != nil {
		return err
	}
	if l.dst.String() == k.failDst {
		return fmt.Errorf("Nexthop has invalid gateway")
	}
	for i := range k.routes {
		if k.routes[i].sameKey(&l.kroute) {
			k.routes[i] = l.kroute
			return nil
		}
	}
	k.routes = append(k.routes, l.kroute)
	return nil
}

// add is `ip route add`: it fails if a route with the same key exists.
func (k *fakeKernel) add(spec string) error {
	l, err := parseKLine(spec)
	if err != nil {
		return err
	}
	for i := range k.routes {
		if k.routes[i].sameKey(&l.kroute) {
			return fmt.Errorf("File exists")
		}
	}
	return k.replace(spec)
}

// del is `ip route del`: it deletes the first route the line names.
func (k *fakeKernel) del(spec string) error {
	l, err := parseKLine(spec)
	if err != nil {
		return err
	}
	for i := range k.routes {
		if l.matches(&k.routes[i]) {
			k.routes = slices.Delete(k.routes, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("No such process")
}

func (k *fakeKernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed++
	return nil
}

// fakeCluster hands out one fakeKernel per node; unreachable nodes fail to
// connect.
type fakeCluster struct {
	kernels     map[string]*fakeKernel
	unreachable map[string]bool
}

func newFakeCluster(nodes []inventory.Node) *fakeCluster {
	c := &fakeCluster{kernels: map[string]*fakeKernel{}, unreachable: map[string]bool{}}
	for _, n := range nodes {
		// Every node starts with its link's connected route, as in the lab.
		link, err := parseKLine(fmt.Sprintf("unicast 198.18.0.0/16 dev eth0 proto kernel scope link src %s", n.InternalIPs[0]))
		if err != nil {
			panic(err)
		}
		c.kernels[n.Name] = &fakeKernel{name: n.Name, routes: []kroute{link.kroute}}
	}
	return c
}

func (c *fakeCluster) connect(_ context.Context, n *inventory.Node) (Host, error) {
	if c.unreachable[n.Name] {
		return nil, fmt.Errorf("%s: dial tcp %s:22: connect: no route to host", n.Name, n.Address)
	}
	k := c.kernels[n.Name]
	k.mu.Lock()
	k.connects++
	k.mu.Unlock()
	return k, nil
}

func (c *fakeCluster) digests() map[string][32]byte {
	m := map[string][32]byte{}
	for name, k := range c.kernels {
		m[name] = k.digest()
	}
	return m
}

func (k *fakeKernel) CloseFilesUntilNeeded() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.filesClosed++
	k.closedAt = append(k.closedAt, k.statesLocked())
	return k.closeErr
}

// statesLocked lists the states of the node's records, oldest run first
// (k.mu held).
func (k *fakeKernel) statesLocked() string {
	var got []string
	for _, id := range slices.Sorted(maps.Keys(k.runs)) {
		for _, s := range regexp.MustCompile(`"state":"([a-z-]+)"`).FindAllStringSubmatch(string(k.runs[id]), -1) {
			got = append(got, s[1])
		}
	}
	return strings.Join(got, " ")
}

func (k *fakeKernel) Runs(context.Context) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return nil, err
	}
	var ids []string
	for id := range k.runs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (k *fakeKernel) ReadRun(_ context.Context, id string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return nil, err
	}
	b, ok := k.runs[id]
	if !ok {
		return nil, fmt.Errorf("%s: run %s: %w", k.name, id, fs.ErrNotExist)
	}
	return slices.Clone(b), nil
}

func (k *fakeKernel) HeldLock(context.Context) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.files(); err != nil {
		return nil, err
	}
	return slices.Clone(k.lock), nil
}

func (c *fakeCluster) restoreConnect(_ context.Context, n *inventory.Node) (RestoreHost, error) {
	if c.unreachable[n.Name] {
		return nil, fmt.Errorf("%s: dial tcp %s:22: connect: no route to host", n.Name, n.Address)
	}
	return c.kernels[n.Name], nil
}
