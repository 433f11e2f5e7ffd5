package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/remote"
	"github.com/routepush/routepush/watch"
)

// runWatch watches until the command's context is done (SIGTERM), under
// the Lease if one is named, with its metrics served if asked.
func runWatch(cmd *cobra.Command, d deps, f *watchFlags) error {
	if err := f.load(cmd); err != nil {
		return err
	}
	started := time.Now()
	ctx, stopWatching := context.WithCancelCause(cmd.Context())
	defer stopWatching(nil)
	log := newLogger(d.streams, &f.baseFlags)
	// client-go's own messages (leader election, the informer's watch
	// errors) in routepush's log, escaped as every line of it is.
	klog.SetSlogLogger(log.With("from", "client-go"))
	var cluster *inventory.Cluster
	if k := f.source.kube(); k != nil {
		var err error
		if cluster, err = inventory.NewCluster(*k); err != nil {
			return err
		}
	}
	dialer, err := newWatchDialer(f, log)
	if err != nil {
		return err
	}
	defer dialer.Close()
	memory := newMemoryReturner(quietAfterRound)
	defer memory.stop()

	reg := prometheus.NewRegistry()
	obs, ready, stopObservers := newWatchObservers(f, cluster, reg, log)
	defer stopObservers()
	// A metrics server that fails stops the watcher with its error: its
	// /healthz gone, a pod would be restarted anyway.
	metricsFailed := make(chan error, 1)
	if f.metricsAddr != "" {
		// Listened on before anything else starts: an address in use
		// fails the command before it touches a node.
		ln, err := watch.Listen(ctx, f.metricsAddr)
		if err != nil {
			return err
		}
		// Served until the watcher has stopped, past SIGTERM: the last
		// round's metrics and /healthz stay while it settles.
		serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := watch.ServeOn(serveCtx, ln, reg, ready.ready); err != nil {
				metricsFailed <- err
				stopWatching(err)
			}
		}()
		defer func() {
			stopServing()
			<-served
		}()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}

	cfg := watchConfig(ctx, f, cluster, dialer, log, started)
	cfg.Observer = append(obs, memory, keptConnections{dialer})
	run := func(ctx context.Context) error {
		defer dialer.CloseIdle() // no connection held while another watcher writes
		return watch.New(cfg).Run(ctx)
	}
	if f.leaseName == "" {
		obs.Leading(true) // no election: this watcher always writes
		err = run(ctx)
	} else {
		err = leadLoop(ctx, cluster, f.lease(), obs, ready, log, run)
	}
	select {
	case merr := <-metricsFailed:
		if err == nil {
			err = merr
		}
	default:
	}
	return err
}

// watchConfig is the engine's configuration from the flags.
func watchConfig(ctx context.Context, f *watchFlags, cluster *inventory.Cluster, dialer *remote.Dialer, log *slog.Logger, started time.Time) watch.Config {
	planOpts := f.routes.planOptions(&f.table)
	planOpts.Prune, planOpts.Adopt = f.prune, f.adopt
	self := newHolder()
	holders, takeOver := newHolder, holderGone(self.Host, self.PID)
	if f.leaseName != "" {
		lease := f.leaseNamespace + "/" + f.leaseName
		holders = func() orchestrator.Holder {
			h := newHolder()
			h.Lease = lease
			return h
		}
		// A run of another holder of this lease ended, or will have by
		// then: its process lost the lease (this one has it), stopped
		// starting nodes RenewDeadline after its last renewal, and lets
		// a node already applying finish, a few commands each bounded by
		// --command-timeout.
		stale := max(f.leaseDuration, watch.DefaultLeaseDuration) + 5*f.reach.commandTimeout
		takeOver = func(h orchestrator.Holder) bool {
			return holderGone(self.Host, self.PID)(h) ||
				h.Lease == lease && (h.Host != self.Host || h.PID != self.PID) && time.Since(h.Started) > stale
		}
	}
	return watch.Config{
		Cluster:          cluster,
		Inventory:        f.source.inventory,
		InventoryOptions: f.source.inventoryOptions(),
		AllowUnknown:     f.source.allowUnknown,
		Plan:             planOpts,
		Run: orchestrator.Options{
			Concurrency:  f.reach.concurrency,
			Rollback:     orchestrator.RollbackHost,
			Logger:       log,
			Keep:         f.keepRuns,
			ProcessAlive: processAlive,
			TakeOver:     takeOver,
			WaitLock:     f.waitLock,
			Persist:      f.persist,
		},
		NewHolder: holders,
		Connect:   hostConnector(dialer, &f.reach),
		Check: func(nodes []inventory.Node) error {
			return checkRails(ctx, &f.checkFlags, nodes, cluster, dialer)
		},
		// The NetworkUnavailable condition is kept by an Observer
		// (watch.Conditions), off the round's path.
		Debounce: f.debounce,
		Resync:   f.resync,
		Logger:   log,
	}
}

// newWatchObservers makes what the engine reports to: metrics on reg,
// Events and the NetworkUnavailable condition when the nodes come from
// the API, logs, and the readiness /readyz answers from. stop flushes the
// Events and conditions still queued (up to 5 s, both at once).
func newWatchObservers(f *watchFlags, cluster *inventory.Cluster, reg *prometheus.Registry, log *slog.Logger) (watch.Observers, *readiness, func()) {
	// The process's CPU, memory and Go runtime beside routepush's own.
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	ready := &readiness{}
	obs := watch.Observers{watch.NewMetrics(reg), newLogObserver(log), ready}
	var stops []func()
	if cluster != nil {
		events, stop := watch.NewEvents(cluster.Client, log)
		obs, stops = append(obs, events), append(stops, stop)
		if f.markAvailable {
			conds, stop := watch.NewConditions(cluster, log)
			obs, stops = append(obs, conds), append(stops, stop)
		}
	}
	return obs, ready, func() {
		var wg sync.WaitGroup
		for _, stop := range stops {
			wg.Go(stop)
		}
		wg.Wait()
	}
}

// holderGone says whether a node's lock is held by a run of this host
// that has provably ended, which the watcher then takes over
// (orchestrator.Options.TakeOver): another pid that no longer runs, or
// this very pid: an earlier round of this process (the engine never has a
// node in two rounds at once, and takeOver never takes the current run's:
// its unlock failed, a crash of the node kept the lock), or a run started
// before this process was (a container restarted in its pod keeps the
// host name and is pid 1 again). A run of another host is never taken
// over: whether it still runs cannot be told from here (`routepush
// rollback --run ID --force`, once known dead).
func holderGone(host string, pid int) func(orchestrator.Holder) bool {
	return func(h orchestrator.Holder) bool {
		switch {
		case h.Host != host:
			return false
		case h.PID == pid:
			return true
		default:
			return !processAlive(h.PID)
		}
	}
}

// identity is this watcher's name on the Lease: the host and pid, as the
// run holders in node locks and records say them.
func identity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "routepush"
	}
	return fmt.Sprintf("%s_%d", host, os.Getpid())
}

// keptConnections closes the kept connection of a node that left the node
// table, rather than a resync and a minute later.
type keptConnections struct{ dialer *remote.Dialer }

func (keptConnections) RoundDone(watch.Round) {}
func (keptConnections) Managed(int)           {}
func (keptConnections) Leading(bool)          {}
func (k keptConnections) Forget(node string)  { k.dialer.Forget(node) }
