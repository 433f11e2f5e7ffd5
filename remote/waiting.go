package remote

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/routepush/routepush/route"
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
//
// On a kept connection (keep.go) the ip outlives its Client: Apply leaves
// it waiting after the tables that verify the batch, and Close hands the
// waiting ip, or the one it was handed and did not use, to the node's
// next Client with the connection (rest). That Client's first read sends
// it the show lines instead of starting a session and a process: a round
// on a node whose ip is at rest costs the node no process start. An ip
// that ended at rest (killed, or its session closed) is replaced by a new
// one at that read; nothing was sent to it since its last tables.
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
	// rest is the ip a kept connection's previous Client left waiting,
	// until the first read takes it.
	rest *pendingIP
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

// waitingFor is the ip waiting for fam's batch, if one is (it stays
// waiting: take takes it).
func (w *ipWait) waitingFor(fam route.Family) *pendingIP {
	if w.state == waiting && w.ip.fam == fam {
		return w.ip
	}
	return nil
}

// take hands the waiting ip to its caller, or nil if none is waiting.
func (w *ipWait) take() *pendingIP {
	p := w.ip
	if w.state == waiting {
		w.state, w.ip = waitSpent, nil
	}
	return p
}

// takeRest hands over the ip at rest if it serves fam, else ends it; nil
// if there is none.
func (w *ipWait) takeRest(fam route.Family) *pendingIP {
	p := w.rest
	w.rest = nil
	switch {
	case p == nil:
		return nil
	case !p.wake():
		return nil // it spoke or ended at rest: closed
	case p.fam != fam:
		p.abandon()
		return nil
	}
	return p
}

// keepable hands over, for the connection's next Client, the ip that is
// waiting with all it printed read, or the one at rest this Client did
// not use; nil if none. Either way this Client has none after.
func (w *ipWait) keepable() *pendingIP {
	if p := w.take(); p != nil {
		if w.rest != nil {
			w.rest.abandon()
			w.rest = nil
		}
		return p
	}
	p := w.rest
	w.rest = nil
	return p
}

// pendingIP is an `ip -json -batch -` on a node, reading lines from
// stdin: left running by a snapshot read, waiting for the batch that Apply
// sends, or started by Apply itself.
type pendingIP struct {
	sess   *execSession
	stdout *bufio.Reader
	// stderr is read only once ip has finished: a goroutine copying it
	// per waiting node would cost a thousand goroutine stacks, and ip says
	// little there (it stops at the first failing line). A kept ip's is
	// watched (watchStderr).
	stderr io.Reader
	// shown counts the lines it has been sent before the batch on its
	// way (show lines, and on a kept connection earlier rounds' batches):
	// ip numbers a failing line from the start of its input.
	shown int
	fam   route.Family // the one family it was started for
	watch *stderrWatch // nil unless watched
	// links is the interfaces it printed last, on a kept connection
	// (sameLinks); lastTable says the last thing it printed was a table
	// (settleKept).
	links     linkTable
	lastTable bool
	retire    bool // not to be kept past its Client
	ended     bool // it stopped at a line of factLines: not to be held
	prefixed  bool // preflight's forwardPrefix runs before it: its output is read first
	// resting is set while it waits with its connection between rounds;
	// awoken is closed once the goroutine that watches it then has let go
	// of stdout (rest).
	resting atomic.Bool
	awoken  chan struct{}
	// inMu serializes what goes to its stdin: the batch's writer and
	// watchStderr both may end it (x/crypto/ssh's channel writes are not
	// safe against a concurrent CloseWrite).
	inMu sync.Mutex
}

// rest puts the ip at rest with its kept connection. Nothing is asked of
// it there, so nothing it prints is read: a node could make the watcher
// hold up to the channel's window (2 MB) unread for it until its next
// round. A goroutine waits for its first byte instead, and anything
// printed at rest (or its end) ends it then; the next round finds it
// ended (wake) and starts another.
func (p *pendingIP) rest() {
	if p.resting.Load() {
		return // handed on untouched: still watched
	}
	done := make(chan struct{})
	p.awoken = done
	p.resting.Store(true)
	go func() {
		defer close(done)
		_, _ = p.stdout.Peek(1)
		if p.resting.CompareAndSwap(true, false) {
			p.sess.Close() // it spoke unasked, or ended
		}
	}()
}

// wake takes the ip from rest for a round: false if it spoke or ended at
// rest (its session is closed then).
func (p *pendingIP) wake() bool {
	return p.awoken == nil || p.resting.CompareAndSwap(true, false)
}

// awaken waits, once the ip has been asked something, until rest's
// goroutine has let go of stdout: call it before reading stdout. The
// answer (or the ip's end) ends that wait, which is bounded as the read is.
func (p *pendingIP) awaken() {
	if d := p.awoken; d != nil {
		<-d
		p.awoken = nil
	}
}

// Write writes to ip's stdin.
func (p *pendingIP) Write(b []byte) (int, error) {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	return p.sess.ch.Write(b)
}

// closeInput ends ip's stdin.
func (p *pendingIP) closeInput() {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	_ = p.sess.ch.CloseWrite()
}

// stderrWatch is what a watched ip wrote to stderr: out and over (it
// passed stderrLimit) are set once done is closed.
type stderrWatch struct {
	done chan struct{}
	out  []byte
	over bool
}

// watchStderr reads a kept ip's stderr for as long as it runs, at rest
// too. Without -force ip refuses a line with "Command failed -:N" there,
// and then exits: that ends the session, and with it stdout, unless
// something in front of ip (a wrapper, a pipeline) still holds stdout
// open waiting for more input. An ip whose input stays open round after
// round would then be waited for until the command timeout; so that line
// closes its input, which ends whatever runs it once ip has gone, and
// stdout with it. Anything else on stderr (sudo's "unable to resolve
// host", a loader's or iproute2's warning) is no refusal: the ip goes on.
func (p *pendingIP) watchStderr() {
	w := &stderrWatch{done: make(chan struct{})}
	p.watch = w
	go func() {
		defer close(w.done)
		buf := make([]byte, 256)
		refused := false
		for {
			n, err := p.stderr.Read(buf)
			if n > 0 {
				if len(w.out)+n > stderrLimit {
					w.out, w.over = append(w.out, buf[:stderrLimit-len(w.out)]...), true
					p.sess.Close()
					return
				}
				// The marker may straddle two reads: look from before this one.
				from := max(0, len(w.out)-len(batchRefused))
				w.out = append(w.out, buf[:n]...)
				if !refused && bytes.Contains(w.out[from:], []byte(batchRefused)) {
					refused = true
					p.closeInput()
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

// batchRefused is what `ip -batch` prints on stderr after a line that
// failed (iproute2's ip.c, batch()); without -force it exits then.
const batchRefused = "Command failed "

// readStderr returns what ip wrote to stderr, at most stderrLimit; call
// it once ip is done. Past the limit the session is closed: ip is stopped.
func (p *pendingIP) readStderr() string {
	var b []byte
	var over bool
	if w := p.watch; w != nil {
		<-w.done
		b, over = w.out, w.over
	} else {
		var err error
		b, err = readAtMost(p.stderr, stderrLimit)
		if over = errors.Is(err, errOverLimit); over {
			p.sess.Close()
		}
	}
	if over {
		return string(b) + "\n[stderr cut at " + sizeString(stderrLimit) + "]"
	}
	return string(b)
}

// abandon ends an ip that must not get a batch: with its stdin closed and
// nothing sent it changes nothing and exits.
func (p *pendingIP) abandon() {
	p.closeInput()
	p.sess.Close()
}
