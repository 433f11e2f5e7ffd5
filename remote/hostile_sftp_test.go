package remote

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// lyingFS is a node's SFTP server that lies about sizes: every file is
// content, but stat says size (a compromised node's sftp-server can send
// any 64-bit size; pkg/sftp hands it on as an int64, negative or huge).
type lyingFS struct {
	content []byte
	size    int64
}

type lyingInfo struct {
	name string
	size int64
}

func (i lyingInfo) Name() string       { return i.name }
func (i lyingInfo) Size() int64        { return i.size }
func (i lyingInfo) Mode() os.FileMode  { return 0o600 }
func (i lyingInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (i lyingInfo) IsDir() bool        { return false }
func (i lyingInfo) Sys() any           { return nil }

type oneInfo struct{ fi os.FileInfo }

func (o oneInfo) ListAt(ls []os.FileInfo, off int64) (int, error) {
	if off > 0 || len(ls) == 0 {
		return 0, io.EOF
	}
	ls[0] = o.fi
	return 1, io.EOF
}

func (l *lyingFS) Fileread(*sftp.Request) (io.ReaderAt, error) {
	return bytes.NewReader(l.content), nil
}

func (l *lyingFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	return oneInfo{lyingInfo{name: r.Filepath, size: l.size}}, nil
}

// lyingPair is an SFTP client on a lyingFS server over a pipe.
func lyingPair(t *testing.T, l *lyingFS) sftpFS {
	t.Helper()
	a, b := net.Pipe()
	srv := sftp.NewRequestServer(b, sftp.Handlers{FileGet: l, FileList: l})
	go func() { _ = srv.Serve() }()
	m := &meter{r: a}
	cl, err := sftp.NewClientPipe(m, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); cl.Close(); srv.Close() })
	return sftpFS{cl, m}
}

// A node whose SFTP server says a run record is -1 (or 2^64-1) bytes long
// must not crash routepush: readTail runs in a goroutine of its own
// (withFiles), and a panic there ends the whole process with every node
// still locked and nothing rolled back.
func TestReadTailLyingSize(t *testing.T) {
	c := &Client{name: "node-5"}
	tail := `{"state":"verified","time":"2026-01-01T00:00:00Z"}` + "\n"
	for _, size := range []int64{-1, -4097, 1 << 62, int64(len(tail))} {
		fsys := lyingPair(t, &lyingFS{content: []byte(tail), size: size})
		fsys.m.budget(c.opBudget())
		var b []byte
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("size %d: readTail panicked: %v", size, p)
				}
			}()
			b, err = c.readTail(fsys, "/var/lib/routepush/runs/x.json", 4096)
		}()
		if len(b) > 4096 {
			t.Errorf("size %d: %d bytes, want at most 4096", size, len(b))
		}
		if size == int64(len(tail)) && (err != nil || string(b) != tail) {
			t.Errorf("an honest size: %q, %v", b, err)
		}
	}
}

// What a node's stat does not bound (a device, a FIFO, a size the server
// does not send) is bounded by the read itself: the limit, not the file's
// end, decides.
func TestReadFileWithoutSizeBounded(t *testing.T) {
	c := &Client{name: "node-6"}
	fsys := sftpPair(t)
	fsys.m.budget(c.opBudget())
	_, err := c.readFile(fsys, "/dev/zero", lockLimit, "a lock")
	var tooMuch *LimitError
	if !errors.As(err, &tooMuch) || !strings.Contains(err.Error(), "node-6: /dev/zero: exceeds 16 KiB (the limit for a lock)") {
		t.Errorf("/dev/zero as a lock: %v (%T)", err, err)
	}
	// A server whose stat says a small size but sends more.
	big := bytes.Repeat([]byte("x"), lockLimit+100)
	fsys = lyingPair(t, &lyingFS{content: big, size: 10})
	fsys.m.budget(c.opBudget())
	if _, err := c.readFile(fsys, "/var/lib/routepush/lock", lockLimit, "a lock"); err == nil || !strings.Contains(err.Error(), "exceeds 16 KiB") {
		t.Errorf("stat says 10 bytes, the file has %d: %v", len(big), err)
	}
}
