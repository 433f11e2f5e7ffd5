// Command bench races routepush against what users would use instead, on
// the same lab of real sshd nodes, from the same empty tables: OpenSSH
// fan-out (xargs -P with one `ip -batch -` per node), the bare cost of one
// SSH connection per node, and Ansible (an expert's one-task playbook and
// the classic one task item per route). It prints a markdown table and the
// targets of issue 5 with PASS/MISS, and writes both (and JSON) to -out.
// At 50 and 200 nodes it also times `routepush watch` (issue 17) against a
// real kube-apiserver: a node joining and leaving, and the watcher idle
// (watch.go).
//
// Run it as root through `make bench` (BENCH_NODES=1000 for the big run).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/routepush/routepush/test/lab"
)

// Result is one contender's figures at one lab size.
type Result struct {
	Nodes     int       `json:"nodes"`
	Contender string    `json:"contender"`
	Key       string    `json:"key"`
	Runs      []float64 `json:"runs_s"`
	Wall      float64   `json:"wall_s"` // median of Runs
	CPU       float64   `json:"cpu_s"`  // user+system of the median run, children included
	MaxRSSKB  int64     `json:"max_rss_kb"`
	Ratio     float64   `json:"ratio_to_routepush_apply"`
	// FloorRatio is a routepush run's wall over its Go floor's (floorOf).
	FloorRatio float64 `json:"ratio_to_go_floor,omitempty"`
	Commit     string  `json:"commit"`
	Found      int     `json:"routes_found"`
	Expected   int     `json:"routes_expected"`
	// The scale sequence's (scale.go): routes that should not be there,
	// the whole machine's CPU time (nodes included) and how far its
	// available memory fell during the run.
	Scale      bool    `json:"scale,omitempty"`
	Wrong      int     `json:"routes_wrong,omitempty"`
	MachineCPU float64 `json:"machine_cpu_s,omitempty"`
	LabMemMB   float64 `json:"lab_memory_mb,omitempty"`
	Err        string  `json:"error,omitempty"`
}

type contender struct {
	key, name string
	empty     bool // starts from empty tables (else from the converged lab)
	maxNodes  int  // 0: any size
	cmd       func(b *bench) []string
}

var contenders = []contender{
	{key: "apply", name: "routepush apply (snapshot, apply, verify)", empty: true,
		cmd: func(b *bench) []string { return b.routepush() }},
	{key: "check", name: "routepush --check, converged lab",
		cmd: func(b *bench) []string { return append(b.routepush(), "--check") }},
	{key: "check-nopre", name: "routepush --check --preflight off, converged lab",
		cmd: func(b *bench) []string { return append(b.routepush(), "--check", "--preflight", "off") }},
	{key: "check-probe", name: "routepush --check --probe (K = 3), converged lab",
		cmd: func(b *bench) []string { return append(b.routepush(), "--check", "--probe") }},
	{key: "reapply", name: "routepush apply, converged lab (idempotent)",
		cmd: func(b *bench) []string { return b.routepush() }},
	{key: "ssh", name: "OpenSSH fan-out: xargs -P, ssh node ip -batch - (no verify)", empty: true,
		cmd: func(b *bench) []string { return b.fanOut(`ip -batch - < ` + b.dir + `/batch/"$1"`) }},
	{key: "floor", name: "bare connection floor: the same fan-out running true",
		cmd: func(b *bench) []string { return b.fanOut("true") }},
	{key: "go-true", name: "Go floor: one x/crypto/ssh connection per node running true",
		cmd: func(b *bench) []string { return b.goFloor("true") }},
	{key: "go-apply", name: "Go floor: one connection per node, ip -batch - then ip -d -N -json route show", empty: true,
		cmd: func(b *bench) []string { return b.goFloor("apply") }},
	{key: "ansible", name: "Ansible, expert: one shell ip -batch - task, pipelining", empty: true,
		cmd: func(b *bench) []string { return b.ansible("expert.yml", "expert.cfg") }},
	{key: "classic", name: "Ansible, classic: one command task item per route", empty: true, maxNodes: 20,
		cmd: func(b *bench) []string { return b.ansible("classic.yml", "classic.cfg") }},
}

type bench struct {
	lab          *lab.Lab
	dir          string // the bench's files in the lab folder
	routepushBin string
	floorBin     string // bench/gofloor, built by run
	commit       string // commitOf
	concurrency  int
	out          string // the results folder: the watcher's logs go there too
}

func main() {
	nodesFlag := flag.String("nodes", envOr("BENCH_NODES", "10,20,50,200"), "lab sizes, comma-separated (env BENCH_NODES)")
	concurrency := flag.Int("concurrency", 50, "nodes at once, for every contender (routepush's default)")
	bin := flag.String("routepush", "bin/routepush", "the routepush binary")
	out := flag.String("out", "bench/out", "folder for results.md and results.json")
	only := flag.String("only", "", "contender keys to run, comma-separated, \"watch\" for the watcher (default all)")
	watchNodes := flag.String("watch-nodes", envOr("BENCH_WATCH_NODES", "50,200"), "lab sizes the watcher is timed at, among -nodes (env BENCH_WATCH_NODES)")
	joins := flag.Int("watch-joins", 5, "joins timed per size (a leave between two)")
	idle := flag.Duration("watch-idle", time.Minute, "how long the idle watcher is sampled, at the largest watch size (0: not)")
	watchArgs := flag.String("watch-args", "", "more arguments for routepush watch, space-separated (to compare settings)")
	scaleFrom := flag.Int("scale-from", 2000, "lab sizes from which the scale sequence runs instead of the contenders (env BENCH_SCALE_FROM)")
	if v := os.Getenv("BENCH_SCALE_FROM"); v != "" {
		if err := flag.Set("scale-from", v); err != nil {
			fmt.Fprintf(os.Stderr, "bench: BENCH_SCALE_FROM=%q: %v\n", v, err)
			os.Exit(2)
		}
	}
	flag.Parse()
	if *scaleFrom < leaving+2 {
		fmt.Fprintf(os.Stderr, "bench: -scale-from %d: the scale sequence needs at least %d nodes (%d leave)\n", *scaleFrom, leaving+2, leaving)
		os.Exit(2)
	}
	wo := watchOptions{sizes: map[int]bool{}, joins: max(*joins, 1), idle: *idle, args: strings.Fields(*watchArgs), scaleFrom: *scaleFrom}
	for _, s := range strings.Split(*watchNodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "bench: bad watch lab size %q\n", s)
			os.Exit(2)
		}
		wo.sizes[n] = true
		wo.idleN = max(wo.idleN, n)
	}
	if err := run(*nodesFlag, *concurrency, *bin, *out, *only, wo); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(nodesList string, concurrency int, bin, out, only string, wo watchOptions) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	var sizes []int
	for _, s := range strings.Split(nodesList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return fmt.Errorf("bad lab size %q", s)
		}
		sizes = append(sizes, n)
	}
	var results []Result
	var watched []WatchResult
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	floorBin, err := filepath.Abs(filepath.Join(out, "gofloor"))
	if err != nil {
		return err
	}
	if msg, err := exec.Command("go", "build", "-o", floorBin, "./bench/gofloor").CombinedOutput(); err != nil {
		return fmt.Errorf("building the Go floors: %v: %s", err, msg)
	}
	// An interrupt tears the lab down (runSize's deferred Down) instead
	// of leaving thousands of sshd behind; what was measured is written
	// either way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var runErr error
	for _, n := range sizes {
		rs, ws, err := runSize(ctx, n, concurrency, bin, floorBin, out, only, wo)
		results = append(results, rs...)
		watched = append(watched, ws...)
		if err != nil {
			runErr = fmt.Errorf("%d nodes: %w", n, err)
			break
		}
	}
	if err := writeResults(out, results, watched, concurrency); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

func writeResults(out string, results []Result, watched []WatchResult, concurrency int) error {
	report := render(results, concurrency) + renderScale(results) + renderWatch(watched)
	fmt.Print(report)
	js, _ := json.MarshalIndent(struct {
		Contenders []Result      `json:"contenders"`
		Watch      []WatchResult `json:"watch"`
	}{results, watched}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "results.md"), []byte(report), 0o644)
}

func runSize(ctx context.Context, n, concurrency int, bin, floorBin, out, only string, wo watchOptions) ([]Result, []WatchResult, error) {
	scale := n >= wo.scaleFrom
	labNodes := n
	if scale {
		labNodes = n + 1 // the last one joins
		if err := fitsInMemory(labNodes); err != nil {
			return nil, nil, err
		}
	}
	fmt.Fprintf(os.Stderr, "== %d nodes: bringing up the lab\n", n)
	started := time.Now()
	l, err := lab.Up(ctx, lab.Options{Nodes: labNodes})
	if err != nil {
		return nil, nil, err
	}
	defer l.Down()
	fmt.Fprintf(os.Stderr, "   lab of %d nodes up in %s\n", labNodes, time.Since(started).Round(time.Second))
	b := &bench{lab: l, dir: filepath.Join(l.Dir, "bench"), routepushBin: bin, floorBin: floorBin, concurrency: concurrency, out: out, commit: commitOf()}
	if err := b.writeFiles(); err != nil {
		return nil, nil, err
	}
	if scale {
		rs, err := b.scale(ctx)
		return rs, nil, err
	}
	results, err := b.contenders(ctx, only)
	if err != nil || !wo.sizes[n] || (only != "" && !slices.Contains(strings.Split(only, ","), "watch")) {
		return results, nil, err
	}
	started = time.Now()
	w, err := b.watch(ctx, wo)
	if err != nil {
		w.Err = err.Error()
		fmt.Fprintf(os.Stderr, "   watch    failed: %v\n", err)
	}
	fmt.Fprintf(os.Stderr, "   watch    section took %s\n", time.Since(started).Round(time.Second))
	return results, []WatchResult{w}, nil
}

// contenders races every contender selected on the lab.
func (b *bench) contenders(ctx context.Context, only string) ([]Result, error) {
	n := len(b.lab.Nodes)
	type raced struct {
		c    contender
		r    Result
		runs []measured
	}
	var all []*raced
	for _, c := range contenders {
		if only != "" && !slices.Contains(strings.Split(only, ","), c.key) {
			continue
		}
		if c.maxNodes > 0 && n > c.maxNodes {
			continue
		}
		all = append(all, &raced{c: c, r: Result{Nodes: n, Contender: c.name, Key: c.key, Expected: n * (n - 1), Commit: b.commit}})
	}
	// Round by round, every contender once a round: the ratios the
	// targets judge compare runs minutes apart, not a contender's three
	// runs against another's three taken while the machine was faster
	// or slower (a VM's speed drifts by tens of percent in an hour).
	var err error
	for i := 0; i < 3; i++ {
		for _, x := range all {
			if i > 0 && x.runs[0].wall >= 30 {
				continue // median of 3 only where a run is under 30 s
			}
			if err := b.prepare(ctx, x.c.empty); err != nil {
				return nil, err
			}
			m := b.measureLab(ctx, x.c.cmd(b))
			x.runs = append(x.runs, m)
			fmt.Fprintf(os.Stderr, "   %-11s run %d: %.2fs exit %d\n", x.c.key, i+1, m.wall, m.exit)
			if m.exit != 0 {
				x.r.Err = fmt.Sprintf("exit %d: %s", m.exit, lastLine(m.stderr))
			}
			if x.r.Found, err = b.countRoutes(ctx); err != nil {
				return nil, err
			}
		}
	}
	var results []Result
	var applyWall float64
	for _, x := range all {
		r, runs := x.r, x.runs
		slices.SortFunc(runs, func(a, b measured) int { return compareFloat(a.wall, b.wall) })
		med := runs[len(runs)/2]
		for _, m := range runs {
			r.Runs = append(r.Runs, round(m.wall))
		}
		r.Wall, r.CPU, r.MaxRSSKB, r.MachineCPU = round(med.wall), round(med.cpu), med.maxRSS, round(med.machineCPU)
		if x.c.key == "floor" || x.c.key == "go-true" || strings.HasPrefix(x.c.key, "check") {
			r.Expected = r.Found // they change nothing: the column is not theirs
		}
		if x.c.key == "apply" {
			applyWall = r.Wall
		}
		results = append(results, r)
	}
	for i := range results {
		if applyWall > 0 {
			results[i].Ratio = round(results[i].Wall / applyWall)
		}
		if f := floorOf(results[i].Key); f != "" {
			for _, o := range results {
				if o.Key == f && o.Wall > 0 {
					results[i].FloorRatio = round(results[i].Wall / o.Wall)
				}
			}
		}
	}
	return results, nil
}

// floorOf is the Go floor a routepush contender is measured against:
// go-apply for an apply from empty tables, go-true for the runs on a
// converged lab (which change nothing); "" for the others.
func floorOf(key string) string {
	switch {
	case key == "apply":
		return "go-apply"
	case key == "reapply" || strings.HasPrefix(key, "check"):
		return "go-true"
	}
	return ""
}

// commitOf names the source a bench ran: the commit, "+dirty" when the
// work tree differs from it.
func commitOf() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func round(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// prepare puts every node in the state a contender starts from: empty
// tables (no route into the pod range) or the converged lab.
func (b *bench) prepare(ctx context.Context, empty bool) error {
	if err := b.flush(ctx); err != nil {
		return err
	}
	if empty {
		return nil
	}
	m := b.measure(ctx, b.routepush())
	if m.exit != 0 {
		return fmt.Errorf("converging the lab: exit %d: %s", m.exit, m.stderr)
	}
	return nil
}

// flush removes every route into 100.64.0.0/10 from every node's main
// table: whoever made it.
func (b *bench) flush(ctx context.Context) error {
	var g sync.WaitGroup
	errs := make([]error, len(b.lab.Nodes))
	sem := make(chan struct{}, 32)
	for i, n := range b.lab.Nodes {
		g.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; g.Done() }()
			out, err := exec.CommandContext(ctx, "ip", "-n", n.NS, "-4", "route", "flush", "root", "100.64.0.0/10").CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("%s: %v: %s", n.Name, err, out)
			}
		}()
	}
	g.Wait()
	return errors.Join(errs...)
}

// countRoutes counts, over every node, the routes to another node's pod
// CIDR via that node's address: the correctness column.
func (b *bench) countRoutes(ctx context.Context) (int, error) {
	want := map[string]bool{}
	for _, n := range b.lab.Nodes {
		want[n.PodCIDR.String()+" via "+n.Addr.String()] = true
	}
	total := 0
	for _, n := range b.lab.Nodes {
		out, err := exec.CommandContext(ctx, "ip", "-n", n.NS, "-4", "route", "show", "root", "100.64.0.0/10").Output()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", n.Name, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] != n.PodCIDR.String() && want[f[0]+" via "+f[2]] {
				total++
			}
		}
	}
	return total, nil
}

type measured struct {
	wall, cpu  float64
	machineCPU float64 // measureLab's
	labMemMB   float64 // measureLab's
	maxRSS     int64
	exit       int
	stderr     string
}

// measure runs a command in the bastion namespace and takes its wall time
// and rusage (wait4's, which includes the children it waited for: every
// ssh of a fan-out, every ansible worker).
func (b *bench) measure(ctx context.Context, argv []string) measured {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", b.lab.Bastion}, argv...)...)
	cmd.Env = append(os.Environ(), "HOME="+b.lab.HomeDir(), "SSH_AUTH_SOCK=", "ANSIBLE_CONFIG=", "ANSIBLE_LOCAL_TEMP="+filepath.Join(b.dir, "ansible-tmp"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &stderr
	start := time.Now()
	err := cmd.Run()
	m := measured{wall: time.Since(start).Seconds(), stderr: stderr.String()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		m.exit = exit.ExitCode()
	} else if err != nil {
		m.exit, m.stderr = -1, err.Error()
	}
	if cmd.ProcessState == nil {
		return m
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		m.maxRSS = ru.Maxrss
	}
	return m
}

func (b *bench) routepush() []string {
	return []string{b.routepushBin, "--config", b.lab.ConfigPath(), "--inventory", b.lab.InventoryPath(),
		"--concurrency", strconv.Itoa(b.concurrency), "-q"}
}

// fanOut is what an expert writes with OpenSSH alone: one ssh per node, at
// most -P at once, each running remote (a fixed command; "$1" is the node's
// address, from the bench's own host list).
func (b *bench) fanOut(remote string) []string {
	ssh := fmt.Sprintf(`exec ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=5 -o ServerAliveCountMax=6 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -i %s root@"$1" %s`,
		b.lab.KnownHostsPath(), b.lab.IdentityPath(), remote)
	return []string{"sh", "-c", fmt.Sprintf(`xargs -P %d -n 1 sh -c '%s' sh < %s/hosts.txt`, b.concurrency, ssh, b.dir)}
}

// goFloor is one of the Go floors (bench/gofloor): the least an SSH tool
// on x/crypto/ssh does on each node, concurrency at a time.
func (b *bench) goFloor(mode string) []string {
	return []string{b.floorBin, "-mode", mode, "-hosts", filepath.Join(b.dir, "hosts.txt"), "-identity", b.lab.IdentityPath(),
		"-known-hosts", b.lab.KnownHostsPath(), "-batch-dir", filepath.Join(b.dir, "batch"), "-concurrency", strconv.Itoa(b.concurrency)}
}

func (b *bench) ansible(play, cfg string) []string {
	return []string{"env", "ANSIBLE_CONFIG=" + filepath.Join(b.dir, cfg), "ansible-playbook", "-i", filepath.Join(b.dir, "hosts.ini"), filepath.Join(b.dir, play)}
}

// writeFiles writes each node's batch (routepush's own lines), the host
// list, and the Ansible inventory, configs and playbooks.
func (b *bench) writeFiles() error {
	for _, d := range []string{"batch", "ansible-tmp", "cp"} {
		if err := os.MkdirAll(filepath.Join(b.dir, d), 0o700); err != nil {
			return err
		}
	}
	var hosts, ini strings.Builder
	ini.WriteString("[nodes]\n")
	var routes strings.Builder
	routes.WriteString("pod_routes:\n")
	for _, n := range b.lab.Nodes {
		fmt.Fprintf(&routes, "  - {cidr: %s, via: %s}\n", n.PodCIDR, n.Addr)
	}
	for _, n := range b.lab.Nodes {
		var batch strings.Builder
		for _, o := range b.lab.Nodes {
			if o != n {
				fmt.Fprintf(&batch, "route replace %s via %s proto 114\n", o.PodCIDR, o.Addr)
			}
		}
		if err := os.WriteFile(filepath.Join(b.dir, "batch", n.Addr.String()), []byte(batch.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(&hosts, n.Addr)
		fmt.Fprintf(&ini, "%s\n", n.Addr)
	}
	fmt.Fprintf(&ini, "[nodes:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_python_interpreter=/usr/bin/python3\nbatch_dir=%s/batch\n", b.lab.IdentityPath(), b.dir)
	sshArgs := fmt.Sprintf("-F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes", b.lab.KnownHostsPath())
	files := map[string]string{
		"hosts.txt": hosts.String(),
		"hosts.ini": ini.String(),
		// The best an expert writes: no facts, pipelining, forks = concurrency,
		// the whole batch in one task on stdin.
		"expert.cfg": fmt.Sprintf("[defaults]\nforks = %d\ngathering = explicit\nhost_key_checking = True\nlocal_tmp = %s/ansible-tmp\n[ssh_connection]\npipelining = True\nssh_args = %s -o ControlMaster=no\n",
			b.concurrency, b.dir, sshArgs),
		"expert.yml": `- hosts: nodes
  gather_facts: false
  tasks:
    - name: pod routes in one ip -batch
      shell: ip -batch -
      args:
        stdin: "{{ lookup('file', batch_dir + '/' + inventory_hostname) }}"
`,
		// The classic playbook's shape: one task item per route, Ansible's
		// default connection settings (ControlPersist), no pipelining.
		"classic.cfg": fmt.Sprintf("[defaults]\nforks = %d\nhost_key_checking = True\nlocal_tmp = %s/ansible-tmp\n[ssh_connection]\ncontrol_path_dir = %s/cp\nssh_args = %s -C -o ControlMaster=auto -o ControlPersist=60s\n",
			b.concurrency, b.dir, b.dir, sshArgs),
		"classic.yml": `- hosts: nodes
  vars:
` + indent(routes.String(), "    ") + `  tasks:
    - name: a route to every other node's pod CIDR
      command: ip route replace {{ item.cidr }} via {{ item.via }}
      loop: "{{ pod_routes }}"
      when: item.via != inventory_hostname
`,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// render writes the markdown table and the targets.
func render(results []Result, concurrency int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## routepush benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s, %d cores (`nproc`), Go %s. Every contender runs at most %d nodes at once; wall time is the median of 3 runs where a run is under 30 s. CPU and max RSS are the run's own and its children's (for routepush: routepush alone).\n\n",
		hostDescription(), runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), concurrency)
	b.WriteString("Machine CPU is every core's over the run: the nodes' sshd, shells and ip included (they share the machine). × Go floor is a routepush run's wall over go-apply's (apply from empty) or go-true's (runs on a converged lab), taken in the same rounds: each round runs every contender once.\n\n")
	b.WriteString("| nodes | contender | wall (s) | runs (s) | CPU (s) | machine CPU (s) | max RSS (MB) | × routepush apply | × Go floor | routes correct | commit |\n")
	b.WriteString("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
	for _, r := range results {
		if r.Scale {
			continue // renderScale's
		}
		var runs []string
		for _, x := range r.Runs {
			runs = append(runs, strconv.FormatFloat(x, 'f', 2, 64))
		}
		correct := fmt.Sprintf("%d / %d", r.Found, r.Expected)
		if r.Err != "" {
			correct += " (" + r.Err + ")"
		}
		floor := ""
		if r.FloorRatio > 0 {
			floor = fmt.Sprintf("%.2f", r.FloorRatio)
		}
		fmt.Fprintf(&b, "| %d | %s | %.2f | %s | %.2f | %.1f | %.1f | %.2f | %s | %s | %s |\n", r.Nodes, r.Contender, r.Wall, strings.Join(runs, ", "),
			r.CPU, r.MachineCPU, float64(r.MaxRSSKB)/1024, r.Ratio, floor, correct, r.Commit)
	}
	b.WriteString("\n### Targets\n\n")
	get := func(n int, key string) *Result {
		for i := range results {
			if results[i].Nodes == n && results[i].Key == key {
				return &results[i]
			}
		}
		return nil
	}
	target := func(desc string, ok func() (bool, string, bool)) {
		pass, figures, ran := ok()
		verdict := "not run"
		if ran {
			verdict = map[bool]string{true: "PASS", false: "MISS"}[pass]
		}
		fmt.Fprintf(&b, "- %s: %s %s\n", desc, verdict, figures)
	}
	for _, n := range []int{50, 200} {
		target(fmt.Sprintf("apply from empty ≤ 0.6 × OpenSSH fan-out at N = %d", n), func() (bool, string, bool) {
			a, s := get(n, "apply"), get(n, "ssh")
			if a == nil || s == nil {
				return false, "", false
			}
			return a.Wall <= 0.6*s.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.2f×)", a.Wall, s.Wall, a.Wall/s.Wall), true
		})
	}
	for _, n := range []int{200, 1000} {
		target(fmt.Sprintf("apply from empty ≤ 1.25 × the bare connection floor at N = %d", n), func() (bool, string, bool) {
			a, f := get(n, "apply"), get(n, "floor")
			if a == nil || f == nil {
				return false, "", false
			}
			return a.Wall <= 1.25*f.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.2f×)", a.Wall, f.Wall, a.Wall/f.Wall), true
		})
	}
	target("--check on a converged lab ≤ 0.5 × OpenSSH fan-out at N = 200", func() (bool, string, bool) {
		c, s := get(200, "check"), get(200, "ssh")
		if c == nil || s == nil {
			return false, "", false
		}
		return c.Wall <= 0.5*s.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.2f×)", c.Wall, s.Wall, c.Wall/s.Wall), true
	})
	target("preflight adds ≤ 5 % to --check on a converged lab at N = 200", func() (bool, string, bool) {
		c, o := get(200, "check"), get(200, "check-nopre")
		if c == nil || o == nil {
			return false, "", false
		}
		return c.Wall <= 1.05*o.Wall, fmt.Sprintf("(%.2f s vs %.2f s with --preflight off: %+.1f %%; CPU %.2f s vs %.2f s)", c.Wall, o.Wall, 100*(c.Wall/o.Wall-1), c.CPU, o.CPU), true
	})
	target("--probe (K = 3) adds ≤ 1 s to --check on a converged lab at N = 200", func() (bool, string, bool) {
		p, c := get(200, "check-probe"), get(200, "check")
		if p == nil || c == nil {
			return false, "", false
		}
		return p.Wall-c.Wall <= 1, fmt.Sprintf("(%.2f s vs %.2f s: %+.2f s; CPU %.2f s vs %.2f s)", p.Wall, c.Wall, p.Wall-c.Wall, p.CPU, c.CPU), true
	})
	for _, n := range sizesOf(results) {
		for _, t := range []struct {
			key, floor string
			max        float64
			what       string
		}{
			{"apply", "go-apply", 1.25, "apply from empty"},
			{"check", "go-true", 1.05, "--check on a converged lab"},
			{"reapply", "go-true", 1.1, "idempotent apply"},
		} {
			target(fmt.Sprintf("%s ≤ %.2f × %s at N = %d", t.what, t.max, t.floor, n), func() (bool, string, bool) {
				r, f := get(n, t.key), get(n, t.floor)
				if r == nil || f == nil {
					return false, "", false
				}
				return r.Wall <= t.max*f.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.2f×; CPU %.2f s vs %.2f s)", r.Wall, f.Wall, r.Wall/f.Wall, r.CPU, f.CPU), true
			})
		}
	}
	target("≥ 100 × faster than the classic Ansible playbook at N = 20", func() (bool, string, bool) {
		a, c := get(20, "apply"), get(20, "classic")
		if a == nil || c == nil {
			return false, "", false
		}
		return c.Wall >= 100*a.Wall, fmt.Sprintf("(%.2f s vs %.2f s: %.0f×)", a.Wall, c.Wall, c.Wall/a.Wall), true
	})
	target("routepush peak RSS ≤ 100 MB at N = 1000", func() (bool, string, bool) {
		a := get(1000, "apply")
		if a == nil {
			return false, "", false
		}
		return a.MaxRSSKB <= 100*1024, fmt.Sprintf("(%.1f MB)", float64(a.MaxRSSKB)/1024), true
	})
	return b.String()
}

func hostDescription() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// sizesOf are the lab sizes results were taken at, in order.
func sizesOf(results []Result) []int {
	var sizes []int
	for _, r := range results {
		if !slices.Contains(sizes, r.Nodes) {
			sizes = append(sizes, r.Nodes)
		}
	}
	return sizes
}
