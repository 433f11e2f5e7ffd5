package remote

import (
	"fmt"
	"slices"
	"strings"
)

// hint explains the failures of a login that cannot change routes.
func (c *Client) hint(stderr string) string {
	switch {
	case c.sudo && strings.Contains(stderr, "a password is required"):
		return fmt.Sprintf("sudo wants a password for %s; %s", c.user, c.sudoersHint())
	case c.sudo && strings.Contains(stderr, "is not allowed to execute"):
		return fmt.Sprintf("sudo does not let %s run it; %s", c.user, c.sudoersHint())
	case c.sudo && (strings.Contains(stderr, "sudo: not found") || strings.Contains(stderr, "sudo: command not found")):
		return "become needs sudo on the node"
	case !c.sudo && c.user != "root" && strings.Contains(stderr, "permission denied"):
		return fmt.Sprintf("%s may not write routepush's lock and run records in %s: log in as root, or use --become (become: true) to work through sudo", c.user, stateDir)
	case !c.sudo && c.user != "root" && strings.Contains(stderr, "Operation not permitted"):
		return fmt.Sprintf("%s may not change routes: log in as root, or use --become (become: true) to run ip through sudo", c.user)
	}
	return ""
}

// ipPath is where sudo finds ip (its secure_path starts with /usr/sbin);
// sudoers matches the command by path and file, and its arguments exactly.
const ipPath = "/usr/sbin/ip"

// BecomeCommands are every command line routepush runs through sudo -n
// with become, for the tables it reads (main, and --table's when it names
// another): the reads (JSON, and text on an iproute2 without -json), the
// one-family ip that reads, applies and verifies (and, with -force, rolls
// back), the dual-stack and rollback batches, preflight's reads,
// sftp-server with no arguments ("" in sudoers) and, for --persist on
// systemd, enabling the boot unit. ip and sftp-server
// are at their Debian paths (sudo finds ip through secure_path).
func BecomeCommands(tables ...string) []string {
	return BecomeCommandsFor(ipPath, defaultSFTPServer, tables...)
}

// BecomeCommandsFor is BecomeCommands for a node whose ip and sftp-server
// are at these paths.
func BecomeCommandsFor(ipPath, sftpServer string, tables ...string) []string {
	all := []string{"main"}
	for _, t := range tables {
		if !slices.Contains(all, t) {
			all = append(all, t)
		}
	}
	var cmds []string
	for _, fam := range []int{4, 6} {
		cmds = append(cmds, fmt.Sprintf("%s -%d -d -N -json -batch -", ipPath, fam))
	}
	// The one-family rollback: the same ip with -force (applyJSON).
	for _, fam := range []int{4, 6} {
		cmds = append(cmds, fmt.Sprintf("%s -force -%d -d -N -json -batch -", ipPath, fam))
	}
	cmds = append(cmds, ipPath+" -batch -", ipPath+" -force -batch -")
	for _, t := range all {
		for _, fam := range []int{4, 6} {
			cmds = append(cmds, fmt.Sprintf("%s -d -N -json -%d route show table %s", ipPath, fam, t),
				fmt.Sprintf("%s -d -%d route show table %s", ipPath, fam, t))
		}
	}
	// Preflight's reads (facts.go): the settings and addresses of a
	// dual-stack node, and the FORWARD chains. Without them in sudoers,
	// preflight says it could not read them, and nothing else fails.
	cmds = append(cmds, ipPath+" -json netconf show", ipPath+" -json address show",
		"/usr/sbin/nft -j list chains", "/usr/sbin/iptables -S FORWARD")
	return append(cmds, sftpServer+` ""`, "/usr/bin/systemctl enable "+unitName)
}

// SudoersLine is the sudoers line become needs for user: exactly the
// commands of BecomeCommands, with these arguments and no others. It is
// still root-equivalent (README, "Security model"): `ip -batch -` reads
// any ip command from stdin, `netns exec` included, and sftp-server
// reads and writes any file as root.
func SudoersLine(user string, tables ...string) string {
	return SudoersLineFor(user, ipPath, defaultSFTPServer, tables...)
}

// SudoersLineFor is SudoersLine for a node whose ip and sftp-server are
// at these paths.
func SudoersLineFor(user, ipPath, sftpServer string, tables ...string) string {
	return fmt.Sprintf("%s ALL=(root) NOPASSWD: %s", user, strings.Join(BecomeCommandsFor(ipPath, sftpServer, tables...), ", "))
}

// sudoersHint names what become runs through sudo.
func (c *Client) sudoersHint() string {
	var tables []string
	if c.table != "" && c.table != "main" {
		tables = append(tables, c.table)
	}
	ip := ipPath
	if c.ipCmd != "" {
		ip = c.ipCmd // the path this node's ip is run by
	}
	return fmt.Sprintf("become needs passwordless sudo for exactly these commands, e.g. the sudoers line '%s'", SudoersLineFor(c.user, ip, c.sftpPath(), tables...))
}
