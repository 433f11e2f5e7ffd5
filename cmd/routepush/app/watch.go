package app

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/watch"
)

// watchPlannedRoutes sizes what a watcher reads from a node: its cluster
// grows while it runs, so it is sized for the largest routepush plans.
const watchPlannedRoutes = 5000

// watchFlags are the settings of watch: apply's node source, SSH, routes
// and rails (in checkFlags, some of whose flags watch does not register),
// and the watcher's own.
type watchFlags struct {
	checkFlags
	markAvailable  bool
	waitLock       time.Duration
	keepRuns       int
	debounce       time.Duration
	resync         time.Duration
	leaseNamespace string
	leaseName      string
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
	metricsAddr    string
}

// defaultLeaseNamespace is deploy/'s namespace: a watcher started on a
// bastion with --lease-name routepush elects on the same Lease as the
// Deployment's replicas, rather than becoming a second writer beside
// them.
const defaultLeaseNamespace = "routepush-system"

func (f *watchFlags) add(fs *pflag.FlagSet) {
	f.baseFlags.add(fs)
	f.source.add(fs)
	f.reach.add(fs)
	f.table.add(fs)
	f.routes.add(fs)
	add(fs, fs.BoolVarP, &f.prune, "prune", "", false, "delete every routepush route that is not planned (routes to nodes that left are deleted without it)")
	add(fs, fs.BoolVarP, &f.adopt, "adopt", "", false, "replace other owners' routes to planned destinations and delete self routes, instead of refusing the node")
	add(fs, fs.BoolVarP, &f.persist, "persist", "", false, "after a node verifies, keep its routes for the next boot (/etc/routepush/routes and routepush-routes.service)")
	add(fs, fs.IntVarP, &f.rails.MinPrefix[0], "min-prefix-v4", "", inventory.DefaultRails().MinPrefix[0], "refuse IPv4 pod CIDRs wider than this prefix length")
	add(fs, fs.IntVarP, &f.rails.MinPrefix[1], "min-prefix-v6", "", inventory.DefaultRails().MinPrefix[1], "refuse IPv6 pod CIDRs wider than this prefix length")
	add(fs, fs.BoolVarP, &f.markAvailable, "mark-network-available", "", false, "keep each node's NetworkUnavailable condition true to its routes: False (RouteCreated) once they converge, True (NoRouteCreated) while they fail")
	add(fs, fs.DurationVarP, &f.waitLock, "wait-lock", "", 0, "wait this long for nodes another run has locked; a node still locked is retried later")
	add(fs, fs.IntVarP, &f.keepRuns, "keep-runs", "", 10, "run records each node keeps in /var/lib/routepush/runs")
	add(fs, fs.DurationVarP, &f.debounce, "debounce", "", watch.DefaultDebounce, "start a round once node events pause this long (at most 10 times this after the first): a burst is one round")
	add(fs, fs.DurationVarP, &f.resync, "resync", "", watch.DefaultResync, "reconcile every node this often, repairing routes that drifted")
	add(fs, fs.StringVarP, &f.leaseNamespace, "lease-namespace", "", defaultLeaseNamespace, "namespace of the Lease that elects one writer among watchers (deploy/'s, so that a bastion's watcher joins the Deployment's election)")
	add(fs, fs.StringVarP, &f.runningOn, "running-on", "", "", "the node this watcher runs on as a pod (the downward API's spec.nodeName): its pod address, inside that node's pod CIDR, is not held against the rails")
	add(fs, fs.StringVarP, &f.leaseName, "lease-name", "", "", "name of the Lease that elects one writer among watchers (empty: no election; this watcher always writes)")
	add(fs, fs.DurationVarP, &f.leaseDuration, "lease-duration", "", watch.DefaultLeaseDuration, "how long a standby waits after the leader's last renewal before it takes over")
	add(fs, fs.DurationVarP, &f.renewDeadline, "lease-renew-deadline", "", watch.DefaultRenewDeadline, "how long the leader tries to renew before it stops pushing (shorter than --lease-duration)")
	add(fs, fs.DurationVarP, &f.retryPeriod, "lease-retry-period", "", watch.DefaultRetryPeriod, "how often the leader renews and a standby tries to take over")
	add(fs, fs.StringVarP, &f.metricsAddr, "metrics-addr", "", "", "serve /metrics, /healthz and /readyz on host:port; a bare :port listens on 127.0.0.1 only (0.0.0.0:9090 in a pod); empty: off")
}

// lease is the Lease the watcher elects on, as the flags say.
func (f *watchFlags) lease() watch.LeaseOptions {
	return watch.LeaseOptions{Namespace: f.leaseNamespace, Name: f.leaseName,
		Duration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod}
}

// load resolves and checks the settings of cmd.
func (f *watchFlags) load(cmd *cobra.Command) error {
	if err := loadSettings(cmd); err != nil {
		return err
	}
	if err := f.table.resolve(); err != nil {
		return err
	}
	if err := f.routes.check(); err != nil {
		return err
	}
	if err := f.source.check(); err != nil {
		return err
	}
	if f.source.kube() == nil {
		if err := needsAPI("mark-network-available", f.markAvailable); err != nil {
			return err
		}
		if err := needsAPI("lease-name", f.leaseName != ""); err != nil {
			return err
		}
	}
	if err := f.reach.resolve(cmd.Flags()); err != nil {
		return err
	}
	switch {
	case f.debounce <= 0:
		return fmt.Errorf("--debounce must be positive, got %s", f.debounce)
	case f.resync <= 0:
		return fmt.Errorf("--resync must be positive, got %s", f.resync)
	case f.rails.MinPrefix[0] < 0 || f.rails.MinPrefix[0] > 32:
		return fmt.Errorf("--min-prefix-v4 must be 0-32, got %d", f.rails.MinPrefix[0])
	case f.rails.MinPrefix[1] < 0 || f.rails.MinPrefix[1] > 128:
		return fmt.Errorf("--min-prefix-v6 must be 0-128, got %d", f.rails.MinPrefix[1])
	}
	if f.leaseName != "" {
		if err := f.lease().Check(); err != nil {
			return fmt.Errorf("--lease-*: %w", err)
		}
	}
	return f.baseFlags.check()
}

func newWatchCommand(d deps) *cobra.Command {
	f := &watchFlags{}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Keep the routes converged as nodes join, leave and drift (a controller over SSH)",
		Long: `Keep every node's routes converged: a full apply once the Node objects are
listed, then, for each batch of node events, a run on the nodes it affects
only (a join: every node; a departure or a new address: every other node,
the departed node's routes deleted), and a full resync every --resync that
repairs routes that drifted. A node that fails or cannot be reached is
retried with backoff (1 s doubling to a minute) without holding the others
back. Every round locks, verifies and rolls back per node as apply does.
SIGTERM lets the round in flight finish or roll back, then exits 0.

With --lease-name, watchers elect one writer on a Lease; a leader that
loses it stops pushing and stands by to campaign again. With the API as
the node source, each node gets Events (RoutesConverged, RoutesFailed,
RoutesRepaired). --metrics-addr serves Prometheus metrics, /healthz and
/readyz (ready once the first round is done, or while standing by).`,
		Example: `  routepush watch --kubeconfig admin.conf -i hosts.yaml --persist --mark-network-available
  routepush watch -l node-role.kubernetes.io/worker --resync 5m --metrics-addr :9090
  routepush watch --lease-name routepush   # two watchers: one writes at a time`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return runWatch(cmd, d, f) },
	}
	f.add(cmd.Flags())
	return cmd
}
