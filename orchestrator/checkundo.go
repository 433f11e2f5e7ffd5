package orchestrator

import (
	"fmt"
	"strings"

	"github.com/routepush/routepush/route"
)

// checkUndo reads the undo lines of a run record, which comes from the node
// and is sent back to it as root: every line must be a `route add` or an
// exact `route del` that routepush itself renders the same, and none may
// touch a connected or default route. Anything else (`netns exec`, a
// stray option, a second command on a line) refuses the record.
func checkUndo(text string) ([]byte, error) {
	var b route.Batch
	// Walked line by line, not split: a record's undo is the node's text,
	// and a slice of its lines would cost 16 bytes a newline.
	rest := strings.TrimSuffix(text, "\n")
	for n := 0; rest != ""; n++ {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if line == "" {
			continue
		}
		verb, spec, ok := strings.Cut(line, " ")
		var words string
		if ok {
			words, spec, ok = strings.Cut(spec, " ")
		}
		if !ok || verb != "route" || (words != "add" && words != "del") {
			return nil, fmt.Errorf("undo line %d is not a route add or del: %q", n+1, line)
		}
		dst, _, _ := strings.Cut(spec, " ")
		fam := route.IPv4
		if strings.Contains(dst, ":") {
			fam = route.IPv6
		}
		r, err := route.ParseSpec(spec, fam)
		if err != nil {
			return nil, fmt.Errorf("undo line %d: %w: %q", n+1, err, line)
		}
		if r.Dst.Bits() == 0 || connected(&r) {
			return nil, fmt.Errorf("undo line %d touches a default or connected route: %q", n+1, line)
		}
		var one route.Batch
		if words == "add" {
			one.Add(r)
		} else {
			one.Delete(r)
		}
		if string(one.Bytes()) != line+"\n" {
			return nil, fmt.Errorf("undo line %d is not as routepush writes it: %q", n+1, line)
		}
		if words == "add" {
			b.Add(r)
		} else {
			b.Delete(r)
		}
	}
	return b.Bytes(), nil
}
