package route

import "strconv"

// Batch accumulates lines for `ip -batch -`. Each line is rendered from a
// Route's parsed fields, so the batch holds only addresses, numbers and the
// iproute2 keywords this package writes.
type Batch struct {
	buf   []byte
	lines int
}

// Grow makes room for n more bytes, like bytes.Buffer.Grow: a batch of
// thousands of routes is then not copied as it grows.
func (b *Batch) Grow(n int) {
	if need := len(b.buf) + n; need > cap(b.buf) {
		b.buf = append(make([]byte, 0, need), b.buf...)
	}
}

// LineSize is about the length of one line routepush writes,
// "route replace 100.64.0.0/24 via 198.18.0.10 proto 114 metric 0\n", for
// sizing a batch with Grow.
const LineSize = 64

// ReplaceSize is the length of the line ReplaceSpec writes for spec.
func ReplaceSize(spec []byte) int { return len("route replace ") + len(spec) + 1 }

// Replace adds `route replace` for r: add it, or overwrite the route with the
// same destination and metric in its table.
func (b *Batch) Replace(r Route) {
	b.buf = append(r.appendTo(append(b.buf, "route replace "...), true), '\n')
	b.lines++
}

// ReplaceSpec is Replace for a route already rendered by AppendSpec: a
// cluster's plan renders each destination's route once, not once per node.
func (b *Batch) ReplaceSpec(spec []byte) {
	b.buf = append(append(append(b.buf, "route replace "...), spec...), '\n') // ReplaceSize bytes
	b.lines++
}

// Add adds `route add` for r: it fails, and with it the batch, if the
// table already has a route with the same destination and metric. A batch
// made of additions and exact deletions never overwrites a route it was
// not written against, even one that appeared after the table was read.
func (b *Batch) Add(r Route) {
	b.buf = append(r.appendTo(append(b.buf, "route add "...), true), '\n')
	b.lines++
}

// AddSpec is Add for a route already rendered by AppendSpec.
func (b *Batch) AddSpec(spec []byte) {
	b.buf = append(append(append(b.buf, "route add "...), spec...), '\n') // AddSize bytes
	b.lines++
}

// AddSize is the length of the line AddSpec writes for spec.
func AddSize(spec []byte) int { return len("route add ") + len(spec) + 1 }

// Delete adds `route del` for exactly r: destination, gateway, protocol,
// metric and table must all match, so a route someone else owns with the same
// destination is never the one removed.
func (b *Batch) Delete(r Route) {
	b.buf = r.Dst.AppendTo(append(b.buf, "route del "...))
	if r.Gateway.IsValid() {
		b.buf = r.Gateway.AppendTo(append(b.buf, " via "...))
	}
	if r.Table != "" {
		b.buf = append(append(b.buf, " table "...), r.Table...)
	}
	b.buf = strconv.AppendUint(append(b.buf, " proto "...), uint64(r.Protocol), 10)
	b.buf = strconv.AppendUint(append(b.buf, " metric "...), uint64(r.Metric), 10)
	b.buf = append(b.buf, '\n')
	b.lines++
}

// Len is the number of lines in the batch.
func (b *Batch) Len() int { return b.lines }

// Bytes returns the batch as `ip -batch -` reads it on stdin.
func (b *Batch) Bytes() []byte { return b.buf }
