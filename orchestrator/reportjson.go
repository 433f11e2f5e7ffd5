package orchestrator

import (
	"errors"
	"time"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// JSONSchemaVersion is the version of the --output json document
// (docs/report.schema.json). It changes only when a field changes meaning
// or goes away.
const JSONSchemaVersion = 1

// JSONReport is the --output json document: one per run, for scripts.
type JSONReport struct {
	SchemaVersion int        `json:"schema_version"`
	RunID         string     `json:"run_id,omitempty"` // empty for --check
	Check         bool       `json:"check"`
	DurationMS    int64      `json:"duration_ms"`
	Failed        bool       `json:"failed"`
	Error         string     `json:"error,omitempty"` // what stopped the run as a whole
	Nodes         []JSONNode `json:"nodes"`
	Probe         *JSONProbe `json:"probe,omitempty"` // with --probe, when it ran
}

// JSONProbe is the pod-to-pod probe's part of a run.
type JSONProbe struct {
	PerNode  int               `json:"per_node"` // targets per node; 0 for every pair
	Pairs    int               `json:"pairs"`
	Answered int               `json:"answered"`
	Failed   int               `json:"failed"`
	Results  []JSONProbePair   `json:"results"`
	Skipped  map[string]string `json:"skipped,omitempty"` // node: why it was not probed
}

// JSONProbePair is one probed pair in one family.
type JSONProbePair struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Family   string `json:"family"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Sent     int    `json:"sent"`
	Received int    `json:"received"`
	Answered bool   `json:"answered"`
	Error    string `json:"error,omitempty"`
	Cause    string `json:"cause,omitempty"` // for a pair that did not answer
}

// JSONNode is one node's part of a run.
type JSONNode struct {
	Name          string        `json:"name"`
	Outcome       Outcome       `json:"outcome"`
	DurationMS    int64         `json:"duration_ms"`
	Added         []JSONRoute   `json:"added"`
	Changed       []JSONChange  `json:"changed"`
	Removed       []JSONFinding `json:"removed"`
	Kept          []JSONFinding `json:"kept"`
	Unchanged     int           `json:"unchanged"`
	RolledBack    bool          `json:"rolled_back"`
	Error         string        `json:"error,omitempty"`
	RollbackError string        `json:"rollback_error,omitempty"`
	Persist       *JSONPersist  `json:"persist,omitempty"`
	// Warnings are risks the run took on the node: no SFTP server, so
	// no lock and no run record there (NodeReport.NoSFTPWarning).
	Warnings []string `json:"warnings,omitempty"`
	// Preflight is what preflight found on the node; absent when nothing
	// (or with --preflight off).
	Preflight []JSONPreflight `json:"preflight,omitempty"`
}

// JSONPreflight is one preflight finding.
type JSONPreflight struct {
	Kind      PreflightKind `json:"kind"`
	Family    string        `json:"family,omitempty"`
	Interface string        `json:"interface,omitempty"`
	Why       string        `json:"why"`
	Fix       string        `json:"fix,omitempty"`
}

// JSONPersist is the --persist part of a node's report.
type JSONPersist struct {
	Path     string   `json:"path"`
	Drift    []string `json:"drift"`
	Written  bool     `json:"written"`
	Warnings []string `json:"warnings"`
}

// JSONRoute is a route with every attribute routepush reads or writes.
type JSONRoute struct {
	Spec     string `json:"spec"` // as `ip route replace` takes it
	Dst      string `json:"dst"`
	Via      string `json:"via,omitempty"`
	Dev      string `json:"dev,omitempty"`
	Protocol int    `json:"protocol"`
	Metric   uint32 `json:"metric"`
	Table    string `json:"table,omitempty"` // empty for main
}

// JSONChange is a route replaced by the planned one.
type JSONChange struct {
	From JSONRoute `json:"from"`
	To   JSONRoute `json:"to"`
}

// JSONFinding is a route the plan has something to say about.
type JSONFinding struct {
	Kind    string     `json:"kind"` // stale, conflict, self route, overlap
	Route   JSONRoute  `json:"route"`
	Planned *JSONRoute `json:"planned,omitempty"`
	Why     string     `json:"why"`
}

func jsonRoute(r route.Route) JSONRoute {
	j := JSONRoute{Spec: r.Spec(), Dst: r.Dst.String(), Dev: r.Dev, Protocol: int(r.Protocol), Metric: r.Metric, Table: r.Table}
	if r.Gateway.IsValid() {
		j.Via = r.Gateway.String()
	}
	return j
}

func jsonFinding(h HostPlan, f Finding) JSONFinding {
	j := JSONFinding{Kind: f.Kind.String(), Route: jsonRoute(f.Route()), Why: f.Why(h)}
	if planned, ok := f.Planned(h); ok {
		p := jsonRoute(planned)
		j.Planned = &p
	}
	return j
}

// JSON returns the report as the --output json document.
func (r *Report) JSON(runID string) JSONReport {
	j := JSONReport{SchemaVersion: JSONSchemaVersion, RunID: runID, Check: r.Check,
		DurationMS: r.Duration.Milliseconds(), Failed: r.Failed() || r.ProbeFailed(), Nodes: make([]JSONNode, len(r.Nodes))}
	if p := r.Probe; p != nil {
		jp := &JSONProbe{PerNode: max(p.K, 0), Results: []JSONProbePair{}}
		jp.Pairs, jp.Answered, jp.Failed = p.Counts()
		for _, q := range p.Pairs {
			jp.Results = append(jp.Results, JSONProbePair{From: q.From, To: q.To, Family: q.Family.String(), Src: q.Src.String(), Dst: q.Dst.String(),
				Sent: q.Sent, Received: q.Received, Answered: q.Passed(), Error: safetext.Text(q.Err), Cause: safetext.Text(q.Cause)})
		}
		if len(p.Skipped) > 0 {
			jp.Skipped = map[string]string{}
			for k, v := range p.Skipped {
				jp.Skipped[k] = safetext.Text(v)
			}
		}
		j.Probe = jp
	}
	if r.Err != nil {
		j.Error = safetext.Text(r.Err.Error())
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		h := r.Plan.Host(i)
		jn := JSONNode{Name: n.Name, Outcome: n.Outcome, DurationMS: n.Duration.Round(time.Millisecond).Milliseconds(),
			Added: []JSONRoute{}, Changed: []JSONChange{}, Removed: []JSONFinding{}, Kept: []JSONFinding{},
			Unchanged: n.Unchanged(), RolledBack: n.RolledBack}
		for k := range n.Diff.Add.All() {
			jn.Added = append(jn.Added, jsonRoute(h.Route(k)))
		}
		for _, c := range n.Diff.Replace {
			jn.Changed = append(jn.Changed, JSONChange{From: jsonRoute(c.Old()), To: jsonRoute(h.Route(int(c.Index)))})
		}
		for _, f := range n.Diff.Remove {
			jn.Removed = append(jn.Removed, jsonFinding(h, f))
		}
		for _, f := range n.Diff.Kept {
			jn.Kept = append(jn.Kept, jsonFinding(h, f))
		}
		if err := errors.Join(n.Err, n.RecordErr); err != nil {
			jn.Error = safetext.Text(err.Error()) // the record's failure is part of the node's error
		}
		if n.RollbackErr != nil {
			jn.RollbackError = safetext.Text(n.RollbackErr.Error())
		}
		if warn := n.NoSFTPWarning(); warn != "" {
			jn.Warnings = []string{safetext.Text(warn)}
		}
		for _, f := range n.Preflight {
			jf := JSONPreflight{Kind: f.Kind, Interface: safetext.Text(f.Interface), Why: safetext.Text(f.Why), Fix: safetext.Text(f.Fix)}
			if f.Kind != NotRead {
				jf.Family = f.Family.String()
			}
			jn.Preflight = append(jn.Preflight, jf)
		}
		if p := n.Persist; p != nil {
			jn.Persist = &JSONPersist{Path: p.Path, Drift: []string{}, Written: p.Written, Warnings: append([]string{}, p.Warnings...)}
			for _, d := range p.Drift {
				jn.Persist.Drift = append(jn.Persist.Drift, d.String())
			}
		}
		j.Nodes[i] = jn
	}
	return j
}
