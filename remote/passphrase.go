package remote

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// TerminalPassphrase reads a passphrase from the controlling terminal, not
// from stdin, as ssh does: routepush may run with its input redirected.
func TerminalPassphrase(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to ask for its passphrase on (%v)", err)
	}
	defer tty.Close()
	return passphraseOn(tty, prompt)
}

// passphraseOn asks for a passphrase on a terminal. InterruptPrompt
// closes it: a Ctrl-C at the prompt ends it as it does ssh's, instead of
// leaving it open until the operator presses Enter.
func passphraseOn(tty *os.File, prompt string) ([]byte, error) {
	fd := int(tty.Fd())
	var wake [2]int
	if err := unix.Pipe2(wake[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	defer unix.Close(wake[0])
	defer unix.Close(wake[1])
	// Echo goes off before the prompt appears, as OpenSSH's
	// readpassphrase does: a passphrase typed the moment the prompt shows
	// would otherwise be echoed. The line stays canonical (the kernel
	// edits it) and Ctrl-C still signals.
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	quiet := *saved
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	openPrompt.Lock()
	if openPrompt.closed {
		openPrompt.Unlock()
		return nil, errPromptInterrupted
	}
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		openPrompt.Unlock()
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	openPrompt.fd, openPrompt.saved, openPrompt.wake = fd, saved, wake[1]
	openPrompt.Unlock()
	defer func() {
		openPrompt.Lock()
		defer openPrompt.Unlock()
		if openPrompt.saved != nil {
			_ = unix.IoctlSetTermios(fd, unix.TCSETS, saved)
			openPrompt.saved = nil
		}
		openPrompt.wake = -1
	}()
	if _, err := io.WriteString(tty, prompt); err != nil {
		return nil, err
	}
	pass, err := readSecretLine(fd, wake[0])
	_, _ = io.WriteString(tty, "\n")
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	return pass, nil
}

// errPromptInterrupted is a prompt closed by InterruptPrompt.
var errPromptInterrupted = errors.New("interrupted")

// readSecretLine reads one line from the terminal fd (canonical: the
// kernel hands it over whole once Enter is pressed), or returns
// errPromptInterrupted as soon as wake becomes readable.
func readSecretLine(fd, wake int) ([]byte, error) {
	var line []byte
	buf := make([]byte, 256)
	defer clear(buf)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return nil, err
		}
		if fds[1].Revents != 0 {
			clear(line)
			return nil, errPromptInterrupted
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		for _, b := range buf[:max(n, 0)] {
			switch b {
			case '\n':
				return line, nil
			case '\r':
			default:
				line = append(line, b)
			}
		}
		if err != nil || n == 0 {
			if len(line) > 0 {
				return line, nil // the end of input ends the line, as for ReadPassword
			}
			if err == nil {
				err = io.EOF
			}
			return nil, err
		}
	}
}

// openPrompt is the terminal a passphrase prompt has open, with its
// settings from before the prompt turned echo off (saved is nil when no
// prompt is open) and the pipe that wakes it; closed is set once the run
// was interrupted: no prompt opens after that.
var openPrompt = struct {
	sync.Mutex
	fd     int
	saved  *unix.Termios
	wake   int
	closed bool
}{wake: -1}

// InterruptPrompt closes an open passphrase prompt, restoring the
// terminal, and keeps any other from opening: its key then fails with
// "interrupted", as the interrupted run's connections do. The first
// interrupt calls it.
func InterruptPrompt() {
	openPrompt.Lock()
	defer openPrompt.Unlock()
	openPrompt.closed = true
	if openPrompt.saved != nil {
		_ = unix.IoctlSetTermios(openPrompt.fd, unix.TCSETS, openPrompt.saved)
		openPrompt.saved = nil
	}
	if openPrompt.wake >= 0 {
		_, _ = unix.Write(openPrompt.wake, []byte{1})
	}
}

// RestoreTerminal puts back the terminal settings an open passphrase
// prompt changed (echo), and does nothing when no prompt is open. The
// prompt calls it on return; whatever exits the process while a prompt
// may be open (a second interrupt) calls it before os.Exit, which runs no
// deferred functions.
func RestoreTerminal() {
	openPrompt.Lock()
	defer openPrompt.Unlock()
	if openPrompt.saved != nil {
		_ = unix.IoctlSetTermios(openPrompt.fd, unix.TCSETS, openPrompt.saved)
		openPrompt.saved = nil
	}
}
