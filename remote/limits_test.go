package remote

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
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
