package remote

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/routepush/routepush/internal/homedir"
	"github.com/routepush/routepush/internal/proxyjump"
	"golang.org/x/crypto/ssh/agent"
)

// Config is how routepush logs in to nodes. Its fields are the command
// line's and the routepush config's; they override ssh_config, and zero
// values mean "ssh_config's, else OpenSSH's default".
type Config struct {
	// KnownHostsFile overrides ssh_config's UserKnownHostsFile. Host keys
	// are always checked: unknown or changed keys are refused unless
	// AcceptNewHostKeys, which accepts unknown ones only.
	KnownHostsFile string
	// AcceptNewHostKeys is OpenSSH's StrictHostKeyChecking=accept-new:
	// unknown host keys are appended to known_hosts, changed ones refused.
	AcceptNewHostKeys bool
	// TrustNodeAddresses connects to a Target's FallbackFromAPI address as
	// to any other, its key checked under the address: a Node object's
	// InternalIP alone then decides where routepush logs in.
	TrustNodeAddresses bool
	// IdentityFiles are private keys offered after ssh-agent's keys, before
	// ssh_config's IdentityFile. With none anywhere, OpenSSH's default
	// files (~/.ssh/id_ed25519, id_ecdsa, id_rsa) that exist are used.
	IdentityFiles []string
	// Agent is the ssh-agent socket; empty means $SSH_AUTH_SOCK.
	Agent string
	// SSHConfig is the OpenSSH client configuration; nil for none.
	SSHConfig *SSHConfig
	// Jump overrides every target's jump hosts ("none": connect directly).
	Jump string
	// User is the login when neither the target nor ssh_config names one;
	// empty means the local user name, as ssh does.
	User string
	// ConnectTimeout bounds TCP connect plus SSH handshake; 0 means
	// ssh_config's ConnectTimeout, else 10s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each remote command; default 60s.
	CommandTimeout time.Duration
	// PlannedRoutes is the most routes the plan may give one node (the
	// pod CIDRs of the inventory): what routepush reads from a node, its
	// tables and run records, is bounded in proportion (see the README's
	// Limits). 0 leaves only the floors.
	PlannedRoutes int
	// ServerAliveInterval and ServerAliveCountMax are the keepalives on
	// every connection (nodes and jump hosts): 0 means ssh_config's, else
	// 15s and 3. A peer that does not answer for interval × count after a
	// keepalive is cut off.
	ServerAliveInterval time.Duration
	ServerAliveCountMax int
	// ReadOnly says the run only reads (--check): no ip is left waiting for
	// a batch after the snapshot.
	ReadOnly bool
	// Preflight reads, beside each table read, what preflight checks:
	// the forwarding settings, the addresses and the FORWARD chains
	// (route.Table.Facts; facts.go).
	Preflight bool
	// Table is the routing table routepush manages when it is not main: a
	// number, validated by ParseTable. Nodes' main tables are read too, to
	// resolve next hops.
	Table string
	// Passphrase asks for an encrypted identity file's passphrase; nil asks
	// on the terminal (/dev/tty), as ssh does.
	Passphrase func(prompt string) ([]byte, error)
	// Logger receives warnings (ssh_config fallbacks, keys added to
	// known_hosts); nil discards them.
	Logger *slog.Logger
	// KeepConnections is how many node connections stay open when their
	// Client closes, each for its node's next Dial (routepush watch: a
	// round's logins are most of its cost; see keep.go). 0 keeps none.
	KeepConnections int
	// KeepIdle closes a kept connection not used for this long (a node
	// that left the cluster); 0 never does.
	KeepIdle time.Duration
	// KeepMaxAge dials a node anew once its kept connection is this old,
	// however often it is used; 0: no limit.
	KeepMaxAge time.Duration
}

// Target is one node to connect to. Empty fields are filled from
// ssh_config, then from Config.
type Target struct {
	Name string // node name: used in every error, and the ssh_config alias when Address is empty
	// Address is where SSH connects, as the inventory says, and then the
	// ssh_config alias (as Ansible's ansible_host is what ssh sees).
	Address string
	// Fallback is connected to when neither Address nor ssh_config's
	// HostName says where the node is: its internal IP.
	Fallback string
	// FallbackFromAPI says Fallback is only a Node object's InternalIP,
	// which the node's kubelet can write: unless Config.TrustNodeAddresses,
	// routepush connects there only if known_hosts holds a key for the
	// node under its Name, and the host at Fallback offers that key.
	FallbackFromAPI bool
	Port            int
	User            string
	IdentityFile    string // offered first, after the agent's keys
	Jump            string // ProxyJump-style hops; overrides ssh_config
	Become          bool   // run ip through sudo -n
	// SFTPServer is the sftp-server become runs through sudo -n (the
	// inventory's sftp_server, --sftp-server), checked by
	// nodepath.CheckProgram (Dial refuses another program); empty:
	// Debian's path, else what the node has.
	SFTPServer string
}

// Dialer opens connections to nodes. It reads keys and known_hosts once,
// shares one connection per jump host chain, and is safe for concurrent
// use.
type Dialer struct {
	cfg   Config
	agent agent.ExtendedAgent
	log   *slog.Logger

	mu        sync.Mutex
	keys      map[string]*identity     // by identity file path
	knownDBs  map[string]*knownHostsDB // by the files' list
	jumps     onceMap[*jumpChain]      // by chain
	passMu    sync.Mutex               // one passphrase prompt at a time
	localUser string
	// textNodes are the nodes found to have an iproute2 without -json, so
	// that a second connection (a rollback) reads and writes as the first.
	textNodes map[string]bool
	// nodeIPs are the nodes whose ip routepush runs by its path (the
	// first on the PATH was missing or BusyBox's), found holds what
	// discovery found on each node it ran on (discover.go), and
	// nodeSFTP the sftp-server become runs where discovery chose it.
	nodeIPs  map[string]string
	found    map[string]discovered
	nodeSFTP map[string]string
	kept     keptConns // Config.KeepConnections
}

// nodeIP is the path a node's ip is run by, "" for `ip` on the PATH.
func (d *Dialer) nodeIP(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodeIPs[name]
}

func (d *Dialer) setNodeIP(name, path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodeIPs == nil {
		d.nodeIPs = map[string]string{}
	}
	d.nodeIPs[name] = path
}

// nodeSFTPServer is the sftp-server discovery chose for a node, "" if none.
func (d *Dialer) nodeSFTPServer(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodeSFTP[name]
}

func (d *Dialer) setNodeSFTPServer(name, path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nodeSFTP == nil {
		d.nodeSFTP = map[string]string{}
	}
	d.nodeSFTP[name] = path
}

func (d *Dialer) discoveredOf(name string) (discovered, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.found[name]
	return f, ok
}

func (d *Dialer) setDiscovered(name string, f discovered) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.found == nil {
		d.found = map[string]discovered{}
	}
	d.found[name] = f
}

func (d *Dialer) forgetDiscovered(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.found, name)
}

// logger is the Dialer's logger; one that discards on a nil Dialer (tests).
func (d *Dialer) logger() *slog.Logger {
	if d == nil || d.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.log
}

// textNode reports whether a node was found to need text mode.
func (d *Dialer) textNode(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.textNodes[name]
}

func (d *Dialer) setTextNode(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.textNodes == nil {
		d.textNodes = map[string]bool{}
	}
	d.textNodes[name] = true
}

// NewDialer checks the configuration and connects to the ssh-agent. Keys
// and known_hosts files are read when first needed, once.
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 60 * time.Second
	}
	d := &Dialer{
		cfg:      cfg,
		log:      cfg.Logger,
		keys:     map[string]*identity{},
		knownDBs: map[string]*knownHostsDB{},
		kept:     keptConns{max: cfg.KeepConnections, idle: cfg.KeepIdle, maxAge: cfg.KeepMaxAge},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if u, err := user.Current(); err == nil {
		d.localUser = u.Username
	}
	if cfg.Jump != "" {
		if _, err := proxyjump.Parse(cfg.Jump); err != nil {
			return nil, fmt.Errorf("--jump: %w", err)
		}
	}
	if cfg.KnownHostsFile != "" && !cfg.AcceptNewHostKeys {
		if _, err := os.Stat(homedir.Expand(cfg.KnownHostsFile)); err != nil {
			return nil, fmt.Errorf("known_hosts: %w (routepush checks every node's host key; create it with ssh-keyscan or one manual ssh login, or use --accept-new-host-keys)", err)
		}
	}
	for _, f := range cfg.IdentityFiles {
		if _, err := d.identity(f, true); err != nil {
			return nil, err
		}
	}
	sock := cfg.Agent
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("ssh-agent at %s: %w", sock, err)
		}
		d.agent = agent.NewClient(conn)
	}
	return d, nil
}

// Close closes the kept node connections not in use (those in use close
// with their Client), keeps none from now on, and closes the shared jump
// host connections.
func (d *Dialer) Close() error {
	d.kept.closeIdle(true)
	d.jumps.each((*jumpChain).close)
	return nil
}
