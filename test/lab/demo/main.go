// Command demo shows routepush's main job on a local lab: it brings up N
// nodes (network namespaces with real sshd), prints a pod-to-pod ping
// matrix, runs `routepush --check` and `routepush`, prints the matrix again
// and tears the lab down (unless -keep). `make demo` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/routepush/routepush/test/lab"
)

func main() {
	bin := flag.String("routepush", "bin/routepush", "routepush binary")
	nodes := flag.Int("nodes", 5, "lab nodes")
	keep := flag.Bool("keep", false, "leave the lab up and print how to use it")
	flag.Parse()
	if err := run(*bin, *nodes, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}

func run(bin string, nodes int, keep bool) (err error) {
	ctx := context.Background()
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	fmt.Printf("==> bringing up a lab of %d nodes (network namespaces, one sshd each)\n", nodes)
	l, err := lab.Up(ctx, lab.Options{Nodes: nodes})
	if err != nil {
		return err
	}
	if !keep {
		defer func() {
			fmt.Println("==> tearing the lab down")
			if derr := l.Down(); derr != nil && err == nil {
				err = derr
			}
		}()
	}
	for _, n := range l.Nodes {
		fmt.Printf("    %s  %-12s pods %-15s (namespace %s)\n", n.Name, n.Addr, n.PodCIDR, n.NS)
	}

	fmt.Println("\n==> pod-to-pod pings before routepush")
	if ok := pingMatrix(ctx, l); ok != 0 {
		return fmt.Errorf("%d pings succeeded before any routes: the lab is not isolated", ok)
	}

	args := []string{"--inventory", l.InventoryPath()}
	fmt.Printf("\n==> routepush %s --check\n", strings.Join(args, " "))
	res, err := l.Routepush(ctx, bin, append(args, "--check")...)
	if err != nil {
		return err
	}
	fmt.Print(res.Stdout, res.Stderr)
	if res.Code != 2 {
		return fmt.Errorf("--check exited %d, want 2 (changes found)", res.Code)
	}

	fmt.Printf("\n==> routepush %s\n", strings.Join(args, " "))
	if res, err = l.Routepush(ctx, bin, args...); err != nil {
		return err
	}
	fmt.Print(res.Stdout, res.Stderr)
	if res.Code != 0 {
		return fmt.Errorf("routepush exited %d", res.Code)
	}

	fmt.Println("\n==> pod-to-pod pings after routepush")
	want := len(l.Nodes) * (len(l.Nodes) - 1)
	if ok := pingMatrix(ctx, l); ok != want {
		return fmt.Errorf("%d of %d pings succeeded", ok, want)
	}
	fmt.Printf("\nall %d pod-to-pod pings succeed\n", want)
	if keep {
		n := l.Nodes[0]
		fmt.Printf(`
The lab stays up (%s). Try:
  ip netns exec %s ip route                       # node-0's routing table
  ip netns exec %s %s --config %s --inventory %s --check
  go run ./test/lab/labctl clean                   # tear it down
`, l.Dir, n.NS, l.Bastion, bin, l.ConfigPath(), l.InventoryPath())
	}
	return nil
}

// pingMatrix prints who reaches whom and returns how many pings succeeded.
func pingMatrix(ctx context.Context, l *lab.Lab) int {
	ok := l.PingMatrix(ctx)
	fmt.Printf("    %-11s", "from \\ to")
	for _, n := range l.Nodes {
		fmt.Printf(" %7s", n.Name)
	}
	fmt.Println()
	count := 0
	for i, from := range l.Nodes {
		fmt.Printf("    %-11s", from.Name)
		for j := range l.Nodes {
			cell := "-"
			if i != j {
				cell = "no"
				if ok[i][j] {
					cell, count = "ok", count+1
				}
			}
			fmt.Printf(" %7s", cell)
		}
		fmt.Println()
	}
	return count
}
