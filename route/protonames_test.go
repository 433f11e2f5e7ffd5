package route

import (
	"strings"
	"testing"
)

func TestProtocolNames(t *testing.T) {
	t.Parallel()
	names := ProtocolNames{}
	err := names.AddRTProtos(strings.NewReader("# comment\n3\tboot\n0x11 kube-router # hex, as iproute2 allows\n80 calico\nbad line here\n300 toobig\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := ProtocolNames{3: "boot", 17: "kube-router", 80: "calico"}
	if len(names) != len(want) {
		t.Errorf("names = %v, want %v", names, want)
	}
	for p, n := range want {
		if names[p] != n {
			t.Errorf("names[%d] = %q, want %q", p, names[p], n)
		}
	}
	if err := names.AddRTProtos(strings.NewReader("80 felix\n")); err != nil || names[80] != "felix" {
		t.Errorf("a later file's name for 80 = %q, %v; want felix", names[80], err)
	}
	for _, tt := range []struct {
		names ProtocolNames
		p     Protocol
		want  string
	}{
		{names, 17, "kube-router"},
		{names, 114, "114"},
		{names, 4, "static"}, // built in, not in the files
		{nil, 17, "17"},
		{nil, 186, "bgp"},
	} {
		if got := tt.names.Name(tt.p); got != tt.want {
			t.Errorf("%v.Name(%d) = %q, want %q", tt.names, tt.p, got, tt.want)
		}
	}
}

// A name with a control byte, an escape sequence or a non-ASCII rune in
// the bastion's rt_protos files never reaches a message: the line is
// skipped, and a map filled otherwise falls back to the built-in name.
func TestProtocolNamesRefuseUnprintable(t *testing.T) {
	t.Parallel()
	names := ProtocolNames{}
	err := names.AddRTProtos(strings.NewReader("3 \x1b[2Jboot\n12 bird\u202e\n99 open\\r\n200 ok-name\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ProtocolNames{200: "ok-name"}); len(names) != 1 || names[200] != want[200] {
		t.Errorf("names = %q, want %q", names, want)
	}
	hostile := ProtocolNames{3: "\x1b]0;owned\x07", 12: "bird\n"}
	for p, want := range map[Protocol]string{3: "boot", 12: "bird"} {
		if got := hostile.Name(p); got != want {
			t.Errorf("Name(%d) = %q, want the built-in %q", p, got, want)
		}
	}
}
