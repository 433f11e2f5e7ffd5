package route

import "bytes"

// What a table costs the bastion is not its size in bytes: a parse holds a
// Route (about 300 bytes) per route and, for JSON, a parser value (about
// 90 bytes) per JSON value, so a node printing the densest input its byte
// limit allows (`[0,0,0,...]`, or `{"dst":"1.0.0.1"},` per route) would make
// 16 MiB of output cost a gigabyte. Size counts, from a scan that allocates
// nothing, bound what a parse of the input would allocate, so a caller can
// refuse it before parsing.

// Size is an upper bound on what parsing a table section allocates.
type Size struct {
	// Routes bounds the routes (and, in JSON, the nexthop and metrics
	// objects; in text, the continuation lines) the parse makes.
	Routes int
	// Values bounds the JSON values (every object, array, and member or
	// element after a comma) or, in text, the fields the parse splits.
	Values int
}

// SizeOf bounds what ParseJSON (text false) or ParseText (text true) would
// allocate for section. Bytes inside JSON strings are counted too: an
// over-estimate, never an under-estimate.
func SizeOf(section []byte, text bool) Size {
	if text {
		lines := bytes.Count(section, []byte("\n")) + 1
		return Size{Routes: lines, Values: lines + bytes.Count(section, []byte(" ")) + bytes.Count(section, []byte("\t"))}
	}
	objects := bytes.Count(section, []byte("{"))
	return Size{Routes: objects, Values: 1 + objects + bytes.Count(section, []byte("[")) + bytes.Count(section, []byte(","))}
}
