package remote

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/routepush/routepush/route"
)

// The commands routepush runs on nodes: fixed strings, nothing spliced in.
// -d shows every route's protocol (plain `ip route show` hides "boot");
// -N prints numbers, so a node's own rt_protos names cannot confuse parsing.
var readCommands = map[route.Family][2]string{
	route.IPv4: {"ip -d -N -json -4 route show table main", "ip -d -4 route show table main"},
	route.IPv6: {"ip -d -N -json -6 route show table main", "ip -d -6 route show table main"},
}

const (
	applyCommand      = "ip -batch -"
	forceApplyCommand = "ip -force -batch -"
)

// ReadRoutes reads the node's main routing table for each family. The
// digest covers exactly what ip printed, in family order. On an iproute2
// without JSON output it falls back to parsing text, and stays with text
// for the rest of the connection so before/after digests compare alike.
func (c *Client) ReadRoutes(ctx context.Context, fams []route.Family) (route.Table, error) {
	var t route.Table
	h := sha256.New()
	for _, fam := range fams {
		out, err := c.readFamily(ctx, fam)
		if err != nil {
			return route.Table{}, err
		}
		fmt.Fprintf(h, "%s %d\n", fam, len(out))
		h.Write(out)
		var routes []route.Route
		if c.textMode {
			routes, err = route.ParseText(out, fam)
		} else {
			routes, err = route.ParseJSON(out, fam)
		}
		if err != nil {
			return route.Table{}, fmt.Errorf("%s: %w", c.name, err)
		}
		t.Routes = append(t.Routes, routes...)
	}
	copy(t.Digest[:], h.Sum(nil))
	return t, nil
}

func (c *Client) readFamily(ctx context.Context, fam route.Family) ([]byte, error) {
	cmds := readCommands[fam]
	if !c.textMode {
		out, err := c.run(ctx, cmds[0], nil)
		var ce *CommandError
		if err == nil || !errors.As(err, &ce) || !unknownOption(ce.Stderr) {
			return out, err
		}
		c.textMode = true
	}
	return c.run(ctx, cmds[1], nil)
}

// unknownOption recognises an iproute2 too old for -json or -N.
func unknownOption(stderr string) bool {
	return strings.Contains(stderr, `Option "-json" is unknown`) || strings.Contains(stderr, `Option "-N" is unknown`) ||
		strings.Contains(stderr, `Option "-Numeric" is unknown`)
}

// Apply feeds a batch to `ip -batch -` on stdin. With force, ip carries on
// past failing lines and the exit status still reports that some failed.
func (c *Client) Apply(ctx context.Context, batch []byte, force bool) error {
	cmd := applyCommand
	if force {
		cmd = forceApplyCommand
	}
	_, err := c.run(ctx, cmd, batch)
	return err
}
