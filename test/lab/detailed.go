package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// DetailedRoutes returns what `ip -d route show` and `ip -d -6 route show`
// print on a node. Unlike Routes it shows every route's type and protocol
// (plain `ip route show` hides proto boot), and a nexthop object's
// nh_info: two tables that read alike here are alike for routepush too.
func (l *Lab) DetailedRoutes(ctx context.Context, n *Node) (string, error) {
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.CommandContext(ctx, "ip", "-n", n.NS, "-d", fam, "route", "show").Output()
		if err != nil {
			return "", fmt.Errorf("lab: ip -n %s -d %s route show: %w", n.NS, fam, err)
		}
		b.Write(out)
	}
	return b.String(), nil
}
