package remote

import (
	"fmt"
	"net"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// CommandError is a remote command that ran and failed: the orchestrator
// reports the node's own stderr (the kernel's message) to the operator.
type CommandError struct {
	Host       string // node name
	Command    string
	ExitStatus int
	Stderr     string
	Hint       string // what the operator can do about it, if routepush knows
}

func (e *CommandError) Error() string {
	// The node's own text: escaped, so its stderr can neither put escape
	// sequences on the operator's terminal nor forge lines of output.
	msg := safetext.Line(strings.Join(strings.Fields(strings.TrimSpace(e.Stderr)), " "))
	if msg == "" {
		msg = "no error output"
	}
	s := fmt.Sprintf("%s: %s: exit status %d: %s", e.Host, e.Command, e.ExitStatus, msg)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// StderrText returns what the command wrote to stderr.
func (e *CommandError) StderrText() string { return e.Stderr }

// HostKeyError is a refused host key. Unknown is true when known_hosts has
// no key for the host; otherwise Known lists the keys on file that the
// offered key does not match (a changed key: possibly an attack).
type HostKeyError struct {
	Host    string // node name
	Addr    string // host:port as dialed
	Offered ssh.PublicKey
	Known   []knownhosts.KnownKey
	File    string // the known_hosts files consulted
	// Revoked is the @revoked line the offered key matches, if it does.
	Revoked *knownhosts.KnownKey
	// CheckedAs is the node name the key was checked under, when Addr is
	// only a Node object's InternalIP (see UnvouchedAddressError).
	CheckedAs string
}

// Unknown reports whether known_hosts has no key at all for the host.
func (e *HostKeyError) Unknown() bool { return len(e.Known) == 0 && e.Revoked == nil }

func (e *HostKeyError) Error() string {
	s := e.message()
	if e.CheckedAs != "" {
		s += fmt.Sprintf(" (%s is only the InternalIP of node %s's Node object, which its kubelet can write: the host there must offer the key known_hosts holds under the name %s)", e.Addr, e.Host, e.CheckedAs)
	}
	return s
}

func (e *HostKeyError) message() string {
	offered := e.Offered.Type() + " " + ssh.FingerprintSHA256(e.Offered)
	if e.Revoked != nil {
		return fmt.Sprintf("%s: host key for %s is REVOKED: offered %s, marked @revoked at %s:%d; refusing to connect",
			e.Host, e.Addr, offered, e.Revoked.Filename, e.Revoked.Line)
	}
	if e.Unknown() {
		return fmt.Sprintf("%s: host key for %s is not in %s (offered %s); check the fingerprint and add it, e.g. with ssh-keyscan or one manual ssh login, or run with --accept-new-host-keys",
			e.Host, e.Addr, e.File, offered)
	}
	var known []string
	for _, k := range e.Known {
		known = append(known, fmt.Sprintf("%s:%d has %s %s", k.Filename, k.Line, k.Key.Type(), ssh.FingerprintSHA256(k.Key)))
	}
	return fmt.Sprintf("%s: HOST KEY FOR %s HAS CHANGED: offered %s, but %s; refusing to connect (if the node was reinstalled, remove the old line)",
		e.Host, e.Addr, offered, strings.Join(known, "; "))
}

// UnvouchedAddressError is a node whose only address is the InternalIP of
// its Node object, which the node's kubelet can write (a compromised node
// could point routepush's root login at another host), and which
// known_hosts does not know by name. Nothing was connected to.
type UnvouchedAddressError struct {
	Host       string // node name
	Addr       string // the InternalIP, host:port
	KnownHosts string // the known_hosts file to add the key to
}

func (e *UnvouchedAddressError) Error() string {
	return fmt.Sprintf("%s: not connecting to %s: that address is only the InternalIP of the node's Node object, which its kubelet can write, and %s holds no host key under the name %s; "+
		"after checking its fingerprint, add the node's key under its name (e.g. `ssh-keyscan %s` with the address replaced by %s), or give the node's address in --inventory, or pass --trust-node-addresses to trust Node objects' addresses",
		e.Host, e.Addr, e.KnownHosts, e.Host, hostOnly(e.Addr), e.Host)
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
