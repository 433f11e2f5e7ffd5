package app

import (
	"strings"
	"sync"
)

// activeRun is the apply in progress as Main's signal handler sees it: the
// apply records its run id once it has one, and the handler, on its own
// goroutine, reads it for the message of a second interrupt. Main owns it
// and hands it to the command through deps; a nil *activeRun records
// nothing.
type activeRun struct {
	mu      sync.Mutex
	id      string
	carried map[string]bool // carriedFlags of the apply's command
}

// start records the run id of an apply and its carried flags.
func (a *activeRun) start(id string, carried map[string]bool) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.id, a.carried = id, carried
}

// finishLater is the `routepush rollback` command that finishes an
// abandoned rollback: the run's id and, from args (the command line
// without the program name), the flags that chose the nodes and how to
// reach them. "" when no run has started.
func (a *activeRun) finishLater(args []string) string {
	a.mu.Lock()
	id, carried := a.id, a.carried
	a.mu.Unlock()
	if id == "" {
		return ""
	}
	cmd := []string{"routepush", "rollback", "--run", id}
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(args[i], "=")
		takesValue, ok := carried[name]
		if !ok {
			continue
		}
		cmd = append(cmd, args[i])
		if takesValue && !hasValue && i+1 < len(args) {
			i++
			cmd = append(cmd, args[i])
		}
	}
	return "; nodes may be half-changed: finish with `" + strings.Join(cmd, " ") + "`"
}
