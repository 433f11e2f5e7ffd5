package app

import (
	"bytes"
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"time"
)

// profiles are the values of --profile, as kubectl's.
var profiles = []string{"none", "cpu", "heap", "allocs", "goroutine"}

// startProfile starts the profile kubectl's --profile names and returns
// the function that writes it to path when the run ends. The heap profile
// is the one taken when the live heap was largest, not at exit: after a
// run most of it is garbage, and the peak is what a user's RSS sees.
func startProfile(name, path string) (stop func() error, err error) {
	switch name {
	case "none", "":
		return func() error { return nil }, nil
	case "cpu":
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		return func() error {
			pprof.StopCPUProfile()
			return f.Close()
		}, nil
	case "heap":
		peak := watchHeapPeak()
		return func() error { return os.WriteFile(path, peak(), 0o644) }, nil
	case "allocs", "goroutine":
		return func() error {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}, nil
	}
	return nil, fmt.Errorf("--profile must be one of %v, got %q", profiles, name)
}

// watchHeapPeak takes a heap profile each time the live heap after a
// collection reaches a new high, and returns a function that stops
// watching and returns the last one taken.
func watchHeapPeak() func() []byte {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var (
		mu   sync.Mutex
		best []byte
		high uint64
	)
	take := func() {
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		if live <= high && best != nil {
			return
		}
		var b bytes.Buffer
		if pprof.Lookup("heap").WriteTo(&b, 0) == nil {
			mu.Lock()
			best, high = b.Bytes(), live
			mu.Unlock()
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				take()
			}
		}
	}()
	return func() []byte {
		close(done)
		<-stopped
		take()
		mu.Lock()
		defer mu.Unlock()
		return best
	}
}
