package watch

import "time"

// Backoff of a node that failed or could not be reached: 1 s after the
// first failure, doubling up to a minute. A node that comes back is
// converged within a minute of it; retrying a dead node costs one
// connection attempt a minute.
const (
	firstBackoff = time.Second
	maxBackoff   = time.Minute
)

// backoff is how long to wait before trying a node again after its
// fails-th failure in a row (fails >= 1).
func backoff(fails int) time.Duration {
	d := firstBackoff
	for i := 1; i < fails && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
