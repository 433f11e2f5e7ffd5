package route

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// rtProtosFiles are where iproute2 keeps protocol names: its defaults
// (/usr/share/iproute2 since iproute2 6.x, /etc/iproute2 before) and the
// administrator's additions.
var rtProtosFiles = []string{"/usr/share/iproute2/rt_protos", "/etc/iproute2/rt_protos"}

// protocolDisplayNames are the names this host's iproute2 gives protocols,
// read once. They only ever name routes in messages: batches use numbers
// or iproute2's built-in names, which every node's ip knows.
var protocolDisplayNames = sync.OnceValue(func() map[Protocol]string {
	names := map[Protocol]string{}
	files := rtProtosFiles
	for _, dir := range []string{"/usr/share/iproute2/rt_protos.d", "/etc/iproute2/rt_protos.d"} {
		confs, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
		files = append(files, confs...)
	}
	for _, f := range files {
		readRTProtos(f, names)
	}
	return names
})

// readRTProtos adds the "number name" lines of an rt_protos file to names.
func readRTProtos(path string, names map[Protocol]string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 0, 8)
		if err != nil {
			continue
		}
		names[Protocol(n)] = fields[1]
	}
}

// DisplayName names the protocol as this host's iproute2 would (its
// rt_protos files), else by iproute2's built-in name, else by number.
func (p Protocol) DisplayName() string {
	if name := protocolDisplayNames()[p]; name != "" {
		return name
	}
	return p.String()
}
