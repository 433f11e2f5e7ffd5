package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/persist"
	"github.com/routepush/routepush/route"
)

// nodeRun is the state of one node during a run.
type nodeRun struct {
	plan   HostPlan
	host   Host     // nil once the node needs nothing more, until a rollback
	before [32]byte // digest of the table as first read
	// after is the digest of the tables the batch left, once read: a
	// rollback undoes the batch only while the node is still so.
	after   *[32]byte
	touched bool // a batch was sent: some of it may be in the kernel
	// persisted: the routes file may have been replaced; rollback puts
	// back the one the run found.
	persisted bool
	locked    bool // this run holds the node's lock
	connect   Connector
	// recorded: the node has this run's record (state applying), which
	// must say how it ended.
	recorded bool
	// durable: the record, and so each state appended to it, is on the
	// node's disk before the run goes on: the run changes the routes
	// file, which a crash of the node does not undo.
	durable bool
	// sentBoot is the node's boot id when the run last sent it a batch
	// (its apply, or its undo), if known: the states name it, so that a
	// record says which boot the run's changes are in, not the boot a
	// state was merely appended in (after a reconnect to a node that
	// restarted under the batch, the run may send nothing more).
	sentBoot string
	// unkept: the node found no place to wait with its connection open
	// (Options.MaxIdleConnections), so it is parked whenever it waits;
	// parked: its connection was closed that way and not opened again
	// since: nothing was sent, and settling it needs a new one.
	unkept, parked bool
	// filesUnkept: the node found no place to wait with its SFTP session
	// open (run.keepFiles), so it closes it whenever it waits.
	filesUnkept bool
	// readBoot is the node's boot id when its record was written, if
	// known: a parked node that restarted since gets no batch.
	readBoot string
	// podAddrs are the node's addresses in its own pod CIDRs, IPv4's and
	// IPv6's, as its read found them: what the probe sends from and to.
	podAddrs [2]netip.Addr
	// lockFirst: the node is locked before its read, not after it and
	// only if needed: run.read's first nodes, locked alone; with
	// --persist, whose routes file is read over SFTP anyway and must be
	// read under the lock; and a watcher's rounds (TakeOver, Independent),
	// which take dead runs' locks over before deciding anything.
	lockFirst bool
	rep       *NodeReport
	opts      *Options
}

// prepare is a node's part of the read phase: connect, read its tables,
// diff them against its plan and refuse what routepush must not do there;
// with --persist, read its routes file; and when the run journals, lock
// the node if it will change (or may be locked), and record the run on it.
//
// Unless lockFirst, the lock is taken after the read, so that a node left
// as it is costs one session and no SFTP: the read says whether the node
// has a lock (Host.Unlocked). A node locked after its read is read again
// under the lock (through the ip the first read left waiting: one round
// trip), and everything decided from the read is decided again: another
// run may have changed the node between the read and the lock, and the
// run's record, whose undo lines a rollback sends without comparing,
// must be made from the node as it is locked.
func (r *nodeRun) prepare(ctx context.Context) {
	t0 := time.Now()
	defer func() { r.rep.Duration += time.Since(t0) }()
	table, ok := r.connectAndRead(ctx)
	if !ok {
		return
	}
	have, ok := r.examine(ctx, table)
	if !ok {
		return
	}
	if r.opts.journaling() && !r.locked && r.rep.NoSFTP == nil && (r.rep.Outcome == WouldChange || !r.host.Unlocked()) {
		if !r.takeLock(ctx) {
			return
		}
		if r.locked {
			facts := table.Facts // preflight's, from the first read
			if table, ok = r.read(ctx); !ok {
				return
			}
			table.Facts = facts
			if have, ok = r.examine(ctx, table); !ok {
				return
			}
		}
	}
	if r.rep.Outcome == WouldChange && r.opts.journaling() && r.rep.NoSFTP == nil {
		r.writeRecord(ctx, table, have)
	}
}

// examine is what prepare decides from a read: preflight's findings, the
// diff, what must be refused, the routes file's drift with --persist
// (read here, returned as found: it goes into the run's record), and the
// outcome, InSync or WouldChange. false: the node failed or was refused.
func (r *nodeRun) examine(ctx context.Context, table route.Table) (persist.State, bool) {
	if r.opts.Preflight != PreflightOff {
		r.rep.Preflight = Preflight(r.plan, table.Routes, table.Facts)
	}
	r.podAddrs = [2]netip.Addr{podAddress(r.plan, table.Facts, route.IPv4), podAddress(r.plan, table.Facts, route.IPv6)}
	if !r.diff(table) || !r.preflightAllows() {
		return persist.State{}, false
	}
	// The routes file as found goes into the run's record, not into
	// memory: a thousand nodes' files would be most of routepush's heap.
	var have persist.State
	if r.opts.Persist {
		var err error
		if have, err = r.host.ReadPersisted(ctx); err != nil {
			if none, ok := errors.AsType[*host.NoSFTPError](err); ok {
				// Refused before anything changes anywhere: the routes
				// file and unit travel over SFTP.
				r.rep.NoSFTP = none
				r.refuse(noPersistError{none})
				return have, false
			}
			r.fail(err)
			return have, false
		}
		r.rep.Persist = persistDrift(have, PersistFile(r.plan))
	}
	r.rep.Outcome = WouldChange
	if !r.rep.Changes() {
		r.rep.Outcome = InSync
	}
	return have, true
}

// connectAndRead connects to the node, locks it first if lockFirst and
// the run journals, and reads its tables. A node that cannot be connected
// to at all is Unreachable, which fails the run only past
// --max-unreachable.
func (r *nodeRun) connectAndRead(ctx context.Context) (route.Table, bool) {
	node := r.plan.Node()
	h, err := r.connect(ctx, node)
	if err != nil {
		r.fail(err)
		var unreachable *host.UnreachableError
		if errors.As(err, &unreachable) {
			r.rep.Outcome = Unreachable
		}
		return route.Table{}, false
	}
	r.host = h
	if r.lockFirst && r.opts.journaling() && !r.takeLock(ctx) {
		return route.Table{}, false
	}
	return r.read(ctx)
}

// read reads the node's tables, the snapshot its batch is checked
// against.
func (r *nodeRun) read(ctx context.Context) (route.Table, bool) {
	table, err := r.host.ReadRoutes(ctx, r.plan.Families())
	if err != nil {
		r.fail(err)
		return route.Table{}, false
	}
	r.before = table.Digest
	return table, true
}

// takeLock takes the node's lock (lock), or finds it has no SFTP server:
// then the node goes on without lock and record (NoSFTP says what that
// costs; its routes are restored from the run's snapshot, as anywhere,
// if the run fails). false: the node failed.
func (r *nodeRun) takeLock(ctx context.Context) bool {
	err := r.lock(ctx)
	none, noSFTP := errors.AsType[*host.NoSFTPError](err)
	switch {
	case noSFTP:
		r.rep.NoSFTP = none
	case err != nil:
		r.fail(r.opts.lockError(r.plan.Node().Name, err))
		return false
	default:
		r.locked = true
	}
	return true
}

// diff computes the node's diff and refuses the node (false) when its
// plan meets other owners' routes, routes routepush never touches, or
// next hops the node cannot reach directly.
func (r *nodeRun) diff(table route.Table) bool {
	var err error
	if r.rep.Diff, err = ComputeDiff(r.plan, table.Routes); err != nil {
		return r.refuse(err)
	}
	if c := r.rep.Diff.Conflicts(); len(c) > 0 {
		return r.refuse(errors.New(conflictText(r.plan, c)))
	}
	if problems := untouchable(r.plan, &r.rep.Diff, table.Routes, r.host.SessionSource()); len(problems) > 0 {
		return r.refuse(errors.New(summarize(problems) + "; routepush never changes these, whatever --protocol, --prune or --adopt say"))
	}
	if !r.rep.Diff.Empty() {
		if problems, hops := unconnectedNextHops(r.plan, table.Routes); len(problems) > 0 {
			return r.refuse(&UnconnectedError{Hops: hops, msg: summarize(problems) + "; routepush adds no onlink routes: fix the node's addressing or leave it out"})
		}
	}
	return true
}

// preflightAllows refuses the node (false) under --preflight strict when
// preflight found a reason its pods may not reach the others'.
func (r *nodeRun) preflightAllows() bool {
	if r.opts.Preflight != PreflightStrict {
		return true
	}
	var whys []string
	for _, f := range r.rep.Preflight {
		if f.Problem() {
			whys = append(whys, f.Why+" (fix: "+f.Fix+")")
		} else {
			// Strict vouches for the node: what it could not read
			// refuses it too.
			whys = append(whys, "not read: "+f.Why)
		}
	}
	if len(whys) == 0 {
		return true
	}
	return r.refuse(&PreflightError{msg: summarize(whys) + "; --preflight strict refuses it (report only reports)"})
}

// PreflightError refuses a node under --preflight strict.
type PreflightError struct{ msg string }

func (e *PreflightError) Error() string { return "preflight: " + e.msg }

// refuse marks the node Refused, saying why, and returns false.
func (r *nodeRun) refuse(why error) bool {
	r.rep.Outcome = Refused
	r.rep.Err = fmt.Errorf("%s: refusing to change the node: %w", r.plan.Node().Name, why)
	return false
}

// conflictText says why other owners' routes refuse a node's plan.
func conflictText(h HostPlan, conflicts []Finding) string {
	whys := make([]string, len(conflicts))
	for i, f := range conflicts {
		whys[i] = f.Why(h)
	}
	return summarize(whys) + "; --adopt replaces them with routepush's routes"
}

// writeRecord puts the run's record, batches included, on the node
// before anything changes there, written while its snapshot is at hand:
// `routepush rollback` needs nothing else.
func (r *nodeRun) writeRecord(ctx context.Context, table route.Table, have persist.State) {
	boot, _ := r.host.BootID(ctx) // unknown (""): the record is as one of before boot ids
	r.readBoot = boot
	record := newRecord(r.opts.Holder, r.plan, table, &r.rep.Diff, r.opts.CompactRecords)
	record.Boot = boot
	if r.rep.Persist.Changes() {
		record.Persist = &PersistRecord{Path: have.Path, Exists: have.Exists, Routes: string(have.Routes)}
	}
	r.durable = record.Persist != nil
	rec, _ := json.Marshal(record)
	if err := r.host.WriteRun(ctx, r.opts.Holder.RunID, append(rec, '\n'), r.opts.Keep, settledRecord, r.durable); err != nil {
		r.fail(err)
		return
	}
	// The node's SFTP session stays open while it waits for the others
	// if the run has room for it (run.keepFiles): opening it again costs
	// the node an sftp-server start for each state appended.
	r.recorded = true
}

// record appends the state the run reached on the node to its record,
// with the digest of the tables it left when they were read. Failing to
// is reported (RecordErr: the node's error, exit code 1) but changes
// nothing already done: no rollback follows from it.
func (r *nodeRun) record(ctx context.Context, state RunState, cause error, digest *[32]byte) {
	if !r.recorded || r.host == nil {
		return
	}
	if err := r.host.AppendRun(ctx, r.opts.Holder.RunID, marshalState(state, time.Now(), cause, digest, r.sentBoot), r.durable); err != nil {
		// What was done stays as the outcome says; the report and the
		// exit code say the node's record does not show it.
		r.rep.RecordErr = errors.Join(r.rep.RecordErr, fmt.Errorf("%s: could not record state %s: %w", r.plan.Node().Name, state, err))
	}
}

// release records how the run ended on the node if nothing else has,
// releases the node's lock and disconnects; errors change nothing that
// was done, but a lock left behind refuses the next run at that node, so
// it fails this one (RecordErr, exit 1) and says which node.
func (r *nodeRun) release(ctx context.Context) {
	if r.host == nil {
		if !r.parked || !r.locked {
			return // never reached, lost (its error says so), or not this run's
		}
		if err := r.resume(ctx); err != nil {
			r.rep.RecordErr = errors.Join(r.rep.RecordErr, fmt.Errorf("%s: could not connect again to record how the run ended and release its lock, which refuses the next run there until removed (the node's routes are as its outcome says): %w", r.plan.Node().Name, err))
			return
		}
	}
	if r.recorded && !r.touched {
		r.record(ctx, StateNotApplied, nil, nil) // the run stopped before this node
	}
	r.unlock(ctx)
	r.host.Close()
	r.host = nil
}

// unlock releases the node's lock, if the run holds it, and keeps its
// connection: release's first part, and alone for a node the run will
// not change, held for the probe.
func (r *nodeRun) unlock(ctx context.Context) {
	if !r.locked {
		return
	}
	if err := r.host.Unlock(ctx, r.opts.Holder.lockText()); err != nil {
		r.opts.Logger.Warn("could not release the node's lock", "node", r.plan.Node().Name, "err", err)
		r.rep.RecordErr = errors.Join(r.rep.RecordErr, fmt.Errorf("%s: could not release its lock, which refuses the next run there until removed (the node's routes are as its outcome says): %w", r.plan.Node().Name, err))
	}
	r.locked = false
}

// park closes the connection of a node that waits for others, keeping
// what the run holds there: its lock and its record are files on the
// node. resume connects again when the node's turn comes.
func (r *nodeRun) park() {
	r.host.Close()
	r.host = nil
	r.parked = true
}

// closeFiles closes the node's SFTP session while it waits for the
// others (run.keepFiles). A node that does not answer the close in time
// has lost its connection with it: it waits parked, and connects again
// under the same lock when its turn comes, as a parked node does.
func (r *nodeRun) closeFiles() {
	if err := r.host.CloseFilesUntilNeeded(); err != nil {
		r.opts.Logger.Warn("the node did not close its SFTP session in time: it waits unconnected, and is connected again when its turn comes", "node", r.rep.Name, "error", err)
		r.park()
	}
}

// resume connects to the node again, after its connection was parked or
// lost, and makes sure the run still holds its lock (relock); on error
// the node is left unconnected.
func (r *nodeRun) resume(ctx context.Context) error {
	h, err := r.connect(ctx, r.plan.Node())
	if err != nil {
		return err
	}
	r.host = h
	if err := r.relock(ctx); err != nil {
		h.Close()
		r.host = nil
		return err
	}
	r.parked = false
	return nil
}

func (r *nodeRun) fail(err error) {
	r.rep.Outcome = Failed
	r.rep.Err = err
}
