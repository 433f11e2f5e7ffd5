package orchestrator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/routepush/routepush/internal/safetext"
	"github.com/routepush/routepush/route"
)

// Journal is where a node keeps routepush's lock and the records of its
// runs, so that a run cut short (the bastion died, routepush was killed)
// can be finished or undone later, from anywhere (package remote keeps
// them in /var/lib/routepush over SFTP).
type Journal interface {
	// Lock takes the node's lock for a run, holder describing it; if
	// another run holds it, the error says which.
	Lock(ctx context.Context, holder []byte) error
	// Unlock releases the lock if holder still describes it.
	Unlock(ctx context.Context, holder []byte) error
	// WriteRun stores a run's record atomically, and prunes the older
	// ones down to keep, oldest first, keeping any that settled (given a
	// record's last bytes) says still needs attention. A durable record
	// is on the node's disk before WriteRun returns: one describing what
	// outlives a reboot (the persisted routes file) must outlive it too.
	WriteRun(ctx context.Context, id string, record []byte, keep int, settled func(tail []byte) bool, durable bool) error
	// AppendRun adds a line to a run's record, on disk before it returns
	// when durable.
	AppendRun(ctx context.Context, id string, line []byte, durable bool) error
	// BootID is the node's boot id (Linux's
	// /proc/sys/kernel/random/boot_id), "" where it has none. A record
	// carries it: a run that changed only the kernel's tables left
	// nothing once the node has restarted, whatever its record says (a
	// record is not synced to disk then, and a crash may cut it short).
	BootID(ctx context.Context) (string, error)
	// CloseFilesUntilNeeded closes what the journal keeps open (the SFTP
	// session, and with it sftp-server on the node) until the next lock,
	// record or file operation opens it again. A node waiting for others
	// keeps it open only while the run has room for it (run.keepFiles).
	// An error says the node did not answer the close in time, and its
	// connection is closed.
	CloseFilesUntilNeeded() error
}

// RunState is how far a run got on a node.
type RunState string

// Run states, in the order a run goes through them.
const (
	StateApplying       RunState = "applying"        // recorded: from now on the batch may be sent, the node may be half-changed
	StateNotApplied     RunState = "not-applied"     // the run stopped before sending this node's batch: nothing to undo
	StateVerified       RunState = "verified"        // applied and verified
	StateFailed         RunState = "failed"          // apply or verify failed; not (yet) rolled back
	StateRolledBack     RunState = "rolled-back"     // restored to the snapshot, checked byte for byte
	StateRollbackFailed RunState = "rollback-failed" // restoring failed: see Error
	// StateRestarted is never written: it is what a record says once the
	// node has restarted since its run, which changed only the kernel's
	// tables (no --persist): nothing of that run is left to undo.
	StateRestarted RunState = "restarted"
)

// Holder describes a run in a node's lock: who to ask, or whose process to
// look for, when the lock is in the way.
type Holder struct {
	RunID   string    `json:"run_id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Lease is the Lease ("namespace/name") a watcher held when it
	// started the run: its next holder may take over the locks the run
	// left, having the lease proves the run's writer stopped.
	Lease string `json:"lease,omitempty"`
}

// String describes the holder. A holder read back from a node is the
// node's text: its run id and host are escaped.
func (h Holder) String() string {
	return fmt.Sprintf("run %s (routepush pid %d on %s, since %s)", safetext.Line(h.RunID), h.PID, safetext.Line(h.Host), h.Started.UTC().Format(time.RFC3339))
}

// RunRecord is what a node keeps of a run: enough to undo it from another
// bastion with nothing but the inventory and the keys.
type RunRecord struct {
	RunID    string    `json:"run_id"`
	Node     string    `json:"node"`
	State    RunState  `json:"state"`
	Holder   Holder    `json:"holder"`
	Updated  time.Time `json:"updated"`
	Families []string  `json:"families"` // "IPv4", "IPv6": the tables read
	// Boot is the node's boot id when the run wrote the record, or the
	// newest state that says (see Journal.BootID).
	Boot  string `json:"boot_id,omitempty"`
	Table string `json:"table,omitempty"`
	// Digest is the SHA-256 of the tables as ip printed them before the
	// run; a rollback is done when they print the same again.
	Digest string `json:"snapshot_digest"`
	// Snapshot is the node's routes before the run, as `ip route replace`
	// arguments, for people (left out with Options.CompactRecords); Apply and Undo are the `ip -batch` lines the
	// run sends and the ones that restore the snapshot.
	Snapshot []string `json:"snapshot"`
	Apply    string   `json:"apply"`
	Undo     string   `json:"undo"`
	Error    string   `json:"error,omitempty"`
	// After is the digest of the tables as the run left them, from the
	// newest state that read them (verified, failed): a rollback undoes
	// the run only while the node is still so, and leaves alone a node
	// someone has changed since.
	After string `json:"-"`
	// Persist is the routes file as the run found it, when the run
	// (--persist) replaces it.
	Persist *PersistRecord `json:"persist,omitempty"`
}

var runIDRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-f]{6}$`)

// NewRunID returns a run id that sorts by time, to the millisecond:
// 20261126T223050.123Z-1a2b3c. Nodes keep the newest records by it.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// ValidRunID reports whether s is a run id (and so safe in a file name).
func ValidRunID(s string) bool { return runIDRE.MatchString(s) }

// newRecord describes the run on a node before its batch is sent. It
// renders the apply batch, which apply renders again: keeping it from the
// read to the apply would hold every node's batch at once, where rendering
// it again is cheap.
func newRecord(holder Holder, h HostPlan, table route.Table, d *Diff, compact bool) RunRecord {
	rec := RunRecord{
		RunID: holder.RunID, Node: h.Node().Name, State: StateApplying, Holder: holder,
		Table: h.plan.Table, Digest: hex.EncodeToString(table.Digest[:]),
		Apply: string(d.ApplyBatch(h).Bytes()), Undo: string(d.UndoBatch(h).Bytes()),
	}
	for _, f := range h.Families() {
		rec.Families = append(rec.Families, f.String())
	}
	if compact {
		return rec
	}
	for _, r := range table.Routes {
		rec.Snapshot = append(rec.Snapshot, r.Spec())
	}
	return rec
}

// stateLine is a line appended to a record as the run proceeds: a record
// is written once (it holds the batches) and its state appended, so a
// thousand nodes in flight do not each rewrite theirs.
type stateLine struct {
	State RunState  `json:"state"`
	Time  time.Time `json:"time"`
	Error string    `json:"error,omitempty"`
	// Digest is that of the tables the state left the node with, when
	// they were read.
	Digest string `json:"digest,omitempty"`
	// Boot is the node's boot id when the state was reached: a run that
	// reconnected after the node restarted may have changed it again.
	Boot string `json:"boot_id,omitempty"`
}

func marshalState(state RunState, now time.Time, err error, digest *[32]byte, boot string) []byte {
	l := stateLine{State: state, Time: now.UTC(), Boot: boot}
	if err != nil {
		l.Error = err.Error()
	}
	if digest != nil {
		l.Digest = hex.EncodeToString(digest[:])
	}
	b, _ := json.Marshal(l)
	return append(b, '\n')
}

// ParseRunRecord reads a node's record of a run: the record, then the
// states appended to it; the last complete one is the run's state there.
//
// A record is the node's text, up to the record limit: nothing in it may
// cost more to parse than its bytes. The snapshot (a list of strings, for
// people: ["","",...] would be 16 bytes a string header for every 3 of
// input) is skipped, the families are at most two, and the state lines are
// walked, not split into a slice of strings.
func ParseRunRecord(b []byte) (RunRecord, error) {
	first, rest, _ := strings.Cut(string(b), "\n")
	var in struct {
		RunRecord
		Snapshot skipJSON       `json:"snapshot"`
		Families boundedStrings `json:"families"`
	}
	if err := json.Unmarshal([]byte(first), &in); err != nil {
		return RunRecord{}, fmt.Errorf("run record: %w", err)
	}
	r := in.RunRecord
	r.Families = in.Families
	if !ValidRunID(r.RunID) {
		return RunRecord{}, fmt.Errorf("run record: bad run id %q", r.RunID)
	}
	if !knownState(r.State) {
		return RunRecord{}, fmt.Errorf("run record: unknown state %q", r.State)
	}
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if line == "" {
			continue
		}
		var l stateLine
		if json.Unmarshal([]byte(line), &l) == nil && knownState(l.State) {
			r.State, r.Updated, r.Error = l.State, l.Time, l.Error
			if l.Digest != "" {
				r.After = l.Digest
			}
			if l.Boot != "" {
				r.Boot = l.Boot
			}
		}
	}
	return r, nil
}

// skipJSON is a member of a node's record that routepush never reads back.
type skipJSON struct{}

func (skipJSON) UnmarshalJSON([]byte) error { return nil }

// boundedStrings is a record's list of families: at most two.
type boundedStrings []string

func (s *boundedStrings) UnmarshalJSON(b []byte) error {
	if len(b) > 64 {
		return fmt.Errorf("families: %d bytes, more than two families take", len(b))
	}
	return json.Unmarshal(b, (*[]string)(s))
}

// knownState reports whether s is a state routepush writes: a record's
// text comes from the node, and nothing else of it is shown or acted on.
func knownState(s RunState) bool {
	switch s {
	case StateApplying, StateNotApplied, StateVerified, StateFailed, StateRolledBack, StateRollbackFailed:
		return true
	}
	return false
}

// RouteFamilies returns the families the record names.
func (r RunRecord) RouteFamilies() ([]route.Family, error) {
	var fams []route.Family
	for _, f := range r.Families {
		switch strings.ToLower(f) {
		case "ipv4":
			fams = append(fams, route.IPv4)
		case "ipv6":
			fams = append(fams, route.IPv6)
		default:
			return nil, fmt.Errorf("run record: unknown family %q", f)
		}
	}
	return fams, nil
}

// settledRecord reports, from a record's last bytes, whether its run is
// over on the node and can be pruned: verified, rolled back, or never
// applied. A run that was applying (killed), failed without a rollback, or
// whose rollback failed still needs `routepush rollback`.
func settledRecord(tail []byte) bool {
	if len(bytes.TrimSpace(tail)) == 0 {
		// An empty record, cut short by a crash (a tail that only looks
		// head-less is the end of a longer record: not cutShort's to say).
		return true
	}
	lines := strings.Split(strings.TrimRight(string(tail), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l stateLine
		if json.Unmarshal([]byte(lines[i]), &l) == nil && l.State != "" {
			return l.State == StateVerified || l.State == StateRolledBack || l.State == StateNotApplied
		}
	}
	return false
}

// cutShort reports whether a record lost its head to a crash of the
// node: a record of a run that changes only the kernel's tables is not
// synced to disk, and a crash may leave its name empty, or with zeros,
// or with only the states the run appended once it reconnected. The
// run's routes went with the crash.
func cutShort(record []byte) bool {
	head, _, _ := bytes.Cut(bytes.TrimLeft(record, " \t\r\n"), []byte("\n"))
	switch {
	case len(head) == 0 || head[0] == 0:
		return true
	case bytes.HasPrefix(head, []byte(`{"state":`)):
		var l stateLine
		return json.Unmarshal(head, &l) == nil && knownState(l.State)
	}
	return false
}

// restartedSince reports whether the node, now booted as boot, has
// restarted since the run, which changed only the kernel's tables: its
// routes went with the restart, and undoing it would only put back routes
// of a table that no longer exists.
func (r RunRecord) restartedSince(boot string) bool {
	return r.Boot != "" && boot != "" && r.Boot != boot && r.Persist == nil
}
