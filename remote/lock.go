package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
)

// Lock takes the node's lock, writing holder into it; if another run holds
// it, it returns a *host.LockedError with that run's own description. The
// holder is written to a file of its own first, which then becomes the
// lock by a hard link (link(2) fails if the lock exists): two runs can
// never both hold it, and nobody ever reads a lock its holder has not
// finished writing. It stays when routepush dies, and `routepush rollback`
// or the holder removes it.
//
// The directories are checked (and made) first. Through a kept connection
// whose Lock has checked runs/ before, only /var/lib/routepush is looked
// at again (a watcher locks every node it changes, round after round):
// runs/ is reached through it, and was root's alone; if it is gone, the
// record under the lock makes it again (WriteRun).
func (c *Client) Lock(ctx context.Context, holder []byte) error {
	dirs := []string{stateDir, runsDir}
	if c.kept != nil && c.kept.runsChecked {
		dirs = dirs[:1]
	}
	// Set only once the operation has returned: one abandoned at the
	// timeout still runs (bounded), and its Client is tainted.
	err := c.withFiles(ctx, "lock", func(fsys sftpFS) error {
		for _, dir := range dirs {
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
				return &host.LockedError{Host: c.name, Holder: held}
			case errors.Is(rerr, fs.ErrNotExist) && try < 2:
				continue // released between the two: try again
			default:
				return fmt.Errorf("%s: lock %s: %w", c.name, lockPath, linkErr)
			}
		}
	})
	c.lockedDirs = err == nil
	if c.kept != nil {
		c.kept.runsChecked = err == nil
	}
	return err
}

// Unlock removes the node's lock if holder still describes it: a run
// never removes another's.
func (c *Client) Unlock(ctx context.Context, holder []byte) (err error) {
	c.lockedDirs = false
	// The lock goes even if the record's close fails (a node's disk
	// error): a lock left would refuse every run there.
	if cerr := c.closeRecord(ctx); cerr != nil {
		defer func() { err = errors.Join(fmt.Errorf("%s: close the run's record: %w", c.name, cerr), err) }()
	}
	return c.withFiles(ctx, "unlock", func(fsys sftpFS) error {
		if c.holds(fsys, holder) {
			if err := fsys.Remove(lockPath); err != nil {
				return fmt.Errorf("%s: unlock: %w", c.name, err)
			}
			return nil
		}
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

// holds reports whether the lock reads exactly holder, with one stat
// fewer than readFile (a watcher unlocks every node it changed, round
// after round). Anything else is decided by readFile.
func (c *Client) holds(fsys sftpFS, holder []byte) bool {
	if len(holder) == 0 {
		return false
	}
	f, err := fsys.Open(lockPath)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, len(holder)+1)
	n, err := f.ReadAt(b, 0)
	return n == len(holder) && errors.Is(err, io.EOF) && string(b[:n]) == string(holder)
}

// HeldLock returns the node's lock file content, or nil if it is not
// locked.
func (c *Client) HeldLock(ctx context.Context) ([]byte, error) {
	var held []byte // set only by an operation that returned (see Runs)
	err := c.withFiles(ctx, "read lock", func(fsys sftpFS) error {
		if err := c.stateDir(fsys, stateDir, false); err != nil {
			return err
		}
		found, err := c.readFile(fsys, lockPath, lockLimit, "a lock")
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		held = found
		return err
	})
	if err != nil {
		return nil, err
	}
	return held, nil
}
