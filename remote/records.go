package remote

import (
	"context"
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
)

// WriteRun writes a run's record on the node atomically (a temporary
// file, renamed; synced first when durable), then prunes the node's older
// records down to the newest keep: oldest first by the node's own clock (a
// bastion whose clock is behind must not make its new record look old),
// never the record just written, and never one that settled says needs
// attention still (a run killed mid-apply, a rollback that failed):
// `routepush rollback` needs those. settled gets the record's last bytes.
// id has been checked by the caller to be a run id: letters, digits, '.'
// and '-'.
//
// A record is durable (on disk before it counts) when what it describes
// outlives a crash of the node: a run that persists its routes. Routes in
// the kernel alone do not, and their record without a sync is still there
// for a run or a rollback from anywhere as long as the node is up: the
// sync (a journal commit of the node's filesystem) was most of a watcher's
// round, every node it changed waiting on its disk.
//
// On a kept connection (a watcher's, which writes a record on every node
// it changes, round after round) the records are counted from the last
// listing through it, and listed and pruned again only once the count
// passes keep, then down to half of keep: the node keeps between half and
// all of keep, and the listing costs one round in keep/2 instead of
// every round.
func (c *Client) WriteRun(ctx context.Context, id string, record []byte, keep int, settled func(tail []byte) bool, durable bool) error {
	final := path.Join(runsDir, id+".json")
	checked := c.lockedDirs
	k := c.kept
	listing := keep > 0 && (k == nil || !k.recordsKnown || k.records+1 > keep)
	target := keep
	if k != nil {
		target = max(1, keep/2)
	}
	counted := -1          // records on the node after a listing and pruning
	_ = c.closeRecord(ctx) // an earlier record through this Client, if Unlock has not closed it
	var open *openRecord   // set only once the operation has returned (see Runs)
	err := c.withFiles(ctx, "write "+final, func(fsys sftpFS) error {
		for _, dir := range []string{stateDir, runsDir} {
			if checked {
				break // checked by Lock, and root's only since
			}
			if err := c.stateDir(fsys, dir, false); err != nil {
				return err
			}
		}
		write := func() error {
			if k == nil {
				return c.writeAtomic(fsys, final, record, 0o600, durable)
			}
			// A watcher's: its states are appended through it.
			f, err := c.writeAtomicOpen(fsys, final, record, 0o600, durable)
			if err == nil {
				open = &openRecord{name: final, f: f, session: fsys.Client}
			}
			return err
		}
		err := write()
		if checked && errors.Is(err, fs.ErrNotExist) {
			// runs/ is gone since a kept connection's Lock checked it:
			// made again, under the lock. /var/lib/routepush, where the
			// lock is, is not: gone, it took the lock with it.
			if err := c.stateDir(fsys, runsDir, true); err != nil {
				return err
			}
			err = write()
		}
		if err != nil {
			return err
		}
		if !listing {
			return nil
		}
		ids, err := c.listRuns(fsys)
		if err != nil {
			return err
		}
		// Down to target only once past keep: a first listing through a
		// new connection (a reconnect, every KeepMaxAge) finding no more
		// than keep prunes nothing.
		excess := len(ids) - keep
		if excess > 0 {
			excess = len(ids) - target
		}
		removed := 0
		defer func() { counted = len(ids) - removed }()
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
				removed++
			}
		}
		return nil
	})
	c.record = open
	if err != nil {
		// Written, then the listing failed: the run fails here, and
		// nothing is appended through it.
		_ = c.closeRecord(ctx)
	}
	if k != nil {
		switch {
		case err != nil:
			k.recordsKnown = false
		case counted >= 0:
			k.records, k.recordsKnown = counted, true
		case k.recordsKnown:
			k.records++
		}
	}
	return err
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
// the node, synced when durable (as the record was written, see WriteRun).
// A line torn by a crash is ignored by readers.
func (c *Client) AppendRun(ctx context.Context, id string, line []byte, durable bool) error {
	name := path.Join(runsDir, id+".json")
	open := c.record
	return c.withFiles(ctx, "append to "+name, func(fsys sftpFS) error {
		if open == nil || open.name != name || open.session != fsys.Client {
			return c.appendLine(fsys, name, line, durable)
		}
		if err := appendTo(open.f, line, durable); err != nil {
			return fmt.Errorf("%s: append to %s: %w%s", c.name, name, err, failureHint(err))
		}
		return nil
	})
}

// appendTo writes a line to a file opened for appending, synced when
// durable.
func appendTo(f *sftp.File, line []byte, durable bool) error {
	_, err := f.Write(line)
	if err == nil && durable {
		err = syncFile(f)
	}
	return err
}

// openRecord is a run record left open by WriteRun, for appending.
type openRecord struct {
	name    string
	f       *sftp.File
	session *sftp.Client // the session it is open in
}

// closeRecord closes the record WriteRun left open, if any: the run is
// done with it. A failure leaves the connection not to be kept.
func (c *Client) closeRecord(ctx context.Context) error {
	open := c.record
	c.record = nil
	if open == nil || open.session != c.sftp || c.tainted.Load() {
		return nil // closed with its session, or going to be
	}
	err := c.withFiles(ctx, "close "+open.name, func(sftpFS) error { return open.f.Close() })
	if err != nil {
		c.taint()
	}
	return err
}

func (c *Client) appendLine(fsys sftpFS, name string, line []byte, durable bool) error {
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_APPEND)
	if err == nil {
		err = appendTo(f, line, durable)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("%s: append to %s: %w%s", c.name, name, err, failureHint(err))
	}
	return nil
}

// Runs returns the ids of the run records on the node, oldest first by
// the node's own clock (when each was last written), then by id.
func (c *Client) Runs(ctx context.Context) ([]string, error) {
	// What the operation finds is used only once it has returned: one
	// abandoned at the timeout still runs (bounded), and sets it later.
	var ids []string
	err := c.withFiles(ctx, "list runs", func(fsys sftpFS) error {
		for _, dir := range []string{stateDir, runsDir} {
			if err := c.stateDir(fsys, dir, false); err != nil {
				return err
			}
		}
		found, err := c.listRuns(fsys)
		ids = found
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
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
func (c *Client) ReadRun(ctx context.Context, id string) ([]byte, error) {
	var b []byte // set only by an operation that returned (see Runs)
	err := c.withFiles(ctx, "read run "+id, func(fsys sftpFS) error {
		found, err := c.readFile(fsys, path.Join(runsDir, id+".json"), c.recordLimit(), "a run record of "+countString(c.planned)+" planned routes")
		b = found
		var tooMuch *LimitError
		if errors.As(err, &tooMuch) {
			return err // names the node and the file
		}
		if err != nil {
			return fmt.Errorf("%s: run %s: %w", c.name, id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}
