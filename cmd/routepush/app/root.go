package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/term"

	"github.com/routepush/routepush/internal/homedir"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/route"
)

// options are the resolved settings of a run: defaults, then the config
// file, then ROUTEPUSH_* environment variables, then flags.
type options struct {
	inventory         string
	kube              *inventory.KubeOptions // nil: the inventory alone is the node table
	allowUnknown      bool
	markAvailable     bool
	check             bool
	concurrency       int
	connectTimeout    time.Duration
	commandTimeout    time.Duration
	aliveInterval     time.Duration
	aliveCountMax     int
	knownHosts        string
	identities        []string
	sshConfig         string
	jump              string
	acceptNewHostKeys bool
	trustNodeAddrs    bool
	become            bool
	user              string
	userFromFlag      bool // --user given on the command line: overrides the inventory
	rollback          orchestrator.RollbackMode
	protocol          int
	metric            *uint32 // nil: the kernel's default per family
	table             string  // "" for main, else the table's number
	prune, adopt      bool
	persist           bool
	rails             inventory.Rails
	keepRuns          int
	maxUnreachable    int
	waitLock          time.Duration
	canary            int
	limit             string
	jsonOutput        bool
	verbosity         int
	logLevel          string // --log-level: overrides -v/-q
	logJSON           bool
}

func newRootCommand(ctx context.Context, streams Streams) *cobra.Command {
	v := viper.New()
	cmd := &cobra.Command{
		Use:   "routepush [--inventory hosts.yaml] [--kubeconfig FILE] [--check]",
		Short: "Push pod-network host routes to every Kubernetes node over SSH",
		Long: `routepush gives every node a route to each other node's pod CIDR via that
node's internal IP, over SSH, all nodes at once. It verifies every route and
restores every changed node exactly if anything fails.

The node table (names, internal IPs, pod CIDRs) comes from the Kubernetes
API, read with kubectl's kubeconfig rules, or from an inventory file alone
when --inventory is given without --kubeconfig or --context. Given both, the
API says where pods are and the inventory how to reach each node over SSH.

Exit codes: 0 done or in sync, 1 error (changed nodes rolled back),
2 --check found changes, 130 interrupted.`,
		Example: `  routepush check                              # nodes from ~/.kube/config's cluster; change nothing
  routepush plan -i hosts.yaml                 # each node's routes from the inventory; connect nowhere
  routepush check -i hosts.yaml                # no cluster: the inventory is the table
  routepush -i hosts.yaml --persist            # apply, verify, keep for the next boot; roll back on failure
  routepush --kubeconfig admin.conf -i hosts.yaml --mark-network-available
  routepush -i hosts.yaml --limit 'worker-*,!worker-3' --canary 1
  routepush check -i hosts.yaml -o json        # one JSON document (docs/report.schema.json)
  routepush rollback -i hosts.yaml             # undo the newest run from the nodes' records`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := loadOptions(cmd, v)
			if err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("profile")
			path, _ := cmd.Flags().GetString("profile-output")
			stopProfile, err := startProfile(name, path)
			if err != nil {
				return err
			}
			err = runApply(ctx, streams, opts, newLogger(streams, opts))
			if perr := stopProfile(); perr != nil && err == nil {
				err = fmt.Errorf("failed to write profile %s: %w", path, perr)
			}
			return err
		},
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.AddCommand(newRollbackCommand(ctx, streams, v))
	addSubcommands(ctx, cmd, streams, v)
	// Persistent: `routepush rollback` reaches nodes the same way.
	f := cmd.PersistentFlags()
	f.StringP("inventory", "i", "", "hosts.yaml: the node table, or with the Kubernetes API how to reach each node")
	f.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
	f.String("context", "", "kubeconfig context to use (default: its current-context)")
	f.StringP("selector", "l", "", "label selector for the nodes, as kubectl -l (e.g. node-role.kubernetes.io/worker=)")
	f.Int64("chunk-size", inventory.DefaultChunkSize, "nodes per API list request")
	f.Duration("request-timeout", 30*time.Second, "each Kubernetes API request (0: none)")
	f.Bool("allow-unknown-nodes", false, "route inventory nodes the cluster does not know from the inventory alone, instead of failing")
	f.Bool("mark-network-available", false, "set NetworkUnavailable=False (reason RouteCreated) on every node whose routes verified")
	f.Bool("check", false, "show what would change on each node; change nothing (exit 2 if anything would)")
	f.StringP("config", "c", "", "config file (routepush.yaml); env ROUTEPUSH_* and flags override it")
	f.Int("concurrency", 50, "nodes worked on at once")
	f.Duration("connect-timeout", 0, "TCP connect plus SSH handshake, per node (default: ssh_config's ConnectTimeout, else 10s)")
	f.Duration("command-timeout", 60*time.Second, "each remote command")
	f.Duration("server-alive-interval", 0, "SSH keepalive interval, per connection (default: ssh_config's ServerAliveInterval, else 15s)")
	f.Int("server-alive-count-max", 0, "unanswered keepalives before a connection is cut (default: ssh_config's ServerAliveCountMax, else 3)")
	f.String("ssh-config", "", "OpenSSH client config, like ssh -F (default: ~/.ssh/config, then /etc/ssh/ssh_config)")
	f.StringP("jump", "J", "", "jump host(s) for every node, like ssh -J: [user@]host[:port][,...] (\"none\": connect directly)")
	f.String("known-hosts", "", "host keys every node must match (default: ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)")
	f.Bool("accept-new-host-keys", false, "add unknown host keys to known_hosts, like StrictHostKeyChecking=accept-new; changed keys are still refused")
	f.Bool("trust-node-addresses", false, "connect to a Node object's InternalIP even when neither the inventory nor known_hosts (a key under the node's name) vouches for it")
	f.StringSlice("identity", nil, "private key file(s) to offer after ssh-agent's, before ssh_config's (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
	f.String("user", "", "SSH user for every node (overrides the inventory; default: inventory, ssh_config, then your user name)")
	f.Bool("become", false, "run ip through sudo -n on every node (passwordless sudo for ip), as Ansible's become")
	f.String("rollback", "all", "on failure restore: all changed nodes | host (only failed ones) | none")
	f.String("limit", "", "act only on these nodes, as Ansible's --limit: comma-separated name patterns (globs), '!' excludes; the others stay destinations")
	f.Int("canary", 0, "apply and verify this many nodes first, the rest only if they succeed (like Ansible's serial)")
	f.Duration("wait-lock", 0, "wait this long for nodes another run has locked, instead of failing at once")
	f.Int("max-unreachable", 0, "nodes that may be unreachable at connect time and be left out; past it nothing changes")
	f.Int("keep-runs", 10, "run records each node keeps in /var/lib/routepush/runs")
	f.Int("protocol", int(orchestrator.DefaultProtocol), "route protocol number marking routepush's routes (1-255, none another owner uses: not kernel 2, boot 3, static 4, dhcp 16, ...)")
	f.String("table", "main", "routing table routepush's routes go in: main or a table number (for pod routes kept out of main)")
	f.Int64("metric", -1, "metric of routepush's routes (default: the kernel's, 0 for IPv4 and 1024 for IPv6)")
	f.Bool("prune", false, "delete routepush's routes that are no longer planned (nodes that left, CIDRs that moved)")
	f.Bool("adopt", false, "replace other owners' routes to planned destinations (e.g. the Ansible playbook's) and delete self routes, instead of refusing the node")
	f.Bool("persist", false, "after a node verifies, keep its routes for the next boot: /etc/routepush/routes and routepush-routes.service, enabled where systemd runs; --check reports where they differ")
	f.Int("min-prefix-v4", inventory.DefaultRails().MinPrefix[0], "refuse IPv4 pod CIDRs wider than this prefix length")
	f.Int("min-prefix-v6", inventory.DefaultRails().MinPrefix[1], "refuse IPv6 pod CIDRs wider than this prefix length")
	f.CountP("verbose", "v", "more status on stderr (-v info, -vv debug)")
	f.BoolP("quiet", "q", false, "only errors on stderr")
	f.String("log-level", "", "status on stderr: debug, info, warn or error (default: warn, info on a terminal; -v/-q)")
	f.String("log-format", "text", "status on stderr as text or json (log/slog)")
	f.StringP("output", "o", "text", "report format on stdout: text, or json (docs/report.schema.json; nothing else is printed on stdout)")
	f.String("profile", "none", "profile to write, as kubectl's: "+strings.Join(profiles, "|")+" (heap: at the live heap's peak)")
	f.String("profile-output", "profile.pprof", "file the profile is written to")
	return cmd
}

// configKeys are the settings a config file or ROUTEPUSH_* may set: the
// flags, under the same names.
var configKeys = []string{"inventory", "kubeconfig", "context", "selector", "chunk-size", "request-timeout",
	"allow-unknown-nodes", "mark-network-available", "check", "concurrency", "connect-timeout",
	"command-timeout", "server-alive-interval", "server-alive-count-max", "ssh-config", "jump", "known-hosts", "accept-new-host-keys", "trust-node-addresses", "identity", "user", "become",
	"rollback", "limit", "log-level", "log-format", "output", "canary", "wait-lock", "max-unreachable", "keep-runs", "protocol", "table", "metric", "prune", "adopt", "persist", "min-prefix-v4", "min-prefix-v6"}

func loadOptions(cmd *cobra.Command, v *viper.Viper) (*options, error) {
	f := cmd.Flags()
	v.SetEnvPrefix("ROUTEPUSH")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	for _, k := range configKeys {
		if err := v.BindPFlag(k, f.Lookup(k)); err != nil {
			return nil, err
		}
	}
	if path, _ := f.GetString("config"); path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("failed to read config %s: %w", path, err)
		}
		for _, k := range v.AllKeys() {
			if !slices.Contains(configKeys, k) {
				return nil, fmt.Errorf("config %s: unknown key %q (known: %s)", path, k, strings.Join(configKeys, ", "))
			}
		}
	}
	o := &options{
		inventory:         v.GetString("inventory"),
		allowUnknown:      v.GetBool("allow-unknown-nodes"),
		markAvailable:     v.GetBool("mark-network-available"),
		check:             v.GetBool("check"),
		concurrency:       v.GetInt("concurrency"),
		connectTimeout:    v.GetDuration("connect-timeout"),
		commandTimeout:    v.GetDuration("command-timeout"),
		aliveInterval:     v.GetDuration("server-alive-interval"),
		aliveCountMax:     v.GetInt("server-alive-count-max"),
		knownHosts:        v.GetString("known-hosts"),
		identities:        v.GetStringSlice("identity"),
		sshConfig:         v.GetString("ssh-config"),
		jump:              v.GetString("jump"),
		acceptNewHostKeys: v.GetBool("accept-new-host-keys"),
		trustNodeAddrs:    v.GetBool("trust-node-addresses"),
		become:            v.GetBool("become"),
		user:              v.GetString("user"),
		userFromFlag:      f.Changed("user"),
		protocol:          v.GetInt("protocol"),
		prune:             v.GetBool("prune"),
		keepRuns:          v.GetInt("keep-runs"),
		maxUnreachable:    v.GetInt("max-unreachable"),
		waitLock:          v.GetDuration("wait-lock"),
		canary:            v.GetInt("canary"),
		limit:             v.GetString("limit"),
		jsonOutput:        v.GetString("output") == "json",
		adopt:             v.GetBool("adopt"),
		persist:           v.GetBool("persist"),
	}
	o.rails.MinPrefix = [2]int{v.GetInt("min-prefix-v4"), v.GetInt("min-prefix-v6")}
	var err error
	if o.table, err = route.ParseTable(v.GetString("table")); err != nil {
		return nil, err
	}
	switch m := v.GetInt64("metric"); {
	case m == -1:
	case m < 0 || m > 1<<32-1:
		return nil, fmt.Errorf("--metric must be 0-4294967295, got %d", m)
	default:
		mm := uint32(m)
		o.metric = &mm
	}
	if o.rollback, err = orchestrator.ParseRollbackMode(v.GetString("rollback")); err != nil {
		return nil, err
	}
	// Like kubectl, the cluster is the default source; an inventory alone
	// replaces it unless a kubeconfig or context asks for the API too.
	if o.inventory == "" || v.GetString("kubeconfig") != "" || v.GetString("context") != "" {
		o.kube = &inventory.KubeOptions{
			Kubeconfig: homedir.Expand(v.GetString("kubeconfig")),
			Context:    v.GetString("context"),
			Selector:   v.GetString("selector"),
			ChunkSize:  v.GetInt64("chunk-size"),
			Timeout:    v.GetDuration("request-timeout"),
		}
	} else {
		for k, set := range map[string]bool{
			"selector":               v.GetString("selector") != "",
			"allow-unknown-nodes":    v.GetBool("allow-unknown-nodes"),
			"mark-network-available": v.GetBool("mark-network-available"),
		} {
			if set {
				return nil, fmt.Errorf("--%s needs the Kubernetes API as the node source: add --kubeconfig or --context", k)
			}
		}
	}
	switch {
	case o.kube != nil && o.kube.ChunkSize < 1:
		return nil, fmt.Errorf("--chunk-size must be at least 1, got %d", o.kube.ChunkSize)
	case o.concurrency < 1:
		return nil, fmt.Errorf("--concurrency must be at least 1, got %d", o.concurrency)
	case v.GetString("output") != "text" && v.GetString("output") != "json":
		return nil, fmt.Errorf("--output must be text or json, got %q", v.GetString("output"))
	case o.protocol < 1 || o.protocol > 255:
		return nil, fmt.Errorf("--protocol must be 1-255, got %d", o.protocol)
	case reservedProtocol(o.protocol) != "":
		return nil, fmt.Errorf("--protocol %d is %s; routepush may only manage routes of a protocol nobody else uses, e.g. the default %d",
			o.protocol, reservedProtocol(o.protocol), orchestrator.DefaultProtocol)
	case o.rails.MinPrefix[0] < 0 || o.rails.MinPrefix[0] > 32:
		return nil, fmt.Errorf("--min-prefix-v4 must be 0-32, got %d", o.rails.MinPrefix[0])
	case o.rails.MinPrefix[1] < 0 || o.rails.MinPrefix[1] > 128:
		return nil, fmt.Errorf("--min-prefix-v6 must be 0-128, got %d", o.rails.MinPrefix[1])
	}
	o.logLevel, o.logJSON = v.GetString("log-level"), v.GetString("log-format") == "json"
	switch o.logLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", o.logLevel)
	}
	if lf := v.GetString("log-format"); lf != "text" && lf != "json" {
		return nil, fmt.Errorf("--log-format must be text or json, got %q", lf)
	}
	o.verbosity, _ = f.GetCount("verbose")
	if q, _ := f.GetBool("quiet"); q {
		o.verbosity = -1
	}
	return o, nil
}

// reservedProtocol names the owner of a protocol number someone else marks
// routes with, or is "".
func reservedProtocol(p int) string {
	owner, _ := route.ReservedProtocol(route.Protocol(p))
	return owner
}

// newLogger writes status to stderr: warnings and errors by default, info
// with -v or on a terminal, debug with -vv.
func newLogger(streams Streams, o *options) *slog.Logger {
	verbosity := o.verbosity
	level := slog.LevelWarn
	if f, ok := streams.ErrOut.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		level = slog.LevelInfo
	}
	switch {
	case verbosity < 0:
		level = slog.LevelError
	case verbosity == 1:
		level = slog.LevelInfo
	case verbosity >= 2:
		level = slog.LevelDebug
	}
	if o.logLevel != "" {
		_ = level.UnmarshalText([]byte(o.logLevel))
	}
	opts := &slog.HandlerOptions{Level: level}
	if o.logJSON {
		return slog.New(slog.NewJSONHandler(streams.ErrOut, opts))
	}
	return slog.New(slog.NewTextHandler(streams.ErrOut, opts))
}
