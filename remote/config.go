package remote

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Config is how routepush logs in to nodes. Zero values mean OpenSSH's
// defaults where OpenSSH has one.
type Config struct {
	// KnownHostsFile lists the host keys nodes must present. It is
	// required: there is no way to skip host key checking.
	KnownHostsFile string
	// IdentityFiles are private keys offered after the agent's keys. When
	// empty, OpenSSH's defaults (~/.ssh/id_ed25519, id_ecdsa, id_rsa) that
	// exist are used.
	IdentityFiles []string
	// Agent is the ssh-agent socket; empty means $SSH_AUTH_SOCK.
	Agent string
	// ConnectTimeout bounds TCP connect plus SSH handshake; default 10s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each remote command; default 60s.
	CommandTimeout time.Duration
}

// Target is one node to connect to, with its settings resolved.
type Target struct {
	Name         string // node name, used in every error
	Host         string // IP or DNS name
	Port         int    // default 22
	User         string // required
	IdentityFile string // tried first, before Config's
}

// Dialer opens connections to nodes. It reads keys and known_hosts once and
// is safe for concurrent use.
type Dialer struct {
	cfg      Config
	hostKeys *knownhosts.HostKeyDB
	agent    agent.ExtendedAgent
	mu       sync.Mutex
	signers  map[string][]ssh.Signer // by identity file path
}

// NewDialer checks the configuration and loads known_hosts and the default
// identity files.
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 60 * time.Second
	}
	if cfg.KnownHostsFile == "" {
		return nil, errors.New("remote: a known_hosts file is required")
	}
	path := ExpandHome(cfg.KnownHostsFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("remote: known_hosts: %w (routepush checks every node's host key; create it with ssh-keyscan or one manual ssh login)", err)
	}
	db, err := knownhosts.NewDB(path)
	if err != nil {
		return nil, fmt.Errorf("remote: known_hosts %s: %w", path, err)
	}
	cfg.KnownHostsFile = path
	d := &Dialer{cfg: cfg, hostKeys: db, signers: map[string][]ssh.Signer{}}
	sock := cfg.Agent
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("remote: ssh-agent at %s: %w", sock, err)
		}
		d.agent = agent.NewClient(conn)
	}
	if len(cfg.IdentityFiles) == 0 {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := ExpandHome("~/.ssh/" + name)
			if _, err := os.Stat(p); err == nil {
				d.cfg.IdentityFiles = append(d.cfg.IdentityFiles, p)
			}
		}
	}
	for _, f := range d.cfg.IdentityFiles {
		if _, err := d.identity(f); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// identity loads a private key file once.
func (d *Dialer) identity(path string) ([]ssh.Signer, error) {
	path = ExpandHome(path)
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.signers[path]; ok {
		return s, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("remote: identity file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, fmt.Errorf("remote: identity file %s is encrypted; add it to ssh-agent with ssh-add first", path)
	case err != nil:
		return nil, fmt.Errorf("remote: identity file %s: %w", path, err)
	}
	d.signers[path] = []ssh.Signer{signer}
	return d.signers[path], nil
}

// authFor returns the keys to offer a target, in OpenSSH's order: agent
// keys, then the target's identity file, then the configured ones.
func (d *Dialer) authFor(t Target) ([]ssh.AuthMethod, error) {
	var files []string
	if t.IdentityFile != "" {
		files = append(files, t.IdentityFile)
	}
	files = append(files, d.cfg.IdentityFiles...)
	var fileSigners []ssh.Signer
	seen := map[string]bool{}
	for _, f := range files {
		f = ExpandHome(f)
		if seen[f] {
			continue
		}
		seen[f] = true
		s, err := d.identity(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		fileSigners = append(fileSigners, s...)
	}
	ag := d.agent
	return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		var all []ssh.Signer
		if ag != nil {
			s, err := ag.Signers()
			if err == nil {
				all = append(all, s...)
			}
		}
		return append(all, fileSigners...), nil
	})}, nil
}

// ExpandHome expands a leading ~/ the way a shell would.
func ExpandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
