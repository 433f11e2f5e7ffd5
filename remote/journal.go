package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"github.com/routepush/routepush/internal/safetext"
	"golang.org/x/crypto/ssh"
)

// Where a node keeps routepush's state: its lock and one record per run.
const (
	stateDir = "/var/lib/routepush"
	runsDir  = stateDir + "/runs"
	lockPath = stateDir + "/lock"
)

// sftpServerPath is OpenSSH's sftp-server on Debian and Ubuntu. With
// become it runs through sudo -n, as ip does, because the login user's own
// SFTP subsystem could not write /var/lib/routepush; sudoers names it
// exactly, so that become never needs a shell as root.
const sftpServerPath = "/usr/lib/openssh/sftp-server"

// files opens, once per connection, the SFTP session that reads and writes
// the node's lock and run records: the "sftp" subsystem, or sftp-server
// through sudo -n with become.
func (c *Client) files(ctx context.Context) (*sftp.Client, error) {
	if c.sftp != nil {
		return c.sftp, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var ch ssh.Channel
	var reqs <-chan *ssh.Request
	err := c.bounded(ctx, "sftp", c.conn.Close, func() error {
		var err error
		ch, reqs, err = c.conn.OpenChannel("session", nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: sftp: %w", c.name, err)
	}
	// Requests on the session are answered as they come: besides the
	// exit-status at its end, an sshd with ClientAliveInterval probes the
	// first open channel (keepalive@openssh.com, wanting an answer), and
	// this one stays open from the lock to the settle. Unanswered, sshd
	// counts them against ClientAliveCountMax and hangs up; past the 16
	// x/crypto/ssh queues per channel, the connection's reader blocks and
	// keepalives then cut off a healthy node. It ends with the channel.
	go ssh.DiscardRequests(reqs)
	var ok bool
	stderr := make(chan string, 1)
	err = c.bounded(ctx, "sftp", c.conn.Close, func() error {
		var err error
		if c.sudo {
			ok, err = ch.SendRequest("exec", true, ssh.Marshal(&struct{ Command string }{"sudo -n " + sftpServerPath}))
			go func() {
				b, _ := io.ReadAll(io.LimitReader(ch.Stderr(), 4096))
				stderr <- string(b)
			}()
		} else {
			ok, err = ch.SendRequest("subsystem", true, ssh.Marshal(&struct{ Name string }{"sftp"}))
		}
		return err
	})
	if err == nil && !ok {
		err = errors.New("the server refused the sftp subsystem")
	}
	if err != nil {
		ch.Close()
		return nil, fmt.Errorf("%s: sftp: %w", c.name, err)
	}
	type result struct {
		c   *sftp.Client
		err error
	}
	done := make(chan result, 1)
	// Everything the server sends is counted: see meter.
	m := &meter{r: ch, limit: sftpSlack}
	go func() {
		// Small packets, like batches (maxWrite): a connection keeps
		// buffers the size of the largest packet it sent, and a run
		// record is a few hundred kB on a large cluster.
		s, err := sftp.NewClientPipe(m, ch, sftp.MaxPacket(maxWrite))
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			ch.Close()
			if c.sudo {
				// sudo said why on stderr, as it does for ip.
				var msg string
				select {
				case msg = <-stderr:
				case <-time.After(time.Second):
				}
				return nil, &CommandError{Host: c.name, Command: "sudo -n " + sftpServerPath, ExitStatus: 1, Stderr: msg, Hint: c.hint(msg)}
			}
			return nil, fmt.Errorf("%s: sftp: %w", c.name, r.err)
		}
		c.sftp, c.sftpCh, c.meter = r.c, ch, m
		return c.sftp, nil
	case <-ctx.Done():
		c.conn.Close() // the SFTP handshake cannot be cancelled otherwise
		return nil, fmt.Errorf("%s: sftp: %w", c.name, context.Cause(ctx))
	}
}

// withFiles runs fn on the node's SFTP session, bounded by the command
// timeout: SFTP calls cannot be cancelled.
//
// An interrupt does not cut them short: a lock, record or routes file
// half-written is worse than a run that ends a moment later, and an SFTP
// call on a live node takes milliseconds. Only the timeout abandons one,
// and with it the connection (the node has gone silent).
func (c *Client) withFiles(ctx context.Context, what string, fn func(sftpFS) error) error {
	ctx = context.WithoutCancel(ctx)
	fsys, err := c.files(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The files an operation reads are each bounded (readFile); this
	// bounds the operation as a whole, directory listings included.
	m := c.meter // fn keeps its own: closeFiles may run while it waits
	m.budget(c.opBudget())
	done := make(chan error, 1)
	go func() { done <- fn(sftpFS{fsys, m}) }()
	select {
	case err := <-done:
		if m.tripped() {
			// The session is broken mid-packet: a new one is opened
			// when needed.
			c.closeFiles()
			var tooMuch *LimitError
			if !errors.As(err, &tooMuch) {
				err = c.fileTooBig(what, c.opBudget(), "one SFTP operation")
			}
		}
		return err
	case <-ctx.Done():
		// SFTP calls cannot be cancelled, and pkg/sftp's Close waits for
		// a reader only the node can end: the connection goes, and with
		// it everything waiting on this node.
		c.conn.Close()
		c.closeFiles()
		return fmt.Errorf("%s: %s: %w", c.name, what, context.Cause(ctx))
	}
}

// opBudget is the most one SFTP operation may receive: a run record (the
// largest file routepush reads) and the framing.
func (c *Client) opBudget() int64 { return c.recordLimit() + sftpSlack }

// closeFiles ends the SFTP session. The channel goes first: pkg/sftp's
// Close waits for its reader, which only the channel's end stops; and a
// silent node has the connection closed under it after the command
// timeout (if keepalives have not closed it first).
func (c *Client) closeFiles() {
	if s, ch := c.sftp, c.sftpCh; s != nil {
		c.sftp, c.sftpCh, c.meter = nil, nil, nil
		_ = ch.Close()
		_ = c.bounded(context.Background(), "close sftp", c.conn.Close, s.Close)
	}
}

// sftpFS is the node's SFTP session as an operation sees it: the client
// and the meter that counts what it receives.
type sftpFS struct {
	*sftp.Client
	m *meter
}

// RestJournal closes the node's SFTP session, and with it sftp-server on
// the node, until the next lock or record operation opens another.
func (c *Client) RestJournal() { c.closeFiles() }

// LockedError says another run holds a node's lock.
type LockedError struct {
	Host   string
	Holder []byte // the lock file's content, as its holder wrote it
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s: locked by another routepush run: %s", e.Host, safetext.Line(strings.TrimSpace(string(e.Holder))))
}

// Lock takes the node's lock, writing holder into it; if another run holds
// it, it returns a *LockedError with that run's own description. The
// holder is written to a file of its own first, which then becomes the
// lock by a hard link (link(2) fails if the lock exists): two runs can
// never both hold it, and nobody ever reads a lock its holder has not
// finished writing. It stays when routepush dies, and `routepush rollback`
// or the holder removes it.
func (c *Client) Lock(ctx context.Context, holder []byte) error {
	return c.withFiles(ctx, "lock", func(fsys sftpFS) error {
		for _, dir := range []string{stateDir, runsDir} {
			if err := c.stateDir(fsys, dir, true); err != nil {
				if hint := c.hint(err.Error()); hint != "" {
					err = fmt.Errorf("%w (%s)", err, hint)
				}
				return err
			}
		}
		tmp := tempName(lockPath)
		f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err == nil {
			// 0600 before a byte is written: the lock names this host.
			if err = f.Chmod(0o600); err == nil {
				_, err = f.Write(holder)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			_ = fsys.Remove(tmp)
			return fmt.Errorf("%s: lock %s: %w%s", c.name, lockPath, err, failureHint(err))
		}
		defer func() { _ = fsys.Remove(tmp) }()
		for try := 0; ; try++ {
			linkErr := fsys.Link(tmp, lockPath)
			if linkErr == nil {
				return nil
			}
			held, rerr := c.readFile(fsys, lockPath, lockLimit, "a lock")
			var tooMuch *LimitError
			switch {
			case errors.As(rerr, &tooMuch):
				return rerr
			case rerr == nil:
				return &LockedError{Host: c.name, Holder: held}
			case errors.Is(rerr, fs.ErrNotExist) && try < 2:
				continue // released between the two: try again
			default:
				return fmt.Errorf("%s: lock %s: %w", c.name, lockPath, linkErr)
			}
		}
	})
}

// Unlock removes the node's lock if holder still describes it: a run
// never removes another's.
func (c *Client) Unlock(ctx context.Context, holder []byte) error {
	return c.withFiles(ctx, "unlock", func(fsys sftpFS) error {
		held, err := c.readFile(fsys, lockPath, lockLimit, "a lock")
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return fmt.Errorf("%s: unlock: %w", c.name, err)
		case string(held) != string(holder):
			return fmt.Errorf("%s: unlock: the lock is another run's: %s", c.name, safetext.Line(strings.TrimSpace(string(held))))
		}
		if err := fsys.Remove(lockPath); err != nil {
			return fmt.Errorf("%s: unlock: %w", c.name, err)
		}
		return nil
	})
}

// HeldLock returns the node's lock file content, or nil if it is not
// locked.
func (c *Client) HeldLock(ctx context.Context) (held []byte, err error) {
	err = c.withFiles(ctx, "read lock", func(fsys sftpFS) error {
		if err := c.stateDir(fsys, stateDir, false); err != nil {
			return err
		}
		held, err = c.readFile(fsys, lockPath, lockLimit, "a lock")
		if errors.Is(err, fs.ErrNotExist) {
			held, err = nil, nil
		}
		return err
	})
	return held, err
}

// WriteRun writes a run's record on the node atomically (a temporary
// file, fsync, rename), then prunes the node's older records down to the
// newest keep: oldest first by the node's own clock (a bastion whose clock
// is behind must not make its new record look old), never the record just
// written, and never one that settled says needs attention still (a run
// killed mid-apply, a rollback that failed): `routepush rollback` needs
// those. settled gets the record's last bytes. id has been checked by the
// caller to be a run id: letters, digits, '.' and '-'.
func (c *Client) WriteRun(ctx context.Context, id string, record []byte, keep int, settled func(tail []byte) bool) error {
	final := path.Join(runsDir, id+".json")
	return c.withFiles(ctx, "write "+final, func(fsys sftpFS) error {
		for _, dir := range []string{stateDir, runsDir} {
			if err := c.stateDir(fsys, dir, false); err != nil {
				return err
			}
		}
		if err := c.writeAtomic(fsys, final, record, 0o600); err != nil {
			return err
		}
		if keep <= 0 {
			return nil
		}
		ids, err := c.listRuns(fsys)
		if err != nil {
			return err
		}
		excess := len(ids) - keep
		for _, old := range ids {
			if excess <= 0 {
				break
			}
			if old == id {
				continue
			}
			name := path.Join(runsDir, old+".json")
			if settled != nil {
				tail, err := c.readTail(fsys, name, 4096)
				if err != nil || !settled(tail) {
					continue
				}
			}
			if fsys.Remove(name) == nil {
				excess--
			}
		}
		return nil
	})
}

// readTail returns up to n bytes from the end of a file.
func (c *Client) readTail(fsys sftpFS, name string, n int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// The size is the node's word: a hostile sftp-server can send any
	// 64-bit value, which pkg/sftp hands on as an int64, negative too.
	size := st.Size()
	if size < 0 {
		return nil, fmt.Errorf("%s: %s: the node gives it a size of %d bytes", c.name, name, size)
	}
	off := max(0, size-n)
	b := make([]byte, size-off)
	m, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:m], nil
}

// AppendRun appends a line (a state the run reached) to a run's record on
// the node, and syncs it. A line torn by a crash is ignored by readers.
func (c *Client) AppendRun(ctx context.Context, id string, line []byte) error {
	name := path.Join(runsDir, id+".json")
	return c.withFiles(ctx, "append to "+name, func(fsys sftpFS) error {
		f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_APPEND)
		if err == nil {
			if _, err = f.Write(line); err == nil {
				err = syncFile(f)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("%s: append to %s: %w%s", c.name, name, err, failureHint(err))
		}
		return nil
	})
}

// syncFile asks for fsync@openssh.com: a record is on disk before it
// counts. A server without the extension still gets the write.
func syncFile(f *sftp.File) error {
	if err := f.Sync(); err != nil && !errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
		return err
	}
	return nil
}

// LockHolder is the lock file's content, for package orchestrator.
func (e *LockedError) LockHolder() []byte { return e.Holder }

// Runs returns the ids of the run records on the node, oldest first by
// the node's own clock (when each was last written), then by id.
func (c *Client) Runs(ctx context.Context) (ids []string, err error) {
	err = c.withFiles(ctx, "list runs", func(fsys sftpFS) error {
		for _, dir := range []string{stateDir, runsDir} {
			if err := c.stateDir(fsys, dir, false); err != nil {
				return err
			}
		}
		ids, err = c.listRuns(fsys)
		return err
	})
	return ids, err
}

func (c *Client) listRuns(fsys sftpFS) ([]string, error) {
	entries, err := c.readDir(fsys, runsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", c.name, runsDir, err)
	}
	type run struct {
		id      string
		written time.Time
	}
	var runs []run
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Mode().IsRegular() {
			runs = append(runs, run{id, e.ModTime()})
		}
	}
	slices.SortFunc(runs, func(a, b run) int {
		if c := a.written.Compare(b.written); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.id
	}
	return ids, nil
}

// ReadRun returns a run's record on the node; fs.ErrNotExist (wrapped) if
// the node has none.
func (c *Client) ReadRun(ctx context.Context, id string) (b []byte, err error) {
	err = c.withFiles(ctx, "read run "+id, func(fsys sftpFS) error {
		b, err = c.readFile(fsys, path.Join(runsDir, id+".json"), c.recordLimit(), "a run record of "+countString(c.planned)+" planned routes")
		var tooMuch *LimitError
		if errors.As(err, &tooMuch) {
			return err // names the node and the file
		}
		if err != nil {
			return fmt.Errorf("%s: run %s: %w", c.name, id, err)
		}
		return nil
	})
	return b, err
}

// readFile reads a node's file, at most limit bytes (why says what the
// limit is for): a larger one is refused, by its size before reading it
// when the node says it, else once limit+1 bytes have come.
func (c *Client) readFile(fsys sftpFS, name string, limit int64, why string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, c.fileTooBig(name, limit, why)
	}
	b, err := readAtMost(f, limit)
	if errors.Is(err, errOverLimit) {
		return nil, c.fileTooBig(name, limit, why)
	}
	return b, err
}

// readDir lists a directory, at most listLimit bytes of it (about 10,000
// entries): pkg/sftp keeps a whole listing in memory, so the session's
// meter bounds it; over it the session is closed (withFiles).
func (c *Client) readDir(fsys sftpFS, dir string) ([]fs.FileInfo, error) {
	fsys.m.budget(listLimit)
	defer fsys.m.budget(c.opBudget())
	entries, err := fsys.ReadDir(dir)
	if fsys.m.tripped() {
		return nil, c.fileTooBig("list "+dir, listLimit, "a directory listing")
	}
	return entries, err
}

// failureHint explains OpenSSH's sftp-server's "Failure": it says only
// that for errors it has no SFTP code for, such as EROFS and ENOSPC.
func failureHint(err error) string {
	var st *sftp.StatusError
	if errors.As(err, &st) && st.FxCode() == sftp.ErrSSHFxFailure {
		return " (the node's SFTP server gives no reason: is the filesystem read-only or full?)"
	}
	return ""
}

// tempName is a temporary file's name beside name: random, so nobody can
// prepare it, and created with O_EXCL.
func tempName(name string) string {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return name + "." + hex.EncodeToString(nonce[:]) + ".routepush-tmp"
}

// stateDir checks one of routepush's directories on the node (by Lstat:
// its own metadata, not what it points to) before anything is read or
// written in it: a symbolic link, something not a directory, or a
// directory others may write to (where they could plant or swap files)
// is refused. A missing one is created when create is set, 0755 (the
// files in it are 0600), else accepted: there is nothing in it.
func (c *Client) stateDir(fsys sftpFS, dir string, create bool) error {
	fi, err := fsys.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) && create {
		if mkErr := fsys.Mkdir(dir); mkErr != nil {
			// Another run may have made it between the two calls (sftp-server
			// says only "Failure" then): what is there now decides.
			if fi, err = fsys.Lstat(dir); err != nil {
				return fmt.Errorf("%s: mkdir %s: %w%s", c.name, dir, mkErr, failureHint(mkErr))
			}
		} else {
			if err := fsys.Chmod(dir, 0o755); err != nil {
				return fmt.Errorf("%s: chmod %s: %w", c.name, dir, err)
			}
			fi, err = fsys.Lstat(dir)
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil
	case err != nil:
		return fmt.Errorf("%s: %s: %w", c.name, dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: refusing %s: it is a symbolic link; routepush writes only to a real directory there (remove the link)", c.name, dir)
	case !fi.IsDir():
		return fmt.Errorf("%s: refusing %s: it is not a directory", c.name, dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s: refusing %s: it is writable by group or others (mode %04o); make it 0755 or 0700", c.name, dir, fi.Mode().Perm())
	case ownerOf(fi) > 0:
		// Its owner could swap the files in it for links between two
		// of routepush's calls, and root's sftp-server would follow.
		return fmt.Errorf("%s: refusing %s: it is owned by uid %d, not root; routepush writes as root only where only root can (chown root)", c.name, dir, ownerOf(fi))
	}
	return nil
}

// ownerOf is the uid that owns a file the SFTP server described, or -1
// when it did not say.
func ownerOf(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		return int64(st.UID)
	}
	return -1
}
