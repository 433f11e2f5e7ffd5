package remote

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// identity is one private key file and, when one sits beside it
// (id_ed25519-cert.pub), its OpenSSH certificate.
type identity struct {
	path    string
	signers []ssh.Signer // certificate first, then the plain key
}

// identity loads a key file once. A missing file is an error only when the
// inventory or a flag named it; OpenSSH skips missing defaults and
// ssh_config entries. An encrypted key is not decrypted here: see
// lockedKey.
func (d *Dialer) identity(path string, explicit bool) (*identity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := d.keys[path]; ok {
		return id, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			d.keys[path] = nil
			return nil, nil
		}
		return nil, fmt.Errorf("identity file: %w", err)
	}
	var signer ssh.Signer
	signer, err = ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		pub := missing.PublicKey
		if pub == nil {
			// Old PEM keys keep no public half in the clear; OpenSSH then
			// reads the .pub file beside them.
			if pub, err = readPublicKey(path + ".pub"); err != nil {
				return nil, fmt.Errorf("identity file %s is encrypted and its public key is not readable: %w", path, err)
			}
		}
		signer = &lockedKey{d: d, path: path, pem: pem, pub: pub}
	case err != nil:
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	id := &identity{path: path}
	if cert, err := readPublicKey(path + "-cert.pub"); err == nil {
		if c, ok := cert.(*ssh.Certificate); ok {
			if cs, err := ssh.NewCertSigner(c, signer); err == nil {
				id.signers = append(id.signers, cs)
			} else {
				d.log.Warn("certificate does not match its key; offering the key alone", "certificate", path+"-cert.pub", "err", err)
			}
		}
	}
	id.signers = append(id.signers, signer)
	d.keys[path] = id
	return id, nil
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(b)
	return key, err
}

// authFor returns the keys to offer an endpoint, in OpenSSH's order: the
// agent's keys, then identity files (each with its certificate first).
func (d *Dialer) authFor(e *endpoint) ([]ssh.AuthMethod, error) {
	var fileSigners []ssh.Signer
	seen := map[string]bool{}
	for _, ref := range e.identities {
		if seen[ref.path] {
			continue
		}
		seen[ref.path] = true
		id, err := d.identity(ref.path, ref.explicit)
		if err != nil {
			return nil, err
		}
		if id != nil {
			fileSigners = append(fileSigners, id.signers...)
		}
	}
	ag := d.agent
	return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		var all []ssh.Signer
		if ag != nil {
			if s, err := ag.Signers(); err == nil {
				all = append(all, s...)
			}
		}
		return append(all, fileSigners...), nil
	})}, nil
}

// lockedKey is an encrypted identity file. Like ssh, routepush asks for the
// passphrase only when a server accepts the key, then keeps the decrypted
// key for every other node: one prompt per run, not one per node.
type lockedKey struct {
	d    *Dialer
	path string
	pem  []byte
	pub  ssh.PublicKey

	mu     sync.Mutex
	signer ssh.Signer
	err    error
}

func (k *lockedKey) PublicKey() ssh.PublicKey { return k.pub }

func (k *lockedKey) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := k.unlock()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

// Algorithms and SignWithAlgorithm let RSA keys sign with SHA-2, which
// current OpenSSH servers require.
func (k *lockedKey) Algorithms() []string {
	if k.pub.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.pub.Type()}
}

func (k *lockedKey) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := k.unlock()
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	return s.Sign(rand, data)
}

// unlock asks for the passphrase (up to three times, as ssh does) and
// remembers the outcome, good or bad, for the rest of the run.
func (k *lockedKey) unlock() (ssh.Signer, error) {
	k.d.passMu.Lock() // one prompt on the terminal at a time
	defer k.d.passMu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.signer != nil || k.err != nil {
		return k.signer, k.err
	}
	ask := k.d.cfg.Passphrase
	if ask == nil {
		ask = TerminalPassphrase
	}
	for range 3 {
		pass, err := ask(fmt.Sprintf("Enter passphrase for key '%s': ", k.path))
		if err != nil {
			k.err = fmt.Errorf("identity file %s is encrypted: %w (or add it to ssh-agent with ssh-add first)", k.path, err)
			return nil, k.err
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(k.pem, pass)
		if err == nil {
			k.signer = s
			return s, nil
		}
		if !errors.Is(err, x509.IncorrectPasswordError) {
			k.err = fmt.Errorf("identity file %s: %w", k.path, err)
			return nil, k.err
		}
	}
	k.err = fmt.Errorf("identity file %s: bad passphrase, 3 tries", k.path)
	return nil, k.err
}

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
