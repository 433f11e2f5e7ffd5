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
// The directories are checked (and made) first, except through a kept
// connection whose Lock has checked them before: they were root's alone,
// so only root can have changed them since, and a watcher locks every
// node it changes, round after round. If they are gone, they are checked
// and made again. When /var/lib/routepush lets nobody but root in (0700,
// as routepush makes it), the files made in it need no mode of their own:
// a request fewer for the lock, and for the record under it.
func (c *Client) Lock(ctx context.Context, holder []byte) error {
	checked := c.kept != nil && c.kept.dirsChecked
	closed := checked && c.kept.statePrivate
	// Set only once the operation has returned: one abandoned at the
	// timeout still runs (bounded), and its Client is tainted.
	err := c.withFiles(ctx, "lock", func(fsys sftpFS) error {
		checkDirs := func() error {
			for _, dir := range []string{stateDir, runsDir} {
				perm, err := c.stateDir(fsys, dir, true)
				if err != nil {
					if hint := c.hint(err.Error()); hint != "" {
						err = fmt.Errorf("%w (%s)", err, hint)
					}
					return err
				}
				if dir == stateDir {
					closed = private(perm)
				}
			}
			return nil
		}
		if !checked {
			if err := checkDirs(); err != nil {
				return err
			}
		}
		tmp := tempName(lockPath)
		f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if checked && errors.Is(err, fs.ErrNotExist) {
			if err := checkDirs(); err != nil {
				return err
			}
			f, err = fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		}
		if err == nil {
			// 0600 before a byte is written (the lock names this host),
			// unless nobody else can reach it anyway.
			if !closed {
				err = f.Chmod(0o600)
			}
			if err == nil {
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
	c.privateState = err == nil && closed
	if c.kept != nil {
		c.kept.dirsChecked = err == nil
		c.kept.statePrivate = err == nil && closed
	}
	return err
}

// Unlock removes the node's lock if holder still describes it: a run
// never removes another's.
func (c *Client) Unlock(ctx context.Context, holder []byte) error {
	c.lockedDirs, c.privateState = false, false
	c.closeRecord(ctx)
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
		if _, err := c.stateDir(fsys, stateDir, false); err != nil {
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
