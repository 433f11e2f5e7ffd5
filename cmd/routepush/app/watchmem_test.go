package app

import (
	"runtime/metrics"
	"testing"
	"time"

	"github.com/routepush/routepush/watch"
)

// forcedGCs is how many collections the program forced so far.
func forcedGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// A burst of rounds is followed, once the watcher is quiet, by one forced
// collection (which returns the freed pages), not one per round; and none
// once stopped.
func TestMemoryReturnedOnceAfterABurst(t *testing.T) {
	m := newMemoryReturner(50 * time.Millisecond)
	before := forcedGCs()
	for range 5 {
		m.RoundDone(watch.Round{})
		time.Sleep(10 * time.Millisecond)
	}
	if forcedGCs() != before {
		t.Fatal("a collection was forced during the burst")
	}
	for deadline := time.Now().Add(5 * time.Second); forcedGCs() == before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no collection was forced after the burst")
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := forcedGCs() - before; n != 1 {
		t.Errorf("%d collections forced after one burst, want 1", n)
	}
	m.RoundDone(watch.Round{})
	m.stop()
	time.Sleep(200 * time.Millisecond)
	if n := forcedGCs() - before; n != 1 {
		t.Errorf("a stopped returner forced a collection (%d in all)", n)
	}
}
