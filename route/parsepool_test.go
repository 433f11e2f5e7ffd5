package route

import (
	"bytes"
	"sync"
	"testing"

	"github.com/valyala/fastjson"
)

// The parser pool is package state: every parse must give its parser
// back, whatever it parsed, and one that held a large table is replaced.
// Not parallel: it counts the pool's parsers.
func TestParserPoolStaysFullAndSmall(t *testing.T) {
	big := append([]byte("["), bytes.Repeat([]byte(`{"dst":"100.64.0.0/24","gateway":"198.18.0.1","dev":"eth0"},`), keepParserBelow/60+1)...)
	big[len(big)-1] = ']'
	var wg sync.WaitGroup
	for i := range 2*cap(parsers) + 1 {
		wg.Go(func() {
			switch {
			case i == 0: // larger than keepParserBelow
				if _, err := ParseJSON(big, IPv4); err != nil {
					t.Error(err)
				}
			case i%2 == 0:
				_, _ = ParseJSON([]byte(`[{"dst":"100.64.0.0/24"}]`), IPv4)
			default:
				_, _ = ParseJSON([]byte(`{`), IPv4) // an error
			}
		})
	}
	wg.Wait()
	if len(parsers) != cap(parsers) {
		t.Fatalf("%d of %d parsers back in the pool", len(parsers), cap(parsers))
	}
	p := getParser()
	putParser(p, keepParserBelow+1)
	var out []*fastjson.Parser
	for range cap(parsers) {
		q := getParser()
		if q == p {
			t.Error("a parser that held more than keepParserBelow went back to the pool")
		}
		out = append(out, q)
	}
	for _, q := range out {
		putParser(q, 0)
	}
}
