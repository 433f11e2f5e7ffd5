package route

import (
	"bufio"
	"io"
	"strconv"
	"strings"

	"github.com/routepush/routepush/internal/safetext"
)

// ProtocolNames name protocols in messages as a host's iproute2 would: the
// names its rt_protos files give, else iproute2's built-in names, else
// numbers. Batches never use them: they use numbers or the built-in names,
// which every node's ip knows. The package never reads the files itself:
// the caller builds the names (package route stays pure), and nil knows
// only the built-in names.
type ProtocolNames map[Protocol]string

// Name names p as the names say, else as iproute2 does out of the box
// (Protocol.String). A name that is not printable ASCII (however the map
// was filled) is not used: messages and the JSON report carry names as
// they are.
func (n ProtocolNames) Name(p Protocol) string {
	if name := n[p]; name != "" && safetext.Clean(name) {
		return name
	}
	return p.String()
}

// AddRTProtos adds the "number name" lines of an rt_protos file (or an
// rt_protos.d/*.conf) to n, later lines overriding earlier ones as in
// iproute2: comments and malformed lines are skipped, and so is a name
// that is not printable ASCII: names reach messages and the JSON report
// unescaped, and a control byte or escape sequence in a file there must
// not get into them (such a line is skipped like a malformed one). It
// returns only a read error, having kept the lines before it.
func (n ProtocolNames) AddRTProtos(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		p, err := strconv.ParseUint(fields[0], 0, 8)
		if err != nil || !safetext.Clean(fields[1]) {
			continue
		}
		n[Protocol(p)] = fields[1]
	}
	return sc.Err()
}
