package orchestrator

import "iter"

// Positions is a set of plan positions kept as ascending runs. A node
// that lacks routes usually lacks a whole stretch of them (all of them on
// a first run): a 1,000-node cluster's first run keeps 1,000 runs, not a
// million numbers.
type Positions struct {
	runs []span
	n    int
}

// add appends k, which must be larger than every position already added.
func (p *Positions) add(k int) {
	p.n++
	if last := len(p.runs) - 1; last >= 0 && p.runs[last].end == k {
		p.runs[last].end++
		return
	}
	p.runs = append(p.runs, span{k, k + 1})
}

// Len is how many positions there are.
func (p *Positions) Len() int { return p.n }

// All yields the positions in ascending order.
func (p *Positions) All() iter.Seq[int] {
	return func(yield func(int) bool) {
		for _, r := range p.runs {
			for k := r.start; k < r.end; k++ {
				if !yield(k) {
					return
				}
			}
		}
	}
}
