package app

import (
	"runtime/debug"
	"time"

	"github.com/routepush/routepush/watch"
)

// quietAfterRound is how long a watcher waits after a round before it
// gives the memory the round used back to the system.
const quietAfterRound = time.Second

// memoryReturner gives the heap a round left behind back to the system
// once the watcher has been quiet for a moment. A round reads every
// affected node's tables and writes their records: at 200 nodes some
// 20 MB that are garbage once it ends, and that an idle watcher would
// otherwise keep, since nothing allocates between rounds to start a
// collection (Go forces one only every two minutes, and then returns the
// pages slowly). A forced collection and return take about 5 ms on a
// heap like that (12 MB live, 1,400 goroutines): once per burst of rounds.
type memoryReturner struct {
	t     *time.Timer
	quiet time.Duration
}

func newMemoryReturner(quiet time.Duration) *memoryReturner {
	t := time.AfterFunc(time.Hour, debug.FreeOSMemory)
	t.Stop()
	return &memoryReturner{t: t, quiet: quiet}
}

// RoundDone (re)starts the wait: a burst of rounds is followed by one
// collection.
func (m *memoryReturner) RoundDone(watch.Round) { m.t.Reset(m.quiet) }
func (m *memoryReturner) Managed(int)           {}
func (m *memoryReturner) Leading(bool)          {}

// stop cancels a collection not yet started.
func (m *memoryReturner) stop() { m.t.Stop() }
