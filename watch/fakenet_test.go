package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/persist"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/route"
)

// fakeNode is a node's routing table and lock, enough for the engine.
type fakeNode struct {
	mu     sync.Mutex
	name   string
	routes []route.Route
	lock   []byte
	runs   map[string][]byte
	// hold, when set, is waited on inside Apply (a batch on its way).
	hold    chan struct{}
	applied int
}

type fakeNet struct {
	mu    sync.Mutex
	nodes map[string]*fakeNode
}

func newFakeNet(n int) *fakeNet {
	f := &fakeNet{nodes: map[string]*fakeNode{}}
	for i := range n {
		f.add(i)
	}
	return f
}

func (f *fakeNet) add(i int) *fakeNode {
	name := fmt.Sprintf("node-%02d", i)
	link, err := route.ParseText([]byte(fmt.Sprintf("198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.0.%d\n", 10+i)), route.IPv4)
	if err != nil {
		panic(err)
	}
	k := &fakeNode{name: name, routes: link, runs: map[string][]byte{}}
	f.mu.Lock()
	f.nodes[name] = k
	f.mu.Unlock()
	return k
}

func (f *fakeNet) node(name string) *fakeNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[name]
}

func (f *fakeNet) connect(_ context.Context, n *inventory.Node) (orchestrator.Host, error) {
	k := f.node(n.Name)
	if k == nil {
		return nil, &host.UnreachableError{Err: errors.New(n.Name + ": no route to host")}
	}
	return k, nil
}

// dsts lists the destinations of routepush's routes (proto 114... any
// non-kernel) on the node.
func (k *fakeNode) dsts() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var s []string
	for _, r := range k.routes {
		if r.Protocol != 2 {
			s = append(s, r.Dst.String()+" via "+r.Gateway.String())
		}
	}
	slices.Sort(s)
	return s
}

func (k *fakeNode) table() route.Table {
	h := sha256.New()
	for _, r := range k.routes {
		fmt.Fprintf(h, "%+v\n", r)
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return route.Table{Routes: slices.Clone(k.routes), Digest: d}
}

func (k *fakeNode) ReadRoutes(context.Context, []route.Family) (route.Table, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.table(), nil
}

func (k *fakeNode) Apply(_ context.Context, batch []byte, _ bool, _ []route.Family, expect *[32]byte) (host.ApplyResult, error) {
	if k.hold != nil {
		<-k.hold
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applied++
	if expect != nil && k.table().Digest != *expect {
		return host.ApplyResult{}, &host.ChangedError{Host: k.name, Table: k.table()}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(batch)), "\n") {
		verb, spec, _ := strings.Cut(strings.TrimPrefix(line, "route "), " ")
		r, err := route.ParseSpec(spec, route.IPv4)
		if err != nil {
			return host.ApplyResult{}, fmt.Errorf("%s: %q: %w", k.name, line, err)
		}
		k.routes = slices.DeleteFunc(k.routes, func(x route.Route) bool { return x.Dst == r.Dst && x.Protocol != 2 })
		if verb != "del" {
			k.routes = append(k.routes, r)
		}
	}
	return host.ApplyResult{Table: k.table()}, nil
}

func (k *fakeNode) SessionSource() netip.Addr { return netip.Addr{} }

// Unlocked: the fake's reads never look for a lock.
func (k *fakeNode) Unlocked() bool { return false }
func (k *fakeNode) Probe(context.Context, netip.Addr, []netip.Addr, int) ([]host.ProbeResult, error) {
	return nil, fmt.Errorf("%s: watch does not probe", k.name)
}
func (k *fakeNode) Close() error { return nil }
func (k *fakeNode) Lock(_ context.Context, holder []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lock != nil {
		return &host.LockedError{Host: k.name, Holder: k.lock}
	}
	k.lock = slices.Clone(holder)
	return nil
}
func (k *fakeNode) Unlock(_ context.Context, holder []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if string(k.lock) == string(holder) {
		k.lock = nil
	}
	return nil
}
func (k *fakeNode) WriteRun(_ context.Context, id string, rec []byte, _ int, _ func([]byte) bool, _ bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.runs[id] = slices.Clone(rec)
	return nil
}
func (k *fakeNode) AppendRun(_ context.Context, id string, line []byte, _ bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.runs[id] = append(k.runs[id], line...)
	return nil
}
func (k *fakeNode) BootID(context.Context) (string, error) { return "", nil }
func (k *fakeNode) CloseFilesUntilNeeded() error           { return nil }
func (k *fakeNode) ReadPersisted(context.Context) (persist.State, error) {
	return persist.State{}, nil
}
func (k *fakeNode) WritePersisted(context.Context, []byte, persist.State) error { return nil }
func (k *fakeNode) UndoPersisted(context.Context, persist.State) error          { return nil }
func (k *fakeNode) RestorePersisted(context.Context, persist.State) error       { return nil }
