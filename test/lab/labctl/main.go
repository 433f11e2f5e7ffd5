// Command labctl brings routepush's test lab up and down by hand:
//
//	labctl up -nodes 5 -dir .lab   # prints the lab's prefix and files
//	labctl down -dir .lab
//	labctl clean                   # remove every lab namespace left behind
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/routepush/routepush/test/lab"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labctl up|down|clean [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	nodes := fs.Int("nodes", 5, "number of nodes")
	dir := fs.String("dir", ".lab", "lab folder (state is kept in DIR/lab.json)")
	var o lab.Options
	fs.BoolVar(&o.DualStack, "dual-stack", false, "IPv6 addresses and pod CIDRs beside the IPv4 ones")
	fs.BoolVar(&o.Jump, "jump", false, "put the bastion behind a jump host, its only way to the nodes")
	fs.StringVar(&o.SudoUser, "sudo-user", "", "nodes accept only this user, with passwordless sudo for ip")
	fs.Func("dropbear", "comma-separated node indexes that run Dropbear instead of sshd", indexes(&o.Dropbear))
	fs.Func("dropbear-no-sftp", "comma-separated node indexes that run Dropbear without an SFTP server", indexes(&o.DropbearNoSFTP))
	_ = fs.Parse(os.Args[2:])
	o.Nodes, o.Dir = *nodes, *dir
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, o)
	case "down":
		err = down(*dir)
	case "clean":
		err = clean(ctx)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}

// indexes parses a flag's comma-separated node indexes into list.
func indexes(list *[]int) func(string) error {
	return func(s string) error {
		for _, f := range strings.Split(s, ",") {
			i, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return err
			}
			*list = append(*list, i)
		}
		return nil
	}
}

func up(ctx context.Context, o lab.Options) error {
	if _, err := os.Stat(filepath.Join(o.Dir, "lab.json")); err == nil {
		return fmt.Errorf("a lab is already up in %s: labctl down -dir %s first", o.Dir, o.Dir)
	}
	l, err := lab.Up(ctx, o)
	if err != nil {
		return err
	}
	state, _ := json.MarshalIndent(l, "", "  ")
	if err := os.WriteFile(filepath.Join(l.Dir, "lab.json"), state, 0o644); err != nil {
		return err
	}
	fmt.Printf("lab %s: %d nodes, bastion namespace %s\n  inventory %s\n  config    %s\n",
		l.Prefix, len(l.Nodes), l.Bastion, l.InventoryPath(), l.ConfigPath())
	return nil
}

func load(dir string) (*lab.Lab, error) {
	data, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, err
	}
	var l lab.Lab
	return &l, json.Unmarshal(data, &l)
}

func down(dir string) error {
	l, err := load(dir)
	if err != nil {
		return err
	}
	return l.Down()
}

// clean removes the namespaces of labs whose process died before Down.
func clean(ctx context.Context) error {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "rp") && (strings.Contains(name, "-n") || strings.HasSuffix(name, "-br") || strings.HasSuffix(name, "-bastion")) {
			if err := lab.DeleteNamespace(ctx, name); err != nil {
				return err
			}
			fmt.Println("deleted", name)
		}
	}
	return nil
}
