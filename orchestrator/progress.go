package orchestrator

import (
	"sync"
	"sync/atomic"
	"time"
)

// Progress counts a run's nodes as they go, for a display to draw (package
// app draws it on a terminal). Its methods are safe to call at any time.
type Progress struct {
	total, read, verified, failed atomic.Int64

	mu       sync.Mutex
	inFlight map[string]time.Time // node -> when its current step started
}

// Counts returns the nodes in the run, read, verified and failed so far.
func (p *Progress) Counts() (total, read, verified, failed int64) {
	return p.total.Load(), p.read.Load(), p.verified.Load(), p.failed.Load()
}

// Slowest returns the node that has been at its current step longest.
func (p *Progress) Slowest(now time.Time) (node string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, t := range p.inFlight {
		if now.Sub(t) > d || (now.Sub(t) == d && n < node) {
			node, d = n, now.Sub(t)
		}
	}
	return node, d
}

func (p *Progress) begin(node string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight == nil {
		p.inFlight = map[string]time.Time{}
	}
	p.inFlight[node] = time.Now()
}

// step is how a node's step ended, for end.
type step int

const (
	stepLeft step = iota // neither read nor failed (left out as unreachable)
	stepRead
	stepVerified
	stepFailed
)

func (p *Progress) end(node string, how step) {
	if p == nil {
		return
	}
	p.mu.Lock()
	delete(p.inFlight, node)
	p.mu.Unlock()
	switch how {
	case stepRead:
		p.read.Add(1)
	case stepVerified:
		p.verified.Add(1)
	case stepFailed:
		p.failed.Add(1)
	}
}
