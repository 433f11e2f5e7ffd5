package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/remote"
)

// loadNodes reads the node table: from the Kubernetes API (with the
// inventory, if given, for SSH access) or from the inventory alone. No host
// is contacted before it succeeds. groups are an Ansible inventory's, for
// --limit; nil for hosts.yaml and the API alone.
func loadNodes(ctx context.Context, s *sourceFlags, log *slog.Logger) (nodes []inventory.Node, cluster *inventory.Cluster, groups inventory.Groups, err error) {
	kube := s.kube()
	if kube == nil {
		f, err := inventory.LoadFile(s.inventory, s.inventoryOptions())
		if err != nil {
			return nil, nil, nil, err
		}
		logWarnings(log, f)
		return f.Nodes, nil, f.Groups, nil
	}
	nodes, cluster, groups, err = loadFromAPI(ctx, s, kube, log)
	return nodes, cluster, groups, err
}

// logWarnings says which of an Ansible inventory's settings routepush
// ignores.
func logWarnings(log *slog.Logger, f *inventory.File) {
	for _, w := range f.Warnings {
		log.Warn("inventory " + f.Path + ": " + w)
	}
}

// tableGroups are an inventory's groups cut down to the nodes of the
// table, with all of them in "all".
func tableGroups(groups inventory.Groups, nodes []inventory.Node) inventory.Groups {
	if groups == nil {
		return nil
	}
	names := nodeNames(nodes)
	out := make(inventory.Groups, len(groups))
	for g, hosts := range groups {
		out[g] = slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return !slices.Contains(names, h) })
	}
	out["all"] = names
	return out
}

func loadFromAPI(ctx context.Context, s *sourceFlags, kube *inventory.KubeOptions, log *slog.Logger) ([]inventory.Node, *inventory.Cluster, inventory.Groups, error) {
	cluster, err := inventory.NewCluster(*kube)
	if err != nil {
		return nil, nil, nil, err
	}
	var file *inventory.File
	var groups inventory.Groups
	if s.inventory != "" {
		if file, err = inventory.LoadAccessWith(s.inventory, s.inventoryOptions()); err != nil {
			return nil, nil, nil, err
		}
		logWarnings(log, file)
		groups = file.Groups
	}
	t, err := cluster.Nodes(ctx, file, s.allowUnknown)
	if err != nil {
		return nil, nil, nil, err
	}
	log.Info("node table from the Kubernetes API", "cluster", cluster.Name, "nodes", len(t.Nodes), "pages", t.Pages)
	if len(t.Unselected) > 0 {
		log.Info("inventory nodes left out by the selector", "nodes", strings.Join(t.Unselected, ","))
	}
	for _, name := range t.Unknown {
		log.Warn("node is not in the cluster; routing it from the inventory alone", "node", name)
	}
	if len(t.Nodes) == 0 {
		return nil, nil, nil, fmt.Errorf("kubernetes %s: no nodes%s", cluster.Name, selected(kube.Selector))
	}
	return t.Nodes, cluster, tableGroups(groups, t.Nodes), nil
}

func selected(selector string) string {
	if selector == "" {
		return ""
	}
	return fmt.Sprintf(" match the selector %q", selector)
}

func nodeNames(nodes []inventory.Node) []string {
	names := make([]string, len(nodes))
	for i := range nodes {
		names[i] = nodes[i].Name
	}
	return names
}

// plannedRoutes is the most routes a plan of these nodes gives one node:
// a route per pod CIDR. It sizes what routepush reads from nodes.
func plannedRoutes(nodes []inventory.Node) int {
	n := 0
	for i := range nodes {
		n += len(nodes[i].PodCIDRs)
	}
	return n
}

// newDialer reaches nodes as the settings and ssh_config say. readOnly: no
// ip is left waiting for a batch after a read. planned sizes the read
// limits (remote.Config.PlannedRoutes).
func newDialer(r *reachFlags, table *tableFlag, log *slog.Logger, readOnly bool, planned int) (*remote.Dialer, error) {
	cfg, err := dialerConfig(r, table, log, readOnly, planned)
	if err != nil {
		return nil, err
	}
	return remote.NewDialer(cfg)
}

// dialerConfig is newDialer's configuration, for a caller that adds to it.
func dialerConfig(r *reachFlags, table *tableFlag, log *slog.Logger, readOnly bool, planned int) (remote.Config, error) {
	sshConfig, err := remote.LoadSSHConfig(r.sshConfig)
	if err != nil {
		return remote.Config{}, err
	}
	if sshConfig.Fallback != "" {
		log.Info("ssh config not parsable here; asking OpenSSH (ssh -G) for each host", "reason", sshConfig.Fallback)
	}
	return remote.Config{
		KnownHostsFile:      r.knownHosts,
		AcceptNewHostKeys:   r.acceptNewHostKeys,
		TrustNodeAddresses:  r.trustNodeAddrs,
		IdentityFiles:       r.identities,
		SSHConfig:           sshConfig,
		Jump:                r.jump,
		User:                r.user,
		ConnectTimeout:      r.connectTimeout,
		CommandTimeout:      r.commandTimeout,
		ServerAliveInterval: r.aliveInterval,
		ServerAliveCountMax: r.aliveCountMax,
		ReadOnly:            readOnly,
		PlannedRoutes:       planned,
		Table:               table.id,
		Logger:              log,
	}, nil
}

// hostConnector connects a node for a run.
func hostConnector(dialer *remote.Dialer, r *reachFlags) orchestrator.Connector {
	return func(ctx context.Context, n *inventory.Node) (orchestrator.Host, error) {
		c, err := dialer.Dial(ctx, target(n, r))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// target says how the inventory and the command line want a node reached;
// the dialer fills the rest from ssh_config, then the config's defaults
// (user: config/env, then the local user name, as ssh would).
func target(n *inventory.Node, r *reachFlags) remote.Target {
	t := remote.Target{
		Name:         n.Name,
		Address:      n.Address,
		Port:         n.SSH.Port,
		User:         n.SSH.User,
		IdentityFile: n.SSH.IdentityFile,
		Jump:         n.SSH.Jump,
		Become:       n.SSH.Become || r.become,
	}
	if len(n.InternalIPs) > 0 {
		t.Fallback = n.InternalIPs[0].String()
		t.FallbackFromAPI = n.AddressFromAPI
	}
	if r.userFromFlag {
		t.User = r.user
	}
	// The inventory's sftp_server (the node's, else its defaults') beats
	// the config's and the environment's; the command line beats both.
	t.SFTPServer = n.SSH.SFTPServer
	if r.sftpFromFlag || t.SFTPServer == "" {
		t.SFTPServer = r.sftpServer
	}
	return t
}

// newHolder names this run in the locks and records it leaves on nodes.
func newHolder() orchestrator.Holder {
	host, _ := os.Hostname()
	now := time.Now()
	return orchestrator.Holder{RunID: orchestrator.NewRunID(now), Host: host, PID: os.Getpid(), Started: now}
}

// processAlive reports whether a process of this host is still running.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// checkRails refuses a node table whose pod CIDRs are too wide or contain
// an address routepush travels to (this host's own, a jump host's), before
// any connection.
func checkRails(ctx context.Context, f *checkFlags, nodes []inventory.Node, cluster *inventory.Cluster, dialer *remote.Dialer) error {
	rails := f.rails
	if addrs, err := net.InterfaceAddrs(); err == nil {
		var local []netip.Addr
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local = append(local, p.Addr())
			}
		}
		rails.Reserved = append(rails.Reserved, hostAddrs(local, nodes, f.runningOn)...)
	}
	jumps, err := jumpHostAddrs(ctx, &f.reach, nodes, dialer)
	if err != nil {
		return err
	}
	rails.Reserved = append(rails.Reserved, jumps...)
	source := "inventory " + f.source.inventory
	if cluster != nil {
		source = "kubernetes " + cluster.Name
	}
	return inventory.CheckRails(source, nodes, cluster != nil, rails)
}

// hostAddrs are this host's addresses that no pod CIDR may contain (a
// route to the CIDR would take this host's own traffic elsewhere), but
// for those inside a pod CIDR of runningOn, the node this host is a pod
// of (watch --running-on, in a Deployment): a pod's address is in its
// node's pod CIDR, routed to that node, where it lives.
func hostAddrs(local []netip.Addr, nodes []inventory.Node, runningOn string) []inventory.ReservedAddr {
	var own []netip.Prefix
	for i := range nodes {
		if runningOn != "" && nodes[i].Name == runningOn {
			own = nodes[i].PodCIDRs
		}
	}
	var reserved []inventory.ReservedAddr
	for _, a := range local {
		if a.IsLoopback() || slices.ContainsFunc(own, func(p netip.Prefix) bool { return p.Contains(a) }) {
			continue
		}
		reserved = append(reserved, inventory.ReservedAddr{Addr: a, What: "an address of this control host"})
	}
	return reserved
}

// jumpHostAddrs are the addresses of every jump host on the way to the
// nodes.
func jumpHostAddrs(ctx context.Context, r *reachFlags, nodes []inventory.Node, dialer *remote.Dialer) ([]inventory.ReservedAddr, error) {
	var reserved []inventory.ReservedAddr
	seen := map[string]bool{}
	for i := range nodes {
		hosts, err := dialer.JumpHosts(ctx, target(&nodes[i], r))
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			if seen[h] {
				continue
			}
			seen[h] = true
			addrs, err := lookupHost(ctx, h)
			if err != nil {
				return nil, fmt.Errorf("%s: jump host %s: %w", nodes[i].Name, h, err)
			}
			for _, a := range addrs {
				reserved = append(reserved, inventory.ReservedAddr{Addr: a, What: "the address of jump host " + h})
			}
		}
	}
	return reserved, nil
}

// lookupHost returns a host's addresses; an address is its own.
func lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
