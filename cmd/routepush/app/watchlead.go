package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/watch"
)

// leadLoop runs the watcher (run) whenever this process holds the Lease,
// until ctx is done. A leader that loses the lease (its renewals failing
// for --lease-renew-deadline: the API unreachable, the process starved)
// has stopped pushing by the time watch.RunLeading returns: it stands by
// and campaigns again, as a standby does, rather than exiting, so that a
// bastion watcher without a supervisor is not lost to one API outage.
// Leadership changes go to obs (metrics, logs, readiness). An error of
// run's own (the inventory unreadable, the informer refused) ends the
// loop, the lease released.
func leadLoop(ctx context.Context, cluster *inventory.Cluster, lease watch.LeaseOptions, obs watch.Observer, ready *readiness, log *slog.Logger, run func(context.Context) error) error {
	if lease.Identity == "" {
		lease.Identity = identity()
	}
	log = log.With("lease", lease.Namespace+"/"+lease.Name, "identity", lease.Identity)
	for {
		log.Info("standing by: campaigning for the Lease")
		ready.standingBy()
		var runErr error
		err := watch.RunLeading(ctx, cluster.Client, lease, obs.Leading, func(ctx context.Context) {
			runErr = run(ctx)
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case runErr != nil:
			return runErr
		case errors.Is(err, watch.ErrLeaseLost):
			log.Warn("lost the Lease: stopped pushing; campaigning again", "err", err)
		case err != nil:
			return err
		}
	}
}
