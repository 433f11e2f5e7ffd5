package remote

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// stallingFS is a node's SFTP server that answers at once but, for the
// files stall names (a path, or "list" for a directory listing), not until
// released: a node gone silent mid-operation.
type stallingFS struct {
	stall   string
	release chan struct{}
}

func (s *stallingFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	if r.Filepath == s.stall {
		<-s.release
	}
	return strings.NewReader("{}\n"), nil
}

func (s *stallingFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method == "List" && s.stall == "list" {
		<-s.release
	}
	return oneInfo{dirInfo{name: r.Filepath}}, nil
}

type dirInfo struct{ name string }

func (i dirInfo) Name() string       { return i.name }
func (i dirInfo) Size() int64        { return 0 }
func (i dirInfo) Mode() os.FileMode  { return os.ModeDir | 0o755 }
func (i dirInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (i dirInfo) IsDir() bool        { return true }
func (i dirInfo) Sys() any           { return nil }

// closerConn and closerChannel stand for the node's connection and the
// SFTP session's channel: closing them is all an abandoned call does.
type closerConn struct {
	ssh.Conn
	close func() error
}

func (c closerConn) Close() error { return c.close() }

type closerChannel struct {
	ssh.Channel
	close func() error
}

func (c closerChannel) Close() error { return c.close() }

// stallingClient is a Client whose SFTP session is served by a
// stallingFS; closing its connection or channel ends the session.
func stallingClient(t *testing.T, stall string) *Client {
	t.Helper()
	s := &stallingFS{stall: stall, release: make(chan struct{})}
	a, b := net.Pipe()
	srv := sftp.NewRequestServer(b, sftp.Handlers{FileGet: s, FileList: s})
	go func() { _ = srv.Serve() }()
	m := &meter{r: a}
	cl, err := sftp.NewClientPipe(m, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(s.release); a.Close(); cl.Close(); srv.Close() })
	return &Client{name: "node-9", timeout: 100 * time.Millisecond, sftp: cl, meter: m, boot: defaultBootIP,
		conn: closerConn{close: a.Close}, sftpCh: closerChannel{close: a.Close}}
}

// An SFTP read abandoned at the command timeout keeps running in its own
// goroutine until the closed session ends it; what it sets then must not
// reach the caller (bounded: "nothing it sets may be used"). Under -race,
// a reader that returns the values its operation's goroutine writes is a
// data race, and may return what the abandoned call found after the bound
// instead of the timeout.
func TestAbandonedSFTPReadsReturnNothingTheyLeftBehind(t *testing.T) {
	stalls := map[string]string{"ReadRun": runsDir + "/20261126T223050.123Z-1a2b3c.json", "HeldLock": lockPath, "Runs": "list", "ReadPersisted": unitPath}
	calls := map[string]func(c *Client) error{
		"ReadRun": func(c *Client) error {
			_, err := c.ReadRun(context.Background(), "20261126T223050.123Z-1a2b3c")
			return err
		},
		"HeldLock": func(c *Client) error {
			_, err := c.HeldLock(context.Background())
			return err
		},
		"Runs": func(c *Client) error {
			_, err := c.Runs(context.Background())
			return err
		},
		"ReadPersisted": func(c *Client) error {
			_, err := c.ReadPersisted(context.Background())
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			c := stallingClient(t, stalls[name])
			err := call(c)
			if !abandoned(err) {
				t.Errorf("%s on a silent node: %v, want it abandoned at the command timeout", name, err)
			}
			// The abandoned call ends with the session closed under it,
			// and writes what it found then.
			time.Sleep(200 * time.Millisecond)
		})
	}
}
