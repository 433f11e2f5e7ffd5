package orchestrator

import (
	"runtime"
	"strings"
	"testing"
)

// allocated is what fn allocates, in bytes.
func allocated(fn func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	fn()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// TestParseRunRecordCostsItsBytes: a run record is the node's text, up to
// the record limit (16 MiB and more). Shaped to cost the most to parse, a
// snapshot of empty strings, a million families, newlines after the
// record, an undo of newlines, it must cost `routepush rollback` about its
// own size, not ten times that.
func TestParseRunRecordCostsItsBytes(t *testing.T) {
	const n = 1 << 20
	head := `{"run_id":"20261126T223050.123Z-1a2b3c","node":"w0","state":"failed","snapshot_digest":"00","undo":"` +
		strings.Repeat(`\n`, n) + `","snapshot":[` + strings.Repeat(`"",`, n) + `""]`
	for name, rec := range map[string]string{
		"snapshot, undo and state lines": head + "}" + strings.Repeat("\n", 2*n),
		"families":                       head + `,"families":[` + strings.Repeat(`"",`, n) + `""]}`,
	} {
		var r RunRecord
		var err error
		cost := allocated(func() { r, err = ParseRunRecord([]byte(rec)) })
		if err == nil {
			_, err = checkUndo(r.Undo)
		}
		if cost > uint64(4*len(rec)) {
			t.Errorf("%s: a %d-byte record cost %d MiB to parse (%v)", name, len(rec)>>20, cost>>20, err)
		}
		runtime.KeepAlive(r)
	}
}
