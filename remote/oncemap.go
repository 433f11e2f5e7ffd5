package remote

import "sync"

// onceMap computes a value once per key and gives every caller the same
// result, error included: one ssh -G per host, one login per jump chain,
// however many nodes ask at once.
type onceMap[V any] struct {
	mu sync.Mutex
	m  map[string]*onceEntry[V]
}

type onceEntry[V any] struct {
	once sync.Once
	v    V
	err  error
	done bool
}

func (o *onceMap[V]) get(key string, compute func() (V, error)) (V, error) {
	o.mu.Lock()
	if o.m == nil {
		o.m = map[string]*onceEntry[V]{}
	}
	e, ok := o.m[key]
	if !ok {
		e = &onceEntry[V]{}
		o.m[key] = e
	}
	o.mu.Unlock()
	e.once.Do(func() {
		e.v, e.err = compute()
		o.mu.Lock()
		e.done = true
		o.mu.Unlock()
	})
	return e.v, e.err
}

// each calls f with every value computed without error so far.
func (o *onceMap[V]) each(f func(V)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.m {
		if e.done && e.err == nil {
			f(e.v)
		}
	}
}
