package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/routepush/routepush/inventory"
)

// source is where the node table comes from: a shared informer on the
// selected Node objects and, when given, the inventory (re-read when the
// file, or a file in the group_vars/ or host_vars/ beside an Ansible
// inventory, changes and has stood still for a poll; never in between,
// so a file half written is not read). It tells of every change that may
// move a route on kick, and builds the table on demand.
type source struct {
	cfg    *Config
	lister listersv1.NodeLister // nil without the API
	kick   chan struct{}        // one pending signal at most

	mu     sync.Mutex
	oldest time.Time // when the oldest event not yet served came
	// fileChanged: the inventory changed since the last take, so how a
	// node is reached may have: nodes waiting out a backoff are worth
	// trying at once.
	fileChanged bool

	good map[string]*corev1.Node // the objects of the last table accepted
	// rejected are nodes whose entry other nodes cannot route to (an
	// InternalIP on no segment they are on), with that entry's routing:
	// held out like an invalid change until their object changes.
	rejected map[string]string
	// flaps are the recent routing changes of each node: one that
	// changes more than flapLimit times in flapWindow is held at its last
	// accepted entry until it has stood still for flapWindow, so that one
	// kubelet cannot keep every node in rounds.
	flaps       map[string][]time.Time
	flapTimer   *time.Timer
	lastFlapped string // the flapping nodes last logged

	file      *inventory.File  // the inventory's access, with the API
	fileNodes []inventory.Node // the inventory's table, alone
	paths     []string         // what the last read depended on (inventory.Sources)
	stamp     fileStamp        // their stamp before that read
	announced fileStamp        // the last change the poll announced
	// dirty: read the inventory again at the next table (a settled
	// change, or a recheck). Between, every table uses the last read.
	dirty   bool
	reads   int   // reads of the inventory so far
	fileErr error // the last read of the inventory, if it failed
}

// fileStamp is the modification time and size of every file an
// inventory read depends on (folders walked whole, hidden files and
// backups~ left out as the read leaves them), or that it is not there:
// equal stamps, nothing changed.
type fileStamp string

// stampOf stamps paths: files, and folders with all they hold.
func stampOf(paths []string) fileStamp {
	var b strings.Builder
	add := func(p string, fi os.FileInfo, err error) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(&b, "%s -\n", p)
		case err != nil:
			fmt.Fprintf(&b, "%s %v\n", p, err)
		case fi.IsDir():
			// Its entries are walked: its own time would change with a
			// file the read leaves out (an editor's swap file).
			fmt.Fprintf(&b, "%s dir\n", p)
		default:
			fmt.Fprintf(&b, "%s %d %d %v\n", p, fi.ModTime().UnixNano(), fi.Size(), fi.Mode())
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		add(p, fi, err)
		if err != nil || !fi.IsDir() {
			continue
		}
		_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if q == p {
				return nil
			}
			// What the read leaves out (hidden files, an editor's
			// swap files and backups~) changes nothing it returns.
			if name := filepath.Base(q); strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if err != nil {
				add(q, nil, err)
				return nil
			}
			fi, err := os.Stat(q) // through symlinks, as the read goes
			add(q, fi, err)
			return nil
		})
	}
	return fileStamp(b.String())
}

func newSource(cfg *Config) *source {
	return &source{cfg: cfg, kick: make(chan struct{}, 1)}
}

// start starts the informer and the inventory poll, and returns once the
// informer's initial list is in its store.
func (s *source) start(ctx context.Context) error {
	if s.cfg.Inventory != "" {
		s.readFile()
		if s.fileErr != nil {
			return s.fileErr
		}
		go s.pollFile(ctx)
	}
	c := s.cfg.Cluster
	if c == nil {
		return nil
	}
	if err := mayWatchNodes(ctx, c); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(c.WatchClient, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = c.Selector() }))
	nodes := factory.Core().V1().Nodes()
	inf := nodes.Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.event() },
		UpdateFunc: func(old, new any) {
			// Status updates (heartbeats, conditions) come every few
			// seconds from every kubelet: only addresses and pod CIDRs
			// move routes.
			o, ok1 := old.(*corev1.Node)
			n, ok2 := new.(*corev1.Node)
			if !ok1 || !ok2 || routing(o) != routing(n) {
				if ok2 {
					s.changed(n.Name)
				}
				s.event()
			}
		},
		DeleteFunc: func(any) { s.event() },
	}); err != nil {
		return fmt.Errorf("failed to watch nodes of kubernetes %s: %w", c.Name, err)
	}
	s.lister = nodes.Lister()
	factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("kubernetes %s: the nodes were not listed within %s", c.Name, syncTimeout)
	}
	s.take() // the initial list is the first sync's, not an event
	return nil
}

// mayWatchNodes asks the API whether this user may list and watch nodes.
// Without watch, an informer still lists, fails each watch, and lists
// again after a backoff: events come seconds late, and nothing says why
// but client-go's log. A server that will not answer the question (an
// old one, a proxy) is not held against the watcher.
func mayWatchNodes(ctx context.Context, c *inventory.Cluster) error {
	var denied []string
	for _, verb := range []string{"list", "watch"} {
		r, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "nodes"}},
		}, metav1.CreateOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		if !r.Status.Allowed {
			denied = append(denied, verb)
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("kubernetes %s: this user may not %s nodes: routepush watch needs get, list and watch on nodes (configs/rbac.yaml)", c.Name, strings.Join(denied, " or "))
	}
	return nil
}

// syncTimeout bounds the informer's first list: the watcher does
// nothing before it, and says so rather than wait for ever.
const syncTimeout = 2 * time.Minute

// routing is what of a Node object its routes depend on.
func routing(n *corev1.Node) string {
	var b strings.Builder
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			b.WriteString(a.Address + ",")
		}
	}
	b.WriteString(n.Spec.PodCIDR + ";" + strings.Join(n.Spec.PodCIDRs, ","))
	return b.String()
}

// event records a change and wakes the engine.
func (s *source) event() {
	s.mu.Lock()
	if s.oldest.IsZero() {
		s.oldest = time.Now()
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// take returns when the oldest event not yet served came and whether the
// inventory changed since, and forgets both.
func (s *source) take() (oldest time.Time, fileChanged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest, fileChanged = s.oldest, s.fileChanged
	s.oldest, s.fileChanged = time.Time{}, false
	return oldest, fileChanged
}

// pollFile marks the inventory to be read again when what a read of it
// depends on (the file, group_vars/, host_vars/) changed and has stood
// still for a poll.
func (s *source) pollFile(ctx context.Context) {
	every := s.cfg.FilePoll
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var seen fileStamp // a change is read once two polls agree on it
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.mu.Lock()
			paths := s.paths
			s.mu.Unlock()
			now := stampOf(paths)
			s.mu.Lock()
			fresh := s.stamp != now && s.announced != now
			s.mu.Unlock()
			// A file being written in place (or a git pull half done)
			// may parse when cut short: read once it all has stood
			// still for a poll.
			settled := now == seen
			seen = now
			if fresh && settled {
				s.cfg.logger().Info("inventory changed; reading it again", "file", s.cfg.Inventory)
				s.mu.Lock()
				s.announced = now
				s.fileChanged = true
				s.dirty = true
				s.mu.Unlock()
				s.event()
			}
		}
	}
}

// recheck reads the inventory again after d, whether or not it changed.
func (s *source) recheck(d time.Duration) {
	time.AfterFunc(d, func() {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		s.event()
	})
}

// readCount is how many times the inventory was read.
func (s *source) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// readFile reads the inventory: its SSH access (with the API) or its
// whole table (alone). A read that fails keeps the last good one, and
// says so in fileErr. The stamp is taken first: a change during the read
// is a change after it.
func (s *source) readFile() {
	paths := inventory.Sources(s.cfg.Inventory)
	stamp := stampOf(paths)
	s.mu.Lock()
	s.paths, s.stamp = paths, stamp
	s.reads++
	s.mu.Unlock()
	if s.cfg.Cluster == nil {
		f, err := inventory.LoadFile(s.cfg.Inventory, s.cfg.InventoryOptions)
		if err != nil {
			s.fileErr = err
			return
		}
		s.fileNodes, s.fileErr = f.Nodes, nil
		return
	}
	f, err := inventory.LoadAccessWith(s.cfg.Inventory, s.cfg.InventoryOptions)
	if err != nil {
		s.fileErr = err
		return
	}
	s.file, s.fileErr = f, nil
}

// table builds the node table as it stands, in name order, and names the
// nodes held out of it though their Node objects exist (quarantined: not
// departed, so nothing is pruned or forgotten for them).
//
// A table the validation refuses is not cut down by the validation's
// verdict alone: which of two conflicting nodes it names is a matter of
// sort order, and a hostile kubelet (a Node may write its own addresses)
// would pick its victim. Instead every node whose routing changed since
// the last table accepted (or that is new) is held at its last accepted
// object (or out, when new) while the others stay as they were. Only
// when that still fails (the first table, or an inventory change) are the
// nodes the validation names left out. Either way the log says who and
// why.
func (s *source) table(ctx context.Context) ([]inventory.Node, map[string]bool, error) {
	if s.cfg.Inventory != "" {
		// Read again only when the poll saw a change settle (or a
		// recheck is due): a Node event is no reason to, and a read
		// between two writes of a git pull would see half of it.
		s.mu.Lock()
		dirty := s.dirty
		s.dirty = false
		s.mu.Unlock()
		if dirty {
			s.readFile()
			if s.fileErr != nil && s.cfg.Cluster != nil && s.file != nil {
				s.cfg.logger().Warn("inventory unreadable; keeping the last good one", "err", s.fileErr)
			}
		}
		if s.fileErr != nil && (s.cfg.Cluster == nil || s.file == nil) {
			return nil, nil, s.fileErr
		}
	}
	if s.cfg.Cluster == nil {
		return slices.Clone(s.fileNodes), nil, nil
	}
	kns, err := s.lister.List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(kns, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	held := map[string]bool{}
	s.mu.Lock()
	flapping := s.flapping()
	if names := strings.Join(slices.Sorted(maps.Keys(flapping)), ","); names != s.lastFlapped {
		s.lastFlapped = names
		if names != "" {
			s.cfg.logger().Warn("Node objects changing their addresses or pod CIDRs too often: held at their last accepted entries until they stand still for a minute",
				"nodes", names, "limit", fmt.Sprintf("%d changes in %s", flapLimit, flapWindow))
		}
	}
	if len(flapping) > 0 {
		kns = slices.Clone(kns)
		kept := kns[:0]
		for _, kn := range kns {
			good, ok := s.good[kn.Name]
			switch {
			case !flapping[kn.Name] || ok && routing(good) == routing(kn):
				kept = append(kept, kn)
			case ok:
				held[kn.Name] = true
				kept = append(kept, good)
			default:
				held[kn.Name] = true
			}
		}
		kns = kept
	}
	if len(s.rejected) > 0 {
		kns = slices.Clone(kns)
		kept := kns[:0]
		for _, kn := range kns {
			r, ok := s.rejected[kn.Name]
			switch {
			case !ok:
				kept = append(kept, kn)
			case r != routing(kn):
				delete(s.rejected, kn.Name) // changed since: worth a try
				kept = append(kept, kn)
			default:
				held[kn.Name] = true
				if good, ok := s.good[kn.Name]; ok && routing(good) != r {
					kept = append(kept, good)
				}
			}
		}
		kns = kept
	}
	s.mu.Unlock()
	build := func(kns []*corev1.Node) ([]inventory.Node, error) {
		t, err := s.cfg.Cluster.TableOf(ctx, kns, s.file, s.cfg.AllowUnknown)
		if err != nil {
			return nil, err
		}
		if s.cfg.Check != nil {
			if err := s.cfg.Check(t.Nodes); err != nil {
				return nil, err
			}
		}
		return t.Nodes, nil
	}
	nodes, err := build(kns)
	var ve *inventory.ValidationError
	if !errors.As(err, &ve) {
		if err != nil {
			return nil, nil, err
		}
		s.accept(kns)
		return nodes, held, nil
	}
	if len(s.good) > 0 {
		var kept []*corev1.Node
		changed := map[string]bool{}
		for _, kn := range kns {
			good, ok := s.good[kn.Name]
			switch {
			case ok && routing(good) == routing(kn):
				kept = append(kept, kn)
			case ok:
				changed[kn.Name] = true
				kept = append(kept, good)
			default:
				changed[kn.Name] = true
			}
		}
		if nodes, err2 := build(kept); err2 == nil {
			maps.Copy(held, changed)
			s.cfg.logger().Warn("Node objects refused: held at their last accepted addresses and pod CIDRs (new ones left out) until they are fixed",
				"nodes", strings.Join(slices.Sorted(maps.Keys(held)), ","), "err", err)
			return nodes, held, nil
		}
	}
	for range 2 {
		bad := map[string]bool{}
		for _, e := range ve.Errs {
			var fe *inventory.FieldError
			if errors.As(e, &fe) && fe.Node != "" {
				bad[fe.Node] = true
			}
		}
		if len(bad) == 0 {
			return nil, nil, err
		}
		s.cfg.logger().Warn("nodes left out until their Node objects are fixed", "err", err)
		kns = slices.DeleteFunc(kns, func(n *corev1.Node) bool { return bad[n.Name] })
		maps.Copy(held, bad)
		nodes, err = build(kns)
		if !errors.As(err, &ve) {
			if err != nil {
				return nil, nil, err
			}
			return nodes, held, nil
		}
	}
	return nil, nil, errors.New("watch: node table still invalid after leaving out the nodes named")
}

// Flap damping: more than flapLimit routing changes of a node within
// flapWindow hold it at its last accepted entry until it stands still.
const (
	flapLimit  = 5
	flapWindow = time.Minute
)

// changed notes a routing change of node name, and when a flapping node
// will have stood still long enough, reads the table again then.
func (s *source) changed(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flaps == nil {
		s.flaps = map[string][]time.Time{}
	}
	now := time.Now()
	recent := slices.DeleteFunc(s.flaps[name], func(t time.Time) bool { return now.Sub(t) > flapWindow })
	s.flaps[name] = append(recent, now)
	if len(s.flaps[name]) > flapLimit {
		// Read the table again once it may be released: one timer,
		// pushed back by every change while some node flaps.
		if s.flapTimer == nil {
			s.flapTimer = time.AfterFunc(flapWindow+time.Second, s.event)
		} else {
			s.flapTimer.Reset(flapWindow + time.Second)
		}
	}
}

// flapping names the nodes past the flap limit now, and forgets the
// changes older than the window; s.mu is held.
func (s *source) flapping() map[string]bool {
	now := time.Now()
	var out map[string]bool
	for name, ts := range s.flaps {
		ts = slices.DeleteFunc(ts, func(t time.Time) bool { return now.Sub(t) > flapWindow })
		if len(ts) == 0 {
			delete(s.flaps, name)
			continue
		}
		s.flaps[name] = ts
		if len(ts) > flapLimit {
			if out == nil {
				out = map[string]bool{}
			}
			out[name] = true
		}
	}
	return out
}

// reject holds out the nodes named, as their objects are now, until their
// objects change (or forgive): other nodes cannot route to them.
func (s *source) reject(names []string) {
	if s.lister == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rejected == nil {
		s.rejected = map[string]string{}
	}
	for _, n := range names {
		if kn, err := s.lister.Get(n); err == nil {
			s.rejected[n] = routing(kn)
		}
	}
}

// forgive lets every rejected node be tried again (a resync).
func (s *source) forgive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.rejected)
}

// accept remembers the Node objects of a table that validated: the last
// good state of each (informer objects are never changed in place).
func (s *source) accept(kns []*corev1.Node) {
	s.good = make(map[string]*corev1.Node, len(kns))
	for _, kn := range kns {
		s.good[kn.Name] = kn
	}
}
