package app

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/routepush/routepush/internal/homedir"
	"github.com/routepush/routepush/internal/nodepath"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/route"
)

// The settings several verbs read, a struct per concern. Each verb's own
// flag struct embeds those it reads, so it registers only their flags.

// baseFlags are every verb's that reads settings: the config file and
// status on stderr.
type baseFlags struct {
	config    string
	verbose   int
	quiet     bool
	logLevel  string // "": from -v/-q and the terminal
	logFormat string
}

func (b *baseFlags) add(fs *pflag.FlagSet) {
	add(fs, fs.StringVarP, &b.config, "config", "c", "", "config file (routepush.yaml); env ROUTEPUSH_* and flags override it", flagOnly, carried)
	fs.CountVarP(&b.verbose, "verbose", "v", "more status on stderr (-v info, -vv debug)")
	add(fs, fs.BoolVarP, &b.quiet, "quiet", "q", false, "only errors on stderr", flagOnly)
	add(fs, fs.StringVarP, &b.logLevel, "log-level", "", "", "status on stderr: debug, info, warn or error (default: warn, info on a terminal; -v/-q)")
	add(fs, fs.StringVarP, &b.logFormat, "log-format", "", "text", "status on stderr as text or json (log/slog)")
}

func (b *baseFlags) check() error {
	switch b.logLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level must be debug, info, warn or error, got %q", b.logLevel)
	}
	if b.logFormat != "text" && b.logFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, got %q", b.logFormat)
	}
	return nil
}

// newLogger writes status to stderr: warnings and errors by default, info
// with -v or on a terminal, debug with -vv.
func newLogger(streams Streams, b *baseFlags) *slog.Logger {
	level := slog.LevelWarn
	if f, ok := streams.ErrOut.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		level = slog.LevelInfo
	}
	switch {
	case b.quiet:
		level = slog.LevelError
	case b.verbose == 1:
		level = slog.LevelInfo
	case b.verbose >= 2:
		level = slog.LevelDebug
	}
	if b.logLevel != "" {
		_ = level.UnmarshalText([]byte(b.logLevel))
	}
	opts := &slog.HandlerOptions{Level: level}
	if b.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(streams.ErrOut, opts))
	}
	return slog.New(slog.NewTextHandler(streams.ErrOut, opts))
}

// sourceFlags say where the node table comes from (loadNodes).
type sourceFlags struct {
	inventory      string
	kubeconfig     string
	context        string
	selector       string
	chunkSize      int64
	requestTimeout time.Duration
	allowUnknown   bool
	podCIDRVars    []string
	internalIPVars []string
}

func (s *sourceFlags) add(fs *pflag.FlagSet) {
	add(fs, fs.StringVarP, &s.inventory, "inventory", "i", "", "hosts.yaml or an Ansible inventory (INI or YAML, with group_vars/ and host_vars/ beside it): the node table, or with the Kubernetes API how to reach each node", carried)
	add(fs, fs.StringSliceVarP, &s.podCIDRVars, "ansible-pod-cidr-vars", "", inventory.DefaultPodCIDRVars, "an Ansible inventory's host variables holding a node's pod CIDR(s), a string or a list", carried)
	add(fs, fs.StringSliceVarP, &s.internalIPVars, "ansible-internal-ip-vars", "", inventory.DefaultInternalIPVars, "an Ansible inventory's host variables holding a node's internal IP(s), a string or a list; a node without them routes through its ansible_host, if an IP", carried)
	add(fs, fs.StringVarP, &s.kubeconfig, "kubeconfig", "", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)", carried)
	add(fs, fs.StringVarP, &s.context, "context", "", "", "kubeconfig context to use (default: its current-context)", carried)
	add(fs, fs.StringVarP, &s.selector, "selector", "l", "", "label selector for the nodes, as kubectl -l (e.g. node-role.kubernetes.io/worker=)", carried)
	add(fs, fs.Int64VarP, &s.chunkSize, "chunk-size", "", inventory.DefaultChunkSize, "nodes per API list request")
	add(fs, fs.DurationVarP, &s.requestTimeout, "request-timeout", "", 30*time.Second, "each Kubernetes API request (0: none)")
	add(fs, fs.BoolVarP, &s.allowUnknown, "allow-unknown-nodes", "", false, "route inventory nodes the cluster does not know from the inventory alone, instead of failing")
}

// inventoryOptions say how to read the inventory file.
func (s *sourceFlags) inventoryOptions() inventory.Options {
	return inventory.Options{PodCIDRVars: s.podCIDRVars, InternalIPVars: s.internalIPVars}
}

// kube is how to read the node table from the Kubernetes API, or nil when
// the inventory alone is the table. Like kubectl, the cluster is the
// default source; an inventory alone replaces it unless a kubeconfig or
// context asks for the API too.
func (s *sourceFlags) kube() *inventory.KubeOptions {
	if s.inventory != "" && s.kubeconfig == "" && s.context == "" {
		return nil
	}
	return &inventory.KubeOptions{
		Kubeconfig: homedir.Expand(s.kubeconfig),
		Context:    s.context,
		Selector:   s.selector,
		ChunkSize:  s.chunkSize,
		Timeout:    s.requestTimeout,
	}
}

func (s *sourceFlags) check() error {
	if s.kube() == nil {
		if err := needsAPI("selector", s.selector != ""); err != nil {
			return err
		}
		return needsAPI("allow-unknown-nodes", s.allowUnknown)
	}
	if s.chunkSize < 1 {
		return fmt.Errorf("--chunk-size must be at least 1, got %d", s.chunkSize)
	}
	return nil
}

// needsAPI refuses a setting that only means something with the
// Kubernetes API as the node source, when it is set without it.
func needsAPI(name string, set bool) error {
	if set {
		return fmt.Errorf("--%s needs the Kubernetes API as the node source: add --kubeconfig or --context", name)
	}
	return nil
}

// reachFlags say how nodes are reached over SSH, and how many at once.
type reachFlags struct {
	concurrency       int
	connectTimeout    time.Duration
	commandTimeout    time.Duration
	aliveInterval     time.Duration
	aliveCountMax     int
	sshConfig         string
	jump              string
	knownHosts        string
	acceptNewHostKeys bool
	trustNodeAddrs    bool
	identities        []string
	user              string
	userFromFlag      bool // --user given on the command line: overrides the inventory
	become            bool
	sftpServer        string
	sftpFromFlag      bool // --sftp-server given on the command line: overrides the inventory
}

func (r *reachFlags) add(fs *pflag.FlagSet) {
	add(fs, fs.IntVarP, &r.concurrency, "concurrency", "", 50, "nodes worked on at once")
	add(fs, fs.DurationVarP, &r.connectTimeout, "connect-timeout", "", 0, "TCP connect plus SSH handshake, per node (default: ssh_config's ConnectTimeout, else 10s)")
	add(fs, fs.DurationVarP, &r.commandTimeout, "command-timeout", "", 60*time.Second, "each remote command")
	add(fs, fs.DurationVarP, &r.aliveInterval, "server-alive-interval", "", 0, "SSH keepalive interval, per connection (default: ssh_config's ServerAliveInterval, else 15s)")
	add(fs, fs.IntVarP, &r.aliveCountMax, "server-alive-count-max", "", 0, "unanswered keepalives before a connection is cut (default: ssh_config's ServerAliveCountMax, else 3)")
	add(fs, fs.StringVarP, &r.sshConfig, "ssh-config", "", "", "OpenSSH client config, like ssh -F (default: ~/.ssh/config, then /etc/ssh/ssh_config)", carried)
	add(fs, fs.StringVarP, &r.jump, "jump", "J", "", "jump host(s) for every node, like ssh -J: [user@]host[:port][,...] (\"none\": connect directly)", carried)
	add(fs, fs.StringVarP, &r.knownHosts, "known-hosts", "", "", "host keys every node must match (default: ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)", carried)
	add(fs, fs.BoolVarP, &r.acceptNewHostKeys, "accept-new-host-keys", "", false, "add unknown host keys to known_hosts, like StrictHostKeyChecking=accept-new; changed keys are still refused")
	add(fs, fs.BoolVarP, &r.trustNodeAddrs, "trust-node-addresses", "", false, "connect to a Node object's InternalIP even when neither the inventory nor known_hosts (a key under the node's name) vouches for it")
	add(fs, fs.StringSliceVarP, &r.identities, "identity", "", nil, "private key file(s) to offer after ssh-agent's, before ssh_config's (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa)", carried)
	add(fs, fs.StringVarP, &r.user, "user", "", "", "SSH user for every node (overrides the inventory; default: inventory, ssh_config, then your user name)", carried)
	add(fs, fs.BoolVarP, &r.become, "become", "", false, "run ip through sudo -n on every node (passwordless sudo for ip), as Ansible's become", carried)
	add(fs, fs.StringVarP, &r.sftpServer, "sftp-server", "", "", "with become, the sftp-server to run through sudo -n (overrides the inventory; default: inventory sftp_server, else /usr/lib/openssh/sftp-server, else the node's own)", carried)
}

// resolve notes whether --user was on the command line (fs: the parsed
// flags) and checks the settings.
func (r *reachFlags) resolve(fs *pflag.FlagSet) error {
	r.userFromFlag = fs.Changed("user")
	r.sftpFromFlag = fs.Changed("sftp-server")
	if r.sftpServer != "" {
		if err := nodepath.CheckProgram(r.sftpServer, "sftp-server"); err != nil {
			return fmt.Errorf("--sftp-server %q: %v", r.sftpServer, err)
		}
	}
	if r.concurrency < 1 {
		return fmt.Errorf("--concurrency must be at least 1, got %d", r.concurrency)
	}
	return nil
}

// tableFlag is the routing table routepush's routes go in.
type tableFlag struct {
	name string
	id   string // "" for main, else the table's number
}

func (t *tableFlag) add(fs *pflag.FlagSet) {
	add(fs, fs.StringVarP, &t.name, "table", "", "main", "routing table routepush's routes go in: main or a table number (for pod routes kept out of main)", carried)
}

func (t *tableFlag) resolve() (err error) {
	t.id, err = route.ParseTable(t.name)
	return err
}

// routeFlags are the attributes of routepush's routes.
type routeFlags struct {
	protocol int
	metric   int64 // -1: the kernel's default per family
}

func (r *routeFlags) add(fs *pflag.FlagSet) {
	add(fs, fs.IntVarP, &r.protocol, "protocol", "", int(orchestrator.DefaultProtocol), "route protocol number marking routepush's routes (1-255, none another owner uses: not kernel 2, boot 3, static 4, dhcp 16, ...)")
	add(fs, fs.Int64VarP, &r.metric, "metric", "", -1, "metric of routepush's routes (default: the kernel's, 0 for IPv4 and 1024 for IPv6)")
}

func (r *routeFlags) check() error {
	if r.metric < -1 || r.metric > 1<<32-1 {
		return fmt.Errorf("--metric must be 0-4294967295, got %d", r.metric)
	}
	owner, _ := route.ReservedProtocol(route.Protocol(r.protocol))
	switch {
	case r.protocol < 1 || r.protocol > 255:
		return fmt.Errorf("--protocol must be 1-255, got %d", r.protocol)
	case owner != "":
		return fmt.Errorf("--protocol %d is %s; routepush may only manage routes of a protocol nobody else uses, e.g. the default %d",
			r.protocol, owner, orchestrator.DefaultProtocol)
	}
	return nil
}

// planOptions are the attributes of the planned routes; nil metric: the
// kernel's default per family.
func (r *routeFlags) planOptions(table *tableFlag) orchestrator.PlanOptions {
	o := orchestrator.PlanOptions{Protocol: route.Protocol(r.protocol), Table: table.id, ProtocolNames: localProtocolNames()}
	if r.metric >= 0 {
		m := uint32(r.metric)
		o.Metric = &m
	}
	return o
}
