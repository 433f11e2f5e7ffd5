package remote

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// A node's connection is an ssh.Conn with the one thing routepush does on
// it, exec, written against x/crypto/ssh's channel API (RFC 4254, 6.5 and
// 6.10) instead of ssh.Client and ssh.Session. Those cost four goroutines
// per connection beyond the transport's own (global requests, channel
// opens, a closer, and a session's request reader) and a run holds a
// connection to every node from the first read to the end of apply: at
// 1,000 nodes they were 12 MB of routepush's 100. Here one goroutine per
// connection answers the server, and a session's exit status is read when
// its output has ended. Jump hosts, which need ssh.Client.Dial, stay
// ssh.Clients.

// serve answers what an OpenSSH server may send unasked on a node's
// connection: global requests (hostkeys-00, keepalive) are declined, as
// ssh.Client does, and channel opens (routepush forwards nothing) refused.
func serve(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	for chans != nil || reqs != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			_ = nc.Reject(ssh.Prohibited, "routepush opens no channels")
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}
}

// execSession is one command running on a node: stdin is written to ch
// (CloseWrite is EOF), stdout read from ch, stderr from ch.Stderr().
type execSession struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request
	// answered is closed once answerRequests' goroutine has seen the
	// session's requests end; end is then its exit (wait's result). nil
	// unless answerRequests was called.
	answered chan struct{}
	end      error
}

// answerRequests answers the session's requests as they come, for a
// session that lives long (a kept ip): sshd with ClientAliveInterval
// probes its first open channel with keepalive@openssh.com wanting an
// answer, and at rest that may be this one (the SFTP session ended, or
// was opened after it). Unanswered, sshd hangs up after
// ClientAliveCountMax of them; past the 16 x/crypto/ssh queues, the
// connection's reader blocks. wait then returns what it saw.
func (s *execSession) answerRequests() {
	s.answered = make(chan struct{})
	go func() {
		defer close(s.answered)
		s.end = exitOf(s.reqs)
	}()
}

// startExec opens a session channel and asks the server to run cmd.
func startExec(conn ssh.Conn, cmd string) (*execSession, error) {
	ch, reqs, err := conn.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	ok, err := ch.SendRequest("exec", true, ssh.Marshal(&struct{ Command string }{cmd}))
	if err == nil && !ok {
		err = errors.New("the server refused to run the command")
	}
	if err != nil {
		ch.Close()
		return nil, err
	}
	return &execSession{ch: ch, reqs: reqs}, nil
}

// wait returns once the server has closed the session: nil for exit status
// 0, else an *exitStatus. Call it after reading stdout and stderr to their
// end: the status is queued on the channel (it has room for 16 requests;
// OpenSSH sends one or two) until then.
func (s *execSession) wait() error {
	if s.answered != nil {
		<-s.answered
		return s.end
	}
	return exitOf(s.reqs)
}

// exitOf answers a session's requests until they end, and returns its
// exit: nil for status 0, else an *exitStatus or an error.
func exitOf(reqs <-chan *ssh.Request) error {
	var status *exitStatus
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			var m struct{ Status uint32 }
			if ssh.Unmarshal(req.Payload, &m) == nil {
				status = &exitStatus{code: int(m.Status)}
			}
		case "exit-signal":
			var m struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if ssh.Unmarshal(req.Payload, &m) == nil {
				status = &exitStatus{code: -1, signal: m.Signal}
			}
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
	switch {
	case status == nil:
		return errors.New("the session ended without an exit status")
	case status.code == 0:
		return nil
	}
	return status
}

// Close ends the session; the command, if still running, gets EOF and a
// hang-up.
func (s *execSession) Close() error { return s.ch.Close() }

// exitStatus is a command's non-zero exit status or the signal that ended
// it.
type exitStatus struct {
	code   int
	signal string
}

func (e *exitStatus) Error() string {
	if e.signal != "" {
		return "killed by signal " + e.signal
	}
	return fmt.Sprintf("exit status %d", e.code)
}
