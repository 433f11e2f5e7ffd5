package watch

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"
)

// LeaseOptions name the Lease that elects one writer among watchers.
type LeaseOptions struct {
	Namespace, Name string
	Identity        string        // this watcher's, e.g. hostname_pid
	Duration        time.Duration // lease duration; default 15 s
	RenewDeadline   time.Duration // default 10 s
	RetryPeriod     time.Duration // default 2 s
}

// RunLeading runs lead while this watcher holds the Lease, and only then:
// lead's context is cancelled as soon as the lease is lost (lead must stop
// writing to nodes before it returns), and RunLeading returns when ctx is
// done (releasing the lease) or the lease is lost. leading, if not nil,
// is told of every change.
func RunLeading(ctx context.Context, client kubernetes.Interface, o LeaseOptions, leading func(bool), lead func(ctx context.Context)) error {
	// Not written yet (issue 17): without a Lease, lead runs alone.
	if leading != nil {
		leading(true)
	}
	lead(ctx)
	return nil
}
