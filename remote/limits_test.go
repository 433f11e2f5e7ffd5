package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/routepush/routepush/route"
)

func TestReadAtMost(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int64
		over  bool
	}{{"", 4, false}, {"abcd", 4, false}, {"abcde", 4, true}} {
		b, err := readAtMost(strings.NewReader(tc.in), tc.limit)
		if errors.Is(err, errOverLimit) != tc.over || int64(len(b)) > tc.limit {
			t.Errorf("%q limit %d: %q, %v", tc.in, tc.limit, b, err)
		}
	}
	// An endless reader is cut at the limit, not read to its end.
	if _, err := readAtMost(endless{}, 1<<20); !errors.Is(err, errOverLimit) {
		t.Errorf("endless: %v", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestReadLineAtMost(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("short\n"+strings.Repeat("y", 100)+"\nend"), 16)
	if line, err := readLineAtMost(r, 64); err != nil || string(line) != "short\n" {
		t.Fatalf("%q, %v", line, err)
	}
	if _, err := readLineAtMost(r, 64); !errors.Is(err, errOverLimit) {
		t.Fatalf("a 101-byte line with a limit of 64: %v", err)
	}
	r = bufio.NewReaderSize(endless{}, 16)
	if _, err := readLineAtMost(r, 1<<20); !errors.Is(err, errOverLimit) {
		t.Fatalf("an endless line: %v", err)
	}
}

func TestMeter(t *testing.T) {
	m := &meter{r: endless{}}
	m.budget(100)
	n, err := io.Copy(io.Discard, m)
	if !errors.Is(err, errOverLimit) || n > 101 || !m.tripped() {
		t.Fatalf("read %d, %v, tripped %v", n, err, m.tripped())
	}
	m = &meter{r: strings.NewReader(strings.Repeat("z", 150))}
	m.budget(100)
	if _, err := io.ReadFull(m, make([]byte, 80)); err != nil {
		t.Fatal(err)
	}
	m.budget(100) // a new operation: a new budget
	if b, err := io.ReadAll(m); err != nil || len(b) != 70 {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
}

func TestLimitErrorMessage(t *testing.T) {
	c := &Client{name: "node-3", planned: 1000}
	err := c.tooMuch("ip route show table main: output", c.tableLimit(), c.tableWhy())
	want := "node-3: ip route show table main: output: exceeds 17.0 MiB (the limit for a table of 1,000 planned routes); is the node's ip sane? routepush stopped reading"
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	if got := sizeString(64 << 10); got != "64 KiB" {
		t.Errorf("sizeString: %s", got)
	}
}

// TestParseSizeBoundsDenseTables: a table under the byte limit but as dense
// as JSON allows (a value every two bytes, or a route every 18) is refused
// before it is parsed, naming the node and the limit; it would otherwise
// cost the bastion about a gigabyte (route.ParseJSON holds ~90 bytes per
// JSON value and ~300 per route). A real table of as many routes passes.
func TestParseSizeBoundsDenseTables(t *testing.T) {
	c := &Client{name: "node-1", planned: 4}
	limit := c.tableLimit()
	dense := func(unit string) []byte {
		var b strings.Builder
		b.WriteString("[")
		for int64(b.Len()) < limit-int64(len(unit))-2 {
			if b.Len() > 1 {
				b.WriteString(",")
			}
			b.WriteString(unit)
		}
		b.WriteString("]\n")
		return []byte(b.String())
	}
	for name, out := range map[string][]byte{
		"values": dense("0"),
		"routes": dense(`{"dst":"1.0.0.1"}`),
	} {
		if int64(len(out)) > limit {
			t.Fatalf("%s: %d bytes, over the byte limit %d", name, len(out), limit)
		}
		_, err := c.parseJSONTable(out, route.IPv4)
		var le *LimitError
		if !errors.As(err, &le) || le.Host != "node-1" || !strings.Contains(err.Error(), "node-1: the IPv4 table main: exceeds") {
			t.Errorf("%s: %d bytes parsed: %v", name, len(out), err)
		}
	}
	// The text form too: a line per route, or a field every two bytes.
	c.textMode = true
	text := []byte(strings.Repeat("1.0.0.0/8\n", int(limit/10)-1) + "--- routepush: end of table ---\n")
	if _, err := c.parseTables(text, []route.Family{route.IPv4}); !errors.As(err, new(*LimitError)) {
		t.Errorf("text lines: %v", err)
	}
	c.textMode = false
	// A real table of routeFloor routes, as ip prints them, passes.
	var b strings.Builder
	b.WriteString("[")
	for i := range routeFloor {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"type":"unicast","dst":"10.%d.%d.0/24","gateway":"198.18.0.10","dev":"eth0","protocol":"114","scope":"global","flags":[]}`, i>>8, i&255)
	}
	b.WriteString("]\n")
	tab, err := c.parseJSONTable([]byte(b.String()), route.IPv4)
	if err != nil || len(tab.Routes) != routeFloor {
		t.Errorf("a real table of %d routes: %d routes, %v", routeFloor, len(tab.Routes), err)
	}
}
