// Command demo shows routepush's main job on a local lab: it brings up N
// nodes (network namespaces with real sshd), prints a pod-to-pod ping
// matrix, runs `routepush check --persist` and `routepush --persist`,
// prints the matrix again, flushes one node's routes as a reboot would and
// replays them as its boot unit would, and tears the lab down (unless
// -keep). `make demo` runs it.
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

	args := []string{"--inventory", l.InventoryPath(), "--persist"}
	fmt.Printf("\n==> routepush check %s    (the diff; changes nothing)\n", strings.Join(args, " "))
	res, err := l.Routepush(ctx, bin, append([]string{"check"}, args...)...)
	if err != nil {
		return err
	}
	fmt.Print(res.Stdout, res.Stderr)
	if res.Code != 2 {
		return fmt.Errorf("routepush check exited %d, want 2 (changes found)", res.Code)
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

	if err := reboot(ctx, l, l.Nodes[0]); err != nil {
		return err
	}
	fmt.Println("\n==> pod-to-pod pings after the replay")
	if ok := pingMatrix(ctx, l); ok != want {
		return fmt.Errorf("after %s's replay, %d of %d pings succeeded", l.Nodes[0].Name, ok, want)
	}
	fmt.Printf("\nall %d pod-to-pod pings succeed again\n", want)

	if keep {
		n := l.Nodes[0]
		fmt.Printf(`
The lab stays up in %[1]s.
Each node is a network namespace with its own routing table and sshd; routepush
runs in the bastion namespace %[2]s. Try:

  # %[4]s's routing table (proto 114: routepush's routes)
  ip netns exec %[3]s ip route
  # a ping from %[4]s's pod IP to %[7]s's
  ip netns exec %[3]s ping -c1 -I %[5]s %[6]s
  # %[4]s's /etc/routepush/routes, written by --persist
  cat %[8]s/etc-routepush/routes
  # SSH to %[4]s as routepush does
  ip netns exec %[2]s ssh -i %[9]s -o UserKnownHostsFile=%[10]s root@%[11]s ip route
  # break a route, see check find it, let routepush repair it
  ip netns exec %[3]s ip route del %[15]s
  ip netns exec %[2]s %[12]s check --config %[13]s --inventory %[14]s
  ip netns exec %[2]s %[12]s --config %[13]s --inventory %[14]s
  # tear the lab down
  make lab-clean
`, l.Dir, l.Bastion, n.NS, n.Name, n.PodIP, l.Nodes[1].PodIP, l.Nodes[1].Name, n.Dir,
			l.IdentityPath(), l.KnownHostsPath(), n.Addr, bin, l.ConfigPath(), l.InventoryPath(), l.Nodes[1].PodCIDR)
	}
	return nil
}

// reboot shows what --persist is for: a node loses its routes, as at a
// reboot, and the command its boot unit runs brings them back.
func reboot(ctx context.Context, l *lab.Lab, n *lab.Node) error {
	unit, err := os.ReadFile(filepath.Join(n.Dir, "etc-systemd-system", "routepush-routes.service"))
	if err != nil {
		return err
	}
	var execStart string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
	}
	fmt.Printf("\n==> %s \"reboots\": ip route flush proto 114 (its routes are gone: %d pings fail)\n", n.Name, 2*(len(l.Nodes)-1))
	if _, err := l.Exec(ctx, n.NS, "ip", "route", "flush", "proto", "114"); err != nil {
		return err
	}
	want := len(l.Nodes) * (len(l.Nodes) - 1)
	if ok := l.PingMatrix(ctx); count(ok) != want-2*(len(l.Nodes)-1) {
		return fmt.Errorf("after flushing %s, %d pings succeeded", n.Name, count(ok))
	}
	fmt.Printf("==> at boot routepush-routes.service runs: %s\n", execStart)
	if out, err := l.NodeExec(ctx, n, strings.Fields(execStart)...); err != nil {
		return fmt.Errorf("%s: %w %s", execStart, err, out)
	}
	return nil
}

func count(ok [][]bool) int {
	c := 0
	for _, row := range ok {
		for _, b := range row {
			if b {
				c++
			}
		}
	}
	return c
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
