package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/remote"
	"github.com/routepush/routepush/route"
)

// runApply is routepush's main job: load, plan, then check or apply.
func runApply(ctx context.Context, streams Streams, o *options, log *slog.Logger) error {
	nodes, cluster, err := loadNodes(ctx, o, log)
	if err != nil {
		return err
	}
	dialer, err := newDialer(o, log, o.check, plannedRoutes(nodes))
	if err != nil {
		return err
	}
	defer dialer.Close()
	if err := checkRails(ctx, o, nodes, cluster, dialer); err != nil {
		return err
	}
	plan := orchestrator.NewPlanWith(nodes, orchestrator.PlanOptions{
		Protocol: route.Protocol(o.protocol),
		Metric:   o.metric,
		Table:    o.table,
		Prune:    o.prune,
		Adopt:    o.adopt,
		// this host's rt_protos names, for messages (route reads no files)
		ProtocolNames: localProtocolNames(),
	})
	connect := func(ctx context.Context, n *inventory.Node) (orchestrator.Host, error) {
		c, err := dialer.Dial(ctx, target(n, o))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	names := make([]string, len(nodes))
	for i := range nodes {
		names[i] = nodes[i].Name
	}
	limit, err := nodeLimit(o.limit, names)
	if err != nil {
		return err
	}
	var holder orchestrator.Holder
	if !o.check {
		holder = newHolder()
		currentRun.Store(holder.RunID)
		log.Info("run", "id", holder.RunID)
	}
	var progress orchestrator.Progress
	stopProgress := func() {}
	if !o.jsonOutput {
		stopProgress = showProgress(streams.ErrOut, &progress)
	}
	rep := orchestrator.Run(ctx, plan, connect, orchestrator.Options{
		Progress:       &progress,
		Concurrency:    o.concurrency,
		Check:          o.check,
		Rollback:       o.rollback,
		Logger:         log,
		Holder:         holder,
		Keep:           o.keepRuns,
		ProcessAlive:   processAlive,
		MaxUnreachable: o.maxUnreachable,
		WaitLock:       o.waitLock,
		Canary:         o.canary,
		Limit:          limit,
		Persist:        o.persist,
	})
	stopProgress()
	switch {
	case o.jsonOutput:
		enc := json.NewEncoder(streams.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep.JSON(holder.RunID)); err != nil {
			return err
		}
	default:
		if o.check {
			rep.WriteDiffColor(streams.Out, useColor(streams.Out))
		}
		rep.WriteSummary(streams.Out)
		if !o.check {
			fmt.Fprintf(streams.Out, "run %s\n", holder.RunID)
		}
	}
	var markErr error
	if o.markAvailable && !o.check && ctx.Err() == nil {
		markStreams := streams
		if o.jsonOutput {
			markStreams.Out = streams.ErrOut // stdout holds the JSON alone
		}
		markErr = markNetworkAvailable(ctx, markStreams, cluster, rep, o.concurrency)
	}
	if rep.Failed() || markErr != nil {
		err := errors.Join(append(rep.Errors(), markErr)...)
		if ctx.Err() != nil {
			// Interrupted in any phase, the rollback included.
			return &exitError{code: ExitInterrupted, err: err}
		}
		return &exitError{code: ExitError, err: err}
	}
	if o.check && rep.Changes() {
		return &exitError{code: ExitChanges}
	}
	return nil
}

// useColor: colours only on a terminal, and never with NO_COLOR set to
// anything but "" (no-color.org).
func useColor(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
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

// newDialer reaches nodes as the options and ssh_config say. readOnly: no
// ip is left waiting for a batch after a read. planned sizes the read
// limits (remote.Config.PlannedRoutes).
func newDialer(o *options, log *slog.Logger, readOnly bool, planned int) (*remote.Dialer, error) {
	sshConfig, err := remote.LoadSSHConfig(o.sshConfig)
	if err != nil {
		return nil, err
	}
	if sshConfig.Fallback != "" {
		log.Info("ssh config not parsable here; asking OpenSSH (ssh -G) for each host", "reason", sshConfig.Fallback)
	}
	return remote.NewDialer(remote.Config{
		KnownHostsFile:      o.knownHosts,
		AcceptNewHostKeys:   o.acceptNewHostKeys,
		TrustNodeAddresses:  o.trustNodeAddrs,
		IdentityFiles:       o.identities,
		SSHConfig:           sshConfig,
		Jump:                o.jump,
		User:                o.user,
		ConnectTimeout:      o.connectTimeout,
		CommandTimeout:      o.commandTimeout,
		ServerAliveInterval: o.aliveInterval,
		ServerAliveCountMax: o.aliveCountMax,
		ReadOnly:            readOnly,
		PlannedRoutes:       planned,
		Table:               o.table,
		Logger:              log,
	})
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
func checkRails(ctx context.Context, o *options, nodes []inventory.Node, cluster *inventory.Cluster, dialer *remote.Dialer) error {
	rails := o.rails
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() {
				rails.Reserved = append(rails.Reserved, inventory.ReservedAddr{Addr: p.Addr(), What: "an address of this control host"})
			}
		}
	}
	seen := map[string]bool{}
	for i := range nodes {
		hosts, err := dialer.JumpHosts(ctx, target(&nodes[i], o))
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if seen[h] {
				continue
			}
			seen[h] = true
			addrs, err := lookupHost(ctx, h)
			if err != nil {
				return fmt.Errorf("%s: jump host %s: %w", nodes[i].Name, h, err)
			}
			for _, a := range addrs {
				rails.Reserved = append(rails.Reserved, inventory.ReservedAddr{Addr: a, What: "the address of jump host " + h})
			}
		}
	}
	source := "inventory " + o.inventory
	if cluster != nil {
		source = "kubernetes " + cluster.Name
	}
	return inventory.CheckRails(source, nodes, cluster != nil, rails)
}

// lookupHost returns a host's addresses; an address is its own.
func lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// loadNodes reads the node table: from the Kubernetes API (with the
// inventory, if given, for SSH access) or from the inventory alone. No host
// is contacted before it succeeds.
func loadNodes(ctx context.Context, o *options, log *slog.Logger) ([]inventory.Node, *inventory.Cluster, error) {
	if o.kube == nil {
		nodes, err := inventory.Load(o.inventory)
		return nodes, nil, err
	}
	cluster, err := inventory.NewCluster(*o.kube)
	if err != nil {
		return nil, nil, err
	}
	var file *inventory.File
	if o.inventory != "" {
		if file, err = inventory.LoadAccess(o.inventory); err != nil {
			return nil, nil, err
		}
	}
	t, err := cluster.Nodes(ctx, file, o.allowUnknown)
	if err != nil {
		return nil, nil, err
	}
	log.Info("node table from the Kubernetes API", "cluster", cluster.Name, "nodes", len(t.Nodes), "pages", t.Pages)
	if len(t.Unselected) > 0 {
		log.Info("inventory nodes left out by the selector", "nodes", strings.Join(t.Unselected, ","))
	}
	for _, name := range t.Unknown {
		log.Warn("node is not in the cluster; routing it from the inventory alone", "node", name)
	}
	if len(t.Nodes) == 0 {
		return nil, nil, fmt.Errorf("kubernetes %s: no nodes%s", cluster.Name, selected(o.kube.Selector))
	}
	return t.Nodes, cluster, nil
}

func selected(selector string) string {
	if selector == "" {
		return ""
	}
	return fmt.Sprintf(" match the selector %q", selector)
}

// markNetworkAvailable sets NetworkUnavailable=False on every node whose
// routes were verified and stayed: a node that failed, or whose changes
// were rolled back, is not touched.
func markNetworkAvailable(ctx context.Context, streams Streams, cluster *inventory.Cluster, rep *orchestrator.Report, concurrency int) error {
	var (
		mu             sync.Mutex
		wrote, already int
		errs           []error
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if n.Outcome != orchestrator.Applied && n.Outcome != orchestrator.InSync {
			continue
		}
		g.Go(func() error {
			changed, err := cluster.MarkNetworkAvailable(gctx, n.Name)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case changed:
				wrote++
			default:
				already++
			}
			return nil
		})
	}
	_ = g.Wait()
	fmt.Fprintf(streams.Out, "NetworkUnavailable=False: %d marked, %d already so", wrote, already)
	if len(errs) > 0 {
		fmt.Fprintf(streams.Out, ", %d failed", len(errs))
	}
	fmt.Fprintln(streams.Out)
	return errors.Join(errs...)
}

// target says how the inventory and the command line want a node reached;
// the dialer fills the rest from ssh_config, then the config's defaults
// (user: config/env, then the local user name, as ssh would).
func target(n *inventory.Node, o *options) remote.Target {
	t := remote.Target{
		Name:         n.Name,
		Address:      n.Address,
		Port:         n.SSH.Port,
		User:         n.SSH.User,
		IdentityFile: n.SSH.IdentityFile,
		Jump:         n.SSH.Jump,
		Become:       n.SSH.Become || o.become,
	}
	if len(n.InternalIPs) > 0 {
		t.Fallback = n.InternalIPs[0].String()
		t.FallbackFromAPI = n.AddressFromAPI
	}
	if o.userFromFlag {
		t.User = o.user
	}
	return t
}
