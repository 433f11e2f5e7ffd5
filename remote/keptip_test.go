package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/route"
)

// fakeIP is an `ip -json -batch -` for keepSSHD: it reads lines, prints
// the table (one JSON line) for each show line, adds and deletes
// destinations, and, as ip without -force, stops at a failing line
// (any line naming 100.64.255.0/24) with its message and exit status 1.
type fakeIP struct {
	// wrapped: as ip behind a wrapper that holds the session open until
	// its input ends, a failing line ends nothing before that.
	wrapped bool
	// warn is written to stderr as the process starts, as sudo's "unable
	// to resolve host" or ld.so's warnings are, before a healthy ip runs.
	warn string
	mu   sync.Mutex
	dsts []string
	// linkNames are the node's interfaces' names, index 1 first (default
	// lo, eth0).
	linkNames []string
	starts    int
	running   []ssh.Channel
}

// linkLine is what `ip -json link show` prints for the node's links.
func (f *fakeIP) linkLine() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := f.linkNames
	if names == nil {
		names = []string{"lo", "eth0"}
	}
	objs := make([]string, len(names))
	for i, n := range names {
		objs[i] = fmt.Sprintf(`{"ifindex":%d,"ifname":%q,"flags":["UP"],"mtu":1500}`, i+1, n)
	}
	return "[" + strings.Join(objs, ",") + "]\n"
}

func (f *fakeIP) table() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	objs := make([]string, len(f.dsts))
	for i, d := range f.dsts {
		objs[i] = fmt.Sprintf(`{"type":"unicast","dst":%q,"gateway":"198.18.0.2","dev":"eth0","protocol":"186","scope":"global","flags":[]}`, d)
	}
	return "[" + strings.Join(objs, ",") + "]\n"
}

// serve runs one ip on a session channel; with force (ip -force) it
// carries on past a failing line and exits 1 at the end.
func (f *fakeIP) serve(ch ssh.Channel, force bool) {
	f.mu.Lock()
	f.starts++
	f.running = append(f.running, ch)
	f.mu.Unlock()
	exit := func(code uint32) {
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
		ch.Close()
	}
	if f.warn != "" {
		_, _ = ch.Stderr().Write([]byte(f.warn))
	}
	failed := false
	in := bufio.NewScanner(ch)
	for n := 1; in.Scan(); n++ {
		line := in.Text()
		fields := strings.Fields(line)
		switch {
		case line == "route show table main":
			_, _ = ch.Write([]byte(f.table()))
		case line == "link show":
			_, _ = ch.Write([]byte(f.linkLine()))
		case strings.Contains(line, "100.64.255.0/24"):
			fmt.Fprintf(ch.Stderr(), "RTNETLINK answers: File exists\nCommand failed -:%d\n", n)
			if force {
				failed = true
				continue
			}
			for f.wrapped && in.Scan() {
			}
			exit(1)
			return
		case len(fields) >= 3 && fields[0] == "route" && fields[1] == "add":
			f.mu.Lock()
			f.dsts = append(f.dsts, fields[2])
			f.mu.Unlock()
		case len(fields) >= 3 && fields[0] == "route" && fields[1] == "del":
			f.mu.Lock()
			f.dsts = slices.DeleteFunc(f.dsts, func(d string) bool { return d == fields[2] })
			f.mu.Unlock()
		}
	}
	if failed {
		exit(1)
		return
	}
	exit(0)
}

// kill ends every ip running, as a node's admin killing them would.
func (f *fakeIP) kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.running {
		_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: "TERM"}))
		ch.Close()
	}
	f.running = nil
}

func (f *fakeIP) startCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts
}

var v4 = []route.Family{route.IPv4}

// keptDialer is a Dialer for cfg, closed when the test ends.
func keptDialer(t *testing.T, cfg Config) *Dialer {
	t.Helper()
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// ipRound is a watcher's round on a node: read, and apply batch (if any)
// with the read's digest as expect; the Client is closed after.
func ipRound(t *testing.T, d *Dialer, tg Target, batch string) (host.ApplyResult, error) {
	t.Helper()
	ctx := context.Background()
	c, err := d.Dial(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	table, err := c.ReadRoutes(ctx, v4)
	if err != nil {
		t.Fatal(err)
	}
	if batch == "" {
		return host.ApplyResult{Table: table}, nil
	}
	return c.Apply(ctx, []byte(batch), false, v4, &table.Digest)
}

// On a kept connection a node's ip serves round after round: three rounds
// that read and apply start one ip, and each applies and verifies; a
// round that only reads keeps it too. Without KeepConnections every round
// starts its own.
func TestKeptIPServesNextRounds(t *testing.T) {
	for _, keep := range []int{0, 10} {
		s, cfg := startKeepSSHD(t, keep)
		d, err := NewDialer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, dst := range []string{"100.64.1.0/24", "100.64.2.0/24", "", "100.64.3.0/24"} {
			batch := ""
			if dst != "" {
				batch = "route add " + dst + " via 198.18.0.2 proto 186\n"
			}
			res, err := ipRound(t, d, s.target(), batch)
			if err != nil || res.BatchErr != nil {
				t.Fatalf("keep %d, round %d: %v, %v", keep, i, err, res.BatchErr)
			}
			if dst != "" && !slices.ContainsFunc(res.Table.Routes, func(r route.Route) bool { return r.Dst.String() == dst }) {
				t.Errorf("keep %d, round %d: the tables after the batch lack %s: %v", keep, i, dst, res.Table.Routes)
			}
		}
		want := 4
		if keep > 0 {
			want = 1
		}
		if got := s.ip.startCount(); got != want {
			t.Errorf("keep %d: %d ip processes for 4 rounds, want %d", keep, got, want)
		}
		d.Close()
	}
}

// An ip that ended at rest (killed on the node) is replaced at the next
// read: the round works, with a new ip, and nothing was sent to the old.
func TestKeptIPEndedAtRestIsStartedAnew(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	s.ip.kill()
	res, err := ipRound(t, d, s.target(), "route add 100.64.2.0/24 via 198.18.0.2\n")
	if err != nil || res.BatchErr != nil {
		t.Fatalf("the round after the ip was killed: %v, %v", err, res.BatchErr)
	}
	if len(res.Table.Routes) != 2 {
		t.Errorf("tables after: %v, want both routes", res.Table.Routes)
	}
	if got := s.ip.startCount(); got != 2 {
		t.Errorf("%d ip processes, want 2", got)
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("%d logins, want 1: the connection is kept", got)
	}
}

// A batch line that fails ends the kept ip (ip without -force stops
// there): the failing line is named from the start of this batch, not of
// everything the ip read in earlier rounds, and the next round starts a
// new ip.
//
// Wrapped, ip's session stays open after the failing line until its input
// ends: its stderr ends the input, and the batch fails as ip's refusal, not
// at the command timeout.
func TestKeptIPFailingLineCountsFromItsBatch(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("wrapped=%v", wrapped), func(t *testing.T) { testKeptIPFailingLine(t, wrapped) })
	}
}

func testKeptIPFailingLine(t *testing.T, wrapped bool) {
	s, cfg := startKeepSSHD(t, 10)
	s.ip.wrapped = wrapped
	cfg.CommandTimeout = 5 * time.Second
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\nroute add 100.64.2.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := ipRound(t, d, s.target(), "route add 100.64.3.0/24 via 198.18.0.2\nroute add 100.64.255.0/24 via 198.18.0.2\n")
	if took := time.Since(start); took > time.Second {
		t.Errorf("the failing batch took %s: waited for the command timeout", took)
	}
	if res.BatchErr == nil || res.FailedLine != 2 {
		t.Fatalf("failing batch: err %v, BatchErr %v, FailedLine %d; want line 2 refused", err, res.BatchErr, res.FailedLine)
	}
	if _, err := ipRound(t, d, s.target(), ""); err != nil {
		t.Fatal(err)
	}
	if got := s.ip.startCount(); got != 2 {
		t.Errorf("%d ip processes, want 2 (the failed one is not reused)", got)
	}
}

// A table changed between two rounds is read as changed; and one changed
// between a round's read and its batch refuses the batch (ChangedError),
// with nothing sent, through the kept ip as through a new one.
func TestKeptIPComparesBeforeTheBatch(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	table, err := c.ReadRoutes(ctx, v4)
	if err != nil {
		t.Fatal(err)
	}
	s.ip.mu.Lock()
	s.ip.dsts = append(s.ip.dsts, "100.64.9.0/24") // someone else's change
	s.ip.mu.Unlock()
	_, err = c.Apply(ctx, []byte("route add 100.64.2.0/24 via 198.18.0.2\n"), false, v4, &table.Digest)
	var changed *host.ChangedError
	if !errors.As(err, &changed) || len(changed.Table.Routes) != 2 {
		t.Fatalf("Apply after a change: %v, want a ChangedError with the 2 routes now there", err)
	}
	c.Close()
	s.ip.mu.Lock()
	defer s.ip.mu.Unlock()
	if slices.Contains(s.ip.dsts, "100.64.2.0/24") {
		t.Error("the batch was sent to a changed table")
	}
}

// On a kept connection (and an SFTP server without fsync@openssh.com,
// as this one) a node's run records are listed and pruned once
// their count passes keep, and then down to half of keep: between half
// and all of keep stay, never more, and the newest are the ones kept.
func TestKeptConnectionPrunesRecordsInBatches(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	ctx := context.Background()
	const keep = 4
	settled := func([]byte) bool { return true }
	var counts []int
	for i := range 12 {
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			mkdirs(t, c, "/var/lib/routepush/runs")
		}
		// The in-memory filesystem's directories are not root's: as if
		// Lock had checked them.
		c.lockedDirs = true
		if err := c.WriteRun(ctx, fmt.Sprintf("run-%02d", i), []byte("{}\n"), keep, settled, false); err != nil {
			t.Fatal(err)
		}
		if err := c.Unlock(ctx, nil); err != nil { // closes the record, as a run's would
			t.Fatal(err)
		}
		var ids []string
		if err := c.withFiles(ctx, "list", func(fsys sftpFS) (err error) {
			ids, err = c.listRuns(fsys)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, len(ids))
		if ids[len(ids)-1] != fmt.Sprintf("run-%02d", i) {
			t.Errorf("round %d: records %v: the newest is not last", i, ids)
		}
		c.Close()
	}
	want := []int{1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3}
	if !slices.Equal(counts, want) {
		t.Errorf("records after each round: %v, want %v", counts, want)
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("%d logins, want 1", got)
	}
}

// ip caches interface names for its life: a kept ip is replaced once an
// interface it has seen has another name (a rename), and kept when
// interfaces only come or go.
func TestKeptIPReplacedWhenAnInterfaceIsRenamed(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	for i, step := range []struct {
		links  []string
		starts int
	}{
		{[]string{"lo", "eth0"}, 1},
		{[]string{"lo", "eth0", "veth1"}, 1}, // a new interface
		{[]string{"lo", "eth0"}, 1},          // gone again
		{[]string{"lo", "ens3"}, 2},          // eth0 renamed: a new ip
		{[]string{"lo", "ens3"}, 2},
	} {
		s.ip.mu.Lock()
		s.ip.linkNames = step.links
		s.ip.mu.Unlock()
		res, err := ipRound(t, d, s.target(), fmt.Sprintf("route add 100.64.%d.0/24 via 198.18.0.2\n", i+1))
		if err != nil || res.BatchErr != nil {
			t.Fatalf("round %d: %v, %v", i, err, res.BatchErr)
		}
		if got := s.ip.startCount(); got != step.starts {
			t.Errorf("round %d (links %v): %d ip processes, want %d", i, step.links, got, step.starts)
		}
	}
}

// A kept ip says nothing unasked: one that prints at rest is ended at
// once (the watcher does not hold what it printed until the next round),
// and the node's next round starts another.
func TestKeptIPThatSpeaksAtRestIsEnded(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	s.ip.mu.Lock()
	ch := s.ip.running[0]
	s.ip.mu.Unlock()
	// The node writes until its session is closed under it: without a
	// watch at rest, until the window (2 MB) is full, and then it waits.
	sent := make(chan int, 1)
	go func() {
		chunk, n := make([]byte, 32<<10), 0
		for {
			m, err := ch.Write(chunk)
			if n += m; err != nil {
				sent <- n
				return
			}
		}
	}()
	select {
	case n := <-sent:
		// What was on its way when the session closed is dropped with
		// the channel, not kept for the next round.
		t.Logf("the node wrote %d bytes at rest before its session closed", n)
	case <-time.After(2 * time.Second):
		t.Fatal("the node wrote at rest and its session is still open 2 s later")
	}
	res, err := ipRound(t, d, s.target(), "route add 100.64.2.0/24 via 198.18.0.2\n")
	if err != nil || res.BatchErr != nil {
		t.Fatalf("the round after: %v, %v", err, res.BatchErr)
	}
	if got := s.ip.startCount(); got != 2 {
		t.Errorf("%d ip processes, want 2", got)
	}
}

func TestLinkNames(t *testing.T) {
	line := []byte(`[{"ifindex":1,"ifname":"lo","flags":["UP"]},{"ifindex":12,"ifname":"eth0","link_index":3},{"ifindex":x,"ifname":"bad"},{"ifindex":7,"ifname":"cni0"}]` + "\n")
	got, _ := linkNames(line)
	if len(got) != 3 || got[0].index != 1 || got[1].index != 7 || got[2].index != 12 {
		t.Fatalf("linkNames: %+v", got)
	}
	renamed, _ := linkNames([]byte(`[{"ifindex":12,"ifname":"ens3"}]`))
	same, _ := linkNames([]byte(`[{"ifindex":12,"ifname":"eth0"},{"ifindex":99,"ifname":"new"}]`))
	if !got.renamed(renamed) || got.renamed(same) {
		t.Error("renamed: wrong")
	}
	if g, _ := linkNames([]byte("garbage")); g != nil {
		t.Error("garbage read as links")
	}
	// A node printing more links than are watched: none held.
	many := bytes.Repeat([]byte(`{"ifindex":7,"ifname":""},`), maxLinks+1)
	if g, tooMany := linkNames(many); g != nil || !tooMany {
		t.Errorf("%d links: %d held, tooMany %v", maxLinks+1, len(g), tooMany)
	}
}

// A round that does not read a node (its Client only dialed) hands the
// ip at rest on as it found it, still watched; the next round uses it.
func TestKeptIPHandedOnUntouched(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	d := keptDialer(t, cfg)
	if _, err := ipRound(t, d, s.target(), "route add 100.64.1.0/24 via 198.18.0.2\n"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := d.Dial(context.Background(), s.target())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	res, err := ipRound(t, d, s.target(), "route add 100.64.2.0/24 via 198.18.0.2\n")
	if err != nil || res.BatchErr != nil || len(res.Table.Routes) != 2 {
		t.Fatalf("the round after: %v, %v, %v", err, res.BatchErr, res.Table.Routes)
	}
	if got := s.ip.startCount(); got != 1 {
		t.Errorf("%d ip processes, want 1", got)
	}
}

// A node with more interfaces than a kept ip's names are watched for is
// served round after round, by an ip of each round's own.
func TestKeptIPNotKeptPastMaxLinks(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	names := make([]string, maxLinks+1)
	for i := range names {
		names[i] = fmt.Sprintf("veth%d", i)
	}
	s.ip.linkNames = names
	d := keptDialer(t, cfg)
	for i := range 3 {
		res, err := ipRound(t, d, s.target(), fmt.Sprintf("route add 100.64.%d.0/24 via 198.18.0.2\n", i+1))
		if err != nil || res.BatchErr != nil {
			t.Fatalf("round %d: %v, %v", i, err, res.BatchErr)
		}
	}
	if got := s.ip.startCount(); got != 3 {
		t.Errorf("%d ip processes for 3 rounds, want 3", got)
	}
}

// rootDialer is a kept server serving one rootFS, and a Dialer keeping
// its connections.
func rootDialer(t *testing.T) (*keepSSHD, *rootFS, *Dialer) {
	t.Helper()
	s, cfg := startKeepSSHD(t, 10)
	files := &rootFS{}
	files.serve(s)
	return s, files, keptDialer(t, cfg)
}

// mkdirs makes dir and its parents through c's SFTP session.
func mkdirs(t *testing.T, c *Client, dir string) {
	t.Helper()
	if err := c.withFiles(context.Background(), "mkdir", func(fsys sftpFS) error { return fsys.MkdirAll(dir) }); err != nil {
		t.Fatal(err)
	}
}

// putFile writes a file through c's SFTP session, its folder made first.
func putFile(t *testing.T, c *Client, name, content string) {
	t.Helper()
	mkdirs(t, c, path.Dir(name))
	if err := c.withFiles(context.Background(), "put "+name, func(fsys sftpFS) error {
		f, err := fsys.Create(name)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.Write([]byte(content))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// rootFS is one in-memory filesystem served as root's to every SFTP
// session (pkg/sftp's says nobody owns it), its directories of mode
// dirMode (0755 when 0; root may change it between rounds), counting the
// Lstats of routepush's two directories and the opens of run records (not
// their temporary files) for writing.
type rootFS struct {
	dirMode                        atomic.Uint32
	stateLstats, runsLstats, opens atomic.Int32
}

func (r *rootFS) serve(s *keepSSHD) {
	mem := sftp.InMemHandler()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = func() sftp.Handlers {
		h := mem
		h.FileList = rootLister{mem.FileList.(sftp.LstatFileLister), r}
		h.FileCmd = rootCmd{mem.FileCmd}
		h.FilePut = recordOpens{mem.FilePut, r}
		return h
	}
}

type recordOpens struct {
	sftp.FileWriter
	r *rootFS
}

func (w recordOpens) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	if strings.HasSuffix(r.Filepath, ".json") {
		w.r.opens.Add(1)
	}
	return w.FileWriter.Filewrite(r)
}

// rootCmd takes a chmod as done (pkg/sftp's in-memory files have no
// modes of their own).
type rootCmd struct{ sftp.FileCmder }

func (c rootCmd) Filecmd(r *sftp.Request) error {
	if r.Method == "Setstat" {
		return nil
	}
	return c.FileCmder.Filecmd(r)
}

type rootLister struct {
	inner sftp.LstatFileLister
	r     *rootFS
}

func (l rootLister) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	la, err := l.inner.Filelist(r)
	return rootListerAt{la, l.r}, err
}

func (l rootLister) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Filepath {
	case stateDir:
		l.r.stateLstats.Add(1)
	case runsDir:
		l.r.runsLstats.Add(1)
	}
	la, err := l.inner.Lstat(r)
	return rootListerAt{la, l.r}, err
}

type rootListerAt struct {
	sftp.ListerAt
	r *rootFS
}

func (l rootListerAt) ListAt(fis []os.FileInfo, off int64) (int, error) {
	if l.ListerAt == nil {
		return 0, io.EOF
	}
	n, err := l.ListerAt.ListAt(fis, off)
	for i := range n {
		fis[i] = rootInfo{fis[i], fs.FileMode(l.r.dirMode.Load())}
	}
	return n, err
}

type rootInfo struct {
	os.FileInfo
	dirMode fs.FileMode
}

func (i rootInfo) Mode() fs.FileMode {
	if i.IsDir() && i.dirMode != 0 {
		return fs.ModeDir | i.dirMode
	}
	return i.FileInfo.Mode()
}

func (rootInfo) Sys() any { return &syscall.Stat_t{} }

// A kept connection's Lock looks at /var/lib/routepush every time, and
// at runs/ once: it was root's alone, so only root can have changed it
// since, and it is reached through the other. Once root has removed
// them, the next Lock, or the record under it, makes them again.
func TestKeptLockChecksRunsOnce(t *testing.T) {
	s, files, d := rootDialer(t)
	ctx := context.Background()
	for i, step := range []struct {
		remove []string // by root, before the round
		runs   bool     // the round looks at runs/
	}{
		{nil, true},
		{nil, false},
		{nil, false},
		{[]string{runsDir}, true},           // the record makes it again
		{[]string{runsDir, stateDir}, true}, // the lock makes one, the record the other
		{nil, false},
	} {
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			mkdirs(t, c, "/var/lib")
		}
		if len(step.remove) > 0 {
			if err := c.withFiles(ctx, "remove", func(fsys sftpFS) error {
				ids, _ := c.listRuns(fsys)
				for _, id := range ids {
					if err := fsys.Remove(path.Join(runsDir, id+".json")); err != nil {
						return err
					}
				}
				for _, dir := range step.remove {
					if err := fsys.RemoveDirectory(dir); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		files.stateLstats.Store(0)
		files.runsLstats.Store(0)
		holder := fmt.Appendf(nil, "round %d", i)
		id := fmt.Sprintf("run-%02d", i)
		if err := c.Lock(ctx, holder); err != nil {
			t.Fatalf("round %d: lock: %v", i, err)
		}
		if err := c.WriteRun(ctx, id, []byte("{}\n"), 10, nil, false); err != nil {
			t.Fatalf("round %d: record: %v", i, err)
		}
		if err := c.Unlock(ctx, holder); err != nil {
			t.Fatalf("round %d: unlock: %v", i, err)
		}
		if _, err := c.ReadRun(ctx, id); err != nil {
			t.Errorf("round %d: %v", i, err)
		}
		c.Close()
		if got := files.stateLstats.Load(); got == 0 {
			t.Errorf("round %d: %s not looked at", i, stateDir)
		}
		if got := files.runsLstats.Load() > 0; got != step.runs {
			t.Errorf("round %d: %d Lstats of %s, want it looked at: %v", i, files.runsLstats.Load(), runsDir, step.runs)
		}
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("%d logins, want 1", got)
	}
}

// Through a kept connection, a run's record stays open from WriteRun to
// Unlock, and the states are written through it: the node's record is the
// record and its states, in order, with no open of it by name. (One
// appended by name, as a one-shot run's are, is e2e's: pkg/sftp's
// in-memory files cannot be appended to.)
func TestKeptRecordTakesItsStates(t *testing.T) {
	s, files, d := rootDialer(t)
	ctx := context.Background()
	for i := range 3 {
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			mkdirs(t, c, "/var/lib")
		}
		files.opens.Store(0)
		holder := fmt.Appendf(nil, "round %d", i)
		id := fmt.Sprintf("run-%02d", i)
		if err := c.Lock(ctx, holder); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteRun(ctx, id, []byte("{\"state\":\"applying\"}\n"), 10, nil, false); err != nil {
			t.Fatal(err)
		}
		if err := c.AppendRun(ctx, id, []byte("{\"state\":\"verified\"}\n"), false); err != nil {
			t.Fatal(err)
		}
		if err := c.AppendRun(ctx, id, []byte("{\"state\":\"rolled-back\"}\n"), true); err != nil {
			t.Fatal(err)
		}
		if err := c.Unlock(ctx, holder); err != nil {
			t.Fatal(err)
		}
		b, err := c.ReadRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := "{\"state\":\"applying\"}\n{\"state\":\"verified\"}\n{\"state\":\"rolled-back\"}\n"; string(b) != want {
			t.Errorf("round %d: record %q, want %q", i, b, want)
		}
		if got := files.opens.Load(); got != 0 {
			t.Errorf("round %d: the record opened by name %d times, want 0", i, got)
		}
		if c.record != nil {
			t.Errorf("round %d: the record still open after Unlock", i)
		}
		c.Close()
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("%d logins, want 1", got)
	}
}

// Root opens /var/lib/routepush between two rounds of a kept connection
// (a careless chmod -R): the next Lock refuses it, as a first one would.
func TestKeptLockRefusesAStateDirOpenedSince(t *testing.T) {
	s, files, d := rootDialer(t)
	files.dirMode.Store(0o700)
	ctx := context.Background()
	for i := range 2 {
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			mkdirs(t, c, runsDir)
		} else {
			files.dirMode.Store(0o777)
		}
		holder := fmt.Appendf(nil, "round %d", i)
		err = c.Lock(ctx, holder)
		switch {
		case i == 0 && err != nil:
			t.Fatal(err)
		case i == 1 && (err == nil || !strings.Contains(err.Error(), "n1: refusing /var/lib/routepush: it is writable by group or others (mode 0777)")):
			t.Errorf("round 1: Lock in a 0777 %s: %v", stateDir, err)
		}
		if err == nil {
			if err := c.Unlock(ctx, holder); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
}

// Root removes /var/lib/routepush, and the lock with it, while a run holds
// it: the run's record is not written (making the directories again would
// let the run go on with no lock on the node).
func TestRecordNotWrittenOnceTheLockIsGone(t *testing.T) {
	s, _, d := rootDialer(t)
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mkdirs(t, c, "/var/lib")
	if err := c.Lock(ctx, []byte("run A")); err != nil {
		t.Fatal(err)
	}
	if err := c.withFiles(ctx, "rm -rf", func(fsys sftpFS) error {
		if err := fsys.Remove(lockPath); err != nil {
			return err
		}
		if err := fsys.RemoveDirectory(runsDir); err != nil {
			return err
		}
		return fsys.RemoveDirectory(stateDir)
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRun(ctx, "run-a", []byte("{}\n"), 10, nil, false); err == nil {
		held, _ := c.HeldLock(ctx)
		t.Errorf("the record was written, the node's lock now %q", held)
	}
}

// The node's boot id is read once per connection (a restart ends it), and
// checked: anything but a UUID is refused, naming the node.
func TestBootIDReadOncePerConnection(t *testing.T) {
	s, _, d := rootDialer(t)
	ctx := context.Background()
	const first = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	for i, content := range []string{first + "\n", "6fa459ea-ee8a-3ca4-894e-db77e160355e\n"} {
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		putFile(t, c, bootIDPath, content)
		if got, err := c.BootID(ctx); err != nil || got != first {
			t.Errorf("round %d: boot id %q, %v; want %q, read once through the kept connection", i, got, err, first)
		}
		c.Close()
	}
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.kept.bootKnown = false // as a new connection
	putFile(t, c, bootIDPath, "\x1b]0;owned\x07\n")
	if _, err := c.BootID(ctx); err == nil || !strings.Contains(err.Error(), `n1: /proc/sys/kernel/random/boot_id reads "\x1b]0;owned\x07", not a boot id`) {
		t.Errorf("a boot id of escapes: %v", err)
	}
}

// A Client closed with its record still open (no Unlock) does not wait
// on the node to close it: the connection is not kept, and the handle
// goes with it.
func TestKeptConnectionWithARecordLeftOpenIsNotKept(t *testing.T) {
	s, _, d := rootDialer(t)
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	mkdirs(t, c, "/var/lib")
	if err := c.Lock(ctx, []byte("run A")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRun(ctx, "run-a", []byte("{}\n"), 10, nil, false); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The server counts a login once its handshake returns, which may
	// be after the client's.
	for deadline := time.Now().Add(5 * time.Second); s.conns.Load() < 2 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if got := s.conns.Load(); got != 2 {
		t.Errorf("%d logins, want 2: a connection with a record left open was kept", got)
	}
}
