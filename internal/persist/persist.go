// Package persist is what --persist exchanges between the layers: the
// state of what a node has installed to restore its routes at boot. The
// orchestrator decides from it and renders the routes file (its
// persist.go); package remote reads and writes it on the node over SFTP
// (its persist.go). It is neither iproute2's model (package route) nor
// SSH's, and the orchestrator may not import remote, so the type lives
// here, below both.
//
// It is a leaf: it imports no other routepush package.
package persist

// State is what a node has installed to restore its routes at boot: a
// routes file in `ip -batch` form, and a unit that replays it.
type State struct {
	Path   string // the routes file, for messages
	Exists bool
	Routes []byte // its content, when it exists
	// UnitCurrent: the unit that replays the file is installed exactly as
	// routepush writes it; UnitEnabled: it starts at boot.
	UnitCurrent, UnitEnabled bool
	// Systemd: the node runs systemd (the unit can be enabled).
	Systemd bool
	// ForeignRoutesManaged: systemd-networkd runs on the node with
	// ManageForeignRoutes on (its default), so it deletes routes it did
	// not create whenever it reconfigures a link.
	ForeignRoutesManaged bool
}
