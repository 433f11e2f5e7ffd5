package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/routepush/routepush/orchestrator"
	"github.com/routepush/routepush/test/lab"
)

// The scale sequence (issue 19) is what a cluster at the ceiling lives
// through, on a lab of N+1 nodes whose last one is not yet in the
// inventory: the bare connection floor over the N members, apply from
// empty, --check converged, an idempotent apply, the last node joining
// (the inventory gains it), and --prune after ten nodes leave (the
// inventory loses them). Each step runs once (three times where a run
// is under 30 s), after the one before: nothing is flushed or converged
// again between steps, which at 5,000 nodes would take longer than the
// steps. Every step's tables are read by the bench itself, over
// rtnetlink, and every route is checked.
var scaleSteps = []struct {
	key, name string
	// again: a second and third run start from where the first did
	// (the others change the tables: only their first run is theirs).
	again bool
}{
	{"floor", "bare connection floor: OpenSSH fan-out running true", true},
	{"apply", "routepush apply from empty", false},
	{"check", "routepush --check, converged", true},
	{"reapply", "routepush apply, converged (idempotent)", true},
	{"join", "routepush apply, one node joins", false},
	{"prune", "routepush apply --prune, ten nodes leave", false},
}

// leaving is how many nodes the prune step's inventory drops.
const leaving = 10

// stepTimeout bounds one run of a step: a node that accepts a connection
// and then stalls must not hang a lab that took long to bring up.
const stepTimeout = 2 * time.Hour

// What a lab node costs this machine, measured at 2,000 nodes
// (bench/RESULTS.md): an idle node (namespace, veth, sshd), a node whose
// session apply holds from its read to the end of the run, and a route in
// a node's table. Apply holds the sessions of the nodes it works on and
// of at most --max-idle-connections waiting ones (routepush's default).
const (
	idleNodeBytes = 1_900_000
	heldNodeBytes = 2_500_000
	routeBytes    = 345
	heldSessions  = orchestrator.DefaultMaxIdleConnections + 50 // and --concurrency's
)

// labBytes is what a lab of n nodes needs at apply's peak.
func labBytes(n int) int64 {
	return int64(n)*idleNodeBytes + int64(min(n, heldSessions))*heldNodeBytes + int64(n)*int64(n-1)*routeBytes
}

// fitsInMemory refuses a scale lab whose nodes, at apply's peak, would
// need more than 90 % of the memory available now: the machine has no
// swap, and the kernel's OOM killer would pick among the lab's sshd and
// whatever else runs here.
func fitsInMemory(nodes int) error {
	avail, err := memAvailableKB()
	if err != nil {
		return err
	}
	if need := labBytes(nodes); need > avail*1024/10*9 {
		largest := nodes
		for largest > 2 && labBytes(largest) > avail*1024/10*9 {
			largest -= 100
		}
		return fmt.Errorf("a lab of %d nodes would need about %.1f GB at apply's peak (%.1f MB per node, %.1f MB more for each of up to %d sessions apply holds, and %d bytes per route), more than 90 %% of the %.1f GB available: memory runs out first; the largest lab that fits here is about %d nodes",
			nodes, float64(need)/1e9, float64(idleNodeBytes)/1e6, float64(heldNodeBytes)/1e6, heldSessions, routeBytes, float64(avail)*1024/1e9, largest)
	}
	return nil
}

// scale runs the scale sequence on a lab of n+1 nodes.
func (b *bench) scale(ctx context.Context) ([]Result, error) {
	all := b.lab.Nodes
	n := len(all) - 1
	members := all[:n]
	var results []Result
	if err := b.flush(ctx); err != nil {
		return nil, err
	}
	inventory := func(nodes []*lab.Node) error { return b.lab.WriteInventory(b.lab.InventoryPath(), nodes) }
	hosts := filepath.Join(b.dir, "hosts.txt")
	var list strings.Builder
	for _, m := range members {
		fmt.Fprintln(&list, m.Addr)
	}
	if err := os.WriteFile(hosts, []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	for _, step := range scaleSteps {
		var argv []string
		cluster := members // every step exits 0: --check too, on a converged lab
		switch step.key {
		case "floor":
			argv = b.fanOut("true")
		case "apply", "reapply":
			argv = b.routepush()
		case "check":
			argv = append(b.routepush(), "--check")
		case "join":
			cluster = all
			argv = b.routepush()
		case "prune":
			cluster = all[leaving:]
			argv = append(b.routepush(), "--prune")
		}
		if err := inventory(cluster); err != nil {
			return results, err
		}
		r := Result{Nodes: n, Contender: step.name, Key: step.key, Scale: true, Commit: b.commit}
		var runs []measured
		for i := 0; i < 3; i++ {
			sctx, cancel := context.WithTimeout(ctx, stepTimeout)
			m := b.measureLab(sctx, argv)
			cancel()
			runs = append(runs, m)
			fmt.Fprintf(os.Stderr, "   %-8s run %d: %.2fs exit %d, %.1f CPU-s, %.1f MB; machine %.0f CPU-s, lab memory +%.0f MB\n",
				step.key, i+1, m.wall, m.exit, m.cpu, float64(m.maxRSS)/1024, m.machineCPU, m.labMemMB)
			if m.exit != 0 {
				r.Err = fmt.Sprintf("exit %d: %s", m.exit, lastLine(m.stderr))
			}
			if !step.again || m.wall >= 30 || r.Err != "" {
				break
			}
		}
		slices.SortFunc(runs, func(a, b measured) int { return compareFloat(a.wall, b.wall) })
		med := runs[len(runs)/2]
		for _, m := range runs {
			r.Runs = append(r.Runs, round(m.wall))
		}
		r.Wall, r.CPU, r.MaxRSSKB = round(med.wall), round(med.cpu), med.maxRSS
		r.MachineCPU, r.LabMemMB = round(med.machineCPU), round(med.labMemMB)
		started := time.Now()
		found, expected, wrong, err := checkTables(cluster)
		if err != nil {
			r.Err = "reading the tables: " + err.Error()
			return append(results, r), err
		}
		r.Found, r.Expected, r.Wrong = found, expected, wrong
		if step.key == "floor" {
			r.Expected = r.Found // it changes nothing: the column is not its
		}
		fmt.Fprintf(os.Stderr, "   %-8s tables: %d / %d routes correct, %d wrong (read in %s)\n", step.key, found, expected, wrong, time.Since(started).Round(time.Millisecond))
		results = append(results, r)
		if r.Err != "" {
			return results, fmt.Errorf("%s: %s", step.key, r.Err)
		}
	}
	return results, nil
}

// measureLab is measure, plus what the whole machine spent meanwhile:
// CPU time over every core (the nodes' sshd, ip and kernel work
// included), and how far MemAvailable fell below where it started (the
// nodes' sessions and the routes they were given).
func (b *bench) measureLab(ctx context.Context, argv []string) measured {
	cpu0, err0 := machineCPU()
	mem0, _ := memAvailableKB()
	low := mem0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if m, err := memAvailableKB(); err == nil {
					low = min(low, m)
				}
			}
		}
	}()
	m := b.measure(ctx, argv)
	close(stop)
	wg.Wait()
	if cpu1, err1 := machineCPU(); err0 == nil && err1 == nil {
		m.machineCPU = (cpu1 - cpu0).Seconds()
	}
	m.labMemMB = float64(mem0-low) / 1024
	return m
}

// machineCPU is the CPU time all cores have spent, idle and iowait aside
// (/proc/stat's first line).
func machineCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no cpu line")
	}
	var ticks int64
	for i, v := range f[1:8] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		var t int64
		fmt.Sscan(v, &t)
		ticks += t
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// memAvailableKB is /proc/meminfo's MemAvailable.
func memAvailableKB() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			_, err := fmt.Sscan(v, &kb)
			return kb, err
		}
	}
	return 0, errors.New("/proc/meminfo: no MemAvailable")
}

// checkTables reads every cluster node's main IPv4 table over rtnetlink
// and counts, over all of them, the protocol-114 routes to another
// member's pod CIDR via its address (found, of expected), and every other
// protocol-114 route into the pod range (wrong: to a node that left, or by
// the wrong gateway).
func checkTables(cluster []*lab.Node) (found, expected, wrong int, err error) {
	want := make(map[netip.Prefix]netip.Addr, len(cluster))
	for _, n := range cluster {
		want[n.PodCIDR] = n.Addr
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, n := range cluster {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			table, err := dumpPodRoutes(n.NS)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
				return
			}
			expected += len(cluster) - 1
			f, w := classify(n.PodCIDR, want, table)
			found += f
			wrong += w
		}()
	}
	wg.Wait()
	return found, expected, wrong, errors.Join(errs...)
}

// classify counts a node's routes into the pod range: found, those to
// another member's pod CIDR via its address (want), of routepush's kind;
// wrong, every other one but those into the node's own pod CIDR (its pod
// address on lo). Each destination counts once: a second route to it
// (another metric, table or protocol) is wrong, even by the right
// gateway.
func classify(own netip.Prefix, want map[netip.Prefix]netip.Addr, table []podRoute) (found, wrong int) {
	seen := make(map[netip.Prefix]bool, len(table))
	for _, r := range table {
		switch {
		case r.dst.Bits() >= own.Bits() && own.Contains(r.dst.Addr()):
		case r.ours && want[r.dst] == r.via && !seen[r.dst]:
			found++
			seen[r.dst] = true
		default:
			wrong++
		}
	}
	return found, wrong
}

// dumpPodRoutes reads a namespace's main-table protocol-114 routes into
// the pod range (parseRoute's) with one rtnetlink dump.
func dumpPodRoutes(ns string) ([]podRoute, error) {
	fd, err := netlinkIn(ns, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "rtnetlink "+ns)
	defer f.Close()
	if err := f.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, err
	}
	if err := dumpRequest(f); err != nil {
		return nil, err
	}
	var table []podRoute
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		if err != nil {
			return nil, err
		}
		for b := buf[:k]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return nil, errors.New("a truncated netlink message")
			}
			flags, seq := binary.NativeEndian.Uint16(b[6:]), binary.NativeEndian.Uint32(b[8:])
			switch {
			case seq != 1:
				// Not the answer to dumpRequest's request.
			case flags&unix.NLM_F_DUMP_INTR != 0:
				// The table changed under the dump: its answer may
				// miss routes. Nothing should change it now.
				return nil, errors.New("the route dump was interrupted by a change")
			case binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_DONE:
				return table, nil
			case binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR:
				code := int32(0)
				if l >= unix.SizeofNlMsghdr+4 {
					code = int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:]))
				}
				return nil, fmt.Errorf("the route dump failed: %v", unix.Errno(-code))
			case binary.NativeEndian.Uint16(b[4:]) == unix.RTM_NEWROUTE:
				if r, ok := parseAnyPodRoute(b[unix.SizeofNlMsghdr:l]); ok {
					table = append(table, r)
				}
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}

// podRoute is a route into the pod range, of any kind, in any table.
type podRoute struct {
	dst netip.Prefix
	via netip.Addr // a single gateway's, else invalid
	// ours: a unicast route of protocol 114 in the main table, with one
	// gateway (parseRoute's kind).
	ours bool
}

// parseAnyPodRoute reads an IPv4 rtmsg whose destination lies in the pod
// range, whatever its table, type, protocol or next hops.
func parseAnyPodRoute(b []byte) (podRoute, bool) {
	if len(b) < unix.SizeofRtMsg || b[0] != unix.AF_INET {
		return podRoute{}, false
	}
	bits, table, proto, typ := int(b[1]), uint32(b[4]), b[5], b[7]
	addr := netip.IPv4Unspecified()
	var via netip.Addr
	multipath := false
	for a := b[unix.SizeofRtMsg:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		if l < 4 || l > len(a) {
			break
		}
		data := a[4:l]
		switch binary.NativeEndian.Uint16(a[2:]) {
		case unix.RTA_DST:
			addr, _ = netip.AddrFromSlice(data)
		case unix.RTA_GATEWAY:
			via, _ = netip.AddrFromSlice(data)
		case unix.RTA_MULTIPATH, unix.RTA_VIA:
			multipath = true
		case unix.RTA_TABLE:
			if len(data) == 4 {
				table = binary.NativeEndian.Uint32(data)
			}
		}
		a = a[min((l+3)&^3, len(a)):]
	}
	dst := netip.PrefixFrom(addr, bits)
	if bits < podRange.Bits() || !podRange.Contains(addr) {
		return podRoute{}, false // a default route, say: not into the pod range alone
	}
	ours := table == unix.RT_TABLE_MAIN && proto == 114 && typ == unix.RTN_UNICAST && via.IsValid() && !multipath
	return podRoute{dst: dst, via: via, ours: ours}, true
}

// renderScale writes the scale sequence's table and issue 19's targets,
// for every lab size it ran at.
func renderScale(results []Result) string {
	var sizes []int
	bySize := map[int]map[string]Result{}
	for _, r := range results {
		if !r.Scale {
			continue
		}
		if bySize[r.Nodes] == nil {
			bySize[r.Nodes] = map[string]Result{}
			sizes = append(sizes, r.Nodes)
		}
		bySize[r.Nodes][r.Key] = r
	}
	if len(sizes) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### Scale sequence (issue 19)\n\n")
	b.WriteString("One lab of N+1 nodes, the steps in order; machine CPU is every core's (nodes included), lab memory how far MemAvailable fell during the step.\n\n")
	b.WriteString("| nodes | step | wall (s) | runs (s) | CPU (s) | max RSS (MB) | machine CPU (s) | lab memory (MB) | × floor | routes correct | wrong |\n")
	b.WriteString("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, n := range sizes {
		floor := bySize[n]["floor"].Wall
		for _, step := range scaleSteps {
			r, ok := bySize[n][step.key]
			if !ok {
				continue
			}
			var runs []string
			for _, x := range r.Runs {
				runs = append(runs, fmt.Sprintf("%.2f", x))
			}
			ratio := ""
			if floor > 0 {
				ratio = fmt.Sprintf("%.2f", r.Wall/floor)
			}
			correct := fmt.Sprintf("%d / %d", r.Found, r.Expected)
			if r.Err != "" {
				correct += " (" + r.Err + ")"
			}
			fmt.Fprintf(&b, "| %d | %s | %.2f | %s | %.2f | %.1f | %.1f | %.0f | %s | %s | %d |\n", n, step.name, r.Wall, strings.Join(runs, ", "),
				r.CPU, float64(r.MaxRSSKB)/1024, r.MachineCPU, r.LabMemMB, ratio, correct, r.Wrong)
		}
	}
	b.WriteString("\nTargets:\n\n")
	for _, n := range sizes {
		s := bySize[n]
		floor, okF := s["floor"]
		verdict := func(desc string, ran, pass bool, figures string) {
			v := "not run"
			if ran {
				v = passMiss(pass)
			}
			fmt.Fprintf(&b, "- %s at N = %d: %s %s\n", desc, n, v, figures)
		}
		// A step that failed, or left a route wrong, passes no target:
		// it may have been quick for not doing its job.
		good := func(r Result) bool { return r.Err == "" && r.Found == r.Expected && r.Wrong == 0 }
		okF = okF && good(floor)
		a, okA := s["apply"]
		verdict("apply from empty ≤ 1.0 × the bare connection floor", okA && okF, good(a) && a.Wall <= floor.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.2f×)", a.Wall, floor.Wall, a.Wall/floor.Wall))
		c, okC := s["check"]
		verdict("--check converged ≤ 0.5 × the bare connection floor", okC && okF, good(c) && c.Wall <= 0.5*floor.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.2f×)", c.Wall, floor.Wall, c.Wall/floor.Wall))
		var peak int64
		correct := true
		steps := 0
		for _, step := range scaleSteps {
			r, ok := s[step.key]
			if !ok {
				continue
			}
			steps++
			if step.key != "floor" {
				peak = max(peak, r.MaxRSSKB)
			}
			correct = correct && r.Err == "" && r.Found == r.Expected && r.Wrong == 0
		}
		verdict("routepush max RSS ≤ 256 MB in every step", steps == len(scaleSteps), peak <= 256*1024, fmt.Sprintf("(%.1f MB)", float64(peak)/1024))
		verdict("every route correct after every step", steps == len(scaleSteps), correct, "")
	}
	return b.String()
}
