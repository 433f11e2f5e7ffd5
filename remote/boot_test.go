package remote

import (
	"context"
	"errors"
	"io"
	"path"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
)

// failingClose makes the close of a record's handle fail (an EIO or an
// ENOSPC reported at close, as NFS and quota'd filesystems do).
type failingClose struct {
	sftp.FileWriter
	fail *atomic.Bool
}

type closeFails struct {
	io.WriterAt
	fail *atomic.Bool
}

func (c closeFails) Close() error {
	if cl, ok := c.WriterAt.(io.Closer); ok {
		_ = cl.Close()
	}
	if c.fail.Load() {
		return errors.New("EIO at close")
	}
	return nil
}

func (w failingClose) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	wa, err := w.FileWriter.Filewrite(r)
	if err != nil || !strings.Contains(r.Filepath, ".json") {
		return wa, err
	}
	return closeFails{wa, w.fail}, nil
}

// A record whose close fails (the node's filesystem says so at close) is
// reported, but the lock is still released: every state was written and
// acknowledged, and a lock left behind by a live watcher is its own,
// which it never takes over: the node stays Pending until it restarts.
func TestUnlockReleasesTheLockWhenTheRecordCloseFails(t *testing.T) {
	s, cfg := startKeepSSHD(t, 10)
	var fail atomic.Bool
	mem := sftp.InMemHandler()
	s.mu.Lock()
	s.files = func() sftp.Handlers {
		h := mem
		h.FileList = rootLister{mem.FileList.(sftp.LstatFileLister), &rootFS{}}
		h.FileCmd = rootCmd{mem.FileCmd}
		h.FilePut = failingClose{mem.FilePut, &fail}
		return h
	}
	s.mu.Unlock()
	d := keptDialer(t, cfg)
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	mkdirs(t, c, "/var/lib")
	holder := []byte("round 1")
	if err := c.Lock(ctx, holder); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRun(ctx, "run-a", []byte("{}\n"), 10, nil, false); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	uerr := c.Unlock(ctx, holder)
	held, herr := c.HeldLock(ctx)
	c.Close()
	if herr != nil || held != nil {
		t.Errorf("Unlock (%v) left the lock %q (%v): the record's close failed, and the lock stays", uerr, held, herr)
	}
	if uerr == nil || !strings.Contains(uerr.Error(), "close the run's record") {
		t.Errorf("Unlock: %v, want the record's close named", uerr)
	}
}

// A node with no boot id (BusyBox without /proc mounted for sftp-server,
// a chrooted internal-sftp) has none: "" and no error, so its records
// carry none and its runs still go.
func TestBootIDAbsentIsNone(t *testing.T) {
	s, _, d := rootDialer(t)
	ctx := context.Background()
	c, err := d.Dial(ctx, s.target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.BootID(ctx); err != nil || got != "" {
		t.Errorf("no %s: %q, %v; want \"\", nil", path.Base(bootIDPath), got, err)
	}
}

// A node's next connection (its kept one dropped: a restart resets it)
// reads the boot id again: nothing of the last connection's survives.
func TestBootIDReadAgainOnANewConnection(t *testing.T) {
	s, _, d := rootDialer(t)
	ctx := context.Background()
	for i, id := range []string{"1b4e28ba-2fa1-11d2-883f-0016d3cca427", "6fa459ea-ee8a-3ca4-894e-db77e160355e"} {
		c, err := d.Dial(ctx, s.target())
		if err != nil {
			t.Fatal(err)
		}
		putFile(t, c, bootIDPath, id+"\n")
		if got, err := c.BootID(ctx); err != nil || got != id {
			t.Errorf("connection %d: boot id %q, %v; want %q", i, got, err, id)
		}
		c.Close()
		d.Forget(s.target().Name) // as a restart ends it
	}
	if got := s.conns.Load(); got != 2 {
		t.Errorf("%d logins, want 2", got)
	}
}
