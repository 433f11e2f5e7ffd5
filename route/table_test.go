package route

import "testing"

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
