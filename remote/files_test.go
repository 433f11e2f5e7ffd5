package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
)

// sftpPair is an SFTP client on a real pkg/sftp server over a pipe, its
// session counted by a meter as Client.files counts a node's.
func sftpPair(t *testing.T) sftpFS {
	t.Helper()
	a, b := net.Pipe()
	srv, err := sftp.NewServer(b)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	m := &meter{r: a}
	cl, err := sftp.NewClientPipe(m, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); cl.Close(); srv.Close() })
	return sftpFS{cl, m}
}

func TestStateDirRefusesLinksAndOpenDirs(t *testing.T) {
	fsys := sftpPair(t)
	c := &Client{name: "node-1"}
	dir := t.TempDir()
	ok, link, open, missing := filepath.Join(dir, "ok"), filepath.Join(dir, "link"), filepath.Join(dir, "open"), filepath.Join(dir, "missing")
	if err := os.Mkdir(ok, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := c.stateDir(fsys, ok, false); err != nil {
		t.Errorf("a 0755 directory: %v", err)
	}
	if err := c.stateDir(fsys, link, true); err == nil || !strings.Contains(err.Error(), "node-1: refusing "+link+": it is a symbolic link") {
		t.Errorf("a symlink: %v", err)
	}
	if err := c.stateDir(fsys, open, true); err == nil || !strings.Contains(err.Error(), "writable by group or others (mode 0777)") {
		t.Errorf("a 0777 directory: %v", err)
	}
	if err := c.stateDir(fsys, missing, false); err != nil {
		t.Errorf("missing, not created: %v", err)
	}
	if err := c.stateDir(fsys, missing, true); err != nil {
		t.Errorf("missing, created: %v", err)
	}
	if st, err := os.Lstat(missing); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Errorf("created: %v %v", st, err)
	}
}

func TestReadFileAndListingBounded(t *testing.T) {
	fsys := sftpPair(t)
	c := &Client{name: "node-2"}
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	fsys.m.budget(c.opBudget())
	if b, err := c.readFile(fsys, small, 10, "x"); err != nil || string(b) != "0123456789" {
		t.Errorf("at the limit: %q, %v", b, err)
	}
	var tooMuch *LimitError
	if _, err := c.readFile(fsys, small, 9, "a lock"); !errors.As(err, &tooMuch) || !strings.Contains(err.Error(), "node-2: "+small+": exceeds 9 bytes (the limit for a lock)") {
		t.Errorf("over the limit: %v", err)
	}
	// A listing over listLimit trips the meter: an error, not a heap.
	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 12000 {
		f, err := os.Create(filepath.Join(many, fmt.Sprintf("%020d.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, err := c.readDir(fsys, many); !errors.As(err, &tooMuch) || !strings.Contains(err.Error(), "list "+many+": exceeds 1 MiB") {
		t.Errorf("a listing of 12,000 entries: %v", err)
	}
}

// fsyncCounter counts the fsync@openssh.com requests an SFTP client
// writes (pkg/sftp writes each packet whole).
type fsyncCounter struct {
	io.WriteCloser
	n atomic.Int32
}

func (w *fsyncCounter) Write(p []byte) (int, error) {
	w.n.Add(int32(bytes.Count(p, []byte("fsync@openssh.com"))))
	return w.WriteCloser.Write(p)
}

// openSSHFiles is an SFTP client on OpenSSH's own sftp-server, started
// with args (pkg/sftp's server has no fsync, nor a real append), and the
// count of fsync requests sent to it.
func openSSHFiles(t *testing.T, args ...string) (sftpFS, *fsyncCounter) {
	t.Helper()
	const server = "/usr/lib/openssh/sftp-server"
	cmd := exec.Command(server, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v (make deps installs openssh-server)", err)
	}
	w := &fsyncCounter{WriteCloser: in}
	m := &meter{r: out}
	cl, err := sftp.NewClientPipe(m, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); _ = cmd.Wait() })
	if _, ok := cl.HasExtension("fsync@openssh.com"); !ok {
		t.Fatalf("%s does not offer fsync@openssh.com", server)
	}
	return sftpFS{cl, m}, w
}

// A record and its states are synced on the node only when durable; the
// write is atomic and the append appends either way.
func TestRecordWritesSyncOnlyWhenDurable(t *testing.T) {
	fsys, w := openSSHFiles(t)
	c := &Client{name: "node-1"}
	name := filepath.Join(t.TempDir(), "run.json")
	for _, durable := range []bool{false, true} {
		w.n.Store(0)
		if err := c.writeAtomic(fsys, name, []byte("{}\n"), 0o600, durable); err != nil {
			t.Fatal(err)
		}
		if err := c.appendLine(fsys, name, []byte("{\"state\":\"verified\"}\n"), durable); err != nil {
			t.Fatal(err)
		}
		// A watcher's: the record left open, its state written through it.
		kept := name + ".kept"
		f, err := c.writeAtomicOpen(fsys, kept, []byte("{}\n"), 0o600, durable)
		if err != nil {
			t.Fatal(err)
		}
		if err := appendTo(f, []byte("{\"state\":\"verified\"}\n"), durable); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if b, err := os.ReadFile(kept); err != nil || string(b) != "{}\n{\"state\":\"verified\"}\n" {
			t.Errorf("durable %v: kept record %q, %v", durable, b, err)
		}
		want := int32(0)
		if durable {
			want = 4
		}
		if got := w.n.Load(); got != want {
			t.Errorf("durable %v: %d fsync requests, want %d", durable, got, want)
		}
		if b, err := os.ReadFile(name); err != nil || string(b) != "{}\n{\"state\":\"verified\"}\n" {
			t.Errorf("durable %v: record %q, %v", durable, b, err)
		}
		if st, err := os.Stat(name); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("durable %v: %v %v", durable, st, err)
		}
	}
}

// A record kept open for its states appends them after whatever is there:
// a state another run appended by name meanwhile (a takeover, a rollback
// --force from another bastion) is not overwritten.
func TestOpenRecordAppendsAfterOthers(t *testing.T) {
	holder, _ := openSSHFiles(t)
	other, _ := openSSHFiles(t)
	c := &Client{name: "node-1"}
	name := filepath.Join(t.TempDir(), "run.json")
	f, err := c.writeAtomicOpen(holder, name, []byte("{\"state\":\"applying\"}\n"), 0o600, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.appendLine(other, name, []byte("{\"state\":\"rolled-back\"}\n"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("{\"state\":\"verified\"}\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(name)
	if want := "{\"state\":\"applying\"}\n{\"state\":\"rolled-back\"}\n{\"state\":\"verified\"}\n"; string(b) != want {
		t.Errorf("record %q, want %q", b, want)
	}
}

// A record is 0600 whatever mode sftp-server makes files with (here
// umask 000: 0666): it must not become readable or writable by others
// if its directory ever lets them in.
func TestRecordModeWhateverTheUmask(t *testing.T) {
	fsys, _ := openSSHFiles(t, "-u", "000")
	c := &Client{name: "node-1"}
	dir := t.TempDir()
	if err := c.writeAtomic(fsys, filepath.Join(dir, "a.json"), []byte("{}\n"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	f, err := c.writeAtomicOpen(fsys, filepath.Join(dir, "b.json"), []byte("{}\n"), 0o600, false)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, n := range []string{"a.json", "b.json"} {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", n, st.Mode(), err)
		}
	}
}

// routepush's state is made root's alone; the routes file's directory
// stays readable.
func TestMadeMode(t *testing.T) {
	for dir, want := range map[string]fs.FileMode{stateDir: 0o700, runsDir: 0o700, "/etc/routepush": 0o755, "/var/lib/routepush-other": 0o755} {
		if got := madeMode(dir); got != want {
			t.Errorf("%s: %04o, want %04o", dir, got, want)
		}
	}
}
