package remote

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
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
		if err != nil && ref.borrowed {
			continue
		}
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

// offered says which keys a failed login offered, as ssh -v would: the
// usual cause is the wrong key, user or agent.
func (d *Dialer) offered(e *endpoint) string {
	var keys []string
	if d.agent != nil {
		if signers, err := d.agent.Signers(); err == nil {
			keys = append(keys, fmt.Sprintf("%d from ssh-agent", len(signers)))
		}
	}
	for _, ref := range e.identities {
		if id, _ := d.identity(ref.path, ref.explicit); id != nil && !slices.Contains(keys, ref.path) {
			keys = append(keys, ref.path)
		}
	}
	if len(keys) == 0 {
		return "no keys to offer: no ssh-agent and no identity file"
	}
	return "keys offered: " + strings.Join(keys, ", ")
}
