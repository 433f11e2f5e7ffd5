package route

// Persisted is what a node has installed to restore its routes at boot
// (--persist): a routes file in `ip -batch` form, and a unit that replays
// it.
type Persisted struct {
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
