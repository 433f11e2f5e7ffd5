package app

import (
	"os"
	"path/filepath"

	"github.com/routepush/routepush/route"
)

// rtProtosFiles are where iproute2 keeps protocol names: its defaults
// (/usr/share/iproute2 since iproute2 6.x, /etc/iproute2 before) and the
// administrator's additions, later files overriding earlier ones.
func rtProtosFiles() []string {
	files := []string{"/usr/share/iproute2/rt_protos", "/etc/iproute2/rt_protos"}
	for _, dir := range []string{"/usr/share/iproute2/rt_protos.d", "/etc/iproute2/rt_protos.d"} {
		confs, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
		files = append(files, confs...)
	}
	return files
}

// localProtocolNames are the names this host's iproute2 gives protocols,
// which name other owners' routes in messages. A file that is missing or
// unreadable only leaves numbers (or iproute2's built-in names) in them.
func localProtocolNames() route.ProtocolNames {
	names := route.ProtocolNames{}
	for _, path := range rtProtosFiles() {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		_ = names.AddRTProtos(f) // the lines read before an error are kept
		f.Close()
	}
	return names
}
