package watch

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/routepush/routepush/host"
	"github.com/routepush/routepush/inventory"
	"github.com/routepush/routepush/orchestrator"
)

// A node without an SFTP server is warned of once, not once per round;
// again only once it had one and lost it, or left and came back.
func TestEngineWarnsOfNoSFTPOncePerNode(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	e := New(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	e.setTable([]inventory.Node{{Name: "node-4"}, {Name: "node-5"}})
	none := &host.NoSFTPError{Host: "node-4", Why: "Dropbear runs /usr/lib/sftp-server: not found, exit status 127", Fix: "install openssh-sftp-server"}
	without := orchestrator.NodeReport{Name: "node-4", Outcome: orchestrator.InSync, NoSFTP: none}
	with := orchestrator.NodeReport{Name: "node-4", Outcome: orchestrator.InSync}
	unreachable := orchestrator.NodeReport{Name: "node-4", Outcome: orchestrator.Unreachable}
	count := func() int { return strings.Count(logs.String(), "node-4: no SFTP server") }
	for range 5 { // five rounds
		e.warnNoSFTP(&without)
		e.warnNoSFTP(&unreachable) // says nothing either way
	}
	if count() != 1 || !strings.Contains(logs.String(), "install openssh-sftp-server") {
		t.Fatalf("five rounds, want one warning:\n%s", logs.String())
	}
	e.warnNoSFTP(&with) // installed
	e.warnNoSFTP(&without)
	if count() != 2 {
		t.Fatalf("lost again, want a second warning:\n%s", logs.String())
	}
	e.setTable([]inventory.Node{{Name: "node-5"}}) // left
	e.setTable([]inventory.Node{{Name: "node-4"}, {Name: "node-5"}})
	e.warnNoSFTP(&without)
	if count() != 3 {
		t.Fatalf("left and came back, want a third warning:\n%s", logs.String())
	}
}
