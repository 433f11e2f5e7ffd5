package route

import (
	"bytes"
	"strconv"
)

// Batch accumulates lines for `ip -batch -`. Each line is rendered from a
// Route's parsed fields, so the batch holds only addresses, numbers and the
// iproute2 keywords this package writes.
type Batch struct {
	buf   bytes.Buffer
	lines int
}

// Replace adds `route replace` for r: add it, or overwrite the route with the
// same destination and metric in its table.
func (b *Batch) Replace(r Route) {
	b.buf.WriteString("route replace ")
	b.buf.WriteString(r.Spec())
	b.buf.WriteByte('\n')
	b.lines++
}

// Delete adds `route del` for exactly r: destination, gateway, protocol,
// metric and table must all match, so a route someone else owns with the same
// destination is never the one removed.
func (b *Batch) Delete(r Route) {
	b.buf.WriteString("route del ")
	b.buf.WriteString(r.Dst.String())
	if r.Gateway.IsValid() {
		b.buf.WriteString(" via ")
		b.buf.WriteString(r.Gateway.String())
	}
	if r.Table != "" {
		b.buf.WriteString(" table ")
		b.buf.WriteString(r.Table)
	}
	b.buf.WriteString(" proto ")
	b.buf.WriteString(strconv.Itoa(int(r.Protocol)))
	b.buf.WriteString(" metric ")
	b.buf.WriteString(strconv.FormatUint(uint64(r.Metric), 10))
	b.buf.WriteByte('\n')
	b.lines++
}

// Len is the number of lines in the batch.
func (b *Batch) Len() int { return b.lines }

// Bytes returns the batch as `ip -batch -` reads it on stdin.
func (b *Batch) Bytes() []byte { return b.buf.Bytes() }
