package remote

import (
	"errors"
	"fmt"
	"strings"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/internal/safetext"
)

// A node may have no SFTP server at all: Debian's dropbear-bin serves the
// "sftp" subsystem by running a compiled-in /usr/lib/sftp-server through
// the user's shell, and ships none there; an sshd_config may name none.
// Dropbear (and sshd with a Subsystem line whose program is missing)
// accepts the subsystem request, then its shell says "not found" or
// "Permission denied" on stderr and exits 127 or 126, within milliseconds:
// pkg/sftp sees only the end of its handshake ("server unexpectedly
// closed connection: unexpected EOF"). An sshd with no Subsystem line
// refuses the request. sftpEnd is what routepush saw, and noSFTP tells
// those cases (a *host.NoSFTPError, which the orchestrator decides on)
// from an SFTP server that started and failed for another reason.

// errSubsystemRefused is the server's no to the subsystem request.
var errSubsystemRefused = errors.New("the server refused the sftp subsystem")

// sftpEnd is how a session meant for SFTP ended before its handshake.
type sftpEnd struct {
	refused bool   // the subsystem request was refused
	status  int    // the exit status the server sent; -1 if none
	stderr  string // what the session wrote on stderr (at most 4 KiB)
}

// noSFTPSaid is the most of a node's stderr a no-SFTP note shows.
const noSFTPSaid = 200

// Exit statuses of a POSIX shell that could not run a command: found but
// not executable (or not a program), and not found.
const (
	exitCannotExecute = 126
	exitNotFound      = 127
)

// shellCouldNotRun says whether a session's end is a shell that could not
// run the SFTP server: the exit status alone is not enough (126 is also
// "Text file busy" while a package upgrade rewrites the binary, and a
// server may exit 127 for reasons of its own), and taking a node with
// SFTP for one without would skip another run's live lock. So 127 must
// come with "not found" (dash, BusyBox sh: "sh: 1: PATH: not found"; bash
// for a bare name: "command not found") or "No such file" (bash: "bash:
// line 1: PATH: No such file or directory"; zsh: "no such file or
// directory: PATH"), and 126 with "Permission denied" (all of them; the
// case of a non-executable file, or /dev/null bound over it as the e2e
// lab does).
func shellCouldNotRun(end sftpEnd) bool {
	said := strings.ToLower(end.stderr)
	switch end.status {
	case exitNotFound:
		return strings.Contains(said, "not found") || strings.Contains(said, "no such file")
	case exitCannotExecute:
		return strings.Contains(said, "permission denied")
	}
	return false
}

// noSFTP returns the *host.NoSFTPError for a node whose SSH server
// (serverVersion, its identification string) ended an SFTP session as
// end says, or nil when that end is not a missing SFTP server. With sudo
// (become) routepush ran OpenSSH's sftp-server itself, through sudo -n:
// server is the path it ran, and named says the operator gave it
// (sftp_server or --sftp-server). A path the operator named that sudo
// cannot find is a mistake in the configuration, not a node without SFTP:
// taken for one, a typo would turn off the lock and run records on every
// node, with only a note; it fails the node instead (namedSFTPMissing).
func noSFTP(name, serverVersion string, sudo, named bool, server string, end sftpEnd) *host.NoSFTPError {
	// The node's own words go into a note every run prints: cut to
	// noSFTPSaid (a shell's message is one short line; the rest of the
	// 4 KiB read is the node's to fill) and quoted, escaped, as a lock's
	// foreign holder is, so it can neither reach the terminal raw nor
	// pass for routepush's own text.
	said := safetext.Quote(cut(strings.Join(strings.Fields(end.stderr), " "), noSFTPSaid))
	var why string
	switch {
	case sudo && named && sudoNotFound(end.stderr, server):
		return nil
	case sudo && sudoNotFound(end.stderr, server):
		why = "sudo: " + server + " not found"
	case end.refused && !sudo:
		why = "the SSH server refused the sftp subsystem"
	case !sudo && shellCouldNotRun(end):
		if strings.TrimSpace(end.stderr) == "" {
			said = "no error output"
		}
		why = fmt.Sprintf("%s, exit status %d", said, end.status)
	default:
		return nil
	}
	dropbear := strings.Contains(strings.ToLower(serverVersion), "dropbear")
	var fix string
	switch {
	case sudo:
		fix = "install openssh-sftp-server, or name its path with sftp_server or --sftp-server (with become, routepush runs " + server + " through sudo)"
	case dropbear:
		why = "Dropbear runs " + dropbearSFTPPath + ": " + why
		fix = "install openssh-sftp-server and link " + dropbearSFTPPath + " to " + defaultSFTPServer + " (ln -s openssh/sftp-server " + dropbearSFTPPath + ")"
	case end.refused:
		fix = "add `Subsystem sftp " + defaultSFTPServer + "` to sshd_config and install openssh-sftp-server"
	default:
		fix = "install openssh-sftp-server, or correct the sftp Subsystem line of sshd_config"
	}
	return &host.NoSFTPError{Host: name, Why: why, Fix: fix}
}

// dropbearSFTPPath is the SFTP server Debian's Dropbear runs for the sftp
// subsystem (SFTPSERVER_PATH, compiled in).
const dropbearSFTPPath = "/usr/lib/sftp-server"

// sudoNotFound says whether sudo's stderr says the sftp-server it was to
// run (server) does not exist: "sudo: PATH: command not found". A shell's
// "bash: sudo: command not found" is a node without sudo, which an
// sftp-server would not mend.
func sudoNotFound(stderr, server string) bool {
	return strings.Contains(stderr, "sudo: "+server+": command not found")
}

// namedSFTPMissing is the hint for an sftp-server path the operator named
// that sudo cannot find on the node.
const namedSFTPMissing = "the sftp-server named by sftp_server (inventory) or --sftp-server is not on the node: correct the path, or leave both out to have routepush find the node's own"

// lockProbeCommand asks, over an exec session, whether a node found
// without SFTP has routepush's lock, by exit status alone (nothing the
// node prints is read): 3 if the lock exists, 4 if the state directory
// exists but the login user cannot look into it (it is root's, 0700:
// become without SFTP cannot tell), 0 otherwise. A fixed string: nothing
// of the node's or the inventory's goes into it. The lock can only have
// been taken through an SFTP server the node had then (a run holding it
// while the server went, or one that died), or through one routepush
// could not start this time.
const lockProbeCommand = "if test -e " + lockPath + " || test -L " + lockPath + "; then exit 3; fi; if test -d " + stateDir + " && ! test -x " + stateDir + "; then exit 4; fi; exit 0"

// Exit statuses of lockProbeCommand.
const (
	probeLocked    = 3
	probeCannotSee = 4
)

// noSFTPLockError is a node found without SFTP whose lock exists: it is
// not converged without one, since a run may hold it. Not a
// *host.NoSFTPError, which would let the run go on there.
// ours: this run took that lock, through an SFTP session since closed.
type noSFTPLockError struct {
	none *host.NoSFTPError
	ours bool
}

func (e *noSFTPLockError) Error() string {
	whose := "another routepush run holds the node (through an SFTP server the node had then), or a run that died left it; routepush cannot read it without SFTP, and does not change the node"
	if e.ours {
		whose = "this run took it through an SFTP server that no longer starts, so it stays, with the run's record"
	}
	return fmt.Sprintf("%s: no SFTP server (%s), and yet %s exists: %s. Once SFTP is back (%s), `routepush rollback` undoes that run and releases the lock; if no run is in progress and none is to be undone, remove %s there", e.none.Host, e.none.Why, lockPath, whose, e.none.Fix, lockPath)
}
