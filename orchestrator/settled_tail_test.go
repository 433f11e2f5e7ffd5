package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// WriteRun prunes with settledRecord on a record's last 4096 bytes
// (remote.readTail). A record whose states pass 4096 bytes (a failed run,
// then rollbacks that failed, each with its error) may have a tail that
// starts at a state line: that is no record cut short, and one that
// still needs undoing is not settled (pruning would delete its undo).
func TestSettledNotFooledByATailAtALine(t *testing.T) {
	now := time.Now()
	head, _ := json.Marshal(RunRecord{RunID: NewRunID(now), Node: "node-1", State: StateApplying, Families: []string{"IPv4"}, Apply: "route add 10.0.0.0/24 dev eth0", Undo: "route del 10.0.0.0/24 dev eth0"})
	var states [][]byte
	states = append(states, marshalState(StateApplying, now, nil, nil, "b1"))
	states = append(states, marshalState(StateFailed, now, errors.New("verify: "+strings.Repeat("x", 300)), nil, "b1"))
	for range 12 {
		states = append(states, marshalState(StateRollbackFailed, now, errors.New("rollback: "+strings.Repeat("y", 300)), nil, "b1"))
	}
	// Pad the first kept line's error so the last lines are exactly 4096 bytes.
	total := 0
	k := len(states)
	for k > 0 && total+len(states[k-1]) <= 4096 {
		k--
		total += len(states[k])
	}
	pad := 4096 - total
	states[k-1] = marshalState(StateRollbackFailed, now, errors.New("rollback: "+strings.Repeat("y", 300)), nil, "b1")
	states[k] = marshalState(StateRollbackFailed, now, errors.New("rollback: "+strings.Repeat("y", 300+pad)), nil, "b1")
	record := append(append(head, '\n'), bytes.Join(states, nil)...)
	rec, err := ParseRunRecord(record)
	if err != nil || rec.State != StateRollbackFailed {
		t.Fatalf("parse: %v %v", rec.State, err)
	}
	tail := record[max(0, len(record)-4096):]
	if !bytes.HasPrefix(tail, []byte(`{"state":`)) {
		t.Fatalf("tail does not start at a line: %.40q", tail)
	}
	if settledRecord(tail) {
		t.Fatalf("a record ending %s (needs `routepush rollback`) is settled, so pruned, because its last 4096 bytes start at a state line", rec.State)
	}
}
