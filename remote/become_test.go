package remote

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/routepush/routepush/route"
)

// TestBecomeCommandsComplete: every ip command line a client runs through
// sudo is one the sudoers line allows, with exactly its arguments.
func TestBecomeCommandsComplete(t *testing.T) {
	for _, table := range []string{"", "100"} {
		var tables []string
		if table != "" {
			tables = []string{table}
		}
		allowed := BecomeCommands(tables...)
		for _, text := range []bool{false, true} {
			c := &Client{sudo: true, table: table, textMode: text}
			var ran []string
			for _, fam := range []route.Family{route.IPv4, route.IPv6} {
				for _, tb := range c.tables() {
					ran = append(ran, c.ip(c.readArgs(fam, tb)))
				}
				ran = append(ran, c.ip(batchArgs[fam]), c.ip("-force "+batchArgs[fam]))
			}
			ran = append(ran, c.ip("-batch -"), c.ip("-force -batch -"))
			for _, cmd := range ran {
				args, ok := strings.CutPrefix(cmd, "sudo -n ip ")
				if !ok || !slices.Contains(allowed, ipPath+" "+args) {
					t.Errorf("table %q text %v: %q is not in %q", table, text, cmd, allowed)
				}
			}
		}
	}
	if !slices.Contains(BecomeCommands(), defaultSFTPServer+` ""`) {
		t.Errorf("sftp-server not allowed without arguments")
	}
}

// TestReadmeSudoersLine: the README shows exactly the line the hint prints.
func TestReadmeSudoersLine(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if line := SudoersLine("admin"); !strings.Contains(string(readme), line) {
		t.Errorf("README lacks the sudoers line %s", line)
	}
	c := &Client{sudo: true, user: "admin"}
	if h := c.hint("sudo: a password is required"); !strings.Contains(h, SudoersLine("admin")) {
		t.Errorf("hint %q lacks the line", h)
	}
}
