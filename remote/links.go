package remote

import (
	"bytes"
	"cmp"
	"hash/maphash"
	"slices"
	"strconv"
)

// linkSeen is an interface as a kept ip printed it: its index and a hash
// of its name.
type linkSeen struct {
	index uint32
	name  uint64
}

// linkTable is the interfaces a kept ip last printed, by index.
type linkTable []linkSeen

var linkSeed = maphash.MakeSeed()

// linkNames reads the index and name of each interface from what `ip
// -json link show` printed (`[{"ifindex":1,"ifname":"lo",...},...]`):
// only those two fields, by scanning, so a node's link line costs no more
// than its size. What does not read as such is left out: a node that
// lies about its links misleads only its own kept ip.
//
// More than maxLinks interfaces: nil and tooMany.
func linkNames(line []byte) (t linkTable, tooMany bool) {
	const index, name = `{"ifindex":`, `"ifname":"`
	for rest := line; ; {
		i := bytes.Index(rest, []byte(index))
		if i < 0 {
			break
		}
		rest = rest[i+len(index):]
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			break
		}
		n, err := strconv.ParseUint(string(rest[:end]), 10, 32)
		rest = rest[end+1:]
		if err != nil || !bytes.HasPrefix(rest, []byte(name)) {
			continue
		}
		rest = rest[len(name):]
		q := bytes.IndexByte(rest, '"')
		if q < 0 {
			break
		}
		if len(t) == maxLinks {
			return nil, true
		}
		t = append(t, linkSeen{uint32(n), maphash.Bytes(linkSeed, rest[:q])})
		rest = rest[q:]
	}
	slices.SortFunc(t, func(a, b linkSeen) int { return cmp.Compare(a.index, b.index) })
	return slices.Clip(t), false
}

// maxLinks bounds the interfaces a kept ip's names are watched for: what
// the watcher holds per node at rest. An ip on a node with more is not
// kept (tooManyLinks).
const maxLinks = 4096

// renamed reports whether an interface the table holds has another name
// in now. Interfaces that came or went change nothing for ip: it has not
// cached a new index, and a gone one's routes are gone with it.
func (t linkTable) renamed(now linkTable) bool {
	for _, l := range now {
		i, ok := slices.BinarySearchFunc(t, l.index, func(s linkSeen, idx uint32) int { return cmp.Compare(s.index, idx) })
		if ok && t[i].name != l.name {
			return true
		}
	}
	return false
}

// notKeptError is a kept ip that would print an interface's old name,
// or whose node has more than maxLinks interfaces to watch.
type notKeptError struct{ host string }

func (e *notKeptError) Error() string {
	return e.host + ": an interface was renamed since its ip started (it caches the names), or there are too many to watch: not kept"
}
