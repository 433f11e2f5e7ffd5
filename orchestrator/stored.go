package orchestrator

import (
	"github.com/routepush/routepush/route"
)

// storedRoute keeps a route found on a node, for rollback and the report,
// as the spec `ip route replace` takes (every attribute routepush puts
// back) rather than as a route.Route. A cluster-wide change (--adopt of the
// Ansible playbook's routes, --prune after a metric change) keeps every
// route of every node until the run ends, and one line of text is several
// times smaller than a route.Route with its slices and strings.
type storedRoute struct {
	spec string
	fam  route.Family
	// full is the route itself in the rare case its spec does not read
	// back as the same route (an attribute the text cannot carry).
	full *route.Route
}

func storeRoute(r *route.Route) storedRoute {
	s := storedRoute{spec: r.Spec(), fam: r.Family()}
	back, err := route.ParseSpec(s.spec, s.fam)
	// The spec restores the route and String shows it: a route that gives
	// the same of both, and has nothing routepush cannot restore, is the
	// same route as far as anything here goes.
	if err != nil || back.Spec() != s.spec || back.String() != r.String() || r.Unrestorable != "" {
		c := *r
		s.full = &c
	}
	return s
}

// route returns the route as it was stored.
func (s storedRoute) route() route.Route {
	if s.full != nil {
		return *s.full
	}
	r, err := route.ParseSpec(s.spec, s.fam)
	if err != nil {
		panic("orchestrator: a stored route no longer parses: " + err.Error()) // storeRoute checked it did
	}
	return r
}

// appendAdd adds the `route add` line that puts the route back.
func (s storedRoute) appendAdd(b *route.Batch) {
	if s.full != nil {
		b.Add(*s.full)
		return
	}
	b.AddSpec([]byte(s.spec))
}
