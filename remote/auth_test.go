package remote

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

func echoOn(t *testing.T, f *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// startPrompt opens a pty and a passphrase prompt on it, and waits until
// the prompt shows.
func startPrompt(t *testing.T) (ptmx, tty *os.File, done chan string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	if !echoOn(t, tty) {
		t.Fatal("a new pty has echo off")
	}
	done = make(chan string, 1)
	go func() {
		b, err := passphraseOn(tty, "Enter passphrase: ")
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		done <- string(b)
	}()
	r := bufio.NewReader(ptmx)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "passphrase: ") {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		seen.WriteByte(b)
	}
	return ptmx, tty, done
}

func TestPassphrasePromptRestoresEcho(t *testing.T) {
	ptmx, tty, done := startPrompt(t)
	if echoOn(t, tty) {
		t.Error("echo on while the prompt is open")
	}
	if _, err := ptmx.WriteString("secret\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got != "secret" {
			t.Errorf("read %q, want secret", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the prompt never returned")
	}
	if !echoOn(t, tty) {
		t.Error("echo still off after the prompt returned")
	}
}

// A second interrupt exits while the prompt is open: os.Exit runs no
// deferred function, so the handler calls RestoreTerminal first.
func TestRestoreTerminalWhilePromptOpen(t *testing.T) {
	ptmx, tty, done := startPrompt(t)
	RestoreTerminal()
	if !echoOn(t, tty) {
		t.Error("echo still off after RestoreTerminal with the prompt open")
	}
	RestoreTerminal() // nothing open any more: a no-op
	_, _ = ptmx.WriteString("x\n")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the prompt never returned")
	}
	if !echoOn(t, tty) {
		t.Error("echo off after the prompt returned")
	}
}

// The first interrupt closes an open prompt at once, with the terminal's
// echo back on, and no prompt opens after it.
func TestInterruptPromptClosesIt(t *testing.T) {
	t.Cleanup(func() {
		openPrompt.Lock()
		openPrompt.closed = false
		openPrompt.Unlock()
	})
	_, tty, done := startPrompt(t)
	InterruptPrompt()
	select {
	case got := <-done:
		if got != "error: reading the passphrase: interrupted" {
			t.Errorf("the prompt returned %q, want it interrupted", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the prompt is still open after InterruptPrompt")
	}
	if !echoOn(t, tty) {
		t.Error("echo off after the prompt was interrupted")
	}
	if _, err := passphraseOn(tty, "again: "); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("a prompt opened after the interrupt: %v", err)
	}
}

// A node's key offered to its jump host (borrowed) that cannot be loaded
// is not offered, and fails nothing: the node's own login says why. A key
// the inventory or a flag names for the host itself must load.
func TestBorrowedKeyThatCannotLoadIsSkipped(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Dialer{keys: map[string]*identity{}, log: slog.New(slog.DiscardHandler)}
	borrowed := &endpoint{identities: []identityRef{{path: filepath.Join(dir, "missing"), explicit: true, borrowed: true}, {path: garbage, borrowed: true}}}
	if _, err := d.authFor(borrowed); err != nil {
		t.Errorf("borrowed keys that cannot load: %v", err)
	}
	own := &endpoint{identities: []identityRef{{path: garbage, explicit: true}}}
	if _, err := d.authFor(own); err == nil {
		t.Error("a key named for the host itself that cannot load: no error")
	}
}
