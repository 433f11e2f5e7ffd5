package remote

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/routepush/routepush/host"
)

// With become, an sftp-server path the operator named (sftp_server or
// --sftp-server) that sudo cannot find ("command not found") is a typo in
// the configuration, not a node without SFTP: it fails the node, naming
// the flag and the inventory key. Taken for a node without SFTP, as it
// once was, the run would have converged every node without lock or
// record, with only a note, exit 0.
func TestBecomeNamedSFTPServerMissingFailsNode(t *testing.T) {
	t.Parallel()
	s := &sftpless{version: "SSH-2.0-OpenSSH_9.2p1", sudo: true, stderr: "sudo: /usr/lib/opensh/sftp-server: command not found\n", status: 1}
	c := s.dial(t)
	c.sftpServer, c.sftpSet = "/usr/lib/opensh/sftp-server", true // the operator's typo
	_, err := c.files(context.Background())
	if none, ok := errors.AsType[*host.NoSFTPError](err); ok {
		t.Fatalf("an sftp-server the operator named, missing, is taken for a node without SFTP (the run would go on unlocked): %v", none)
	}
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v (%T), want a *CommandError failing the node", err, err)
	}
	for _, w := range []string{"node-4: sudo -n /usr/lib/opensh/sftp-server", "command not found", "sftp_server", "--sftp-server"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q\ndoes not say %q", err, w)
		}
	}
}
