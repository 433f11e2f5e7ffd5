package watch

import "time"

// Backoff of a node that failed or could not be reached: 1 s after the
// first failure, doubling up to 5 minutes.
const (
	firstBackoff = time.Second
	maxBackoff   = 5 * time.Minute
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
