package orchestrator

import (
	"fmt"

	"github.com/routepush/routepush/route"
)

// Verify checks a node's table after apply: every planned route must be
// there with the planned gateway and protocol, and every route the batch
// deleted must be gone. It returns one message per route that is not so.
func Verify(h HostPlan, current []route.Route) []string {
	var problems []string
	d := diff(h, current)
	for k := range d.Add.All() {
		problems = append(problems, fmt.Sprintf("route %s is missing", h.Route(k)))
	}
	for _, r := range d.Replace {
		problems = append(problems, fmt.Sprintf("route %s is %s instead", h.Route(int(r.Index)), r.Old()))
	}
	for _, f := range d.Remove {
		problems = append(problems, fmt.Sprintf("route %s is still there", f.Route()))
	}
	for _, f := range d.Conflicts() {
		planned, _ := f.Planned(h)
		problems = append(problems, fmt.Sprintf("route %s is %s instead", planned, f.Route()))
	}
	return problems
}

// describeChange says what changed in a node's table between the read the
// diff was made from and now, as far as the plan is concerned: routes of
// other owners that appeared at planned destinations, and routes that took
// the place of planned ones.
func describeChange(h HostPlan, was *Diff, now []route.Route) string {
	d := diff(h, now)
	var what []string
	seen := map[string]bool{}
	for _, f := range was.Kept {
		seen[f.found.spec] = true
	}
	for _, f := range d.Kept {
		if f.Kind == Conflict && !seen[f.found.spec] {
			what = append(what, f.Why(h))
		}
	}
	old := map[int32]string{}
	for _, r := range was.Replace {
		old[r.Index] = r.old.spec
	}
	for _, r := range d.Replace {
		if old[r.Index] != r.old.spec {
			o := r.Old()
			what = append(what, fmt.Sprintf("route %s (%s) now stands where the planned %s goes", o, h.owner(o.Protocol), h.Route(int(r.Index))))
		}
	}
	if n, m := was.Add.Len(), d.Add.Len(); m != n && len(what) == 0 {
		what = append(what, fmt.Sprintf("%d planned routes were missing, now %d", n, m))
	}
	if len(what) == 0 {
		return "routes that are not routepush's business changed"
	}
	return summarize(what)
}
