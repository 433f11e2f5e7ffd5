package remote

import (
	"bufio"
	"errors"
	"io"
)

// A run that will apply reads a one-family node through an `ip -json
// -batch -` and leaves that ip waiting on stdin for Apply's batch (see
// ReadRoutes): snapshot, apply and verify then cost the node one session
// and one ip process. The client's waitState says where it stands with
// that one ip:
//
//	waitNever     the run only reads (Config.ReadOnly), or the client was
//	              not dialed: every read runs its ip in one go.
//	waitNext      the next one-family JSON read starts the ip and, if it
//	              reads the tables, leaves it waiting. An ip that could not
//	              be started leaves the state here, to be tried again.
//	waiting       an ip is waiting after a read, for the batch: Apply takes
//	              it, Close ends it.
//	waitSpent     the waiting ip was tried: taken by Apply, ended by Close,
//	              or it failed before it printed the tables. Reads run in
//	              one go from here on, and Apply starts an ip of its own.
//
// The only ways out of waitNext are a started ip (to waitSpent, then to
// waiting once the tables are read); out of waiting, take and end (to
// waitSpent). waitNever and waitSpent are final.
type waitState int

const (
	waitNever waitState = iota // the zero Client reads in one go
	waitNext
	waiting
	waitSpent
)

// ipWait is a client's waitState and, in state waiting, the ip.
type ipWait struct {
	state waitState
	ip    *pendingIP // set exactly in state waiting
}

// newIPWait is the state a connection starts in.
func newIPWait(readOnly bool) ipWait {
	if readOnly {
		return ipWait{state: waitNever}
	}
	return ipWait{state: waitNext}
}

// wantNext reports whether the next one-family read should leave its ip
// waiting.
func (w *ipWait) wantNext() bool { return w.state == waitNext }

// started records that the read's ip runs: whatever it prints, this was
// the one try.
func (w *ipWait) started() { w.state = waitSpent }

// hold keeps an ip that has printed the tables waiting for the batch.
func (w *ipWait) hold(p *pendingIP) { w.state, w.ip = waiting, p }

// take hands the waiting ip to its caller, or nil if none is waiting.
func (w *ipWait) take() *pendingIP {
	p := w.ip
	if w.state == waiting {
		w.state, w.ip = waitSpent, nil
	}
	return p
}

// end ends a waiting ip, if any: with its stdin closed and no batch sent,
// it changes nothing and exits.
func (w *ipWait) end() {
	if p := w.take(); p != nil {
		p.abandon()
	}
}

// pendingIP is an `ip -json -batch -` on a node, reading lines from
// stdin: left running by a snapshot read, waiting for the batch that Apply
// sends, or started by Apply itself.
type pendingIP struct {
	sess   *execSession
	stdout *bufio.Reader
	// stderr is read only once ip has finished: a goroutine copying it
	// per waiting node would cost a thousand goroutine stacks, and ip says
	// little there (it stops at the first failing line).
	stderr io.Reader
	// shown counts the show lines it has been sent: ip numbers a failing
	// line from the start of its input, the batch comes after them.
	shown int
}

// readStderr returns what ip wrote to stderr, at most stderrLimit; call
// it once ip is done. Past the limit the session is closed: ip is stopped.
func (p *pendingIP) readStderr() string {
	b, err := readAtMost(p.stderr, stderrLimit)
	if errors.Is(err, errOverLimit) {
		p.sess.Close()
		return string(b) + "\n[stderr cut at " + sizeString(stderrLimit) + "]"
	}
	return string(b)
}

// abandon ends an ip that must not get a batch: with its stdin closed and
// nothing sent it changes nothing and exits.
func (p *pendingIP) abandon() {
	_ = p.sess.ch.CloseWrite()
	p.sess.Close()
}
