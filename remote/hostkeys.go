package remote

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyPolicy is what to do with a host key known_hosts does not hold.
// A changed or revoked key is refused under every policy.
type hostKeyPolicy int

const (
	refuseUnknownKeys hostKeyPolicy = iota // StrictHostKeyChecking yes (and ask: routepush cannot ask 500 times)
	acceptNewKeys                          // StrictHostKeyChecking accept-new
)

// globalKnownHosts are read too, as ssh reads its GlobalKnownHostsFile.
var globalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}

func (d *Dialer) hostKeyPolicy(alias, strict string) (hostKeyPolicy, error) {
	if d.cfg.AcceptNewHostKeys {
		return acceptNewKeys, nil
	}
	switch strict {
	case "", "yes", "ask", "true":
		return refuseUnknownKeys, nil
	case "accept-new":
		return acceptNewKeys, nil
	case "no", "off", "false":
		// ssh would connect even to a changed key; routepush never does.
		d.log.Warn("StrictHostKeyChecking no in ssh config: accepting unknown host keys as with accept-new; changed keys are still refused", "host", alias)
		return acceptNewKeys, nil
	}
	return 0, fmt.Errorf("ssh config for %s: StrictHostKeyChecking %q is not yes, accept-new, no or ask", alias, strict)
}

// knownHostsDB is the known_hosts files of one endpoint, read once per run,
// plus the keys routepush appended during the run (the files' callback is a
// snapshot and would not see them).
type knownHostsDB struct {
	write string // the file new keys go to: the first user file
	files []string
	db    *knownhosts.HostKeyDB // nil while no file exists

	mu    sync.Mutex
	added map[string]ssh.PublicKey // by normalized host
}

func (d *Dialer) knownHosts(e *endpoint) (*knownHostsDB, error) {
	key := strings.Join(e.knownHosts, "\x00")
	d.mu.Lock()
	defer d.mu.Unlock()
	if k, ok := d.knownDBs[key]; ok {
		return k, nil
	}
	k := &knownHostsDB{write: e.knownHosts[0], added: map[string]ssh.PublicKey{}}
	for _, f := range append(slices.Clone(e.knownHosts), globalKnownHosts...) {
		if _, err := os.Stat(f); err == nil && !slices.Contains(k.files, f) {
			k.files = append(k.files, f)
		}
	}
	if len(k.files) > 0 {
		db, err := knownhosts.NewDB(k.files...)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		k.db = db
	}
	d.knownDBs[key] = k
	return k, nil
}

// algorithms orders the host key algorithms to ask for by what known_hosts
// holds for the host, so a server with an ed25519 and an RSA key is not
// refused for offering the type that is not on file (golang/go#28870).
func (k *knownHostsDB) algorithms(addr string) []string {
	if k.db == nil {
		return nil
	}
	return k.db.HostKeyAlgorithms(addr)
}

// callback checks a host key; a refusal is also stored in *refused so the
// caller can report it rather than the handshake's generic error.
func (k *knownHostsDB) callback(d *Dialer, e *endpoint, label string, refused **HostKeyError) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		dialed := hostname
		if e.keyName != "" {
			// An address only a Node object gives: the key must be the
			// one known_hosts holds under the node's name.
			hostname = e.keyAddr()
		}
		err := error(&xknownhosts.KeyError{})
		if k.db != nil {
			err = k.db.HostKeyCallback()(hostname, remote, key)
		}
		if err == nil {
			return nil
		}
		var revoked *xknownhosts.RevokedError
		if errors.As(err, &revoked) {
			*refused = &HostKeyError{Host: label, Addr: dialed, Offered: key, Revoked: &revoked.Revoked, CheckedAs: e.keyName}
			return *refused
		}
		var ke *xknownhosts.KeyError
		if !errors.As(err, &ke) {
			return err
		}
		if len(ke.Want) == 0 && e.policy == acceptNewKeys && e.keyName == "" {
			if known, err := k.add(d, hostname, key, e.hashNew); err != nil || known == nil {
				return err
			} else if !equalKeys(known, key) {
				ke.Want = []xknownhosts.KnownKey{{Key: known, Filename: k.write}}
			} else {
				return nil
			}
		}
		files := k.files
		if len(files) == 0 {
			files = []string{k.write}
		}
		*refused = &HostKeyError{Host: label, Addr: dialed, Offered: key, Known: ke.Want, File: strings.Join(files, ", "), CheckedAs: e.keyName}
		return *refused
	}
}

func equalKeys(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && string(a.Marshal()) == string(b.Marshal())
}

// add appends an unknown host's key to known_hosts, as ssh does with
// StrictHostKeyChecking=accept-new. If the run already added a key for the
// host, that key is returned instead and nothing is written.
func (k *knownHostsDB) add(d *Dialer, hostname string, key ssh.PublicKey, hash bool) (ssh.PublicKey, error) {
	host := knownhosts.Normalize(hostname)
	k.mu.Lock()
	defer k.mu.Unlock()
	if known, ok := k.added[host]; ok {
		return known, nil
	}
	line := knownhosts.Line([]string{host}, key) + "\n"
	if hash {
		line = xknownhosts.HashHostname(host) + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal()) + "\n"
	}
	if err := appendLine(k.write, line); err != nil {
		return nil, fmt.Errorf("adding the host key of %s to %s: %w", host, k.write, err)
	}
	k.added[host] = key
	d.log.Warn("permanently added the host key to known_hosts", "host", host, "key", key.Type()+" "+ssh.FingerprintSHA256(key), "file", k.write)
	return nil, nil
}

// appendLine appends to a file, creating it (and its folder, 0700 like
// ~/.ssh) if needed, and starting a new line if the file does not end in one.
func appendLine(path, line string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return err
	}
	return f.Sync()
}
