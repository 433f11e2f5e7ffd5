package orchestrator

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/routepush/routepush/internal/persist"
	"github.com/routepush/routepush/route"
)

// Persister keeps a node's routes across reboots (--persist): a routes
// file in `ip -batch` form and what replays it at boot (package remote:
// /etc/routepush/routes and a systemd unit, over SFTP).
type Persister interface {
	// ReadPersisted says what the node would restore at boot.
	ReadPersisted(ctx context.Context) (persist.State, error)
	// WritePersisted replaces the routes file atomically, keeping the one
	// it replaces beside it, and installs what replays it, enabled where
	// the node runs systemd (ReadPersisted said whether it does, and the
	// report warns where it does not).
	// found is what ReadPersisted saw, with or without its Routes.
	WritePersisted(ctx context.Context, routes []byte, found persist.State) error
	// UndoPersisted puts back the routes file the last WritePersisted
	// replaced, or removes it if there was none (found.Exists).
	UndoPersisted(ctx context.Context, found persist.State) error
	// RestorePersisted puts the routes file back as a run record says it
	// was: prev's content, or no file if there was none.
	RestorePersisted(ctx context.Context, prev persist.State) error
}

// PersistReport is the --persist part of a node's report.
type PersistReport struct {
	Path string
	// Drift lists what differs from the plan. Empty when the node would
	// restore exactly the plan's routes at boot.
	Drift []PersistDrift
	// Written: this run installed the file (and the unit).
	Written bool
	// Warnings are risks routepush does not fix: no systemd to enable the
	// unit, networkd deleting foreign routes.
	Warnings []string
	// found is what the node had before the run, without the file's
	// content: the run record keeps that, and the node keeps the file.
	found persist.State
}

// PersistDrift is one way a node's --persist install differs from its
// plan.
type PersistDrift struct {
	Kind DriftKind
	// Delta says how the routes file differs, for DriftFileDiffers.
	Delta string
}

// DriftKind says what of a --persist install differs.
type DriftKind uint8

// Kinds of drift.
const (
	DriftFileMissing  DriftKind = iota + 1 // no routes file
	DriftFileDiffers                       // a routes file other than the plan's
	DriftUnitOutdated                      // the boot unit missing or outdated
	DriftUnitDisabled                      // the boot unit not enabled
)

// String says it as the report and the JSON document do.
func (d PersistDrift) String() string {
	switch d.Kind {
	case DriftFileMissing:
		return "routes file missing"
	case DriftFileDiffers:
		return "routes file " + d.Delta
	case DriftUnitOutdated:
		return "boot unit missing or outdated"
	case DriftUnitDisabled:
		return "boot unit not enabled"
	}
	return "drift"
}

// Changes reports whether apply would install anything.
func (p *PersistReport) Changes() bool { return p != nil && len(p.Drift) > 0 }

// PersistFile renders a node's routes file: every route the plan gives
// it, as `route replace` lines for `ip -force -batch`, which at boot adds
// the ones missing and leaves the rest. Comments say where it came from.
func PersistFile(h HostPlan) []byte {
	var b route.Batch
	b.Grow(h.Len() * route.LineSize)
	for k := range h.Len() {
		b.ReplaceSpec(h.spec(k))
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Written by routepush --persist for %s: its routes to the other nodes' pod CIDRs.\n", h.Node().Name)
	out.WriteString("# Replayed at boot by `ip -force -batch` (routepush-routes.service). routepush rewrites this file.\n")
	out.Write(b.Bytes())
	return out.Bytes()
}

// persistDrift compares what a node has installed with its plan's routes
// file, and names the risks it cannot fix.
func persistDrift(have persist.State, want []byte) *PersistReport {
	p := &PersistReport{Path: have.Path, found: have}
	p.found.Routes = nil
	switch {
	case !have.Exists:
		p.Drift = append(p.Drift, PersistDrift{Kind: DriftFileMissing})
	case !bytes.Equal(have.Routes, want):
		p.Drift = append(p.Drift, PersistDrift{Kind: DriftFileDiffers, Delta: lineDelta(have.Routes, want)})
	}
	switch {
	case !have.UnitCurrent:
		p.Drift = append(p.Drift, PersistDrift{Kind: DriftUnitOutdated})
	case have.Systemd && !have.UnitEnabled:
		p.Drift = append(p.Drift, PersistDrift{Kind: DriftUnitDisabled})
	}
	if !have.Systemd {
		p.Warnings = append(p.Warnings, "no systemd: the unit cannot be enabled; replay the file at boot with `ip -force -batch "+have.Path+"`")
	}
	if have.ForeignRoutesManaged {
		p.Warnings = append(p.Warnings, "systemd-networkd runs with ManageForeignRoutes on: it deletes these routes whenever it reconfigures a link; set ManageForeignRoutes=no in /etc/systemd/networkd.conf.d/")
	}
	return p
}

// lineDelta says how two routes files differ, in routes (comments aside).
func lineDelta(have, want []byte) string {
	routes := func(b []byte) []string {
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
				out = append(out, l)
			}
		}
		return out
	}
	in := map[string]bool{}
	for _, l := range routes(have) {
		in[l] = true
	}
	missing := 0
	for _, l := range routes(want) {
		if !in[l] {
			missing++
		}
		delete(in, l)
	}
	if missing == 0 && len(in) == 0 {
		return "differs from the plan in its comments only"
	}
	return fmt.Sprintf("differs from the plan: %d routes missing, %d extra", missing, len(in))
}

// persist installs the node's routes file after its routes verified.
func (r *nodeRun) persist(ctx context.Context) error {
	if err := r.host.WritePersisted(ctx, PersistFile(r.plan), r.rep.Persist.found); err != nil {
		return err
	}
	r.rep.Persist.Written = true
	return nil
}

// persistVerified installs the routes file of a node whose routes verified,
// if --persist wants it, and records the node as verified.
func (r *nodeRun) persistVerified(ctx context.Context) bool {
	if r.rep.Persist.Changes() {
		r.persisted = true
		if err := r.persist(ctx); err != nil {
			r.fail(fmt.Errorf("persist: %w", err))
			return false
		}
	}
	r.rep.Outcome = Changed
	// Recorded even if the run is being interrupted: a node that verified
	// must say so, with the digest a later rollback checks.
	r.record(context.WithoutCancel(ctx), StateVerified, nil, r.after)
	return true
}

// PersistRecord is the routes file as a run found it, in the run's record
// on the node: `routepush rollback` puts it back.
type PersistRecord struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	Routes string `json:"routes,omitempty"`
}

func (p *PersistRecord) persisted() persist.State {
	return persist.State{Path: p.Path, Exists: p.Exists, Routes: []byte(p.Routes)}
}
