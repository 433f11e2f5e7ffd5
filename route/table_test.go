package route

import (
	"strings"
	"testing"
)

func TestParseTable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "", "main": "", "254": "", "100": "100", "4294967295": "4294967295"} {
		if got, err := ParseTable(in); err != nil || got != want {
			t.Errorf("ParseTable(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"local", "255", "default", "0", "pods", "100; reboot", "4294967296", "-1"} {
		if _, err := ParseTable(in); err == nil {
			t.Errorf("ParseTable(%q) accepted", in)
		}
	}
}

// A batch sent after other lines of input: the line ip names is counted
// from the batch's start again.
func TestShiftBatchLines(t *testing.T) {
	stderr := "Error: Nexthop has invalid gateway.\nCommand failed -:5\n"
	if got := ShiftBatchLines(stderr, 2); FailedBatchLine(got) != 3 || !strings.HasPrefix(got, "Error: Nexthop has invalid gateway.\n") {
		t.Errorf("shifted by 2: %q", got)
	}
	if got := ShiftBatchLines(stderr, 0); got != stderr {
		t.Errorf("shifted by 0: %q", got)
	}
}
